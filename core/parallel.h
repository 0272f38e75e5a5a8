/* parallel.h — the one rule for when a CPU loop gets an OpenMP thread team: only when its work
 * (inner-loop element operations, summed over the loop) is large enough that splitting it beats
 * waking the team and waiting at the closing barrier. No kernels here. */
#ifndef CNN_PARALLEL_H
#define CNN_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

/* A team costs a few microseconds on an idle machine, but on a loaded one a worker that is not
 * running stalls the closing barrier for a scheduler time slice while the other spins. Below
 * this much work (about 1 ms on one core) the serial loop wins either way: with the old
 * 32K-element limits, 2 threads trained LeNet-5 (batch 128) at 1/3 the speed of 1 thread on a
 * loaded 2-core machine, most of the time in libgomp. It is also the limit conv2d always had
 * (4e6 flops = 2e6 multiply-adds), so that loops and convs follow the one rule. */
#define CNN_PAR_MIN_WORK ((int64_t)2000000)

static inline bool cnn_par_worth(int64_t work) { return work >= CNN_PAR_MIN_WORK; }

/* On a combined `parallel for simd`, write the clause as `if (parallel: cnn_par_worth(n))`: a
 * plain `if` applies to the simd construct too (OpenMP 5), so every loop under the limit ran
 * scalar (ReLU's backward, a branch per element, at 5 ns an element). */

#endif
