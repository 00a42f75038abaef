/* cuda_impl.h: internals of the CUDA backend, shared by the kernels/cuda sources only (the twin of
 * kernels/cpu/cpu_impl.h).
 *
 * The backend owns one device, one non-blocking stream on which every op and copy is enqueued (so
 * ops are ordered without events), a cuBLASLt handle with its workspace, grow-only scratch buffers
 * that ops borrow for the duration of one call (weight dequantization, LoRA casts, reduction
 * partials), the NF4 tables in device memory, and one device word of error flags that kernels
 * raise for bad indices (token ids, labels, document starts) and ft_cuda_sync reports. Activations
 * are BF16; LoRA weights, gradients, optimizer state, rstd and lse are F32 (backend.h).
 *
 * Accounting: every ft_backend_alloc is recorded in a host table (pointer -> bytes, kind) so
 * release() can report its size (device memory has no room for a header). Scratch and workspace are
 * counted in the header's bytes_in_use/bytes_peak too, since `ftune plan` must see them; scratch
 * slots are sized ft_cuda_scratch_bytes(largest request) (kernels/backend.h), which plan.c uses.
 *
 * Around the one compute stream (all ops, in order):
 * - a side stream for ft_backend_copy_async (host-kept layer boundaries) and for the host-to-device
 *   copies of streamed weights, ordered against the compute stream with events only;
 * - a ring of pinned upload slots, so ft_backend_upload of pageable memory (batches, optimizer
 *   scalars) never synchronizes: the bytes are copied into a slot and the slot's DMA is enqueued;
 * - managed memory for ft_backend_alloc_paged (optimizer state, LoRA master weights), pinned host
 *   memory for ft_backend_alloc_host;
 * - events for the phase timers, recorded on the compute stream and read after a step;
 * - a weight-streaming session (load.cu) while weights are loaded or initialized. */
#ifndef FT_CUDA_IMPL_H
#define FT_CUDA_IMPL_H

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "kernels/backend_impl.h"
}

/* Scratch slots: an op may hold several slots at once, never the same slot twice. */
enum {
    FT_SCR_WEIGHT = 0, /* BF16 copy of a frozen weight (dequantized NF4 or ggml blocks / converted F32, F16) */
    FT_SCR_BIAS,       /* BF16 bias */
    FT_SCR_LORA_A,     /* BF16 copy of A [R,in] */
    FT_SCR_LORA_B,     /* BF16 copy of B [out,R] */
    FT_SCR_LORA_DT,    /* BF16 dt [N,R] */
    FT_SCR_REDUCE,     /* per-block / per-row partials of deterministic reductions */
    FT_SCR_NF4,        /* NF4 quantization: absmax [nb] f32 + offset */
    FT_SCR_ATTN,       /* attention backward: Dl[N,H] f32 */
    FT_SCR_CUDNN,      /* cuDNN attention: the plan's workspace (+ its f32 dq accumulator) */
    FT_SCR_LORA_PART,  /* LoRA with dropout, fused: f32 partial sums (ft_cuda_lora_part_bytes) */
    FT_SCR_LORA_X,     /* LoRA with dropout, other ranks: BF16 dropout(x) [N,in] */
    FT_SCR_LORA_DX,    /* LoRA with dropout, other ranks: BF16 masked input gradient [N,in] */
    FT_SCR_COUNT
};

/* Device error flags (bits of *err), raised by kernels, reported and cleared by ft_cuda_sync. */
enum {
    FT_CUERR_EMBED_ID = 1,   /* token id outside [0, V) */
    FT_CUERR_XENT_LABEL = 2, /* label >= V */
    FT_CUERR_DOC_START = 4,  /* doc_start[i] outside [0, i] */
    FT_CUERR_TOKEN_INDEX = 8, /* trainable token row < 0 or column outside [0, V) (rows.cu) */
};

typedef struct ft_cuda_scratch {
    void *ptr;
    int64_t bytes;
} ft_cuda_scratch;

/* Kinds of allocation in the table. */
enum { FT_CUDA_MEM_DEVICE = 0, FT_CUDA_MEM_MANAGED, FT_CUDA_MEM_HOST };

typedef struct ft_cuda_alloc_entry {
    void *ptr;     /* NULL: empty */
    int64_t bytes;
    int kind;      /* FT_CUDA_MEM_* */
} ft_cuda_alloc_entry;

enum { FT_SIDE_EVENTS = 16, FT_UPLOAD_SLOTS = 16 };
#define FT_UPLOAD_SLOT_BYTES ((int64_t)4 << 20)

typedef struct ft_cuda_loader ft_cuda_loader; /* load.cu */

/* The ring of dequantized frozen weights (wcache.cu). */
enum { FT_WCACHE_ENTRIES = 64 };
typedef struct ft_cuda_wcache_entry {
    const void *key; /* ft_cuda_wcache_key: the weight's NF4 codes or data pointer */
    int64_t numel;
    int dtype;
    int64_t off, bytes; /* the BF16 copy at arena + off */
    int valid;
    int ready_rec;      /* written on the prefetch stream: `ready` marks the end of that write */
    int used;           /* `use` marks the main stream after the last product that read it */
    int64_t pf_mark;    /* ft_cuda_wcache.products when it was prefetched */
} ft_cuda_wcache_entry;
typedef struct ft_cuda_wcache {
    char *arena; /* [cap] bytes, NULL when off */
    int64_t cap, head;
    ft_cuda_wcache_entry e[FT_WCACHE_ENTRIES]; /* slot i owns events ready[i], use[i] */
    int cur;                                   /* the entry the current product reads, or -1 */
    int orphan; /* 1 + a slot whose `ready` follows a prefetch the prefetch stream evicted before the
                 * main stream read it (that kernel may still be writing its old region); 0: none */
    cudaStream_t ws;                           /* prefetch stream (NULL: no prefetching) */
    cudaEvent_t ready[FT_WCACHE_ENTRIES], use[FT_WCACHE_ENTRIES], main_mark;
    int64_t products;     /* products enqueued that read the cache (ft_cuda_wcache_used) */
    ft_dequant_counts n;  /* since the last ft_backend_dequant_counts */
} ft_cuda_wcache;

typedef struct ft_gemm_key ft_gemm_key; /* matmul.cu */
typedef struct ft_gemm_cache_entry ft_gemm_cache_entry;

enum { FT_GEMM_CACHE = 256 };

typedef struct ft_backend_cuda {
    struct ft_backend base; /* must be first */
    int device;
    int sm_count;
    int cc_major, cc_minor;
    size_t smem_optin;      /* max dynamic shared memory per block after opt-in */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;            /* cuBLASLt workspace */
    size_t lt_ws_bytes;
    float *nf4_tables;      /* device [16 + 256]: ft_nf4_levels, ft_nf4_dynmap */
    uint8_t *nf4_qlut;      /* device [FT_NF4_QLUT_SIZE]: ft_nf4_qlut_build */
    unsigned *err;          /* device [1]: FT_CUERR_* bits */
    ft_cuda_scratch scratch[FT_SCR_COUNT];
    ft_cuda_alloc_entry *allocs; /* open addressing, capacity a power of two */
    int64_t alloc_cap, alloc_used;
    ft_gemm_cache_entry *gemm_cache; /* [FT_GEMM_CACHE] cuBLASLt algorithms by problem */
    int use_pool;           /* cudaMallocAsync (else cudaMalloc; FT_CUDA_MALLOC=sync) */
    int gemm_simt;          /* FT_CUDA_GEMM=simt: our own GEMM instead of cuBLASLt (cross-check) */
    int gemv_off;           /* FT_CUDA_GEMV=0: NF4 products of few rows dequantize and GEMM as the others */
    int attn_simt;          /* FT_CUDA_ATTN=simt: the SIMT attention kernels for every shape */
    int attn_wmma;          /* FT_CUDA_ATTN=wmma: the WMMA kernels (attention_tc.cu) where mma.sync would run */
    int attn_cudnn;         /* cuDNN's fused attention (attention_cudnn.cu): 2 under FT_CUDA_ATTN=cudnn (wherever it
                             * serves, up to a sixteenth of the device); 1 by default on Hopper (plain causal rows
                             * whose workspace fits attn_ws); 0 elsewhere and under FT_CUDA_ATTN=mma/simt/wmma/mma32 */
    int64_t attn_ws;        /* ft_backend_attn_workspace: the bytes the default cuDNN path may use */
    int attn_rows32;        /* FT_CUDA_ATTN=mma32: the mma backward with GB10's 32-row streamed tiles */
    int lora_unfused;       /* FT_CUDA_LORA=unfused: LoRA dropout drawn into memory, not in the products (lora.cu) */
    int lora_mma;           /* FT_CUDA_LORA=mma: ranks 16 and 32 too take the tensor-core LoRA kernels (lora_mma.cu) */
    struct ft_cuda_cudnn *cudnn; /* its handle and plans, made on first use */
    int managed;            /* paged allocations are managed memory (concurrent managed access, and
                             * not FT_CUDA_PAGED=0); else they are plain device memory */
    int integrated;         /* the GPU shares the host's memory (GB10) */
    cudaStream_t side;      /* copies that overlap compute */
    cudaEvent_t side_pre[FT_SIDE_EVENTS];  /* compute-stream point a side copy starts after */
    cudaEvent_t side_done[FT_SIDE_EVENTS]; /* a side copy's end */
    int64_t side_next;      /* tickets issued (ticket t uses slot t % FT_SIDE_EVENTS) */
    char *up_host;          /* pinned [FT_UPLOAD_SLOTS][FT_UPLOAD_SLOT_BYTES] */
    cudaEvent_t up_done[FT_UPLOAD_SLOTS];
    int up_used[FT_UPLOAD_SLOTS];
    int64_t up_next;
    cudaEvent_t *timer_ev;  /* phase-timer marks [timer_cap] */
    int64_t timer_cap;
    ft_cuda_loader *loader; /* weight-streaming session, or NULL */
    ft_cuda_wcache wcache;  /* dequantized weights reused within a layer's recompute + backward */
} ft_backend_cuda;

static inline ft_backend_cuda *ft_cu(ft_backend *be) { return (ft_backend_cuda *)be; }
static inline cudaStream_t ft_cu_stream(ft_backend *be) { return ((ft_backend_cuda *)be)->stream; }

/* A scratch buffer of at least `bytes` for slot `slot` (grown, never shrunk; the old buffer is
 * freed in stream order, so earlier kernels that still use it are unaffected). */
ft_status ft_cuda_scratch_get(ft_backend *be, int slot, int64_t bytes, void **out);
/* Raw device allocation outside the table (scratch, staging), rounded to 256 bytes; the caller
 * accounts it with ft_cuda_account. */
ft_status ft_cuda_raw_alloc(ft_backend_cuda *b, void **ptr, int64_t bytes);
void ft_cuda_raw_free(ft_backend_cuda *b, void *p);
void ft_cuda_account(ft_backend_cuda *b, int64_t bytes); /* +bytes (or -) to bytes_in_use, peak */

/* ---- weight streaming (load.cu) ---------------------------------------------------------------
 * ft_cuda_weight_set / ft_cuda_weight_init are the vtable's weight_set / weight_init. They leave
 * each NF4 weight's offset (a host field) to be filled when the session ends: ft_cuda_load_end,
 * called by ft_cuda_sync, before any op reads a weight (ft_cuda_load_settle), and at destroy. */
ft_status ft_cuda_weight_set(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype);
ft_status ft_cuda_weight_init(ft_backend *be, ft_weight *w, uint64_t seed, float mean, float scale);
/* Waits for the session's work, fills the offsets and frees its staging; no-op without one. */
ft_status ft_cuda_load_end(ft_backend_cuda *b);
static inline ft_status ft_cuda_load_settle(ft_backend *be) {
    return ((ft_backend_cuda *)be)->loader ? ft_cuda_load_end((ft_backend_cuda *)be) : FT_OK;
}
/* A pointer about to be freed: forget a pending offset whose weight owns it (load.cu). */
void ft_cuda_load_forget(ft_backend_cuda *b, const void *ptr);

/* ---- the cache of dequantized weights (wcache.cu) --------------------------------------------- */
/* Gives the ring `bytes` of device memory (0: off; entries dropped either way). */
ft_status ft_cuda_wcache_set(ft_backend_cuda *b, int64_t bytes);
void ft_cuda_wcache_free(ft_backend_cuda *b); /* at destroy */
/* What an entry is keyed by: the weight's storage (NF4 codes, else data). */
const void *ft_cuda_wcache_key(const ft_weight *w);
/* w's BF16 copy for a product on the main stream: *filled = 1 when cached (prefetched or kept),
 * else room to dequantize into before any other op runs (*filled = 0); *out = NULL when the
 * cache is off or too small. Call ft_cuda_wcache_used after the product is enqueued. */
ft_status ft_cuda_wcache_get(ft_backend_cuda *b, const ft_weight *w, void **out, int *filled);
ft_status ft_cuda_wcache_used(ft_backend_cuda *b);
/* Dequantizes NF4 or ggml weight w into the ring on the prefetch stream (no-op when cached, off, or
 * w is not quantized). */
ft_status ft_cuda_wcache_prefetch(ft_backend_cuda *b, const ft_weight *w);
/* Drops the entries whose weight data lies in [ptr, ptr + bytes) (memory written or freed). */
ft_status ft_cuda_wcache_forget(ft_backend_cuda *b, const void *ptr, int64_t bytes);

/* ---- NF4 quantization in pieces (nf4.cu), on the compute stream ------------------------------- */
/* codes of elements [0, n) of one chunk (n % 64 == 0 unless it ends the tensor) from src[n] and
 * their 64-block absmax[ceil(n/64)]. */
ft_status ft_cuda_nf4_blocks(ft_backend *be, uint8_t *codes, float *absmax, const void *src, ft_dtype src_dtype,
                             int64_t n);
/* *offset_dev = mean(absmax[nb]) and w's qabsmax/absmax2 (nb = ft_nf4_nblocks(numel(w))). */
ft_status ft_cuda_nf4_finish(ft_backend *be, ft_weight *w, const float *absmax, float *offset_dev);

/* ---- shared by several op files -------------------------------------------------------------- */
/* A BF16 copy of any float weight, or the weight itself when it is BF16 already (no copy).
 * NF4 and the ggml block types are dequantized. Uses `slot`. out[numel] BF16 in device memory. */
ft_status ft_cuda_weight_bf16(ft_backend *be, const ft_weight *w, int slot, const void **out);
/* dst[n] (BF16) = src[n] (F32), for the LoRA casts. */
ft_status ft_cuda_f32_to_bf16(ft_backend *be, void *dst, const float *src, int64_t n);
/* The GEMM every product goes through, in cuBLAS's column-major terms:
 *   D[m,n] = alpha * op(A)[m,k] . op(B)[k,n] + beta * D (+ bias[m] if bias != NULL)
 * A, B BF16; D BF16 or F32 (d_f32); bias BF16; lda/ldb/ldd leading dimensions. */
ft_status ft_cuda_gemm(ft_backend *be, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
                       const void *A, int64_t lda, const void *B, int64_t ldb, float beta, void *D, int64_t ldd,
                       int d_f32, const void *bias);
void ft_cuda_gemm_cache_free(ft_backend_cuda *b);

/* ---- ops (signatures of ft_op_* in kernels/ops.h) ---------------------------------------- */
ft_status ft_cuda_embed(ft_backend *be, void *out, const int32_t *ids, const ft_weight *table, int64_t N);
ft_status ft_cuda_rmsnorm(ft_backend *be, void *out, float *rstd, const void *x, const ft_weight *w, int64_t N,
                          int64_t C, float eps);
ft_status ft_cuda_rmsnorm_bwd(ft_backend *be, void *dx, const void *dout, const void *x, const ft_weight *w,
                              const float *rstd, int64_t N, int64_t C, int accumulate);
ft_status ft_cuda_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                         int64_t N, int accumulate);
/* y[N,out] (=, or +=) x . W^T (+ bias) for an NF4 W and N <= FT_LINEAR_FEW_ROWS, reading the codes
 * directly (gemv.cu); ft_cuda_linear's values. */
ft_status ft_cuda_nf4_gemv(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                           int64_t N, int accumulate);
/* The same for a ggml block-quantized W, reading its blocks directly (gemv.cu). */
ft_status ft_cuda_ggml_gemv(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias,
                            int64_t N, int accumulate);
ft_status ft_cuda_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N,
                               int accumulate);
ft_status ft_cuda_lora_fwd(ft_backend *be, void *y, void *t, const void *x, ft_lora_drop drop, const float *A,
                           const float *B, int64_t N, int64_t in, int64_t out, int64_t R, float scale,
                           int accumulate);
ft_status ft_cuda_lora_bwd(ft_backend *be, void *dx, float *dA, float *dB, const void *dy, const void *x,
                           ft_lora_drop drop, const void *t, const float *A, const float *B, int64_t N, int64_t in,
                           int64_t out, int64_t R, float scale, int accumulate);
/* lora.cu's reductions of the fused kernels' f32 partial sums, chunks (or parts) in order:
 * t[nr] = BF16(sum of nk chunks); dA[n] += sum of the FT_LORA_NSPLIT parts */
ft_status ft_cuda_lora_t_sum(ft_backend *be, void *t, const float *part, int64_t nr, int64_t nk);
ft_status ft_cuda_lora_da_sum(ft_backend *be, float *dA, const float *part, int64_t n);
/* lora_mma.cu: the fused products with dropout at ranks 64 and 128 on the tensor cores */
ft_status ft_cuda_lora_t_mma(ft_backend *be, void *t, const void *x, const float *A, int64_t N, int64_t in,
                             int64_t R, ft_lora_drop drop);
ft_status ft_cuda_lora_bwd_mma(ft_backend *be, void *dx, float *dA, const void *x, const void *dt, const float *A,
                               int64_t N, int64_t in, int64_t R, ft_lora_drop drop, int accumulate);
ft_status ft_cuda_dropout(ft_backend *be, void *out, const void *in, int64_t n, float p, uint64_t seed);
ft_status ft_cuda_rope(ft_backend *be, void *x, const int32_t *pos, const float *inv_freq, int64_t N, int64_t nh,
                       int64_t D, int inverse);
ft_status ft_cuda_attention(ft_backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                            const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                            float scale);
ft_status ft_cuda_attention_kv(ft_backend *be, void *out, const void *q, const void *k, const void *v, int64_t Tq,
                               int64_t Tk, int64_t H, int64_t Hkv, int64_t D, float scale);
ft_status ft_cuda_attention_bwd(ft_backend *be, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                const void *k, const void *v, const void *out, const float *lse,
                                const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                                int64_t D, float scale);
/* cuDNN's fused attention (attention_cudnn.cu) under FT_CUDA_ATTN=cudnn: plain causal rows
 * (doc_start NULL), or packed documents (ndocs of them, counted by the caller): FT_OK when it ran,
 * FT_E_UNSUPPORTED when it does not serve the call (the caller runs its own kernels), any other
 * status on a failure. */
ft_status ft_cuda_attn_cudnn_fwd(ft_backend_cuda *b, void *out, float *lse, const void *q, const void *k,
                                 const void *v, const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T,
                                 int64_t H, int64_t Hkv, int64_t D, float scale);
ft_status ft_cuda_attn_cudnn_bwd(ft_backend_cuda *b, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                 const void *k, const void *v, const void *out, const float *lse,
                                 const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H,
                                 int64_t Hkv, int64_t D, float scale);
void ft_cuda_cudnn_free(ft_backend_cuda *b); /* at destroy */
ft_status ft_cuda_swiglu(ft_backend *be, void *out, const void *gate, const void *up, int64_t n);
ft_status ft_cuda_swiglu_bwd(ft_backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                             const void *up, int64_t n);
ft_status ft_cuda_add(ft_backend *be, void *y, const void *x, int64_t n);
ft_status ft_cuda_xent(ft_backend *be, float *loss_sum, float *count, void *logits, const int32_t *labels,
                       int64_t n, int64_t V, float grad_scale);
ft_status ft_cuda_sumsq(ft_backend *be, float *out, const float *x, int64_t n);
ft_status ft_cuda_scale(ft_backend *be, float *x, int64_t n, float s);
ft_status ft_cuda_adamw(ft_backend *be, float *p, const float *g, float *m, float *v, int64_t n,
                        const float *scalars);
ft_status ft_cuda_nf4_quantize(ft_backend *be, ft_weight *w, const void *src, ft_dtype src_dtype);
ft_status ft_cuda_nf4_dequantize(ft_backend *be, void *out, const ft_weight *w);
/* The same on stream s (the weight cache's prefetch). */
ft_status ft_cuda_nf4_dequantize_on(ft_backend_cuda *b, void *out, const ft_weight *w, cudaStream_t s);
/* out[numel] (BF16) = a ggml block-quantized weight (FT_Q4_0 .. FT_Q6_K, FT_IQ4_NL, FT_IQ4_XS) decoded as ggml's
 * dequantize_row_* on stream s (ggml_dequant.cu). */
ft_status ft_cuda_ggml_dequantize_on(ft_backend_cuda *b, void *out, const ft_weight *w, cudaStream_t s);
/* Either of the two above by w's dtype: every quantized frozen weight's BF16 copy goes through it. */
ft_status ft_cuda_frozen_dequantize_on(ft_backend_cuda *b, void *out, const ft_weight *w, cudaStream_t s);
ft_status ft_cuda_rows_set(ft_backend *be, void *x, const float *rows, const int32_t *pos, int64_t k, int64_t C);
ft_status ft_cuda_rows_sum(ft_backend *be, float *drows, const void *dx, const int32_t *pos, int64_t k, int64_t C);
ft_status ft_cuda_cols_set(ft_backend *be, void *logits, const void *t, const int32_t *cols, int64_t n, int64_t V,
                           int64_t k);
ft_status ft_cuda_cols_take(ft_backend *be, void *g, void *logits, const int32_t *cols, int64_t n, int64_t V,
                            int64_t k);
ft_status ft_cuda_clip_factor(ft_backend *be, float *scalars, const float *sumsq, double max_norm);
/* DoRA (dora.cu): the weight norm, the row scale, the magnitude's gradient */
ft_status ft_cuda_dora_norm(ft_backend *be, float *wn, const ft_weight *W, const float *A, const float *B, int64_t R,
                            float scale);
ft_status ft_cuda_dora_scale(ft_backend *be, void *y, const void *z, const float *mag, const float *wn, float shift,
                             const ft_weight *bias, int64_t N, int64_t out, int accumulate);
ft_status ft_cuda_dora_mag_grad(ft_backend *be, float *dmag, const void *dy, const void *z, const float *wn,
                                int64_t N, int64_t out);

#endif
