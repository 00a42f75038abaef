/* bench.h: `ftune bench`: training throughput, memory and time per phase on a model of a real shape,
 * with no checkpoint: the model is made at random directly in its storage dtype (NF4 on the device
 * for CUDA, kernels/weight.h ft_weight_init_random), the data is random token ids, and the run is
 * the real training step (trainer/train.h) with LoRA on the chosen modules.
 *
 * Reported: tokens/s over the steps after the first (which pays for cuBLASLt's algorithm choice and
 * the first allocations), F per token from the function `ftune plan` uses (6 N_blocks + 4 N_head +
 * 4.5 A_fwd + LoRA, plan.h) and F * tokens/s, against the BF16 GEMM rate measured in the same run
 * (--peak: an n x n x n product through the backend's own linear op, cuBLASLt on CUDA); the
 * backend's peak memory against the plan's prediction for the same run; time per phase
 * (kernels/backend.h ft_phase) per step; the loss of every step (the same micro-batches every step,
 * so LoRA memorizes them and the loss falls).
 *
 * Shapes (config.json values of the released models): llama-3-70b, llama-3-8b, qwen3-32b,
 * qwen3-14b, mistral-small-24b, and `tiny` (a 2-layer toy for tests); --layers N keeps the first N
 * layers of a shape's width, --vocab V overrides the vocabulary, so CPU tests and quick GPU checks
 * can run a few layers of a real width. --seq max takes the longest sequence the plan fits in the
 * device's free memory (a multiple of 256).
 *
 * Loading (bench_load.c): --load DIR times loading a checkpoint on the device against reading its
 * files, and with --compare-cpu checks that every NF4 weight's codes and constants equal the CPU
 * loader's; --write-checkpoint DIR writes a random bf16 checkpoint of a shape in --shards files. */
#ifndef FT_BENCH_H
#define FT_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/backend.h"
#include "trainer/hf_config.h"

typedef struct ft_bench_shape {
    const char *name;
    const char *arch;   /* config.json architectures[0] */
    int64_t C, F, L, H, Hkv, D, V;
    double theta;       /* rope_theta */
    int llama3_rope;    /* rope_scaling llama3: factor 8, low 1, high 4, original 8192 */
    double eps;         /* rms_norm_eps */
} ft_bench_shape;

/* The shape called name, or NULL; ft_bench_shape_list() names them all ("llama-3-70b, ..."). */
const ft_bench_shape *ft_bench_shape_find(const char *name);
const char *ft_bench_shape_list(void);
/* The validated config of a shape with `layers` layers (0: all) and vocabulary `vocab` (0: the
 * shape's), through the same parser as a checkpoint's config.json. */
ft_status ft_bench_config(const ft_bench_shape *s, int64_t layers, int64_t vocab, ft_model_config *cfg);
/* The config.json text of the same. */
void ft_bench_config_json(const ft_bench_shape *s, int64_t layers, int64_t vocab, char *json, size_t cap);

typedef struct ft_bench_opts {
    const char *shape;      /* ft_bench_shape name */
    int64_t layers, vocab;  /* 0: the shape's */
    const char *device;     /* cpu, cuda, auto */
    int threads;            /* CPU threads (0: all) */
    int64_t seq;            /* tokens per row; 0: the longest that fits (plan) */
    int64_t doc_len;        /* > 0: each row packed with documents of this many tokens (the last one shorter),
                             * attending within their document only, as packed recipes train; 0: one a row */
    int64_t micro_batch, grad_accum, steps;
    int64_t lora_r;
    double lora_dropout;    /* lora.dropout (0, as the PEFT side runs; the recipes use 0.05) */
    int dora;               /* lora.dora (DoRA: magnitudes, a second frozen product in the backward) */
    const char *targets;    /* "all" or a module list */
    const char *quant;      /* "nf4" or "none" (bf16 linears) */
    double lr;
    int recompute, host_boundaries;
    int keep_attention; /* with recompute: attention outputs kept, not recomputed (training.keep_attention) */
    int64_t keep_layers;    /* with recompute: the last layers kept, not recomputed (training.keep_layers);
                             * -1: as many as the plan offers in the memory the run finds */
    int64_t mlp_chunk;      /* with recompute: the MLP over this many tokens at a time (training.mlp_chunk; 0: all) */
    int64_t boundary_every; /* with recompute: every Nth layer's input kept (training.boundary_every; 0/1: all) */
    int peak;               /* time an n x n x n GEMM */
    int64_t peak_n, peak_reps; /* 0: 8192 and 10 on CUDA, 1024 and 3 on CPU */
    uint64_t seed;
    FILE *out;              /* the report (NULL: none) */
} ft_bench_opts;

typedef struct ft_bench_step {
    double loss, grad_norm, seconds;
    double phase_ms[FT_PHASE_COUNT];
} ft_bench_step;

typedef struct ft_bench_result {
    char shape[64];
    char linear_dtype[16];  /* "NF4", "Q4_K", ... (--quant) */
    int64_t layers, T, B, K, tokens_per_step;
    int64_t keep_layers;    /* layers kept, not recomputed (--keep-layers, max resolved) */
    int64_t mlp_chunk;      /* --mlp-chunk (0: the MLP over all tokens at once) */
    int64_t boundary_every; /* --boundary-every (0: every layer's input kept) */
    int64_t doc_len;        /* --doc-len (0: one document a row) */
    double attn_len;        /* the plan's S in A_fwd: T, less with doc_len */
    int64_t lora_r;
    double lora_dropout;
    int dora;
    int64_t nsteps;
    ft_bench_step *steps;   /* [nsteps] */
    double init_s;          /* making the random model, to the last byte on the device */
    double tokens_per_s;    /* steps 2.. (all of them when there is one) */
    double step_s;          /* mean of the same steps */
    double phase_ms[FT_PHASE_COUNT]; /* mean per step over the same steps */
    ft_dequant_counts deq;  /* the weight cache's, in the last step (the same every step after the first) */
    /* What `ftune plan`'s time model predicts for this run on this device (plan.h "Time"), per
     * step and phase, and its tokens/s: each measured part beside its prediction, so one run
     * checks the model and the device profile's rates (0 where the plan has no part: "other") */
    double plan_phase_ms[FT_PHASE_COUNT];
    double plan_tokens_per_s;
    char plan_device[16];   /* the profile the prediction used ("h100", "cpu") */
    double flops_per_token; /* ftune plan's F */
    double achieved_tflops; /* F * tokens/s */
    double peak_tflops;     /* measured GEMM rate (0 without --peak) */
    double mfu;             /* achieved / peak */
    double flops_full;      /* the plan's F with full recomputation (the count), per token */
    double mfu_full;        /* flops_full x tokens/s / peak: differs from mfu only where layers are kept
                             * or recompute is off */
    int64_t mem_peak;       /* ft_backend_bytes_peak of the whole run */
    int64_t mem_plan;       /* the plan's backend bytes (max of training and loading) */
    double mem_ratio;       /* mem_peak / mem_plan */
    int64_t host_peak, host_plan; /* host-kept boundaries: measured, planned */
    int64_t dev_used, dev_total;  /* ft_backend_mem_info after the steps */
    int64_t dev_delta;      /* CUDA: device memory in use after the steps less the context's at the
                             * backend's opening (cudaMemGetInfo: the pool's slack and cuBLAS's own
                             * allocations included),
                             * a measure of the run's footprint independent of the backend's accounting */
    int64_t mem_plan_train; /* the plan's backend bytes of a training step (what is held after the steps;
                             * mem_plan may be the loading peak instead, on small models) */
    int64_t paged;          /* bytes in paged (managed) memory */
    int loss_finite, loss_fell;
} ft_bench_result;

/* Runs the benchmark; the report goes to o->out. *r is filled on success (free with
 * ft_bench_result_free). */
ft_status ft_bench_run(const ft_bench_opts *o, ft_bench_result *r);
void ft_bench_result_free(ft_bench_result *r);
/* The result as JSON (for tests/gpu/run.sh), written atomically. */
ft_status ft_bench_write_json(const ft_bench_result *r, const char *path);

/* bench_load.c ------------------------------------------------------------------------------------ */
typedef struct ft_bench_load_opts {
    const char *dir;        /* checkpoint directory */
    const char *device;
    int threads;
    int compare_cpu;        /* load on the CPU backend too and compare every weight's bytes */
    FILE *out;
} ft_bench_load_opts;
typedef struct ft_bench_load_result {
    int64_t file_bytes;
    double read_s;          /* reading every shard file once (read(2) into a buffer) */
    double load_s;          /* ft_model_load on the device, synchronized */
    int64_t tensors_compared, tensors_differing;
} ft_bench_load_result;
ft_status ft_bench_load(const ft_bench_load_opts *o, ft_bench_load_result *r);
/* A random bf16 checkpoint of a shape (config.json + `shards` safetensors files + index), for
 * loading benchmarks: values as ft_weight_init_random's, so no two tensors are alike. */
ft_status ft_bench_write_checkpoint(const ft_bench_shape *s, int64_t layers, int64_t vocab, int shards,
                                    const char *dir, uint64_t seed);

#endif
