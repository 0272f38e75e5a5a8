/* emu_selftest.h — what the two files of the emulator's self-test share: the pass/fail
 * counts and EXPECT, the last launch's error, and the checks emu_selftest_streams.cu holds
 * (streams, events, capture, lagging copies, several devices, lagging streams), which main runs. */
#ifndef CNN_EMU_SELFTEST_H
#define CNN_EMU_SELFTEST_H

#include <cuda_runtime.h>

#include <stdio.h>

extern int passed, failed;

#define EXPECT(cond)                                                                              \
    do {                                                                                          \
        if (cond) {                                                                               \
            passed++;                                                                             \
        } else {                                                                                  \
            failed++;                                                                             \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                \
        }                                                                                         \
    } while (0)

static inline cudaError_t last(void) { return cudaGetLastError(); }

/* d: 1024 ints of device memory. */
void check_capture(int *d);
void check_events(void);
void check_lagging_copies(int *d);
void check_devices(int *d);
void check_lagging_streams(int *d);

#endif /* CNN_EMU_SELFTEST_H */
