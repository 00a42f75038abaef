/* backend.h: a compute device behind one interface (CPU reference or CUDA).
 *
 * A backend owns memory ("backend memory": host heap for CPU, device memory for CUDA) and runs
 * the ops of kernels/ops.h on it. Activations live in the backend's activation dtype
 * (F32 on CPU, BF16 on CUDA); LoRA master weights, gradients, optimizer state, norms' rstd and
 * attention's log-sum-exp are always F32. The model (trainer/model.c) is written once against
 * this interface. */
#ifndef FT_BACKEND_H
#define FT_BACKEND_H

#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/status.h"

typedef struct ft_backend ft_backend;

typedef enum { FT_BACKEND_CPU = 0, FT_BACKEND_CUDA } ft_backend_kind;

/* nthreads <= 0: all cores (OpenMP default). */
ft_status ft_backend_cpu_create(ft_backend **out, int nthreads);
/* Switches a CPU backend to BF16 activation storage, as CUDA stores them (kernels/cpu/bf16_cpu.c):
 * f32 arithmetic, every activation an op writes rounded to BF16. A diagnostic (FT_CPU_BF16=1). */
ft_status ft_backend_cpu_bf16(ft_backend *be);
/* FT_E_UNSUPPORTED when ftune was built without CUDA or no GPU is present. */
ft_status ft_backend_cuda_create(ft_backend **out, int device);
void ft_backend_free(ft_backend *be);

ft_backend_kind ft_backend_kind_of(const ft_backend *be);
const char *ft_backend_name(const ft_backend *be);
/* The device's own name, for matching it to a planning profile (trainer/plan.h
 * ft_plan_device_detect): CUDA's cudaDeviceProp.name ("NVIDIA H100 80GB HBM3"), else the backend's
 * name ("cpu"). */
const char *ft_backend_device_name(const ft_backend *be);
ft_dtype ft_backend_act_dtype(const ft_backend *be);

/* Backend memory. `what` names the allocation in out-of-memory messages. */
ft_status ft_backend_alloc(ft_backend *be, void **ptr, int64_t bytes, const char *what);
void ft_backend_release(ft_backend *be, void *ptr);
ft_status ft_backend_upload(ft_backend *be, void *dst, const void *host_src, int64_t bytes);
ft_status ft_backend_download(ft_backend *be, void *host_dst, const void *src, int64_t bytes);
ft_status ft_backend_copy(ft_backend *be, void *dst, const void *src, int64_t bytes);
ft_status ft_backend_memset(ft_backend *be, void *dst, int value, int64_t bytes);
ft_status ft_backend_sync(ft_backend *be);
/* Bytes currently allocated through ft_backend_alloc (and ft_backend_alloc_paged), and the
 * high-water mark. */
int64_t ft_backend_bytes_in_use(const ft_backend *be);
int64_t ft_backend_bytes_peak(const ft_backend *be);

/* ---- paged and host memory ------------------------------------------------------------------
 * Paged memory may move out of the device under memory pressure instead of failing an allocation
 * (CUDA: managed memory that prefers the device, mapped there, prefetched before use; on a
 * unified-memory GPU such as GB10 it is the one copy. CPU: plain backend memory). It is accounted
 * as backend memory (so `ftune plan` and the run agree) and also in ft_backend_bytes_paged;
 * release it with ft_backend_release. The optimizer moments and the LoRA master weights use it. */
ft_status ft_backend_alloc_paged(ft_backend *be, void **ptr, int64_t bytes, const char *what);
/* Room for `bytes` of BF16 copies of dequantized frozen weights, reused while they last (0: none,
 * the default). CUDA keeps a ring that the training step's access order turns into one fewer
 * dequantization per weight per step (kernels/cuda/wcache.cu); other backends ignore it. The bytes
 * are backend memory, accounted like scratch. Size it with ft_weight_cache_bytes. Set
 * FT_CUDA_WCACHE=0 to measure without it. */
ft_status ft_backend_weight_cache(ft_backend *be, int64_t bytes);
/* Room for `bytes` of a library attention's workspace (0: none, the default). On Hopper the CUDA
 * backend runs the attention of plain causal rows (no packed documents) through cuDNN's fused
 * kernels when their workspace (the deterministic backward keeps dP: B x H x T^2 x 2 bytes) and the
 * packed lse copy fit in it, and its own kernels otherwise; other backends ignore it. The trainer
 * sets what `ftune plan` counted (ft_plan attn_workspace), so the run stays inside the plan.
 * FT_CUDA_ATTN=mma (or simt, wmma, mma32) never uses cuDNN; FT_CUDA_ATTN=cudnn uses it wherever it
 * serves, packed rows included, up to a sixteenth of the device whatever this says. */
ft_status ft_backend_attn_workspace(ft_backend *be, int64_t bytes);
/* Says that w is the next frozen weight a product will read: with a weight cache, CUDA
 * dequantizes it now on a second stream, so the work overlaps the product in flight (ordered by
 * events; FT_CUDA_PREFETCH=0 turns it off). Values are the same either way; other backends ignore it. */
struct ft_weight; /* kernels/weight.h, which includes this header */
ft_status ft_backend_weight_prefetch(ft_backend *be, const struct ft_weight *w);
/* A frozen linear over at most this many rows (a decoding step's tokens) is bound by reading its
 * weight: CUDA then reads NF4 codes directly (kernels/cuda/gemv.cu) instead of a dequantized copy,
 * so a pass that small names no weight ahead (a prefetched copy would cost a dequantization that
 * no product reads). */
#define FT_LINEAR_FEW_ROWS 8
/* Bytes a weight cache needs to hold BF16 copies of n weights of numel[i] elements at once. */
static inline int64_t ft_weight_cache_bytes(const int64_t *numel, int n) {
    int64_t b = 0;
    for (int i = 0; i < n; i++) b += (2 * numel[i] + 255) / 256 * 256; /* entries stay 256-byte aligned */
    return b;
}
/* What the frozen products' BF16 weights cost since the last call (the counts then restart):
 * dequantizations on the cache's second stream (prefetched), of those the ones whose first read came
 * before any other frozen product ran on the compute stream (waited: nothing hid them), those on the
 * compute stream itself (on_compute: a cache miss, or no cache), and reads served from the cache
 * without dequantizing (reused). tests/bench/wcache_ring_sim.py predicts them for a training step.
 * All 0 on backends without a weight cache (CPU). */
typedef struct ft_dequant_counts {
    int64_t prefetched, waited, on_compute, reused;
} ft_dequant_counts;
void ft_backend_dequant_counts(ft_backend *be, ft_dequant_counts *out);
/* Moves paged memory to the device ahead of its use, in queue order (no-op where nothing pages). */
ft_status ft_backend_prefetch(ft_backend *be, const void *ptr, int64_t bytes);
int64_t ft_backend_bytes_paged(const ft_backend *be);

/* Host memory the backend copies to and from without staging (CUDA: pinned, cudaHostAlloc; CPU:
 * the heap). Not backend memory: accounted apart, in ft_backend_host_bytes(_peak). Used for the
 * layer boundaries a long-context run keeps on the host (trainer/model.h host_boundaries). */
ft_status ft_backend_alloc_host(ft_backend *be, void **ptr, int64_t bytes, const char *what);
void ft_backend_release_host(ft_backend *be, void *ptr);
int64_t ft_backend_host_bytes(const ft_backend *be);
int64_t ft_backend_host_bytes_peak(const ft_backend *be);

/* A copy (backend <-> ft_backend_alloc_host memory, or backend -> backend) that may run alongside
 * the ops enqueued after it: it starts once every op enqueued before it is done, and nothing waits
 * for it until ft_backend_copy_wait(be, ticket), after which later ops may read dst or overwrite
 * src. The CPU backend copies at once (the wait is a no-op). CUDA: a side stream and events. */
ft_status ft_backend_copy_async(ft_backend *be, void *dst, const void *src, int64_t bytes, int64_t *ticket);
ft_status ft_backend_copy_wait(ft_backend *be, int64_t ticket);

/* Free and total memory of the device (CPU: available and physical RAM); with a memory limit,
 * total is at most the limit and free at most what the limit leaves. */
ft_status ft_backend_mem_info(ft_backend *be, int64_t *free_bytes, int64_t *total_bytes);

/* A cap on backend memory (recipe model.memory_gib): ft_backend_alloc and ft_backend_alloc_paged
 * fail with FT_E_OOM, exactly as a full device would, when bytes in use would pass it. So a run
 * keeps within a share of a GPU (or of a unified-memory machine), and the CPU backend can stand in
 * for a device of that size. A backend's own scratch (CUDA workspace, weight streaming) is counted
 * in bytes in use but not refused. bytes <= 0: no cap. */
void ft_backend_set_memory_limit(ft_backend *be, int64_t bytes);
int64_t ft_backend_memory_limit(const ft_backend *be);

/* Out-of-memory explanations: when an allocation fails for lack of memory, the backend's message
 * ("allocating 1.2 GiB on cuda for activations (70.1 GiB in use): out of GPU memory ...") is
 * followed by what fn writes into buf (what the plan predicted for `what`, which knob to turn).
 * fn = NULL removes it. trainer/plan.h's ft_plan_oom_explain is the usual fn. */
typedef void (*ft_oom_explain_fn)(void *user, const char *what, int64_t bytes, char *buf, size_t cap);
void ft_backend_set_oom_explain(ft_backend *be, ft_oom_explain_fn fn, void *user);

/* ---- time per phase of a step ------------------------------------------------------------------
 * While timing is on, every op is attributed to a phase by the dispatcher (backend.c): linear ->
 * gemm (the CUDA backend times the NF4 dequantization inside it as dequant), attention -> attention,
 * rmsnorm/rope/swiglu/add/embed/copies -> elementwise, lora_* and dropout -> lora, xent -> xent,
 * sumsq/scale/clip/adamw -> optimizer, the rest (uploads, memsets, waits) -> other. A mark is
 * taken only when the phase changes: CUDA records an event on the stream (never synchronizing),
 * CPU reads the clock; the time from one mark to the next belongs to the first one's phase, so the
 * phases add up to the time between start and stop. ft_backend_phase_begin forces a phase on
 * everything until ft_backend_phase_end. */
typedef enum {
    FT_PHASE_OTHER = 0,
    FT_PHASE_DEQUANT,
    FT_PHASE_GEMM,
    FT_PHASE_ATTENTION,
    FT_PHASE_ELEMENTWISE,
    FT_PHASE_LORA,
    FT_PHASE_XENT,
    FT_PHASE_OPTIMIZER,
    FT_PHASE_COUNT
} ft_phase;
const char *ft_phase_name(ft_phase p); /* "gemm", ... */
ft_status ft_backend_timing_start(ft_backend *be);
/* Waits for the device, adds the milliseconds spent in each phase since start to ms[] (which the
 * caller zeroes), and stops timing. */
ft_status ft_backend_timing_stop(ft_backend *be, double ms[FT_PHASE_COUNT]);
void ft_backend_phase_begin(ft_backend *be, ft_phase p);
void ft_backend_phase_end(ft_backend *be);

/* ---- sizes the CUDA backend allocates, shared with `ftune plan` --------------------------------
 * Scratch slots grow to their largest request rounded up to FT_CUDA_SCRATCH_ROUND. Streaming a
 * weight in (loader, bench initialization) holds FT_LOAD_SLOTS device chunks of
 * FT_LOAD_CHUNK_BYTES (NF4 targets only) plus the f32 absmax of the largest NF4 tensor, released
 * when loading ends (the next ft_backend_sync). */
#ifndef FT_CUDA_SCRATCH_ROUND /* a test build may set another (tests/bench/wcache_ring_sim.py --round) */
#define FT_CUDA_SCRATCH_ROUND ((int64_t)1 << 20)
#endif
#define FT_LOAD_SLOTS 3
#ifndef FT_LOAD_CHUNK_BYTES /* the CPU emulator (tests/gpu/emu) builds with small chunks */
#define FT_LOAD_CHUNK_BYTES ((int64_t)32 << 20)
#endif
/* The most a library attention's workspace may take on a device of device_bytes (cuDNN's, kernels/cuda
 * sdpa_graph.cu ft_sdpa_workspace_cap): a plan asking more runs ftune's kernels; ftune plan counts
 * the same (trainer/plan.c). */
static inline int64_t ft_attn_workspace_cap(int64_t device_bytes) { return device_bytes / 16; }
static inline int64_t ft_cuda_scratch_bytes(int64_t request) {
    return (request + FT_CUDA_SCRATCH_ROUND - 1) / FT_CUDA_SCRATCH_ROUND * FT_CUDA_SCRATCH_ROUND;
}
/* Backend bytes of a CUDA weight-streaming session whose largest NF4 tensor has max_nf4_numel
 * elements (0: no NF4 target, nothing on the device). */
int64_t ft_backend_cuda_load_bytes(int64_t max_nf4_numel);
/* LoRA products with dropout draw the mask inside their own kernels for ranks 8, 16 and 32
 * (kernels/cuda/lora.cu) and 64 and 128 (lora_mma.cu, tensor cores), when the input's rows are a
 * multiple of 8 elements: the A-product sums each row in chunks of at most FT_LORA_KCHUNK input
 * columns and dA each column over FT_LORA_NSPLIT parts
 * of the tokens, into f32 partials that a second kernel adds in a fixed order
 * (ft_cuda_lora_part_bytes, the larger of the two). Other ranks draw dropout(x), and with
 * accumulation the masked input gradient, into [N, in] BF16 scratch, two slots. */
#define FT_LORA_KCHUNK 1024
#define FT_LORA_NSPLIT 8
static inline int ft_cuda_lora_fused(int64_t R, int64_t in) {
    return (R == 8 || R == 16 || R == 32 || R == 64 || R == 128) && in % 8 == 0;
}
static inline int64_t ft_cuda_lora_part_bytes(int64_t N, int64_t in, int64_t R) {
    const int64_t t_part = 4 * ((in + FT_LORA_KCHUNK - 1) / FT_LORA_KCHUNK) * N * R, a_part = 4 * FT_LORA_NSPLIT * R * in;
    return t_part > a_part ? t_part : a_part;
}

#endif
