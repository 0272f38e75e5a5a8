/* philox.h — Philox4x32-10, the counter-based generator behind every random number in the
 * library (Salmon et al., SC'11). Pure arithmetic, compiled for host and device alike, so a
 * CPU op and its CUDA kernel draw the same values from the same (seed, counter). */
#ifndef CNN_PHILOX_H
#define CNN_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define CNN_HOSTDEV __host__ __device__ __forceinline__
#else
#define CNN_HOSTDEV static inline
#endif

/* Four 32-bit random words for one 64-bit counter under a 64-bit key. */
CNN_HOSTDEV void cnn_philox4x32(uint64_t key, uint64_t counter, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The key and first counter of a draw (core/rng.c's cnn_rng_draw): as given, or, for a kernel
 * captured in a CUDA graph, read from the replay's device state {seed, base} with the offset
 * taken relative to base. */
CNN_HOSTDEV void cnn_philox_resolve(const uint64_t *state, uint64_t *seed, uint64_t *offset)
{
    if (state) {
        *seed = state[0];
        *offset += state[1];
    }
}

/* A float in [0, 1) from the top 24 bits of a word. */
CNN_HOSTDEV float cnn_u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

/* Element i of a uniform stream starting at counter `offset`: 4 elements per counter. */
CNN_HOSTDEV float cnn_philox_uniform(uint64_t seed, uint64_t offset, uint64_t i)
{
    uint32_t r[4];
    cnn_philox4x32(seed, offset + i / 4, r);
    return cnn_u32_to_unit(r[i % 4]);
}

/* A draw v = lo + (hi - lo) * u of U[lo, hi), kept below hi: rounding can land v on hi, which
 * the range excludes (U[1, 1.0001): 6 in 10,000 draws); such a draw is the largest float below
 * hi. (The caller computes v: a kernel spells out its rounding to match the CPU's.) */
CNN_HOSTDEV float cnn_uniform_below(float v, float lo, float hi)
{
    return v < hi ? v : nextafterf(hi, lo);
}

#endif /* CNN_PHILOX_H */
