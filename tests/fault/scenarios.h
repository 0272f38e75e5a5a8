/* scenarios.h — the scenarios that fault_sweep.c runs again and again with one of the library's
 * allocations or file-system calls failing, and what they share with it: the scratch folder,
 * the device, and the way a scenario reports a broken promise of the API. */
#ifndef CNN_FAULT_SCENARIOS_H
#define CNN_FAULT_SCENARIOS_H

#include "cnncuda.h"

/* A scenario does its work, frees everything and returns the first error; *sum is a checksum of
 * its result. It may report a broken promise of the API with broken(). */
typedef cnn_status (*scenario_fn)(double *sum);

extern char g_dir[64];   /* this run's scratch folder, made by main */
extern cnn_device g_dev; /* where the scenarios put their tensors, models and batches */

/* The first broken promise of this run (g_broken[0] == 0: none). */
extern char g_broken[512];
void broken(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The bad files a data scenario's loader listed besides the one planted (each "name: reason",
 * one per line), for the harness to judge: an unreadable file may be listed, a good one that
 * the process could not open (out of descriptors or memory) may not. */
extern char g_extra_bad[2048];

/* Around the scenarios' own file checks (the old checkpoint still there, no stray files), so
 * that only the library's calls are counted and failed. */
void fault_pause(void);
void fault_resume(void);
/* Whether an error's status and message name the failure planted in this run. */
int fault_names_the_cause(cnn_status s, const char *msg);

/* Writes the files the data scenarios read (before anything is armed); 0 on failure. */
int setup_files(void);

cnn_status ops_step(double *sum);
cnn_status model_io(double *sum);
cnn_status resnet(double *sum);
cnn_status idx_data(double *sum);
cnn_status folder_data(double *sum);
cnn_status folder_data_threads(double *sum);
cnn_status folder_data_retry(double *sum);

#endif /* CNN_FAULT_SCENARIOS_H */
