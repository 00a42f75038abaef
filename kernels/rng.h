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
/* Dropout masks. Element i is kept when its 16-bit draw is at least ft_dropout_threshold(p), so p
 * takes effect rounded to a multiple of 1/65536 (0.05 -> 3277/65536 = 0.0500031). One SplitMix64
 * output (the stream seed + (g+1) * golden gamma) holds the draws of the 4 elements of group
 * g = i / 4, low bits first: a quarter of one finalizer per element, where a draw of its own per
 * element (ft_uniform: two finalizers, ~40 integer instructions on a GPU) made the dropout kernels
 * bound by hashing, not by memory. Kernels that handle 4 or 8 aligned elements call
 * ft_dropout_bits once per group; the others ft_dropout_keep. */
static inline FT_HD uint32_t ft_dropout_threshold(float p) {
    return p <= 0.0f ? 0u : p >= 1.0f ? 65536u : (uint32_t)(p * 65536.0f + 0.5f);
}
static inline FT_HD uint64_t ft_dropout_bits(uint64_t seed, uint64_t group) {
    return ft_mix64(seed + group * 0x9e3779b97f4a7c15ull);
}
/* The seed whose element i is element i0 + i of `seed`'s stream (i0 a multiple of 4: whole groups),
 * so a kernel over a slice of a tensor draws the slice's part of the whole tensor's mask. */
static inline FT_HD uint64_t ft_dropout_seed_at(uint64_t seed, uint64_t i0) {
    return seed + (i0 >> 2) * 0x9e3779b97f4a7c15ull;
}
/* The keep decision of element j (0..3) of a group, from its bits. */
static inline FT_HD int ft_dropout_keep_in(uint64_t bits, int j, uint32_t thr) {
    return (uint32_t)((bits >> (16 * j)) & 0xffffu) >= thr;
}
/* Dropout keep decision for element i. */
static inline FT_HD int ft_dropout_keep(uint64_t seed, uint64_t i, uint32_t thr) {
    return ft_dropout_keep_in(ft_dropout_bits(seed, i >> 2), (int)(i & 3), thr);
}

/* A small sequential generator for host-side sampling (state is the caller's). */
typedef struct { uint64_t state; } ft_rng;
static inline uint64_t ft_rng_next(ft_rng *r) { return ft_mix64(r->state++); }
static inline float ft_rng_uniform(ft_rng *r) { return (float)(ft_rng_next(r) >> 40) * (1.0f / 16777216.0f); }

#endif
