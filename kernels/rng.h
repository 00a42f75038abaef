/* rng.h: counter-based random numbers (SplitMix64 finalizer over seed and index), identical on
 * every backend and independent of thread count, so dropout masks and LoRA initialization are
 * reproducible and recomputation redraws the same mask. */
#ifndef FT_RNG_H
#define FT_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define FT_HD __host__ __device__
#else
#define FT_HD
#endif

static inline FT_HD uint64_t ft_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) with 24 random bits, from (seed, i). */
static inline FT_HD float ft_uniform(uint64_t seed, uint64_t i) {
    return (float)(ft_mix64(seed ^ ft_mix64(i)) >> 40) * (1.0f / 16777216.0f);
}
/* Dropout keep decision for element i. */
static inline FT_HD int ft_dropout_keep(uint64_t seed, uint64_t i, float p) { return ft_uniform(seed, i) >= p; }

/* A small sequential generator for host-side sampling (state is the caller's). */
typedef struct { uint64_t state; } ft_rng;
static inline uint64_t ft_rng_next(ft_rng *r) { return ft_mix64(r->state++); }
static inline float ft_rng_uniform(ft_rng *r) { return (float)(ft_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

#endif
