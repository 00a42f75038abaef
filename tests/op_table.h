/* op_table.h: the op test table (test-backend-ops style), a library for the op suites
 * tests/test_ops_cpu.c and tests/test_ops_cuda.c (both thin drivers that link it).
 *
 * A case names an op, its shape, a weight dtype, a flag (accumulate, bias, packing, ...), a tier and
 * two tolerances. Each op has a runner (tests/op_table_<family>.c; a forward op and its backward
 * share one) that runs a case on a backend (ctx->be != NULL) or, with be == NULL, computes a naive
 * double-precision reference on the host from the same deterministic inputs (independent code:
 * plain loops, nothing from kernels/cpu). Outputs are poisoned with NaN (0xFF bytes) before each
 * run, so an element an op forgets to write fails. Every comparison goes through the harness's one
 * comparator (ft_compare_f32 / FT_CHECK_CLOSE): any NaN or Inf fails and the test is
 * `!(rel_l2 <= tol)`.
 *
 * Tiers: OT_SMALL (tiny shapes: test_ops_cpu against the double reference, and any BF16 backend
 * against the CPU backend), OT_MID (odd sizes and every attention head_dim class, cheap enough for
 * the emulator of tests/gpu/emu) and OT_REAL (the real layer shapes of Llama-3-70B, Qwen3-32B and
 * Mistral-Small-24B): the last two only against the CPU backend (test_ops_cuda).
 *
 * Adding a case is one row in the one table, ot_rows[] in tests/op_table_cases.c (op, tier, name,
 * shape, dtype, flag, tolerances; OP_<op>_AND_BWD makes the row the forward and the backward case of
 * one shape); nothing else changes. Adding an op is one OP_ id below, one runner in the family file
 * it belongs to (declared at the end of this header) and one row of ot_ops[] in tests/op_table.c
 * (name, runner, shape letters, f32 outputs, the vtable slots it covers, its backward op), plus its
 * cases: test_ops_cuda fails while an op lacks a small or a real-shape case or a vtable slot is
 * mapped to no op. */
#ifndef FT_OP_TABLE_H
#define FT_OP_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/dtype.h"
#include "kernels/weight.h"
#include "tests/harness.h"

/* ---- the table ------------------------------------------------------------------------------------ */

enum {
    OP_EMBED, OP_RMSNORM, OP_RMSNORM_BWD, OP_LINEAR, OP_LINEAR_BWD_X, OP_LORA_FWD, OP_LORA_BWD, OP_DROPOUT,
    OP_ROPE, OP_ATTN, OP_ATTN_BWD, OP_SWIGLU, OP_SWIGLU_BWD, OP_ADD, OP_XENT, OP_SUMSQ, OP_SCALE, OP_ADAMW,
    OP_NF4, OP_CLIP, OP_ATTN_KV, OP_ROWS_SET, OP_ROWS_SUM, OP_COLS_SET, OP_COLS_TAKE, OP_DORA_NORM, OP_DORA_SCALE,
    OP_DORA_MAG_GRAD, OP_COUNT
};
/* A row of ot_rows[] whose op carries OT_AND_BWD is two cases: the op's, then its backward op's
 * (ot_ops[op].bwd_op) with the same name, shape, dtype, flag and tolerances. */
enum { OT_AND_BWD = 0x100 };
enum {
    OP_RMSNORM_AND_BWD = OP_RMSNORM | OT_AND_BWD, OP_LINEAR_AND_BWD = OP_LINEAR | OT_AND_BWD,
    OP_LORA_AND_BWD = OP_LORA_FWD | OT_AND_BWD, OP_ATTN_AND_BWD = OP_ATTN | OT_AND_BWD,
    OP_SWIGLU_AND_BWD = OP_SWIGLU | OT_AND_BWD, OP_ROWS_AND_SUM = OP_ROWS_SET | OT_AND_BWD,
    OP_COLS_AND_TAKE = OP_COLS_SET | OT_AND_BWD, OP_DORA_SCALE_AND_GRAD = OP_DORA_SCALE | OT_AND_BWD
};
/* Flags, per op (see its runner): linear F_ACC, F_BIAS; lora F_ACC, F_TONLY (lora_fwd without y),
 * F_TGIVEN (lora_fwd: t alone, then y from the given t), F_DROP (dropout 0.1 on the input);
 * rmsnorm_bwd F_ACC; attention F_PACK; rope F_INV, F_LLAMA3;
 * dropout p in 1/1000 in the low 16 bits, F_INPLACE << 16; xent 0 loss only, 1 grad_scale 1, 2 0.25;
 * rows_set/rows_sum F_EMPTY (one token with no rows); dora_scale F_ACC, F_BIAS (of dtype wt), F_ALIAS (y is z), F_SHIFT (mag / wn - 1). */
enum { F_ACC = 1, F_BIAS = 2, F_TONLY = 2, F_TGIVEN = 4, F_DROP = 8, F_PACK = 1, F_INV = 1, F_LLAMA3 = 2, F_INPLACE = 2,
       F_EMPTY = 1, F_ALIAS = 4, F_SHIFT = 8 };

typedef enum { OT_SMALL, OT_MID, OT_REAL, OT_NTIERS } ot_tier;

typedef struct ot_case {
    int op;         /* OP_* (in ot_rows[], possibly | OT_AND_BWD) */
    ot_tier tier;
    const char *name;
    int64_t s[5];   /* shape, per op: ot_ops[op].dims */
    ft_dtype wt;    /* weight / source dtype */
    int flag;       /* F_* bits, or a per-op selector */
    double tol;     /* rel_l2 against the double reference (the small tier; 0 in the others) */
    double tol_act; /* rel_l2 against the CPU backend, for a backend with BF16 activations */
} ot_case;

extern const ot_case ot_rows[];
extern const int ot_nrows;
/* The cases: the rows of ot_rows[] in order, an OT_AND_BWD row as its two cases; 0 <= i < count. */
int ot_case_count(void);
ot_case ot_case_at(int i);

/* ---- the ops -------------------------------------------------------------------------------------- */

typedef struct ot_ctx ot_ctx;
typedef struct ot_out ot_out;
typedef void (*ot_runner)(ot_ctx *c, const ot_case *k, ot_out *o);

typedef struct ot_op_info {
    const char *name;    /* as in ops.h: "linear_bwd_x" */
    ot_runner run;
    int bwd;             /* a backward op: --mode grad runs it; its error is shown as the bwd error */
    const char *dims[5]; /* the letters of s[] */
    int shows_wt;        /* the shape column names wt */
    const char *f32[2];  /* outputs that are f32 results ("*": all): 1e-5 in the mid and real tiers */
    size_t vt[2];        /* the backend vtable slots (offsetof ft_backend_vtbl) the cases cover, 0: none */
    int bwd_op;          /* a forward op: its backward op (OT_AND_BWD rows); 0 for the others */
} ot_op_info;

extern const ot_op_info ot_ops[OP_COUNT];

/* ---- running and comparing ------------------------------------------------------------------------ */

typedef enum { OT_TEST, OT_GRAD, OT_PERF, OT_ALL } ot_mode;
/* "test" | "grad" | "perf" | "all": ot_mode_parse returns 0 for anything else. */
int ot_mode_parse(const char *s, ot_mode *mode);
const char *ot_mode_name(ot_mode mode);
/* Whether case k runs in `mode` (grad: only backward ops) under `filter` (NULL or "": all; else a
 * comma-separated list of substrings of "<op name> <case name>"). */
int ot_case_selected(const ot_case *k, ot_mode mode, const char *filter);
/* The shape column: "N9 in70 out300 NF4". */
void ot_case_shape(const ot_case *k, char *s, size_t n);

typedef struct ot_result {
    double err, tol;      /* worst output: rel_l2 (NaN when not finite) and its tolerance */
    char worst[48];       /* that output's name */
    double ms;            /* perf: one call of the op */
    double flops, bytes;  /* perf: the work of one call (products' FLOPs, or the fewest bytes moved) */
    int fails, nonfinite, ran_test, ran_perf;
} ot_result;

/* Runs case k on `be` and on `ref` (the CPU backend, or NULL for the double reference) from the same
 * inputs (xor'ed with `salt`; rounded to BF16 when be has BF16 activations and ref is a backend) and
 * checks every output: against the double reference (or a backend of the same activation dtype)
 * with the case's tol; a BF16 backend against the CPU backend with the output's own tol_act if it sets one, else the case's, f32 results at 1e-5 in
 * the mid and real tiers and NF4 codes exact. Also checks that be's memory returns to its level
 * (a second run tells a leak from grow-only scratch). Accumulates into r. */
void ot_run_compare(ft_backend *be, ft_backend *ref, const ot_case *k, uint64_t salt, ot_result *r);
/* Times the case's op on `be` (at most `reps` repeats, about 0.2 s); no comparison. */
void ot_run_perf(ft_backend *be, const ot_case *k, uint64_t salt, int reps, ot_result *r);
/* Backend memory accounting: alignment, in-use and peak bytes, weight sizes, a BF16 round trip. */
void ot_test_memory(ft_backend *be);

/* ---- for the runners (tests/op_table_*.c) --------------------------------------------------------- */

enum { OT_MAXBUF = 32, OT_MAXW = 4, OT_MAXOUT = 4 };

/* Backend memory owned by one run of one case. */
struct ot_ctx {
    ft_backend *be;      /* NULL: host reference run */
    int round_act;       /* round generated activations to BF16 (comparing against a BF16 backend) */
    void *buf[OT_MAXBUF];
    int nbuf;
    ft_weight w[OT_MAXW];
    int nw;
    uint64_t salt;       /* xor'ed into every input seed: 0 in test_ops_cpu, fresh per run in test_ops_cuda */
    int reps;            /* perf mode: > 0 repeats the case's op and times it */
    double op_seconds;   /* perf mode: mean time of one call of the case's op */
    double flops, bytes; /* the work of one call of the case's op (set by the runner) */
};

/* A run's outputs, as host floats (malloc'd). */
struct ot_out {
    int n;
    const char *name[OT_MAXOUT];
    float *v[OT_MAXOUT];
    int64_t len[OT_MAXOUT];
    double tol_act[OT_MAXOUT]; /* >= 0: overrides the case's tol_act for this output */
};

void ot_out_add(ot_out *o, const char *name, float *v, int64_t len);
void ot_out_add_tol(ot_out *o, const char *name, float *v, int64_t len, double tol_act);

/* Host arrays; abort when out of memory. */
float *ot_hmalloc(int64_t n);
double *ot_dzeros(int64_t n);
float *ot_f32_of_double(const double *d, int64_t n);
/* Deterministic inputs: uniform in [-scale, scale) from (seed ^ salt, element index). */
float *ot_gen(const ot_ctx *c, uint64_t seed, int64_t n, float scale);
/* The values a weight of dtype t holds after being set from h (host, independent of backends
 * except NF4, whose reference quantizer is checked against bitsandbytes by test_nf4, and the ggml
 * block types, below). */
float *ot_weight_values(const float *h, int64_t n, ft_dtype t);
/* ggml block weights (tests/op_table_ggml.c): the blocks a case's weight of dtype t holds for the
 * generated floats h[n] (n whole blocks; malloc'd): h quantized for the types ftune encodes, random
 * valid blocks drawn from h for the others (Q2_K, Q3_K, the IQ4 types); their decoded values
 * (ot_weight_values' answer); and filling a backend weight with those blocks (ot_up_weight's). */
uint8_t *ot_ggml_blocks(const float *h, int64_t n, ft_dtype t);
float *ot_ggml_values(const float *h, int64_t n, ft_dtype t);
void ot_ggml_set(ot_ctx *c, ft_weight *w, const float *h);

/* Backend buffers, released with the context. */
void *ot_dev_alloc(ot_ctx *c, int64_t bytes);
int64_t ot_act_size(const ot_ctx *c);
void *ot_up_act(ot_ctx *c, const float *h, int64_t n); /* host floats -> activations (act dtype) */
void *ot_up_raw(ot_ctx *c, const void *h, int64_t bytes);
void *ot_poison(ot_ctx *c, int64_t bytes);             /* 0xFF bytes: NaN in F32 and BF16 */
float *ot_down_act(ot_ctx *c, const void *d, int64_t n);
float *ot_down_f32(ot_ctx *c, const void *d, int64_t n);
ft_weight *ot_up_weight(ot_ctx *c, const float *h, int64_t rows, int64_t cols, ft_dtype t);

/* Runs an op call and checks its status. When `is_main` (the call is the op the case is about) and
 * the context is in perf mode, repeats the call and records its mean time (host clock around a
 * backend sync; about 0.2 s of repeats, at most c->reps). Perf mode never compares outputs, so
 * repeating in-place or accumulating ops is harmless. */
double ot_now(void);
#define OT_RUN(c, is_main, call)                                                                   \
    do {                                                                                           \
        FT_CHECK_OK(call);                                                                         \
        if ((is_main) && (c)->be && (c)->reps > 0) {                                               \
            FT_CHECK_OK(ft_backend_sync((c)->be));                                                 \
            double t0_ = ot_now();                                                                 \
            (void)(call);                                                                          \
            FT_CHECK_OK(ft_backend_sync((c)->be));                                                 \
            const double t1_ = ot_now() - t0_;                                                     \
            int n_ = t1_ > 0 ? (int)(0.2 / t1_) : (c)->reps;                                       \
            n_ = n_ < 1 ? 1 : n_ > (c)->reps ? (c)->reps : n_;                                     \
            t0_ = ot_now();                                                                        \
            for (int r_ = 0; r_ < n_; r_++) (void)(call);                                          \
            FT_CHECK_OK(ft_backend_sync((c)->be));                                                 \
            (c)->op_seconds = (ot_now() - t0_) / n_;                                               \
        }                                                                                          \
    } while (0)

/* The runners, by family: op_table_elementwise.c, op_table_linear.c, op_table_attention.c,
 * op_table_optim.c, op_table_nf4.c, op_table_rows.c, op_table_dora.c. Each also sets c->flops or c->bytes
 * for the perf rate. */
void ot_run_embed(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_rmsnorm(ot_ctx *c, const ot_case *k, ot_out *o);  /* OP_RMSNORM, OP_RMSNORM_BWD */
void ot_run_dropout(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_swiglu(ot_ctx *c, const ot_case *k, ot_out *o);   /* OP_SWIGLU, OP_SWIGLU_BWD */
void ot_run_add(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_linear(ot_ctx *c, const ot_case *k, ot_out *o);   /* OP_LINEAR, OP_LINEAR_BWD_X */
void ot_run_lora(ot_ctx *c, const ot_case *k, ot_out *o);     /* OP_LORA_FWD, OP_LORA_BWD */
void ot_run_rope(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_attention(ot_ctx *c, const ot_case *k, ot_out *o); /* OP_ATTN, OP_ATTN_BWD */
void ot_run_attention_kv(ot_ctx *c, const ot_case *k, ot_out *o); /* OP_ATTN_KV */
void ot_run_xent(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_reduce(ot_ctx *c, const ot_case *k, ot_out *o);   /* OP_SUMSQ, OP_SCALE */
void ot_run_adamw(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_clip(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_nf4(ot_ctx *c, const ot_case *k, ot_out *o);
void ot_run_rows(ot_ctx *c, const ot_case *k, ot_out *o);     /* OP_ROWS_SET, OP_ROWS_SUM */
void ot_run_cols(ot_ctx *c, const ot_case *k, ot_out *o);     /* OP_COLS_SET, OP_COLS_TAKE */
void ot_run_dora_norm(ot_ctx *c, const ot_case *k, ot_out *o); /* OP_DORA_NORM */
void ot_run_dora(ot_ctx *c, const ot_case *k, ot_out *o);     /* OP_DORA_SCALE, OP_DORA_MAG_GRAD */

#endif
