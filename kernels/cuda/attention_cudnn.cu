/* attention_cudnn.cu: the attention op through cuDNN's fused flash attention (sdpa_graph.cu) for the
 * calls it serves: head_dim a multiple of 8 up to 128, 16-byte aligned tensors. By default on
 * Hopper (b->attn_cudnn 1): plain causal rows whose workspace fits what the trainer gave it
 * (ft_backend_attn_workspace: the plan's count); under FT_CUDA_ATTN=cudnn (2) also rows of packed
 * documents when the caller gives their count, up to ft_sdpa_workspace_cap. Every other call, and
 * every shape cuDNN offers no plan for, takes the kernels of attention_mma.cu / attention.cu, which
 * also stay the cross-check (tests/gpu/run.sh compares both with the CPU backend). Packed rows stay
 * ours by default: every document's slot is as long as the row, so the deterministic backward's
 * workspace grows with slots x T^2 (past the cap for 4096-token rows), and on the H100 (2026-11-24)
 * the forward of the op table's 128 four-token documents took 12x a plain row's time.
 *
 * Packed documents go to cuDNN as separate causal sequences (its ragged layout): a one-block kernel
 * turns doc_start into each document's length and first-token offsets, in a number of sequence
 * slots rounded up to a power of two (>= 8) so that a few plans serve batches whose document counts
 * vary; the slots past the last document have length 0. cuDNN serves this on sm_90 only (its ragged
 * engines need Hopper instructions; on GB10 the op falls back).
 *
 * Plans are built on first use per shape (cuDNN compiles the kernel at run time: ~1 s, once) and
 * kept; a shape without a plan is remembered too, with the reason logged once. So is a plan whose
 * workspace passes ft_sdpa_workspace_cap: the deterministic backward keeps dP there (slots * H *
 * T^2 * 2 bytes; trainer/plan.c counts it for the default path's plain rows). Where cuDNN does not honour lse's strides
 * (ft_sdpa_graph_lse_bht) lse goes through a packed [B, H, T] copy. The backward uses
 * cuDNN's deterministic graph (dq without atomics), so a resumed run stays bit-identical, as with
 * our own kernels. lse is the same log-sum-exp either way, so a forward from one path and a
 * backward from the other agree. */
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/sdpa_graph.h"

extern "C" {
#include "kernels/log.h"
}

#include <stdlib.h>
#include <string.h>

#if !defined(FT_CUDA_EMULATED) && !defined(FT_NO_CUDNN)
#include <cudnn.h>

enum { FT_CUDNN_PLANS = 16 };

typedef struct ft_cudnn_plan {
    ft_sdpa_shape s;
    int kind;
    ft_sdpa_graph *g; /* NULL: cuDNN does not serve this shape */
} ft_cudnn_plan;

struct ft_cuda_cudnn {
    cudnnHandle_t h;
    void *devprop;
    int64_t ws_cap; /* ft_sdpa_workspace_cap of the device */
    int broken; /* the handle could not be made: never try again */
    int told_ws; /* the default path's workspace allowance turned a call away (said once) */
    ft_cudnn_plan plan[FT_CUDNN_PLANS];
    int nplan, next; /* filled entries; the next one to replace when full */
};

static ft_status ft_cudnn_ctx(ft_backend_cuda *b, struct ft_cuda_cudnn **out) {
    *out = NULL;
    if (!b->cudnn) {
        b->cudnn = (struct ft_cuda_cudnn *)calloc(1, sizeof *b->cudnn);
        if (!b->cudnn) return FT_ERR(FT_E_OOM, "cuda: out of host memory for the cuDNN state");
        struct ft_cuda_cudnn *c = b->cudnn;
        cudnnStatus_t e = cudnnCreate(&c->h);
        if (e == CUDNN_STATUS_SUCCESS) e = cudnnSetStream(c->h, b->stream);
        size_t mem_free = 0, mem_total = 0;
        if (cudaMemGetInfo(&mem_free, &mem_total) != cudaSuccess) mem_total = 0, (void)cudaGetLastError();
        c->ws_cap = ft_sdpa_workspace_cap((int64_t)mem_total);
        ft_status st = e == CUDNN_STATUS_SUCCESS ? ft_sdpa_devprop_from_handle(c->h, &c->devprop) : FT_E_UNSUPPORTED;
        if (e != CUDNN_STATUS_SUCCESS || st != FT_OK) {
            ft_warn("cuda: cuDNN %zu cannot start here (%s); attention runs ftune's own kernels", cudnnGetVersion(),
                    e != CUDNN_STATUS_SUCCESS ? cudnnGetErrorString(e) : ft_error_msg());
            c->broken = 1;
        } else {
            ft_info("cuda: attention through cuDNN %zu's fused SDPA where it serves (%s)", cudnnGetVersion(),
                    b->attn_cudnn == 2 ? "causal rows, packed documents in its ragged layout"
                                       : "plain causal rows within the plan's workspace; packed rows run ours");
        }
    }
    if (b->cudnn->broken) return FT_E_UNSUPPORTED;
    *out = b->cudnn;
    return FT_OK;
}

/* The plan for (kind, shape), built on first use; NULL when cuDNN does not serve it. */
static ft_status ft_cudnn_plan_get(ft_backend_cuda *b, int kind, const ft_sdpa_shape *s, ft_sdpa_graph **out) {
    struct ft_cuda_cudnn *c = NULL;
    *out = NULL;
    FT_TRY(ft_cudnn_ctx(b, &c));
    for (int i = 0; i < c->nplan; i++) {
        const ft_cudnn_plan *p = &c->plan[i];
        if (p->kind == kind && p->s.B == s->B && p->s.T == s->T && p->s.H == s->H && p->s.Hkv == s->Hkv &&
            p->s.D == s->D && p->s.scale == s->scale && p->s.docs == s->docs) {
            *out = p->g;
            return FT_OK;
        }
    }
    ft_sdpa_graph *g = NULL;
    ft_status st = ft_sdpa_graph_build(s, kind, 1, c->devprop, &g);
    if (st == FT_OK && ft_sdpa_graph_workspace(g) + ft_sdpa_graph_dq_accum_bytes(g) > c->ws_cap) {
        st = FT_ERR(FT_E_UNSUPPORTED, "cudnn sdpa %s (B %lld T %lld H %lld/%lld D %lld%s): %s needs %.1f GiB of "
                    "workspace, more than the %.1f GiB allowed", kind == FT_SDPA_FWD ? "forward" : "backward",
                    (long long)s->B, (long long)s->T, (long long)s->H, (long long)s->Hkv, (long long)s->D,
                    s->docs ? ", packed documents" : "", ft_sdpa_graph_desc(g),
                    (double)(ft_sdpa_graph_workspace(g) + ft_sdpa_graph_dq_accum_bytes(g)) / (1 << 30),
                    (double)c->ws_cap / (1 << 30));
        ft_sdpa_graph_free(g);
        g = NULL;
    }
    if (st == FT_OK)
        ft_info("cuda: cuDNN attention %s plan for B %lld T %lld H %lld/%lld D %lld%s: %s, workspace %.1f MiB",
                kind == FT_SDPA_FWD ? "forward" : "backward", (long long)s->B, (long long)s->T, (long long)s->H,
                (long long)s->Hkv, (long long)s->D, s->docs ? " (packed documents)" : "", ft_sdpa_graph_desc(g),
                (double)ft_sdpa_graph_workspace(g) / (1 << 20));
    else if (st == FT_E_UNSUPPORTED)
        ft_info("cuda: %s; ftune's own kernels run this shape", ft_error_msg());
    else
        return st;
    ft_cudnn_plan *p;
    if (c->nplan < FT_CUDNN_PLANS) {
        p = &c->plan[c->nplan++];
    } else { /* full: replace round-robin (a run uses a handful of shapes) */
        p = &c->plan[c->next];
        if (p->g) { /* its kernel may still run */
            const ft_status ss = ft_cuda_status(cudaStreamSynchronize(b->stream), "cudaStreamSynchronize", __func__,
                                                __FILE__, __LINE__);
            if (ss != FT_OK) {
                ft_sdpa_graph_free(g); /* the plan just built is in no table yet */
                return ss;
            }
        }
        ft_sdpa_graph_free(p->g);
        c->next = (c->next + 1) % FT_CUDNN_PLANS;
    }
    p->s = *s, p->kind = kind, p->g = g;
    *out = g;
    return FT_OK;
}

/* A token i = b*T + t starts a document when t == 0 or doc_start[i] == t (ops.h). One block: each
 * thread counts the starts in its chunk of tokens, thread 0 scans the counts, each thread writes its
 * starts' slots, then every slot gets its length (next start - start; the last runs to N) and its
 * offsets. Starts past nslots are dropped (the caller sized nslots from the same count); slots past
 * the last start get length 0 and offsets N. Memory-safe for any doc_start. */
enum { FT_DOCS_THREADS = 1024 };
__global__ void __launch_bounds__(FT_DOCS_THREADS)
ft_k_cudnn_docs(int32_t *seq_len, int32_t *off_q, int32_t *off_kv, int32_t *off_lse, const int32_t *doc_start,
                int64_t N, int64_t T, int64_t nslots, int64_t hd, int64_t hkd, int64_t H) {
    __shared__ int64_t base[FT_DOCS_THREADS + 1];
    int32_t *start = off_lse; /* token index of each slot's start, later scaled in place */
    const int64_t chunk = (N + FT_DOCS_THREADS - 1) / FT_DOCS_THREADS;
    const int64_t i0 = threadIdx.x * chunk, i1 = i0 + chunk < N ? i0 + chunk : N;
    int64_t cnt = 0;
    for (int64_t i = i0; i < i1; i++) cnt += (i % T == 0 || doc_start[i] == i % T);
    base[threadIdx.x + 1] = cnt;
    __syncthreads();
    if (threadIdx.x == 0) {
        base[0] = 0;
        for (int j = 1; j <= FT_DOCS_THREADS; j++) base[j] += base[j - 1];
    }
    __syncthreads();
    const int64_t ndocs = base[FT_DOCS_THREADS] < nslots ? base[FT_DOCS_THREADS] : nslots;
    int64_t j = base[threadIdx.x];
    for (int64_t i = i0; i < i1; i++)
        if (i % T == 0 || doc_start[i] == i % T) {
            if (j < nslots) start[j] = (int32_t)i;
            j++;
        }
    __syncthreads();
    for (int64_t k = threadIdx.x; k <= nslots; k += FT_DOCS_THREADS) {
        const int64_t a = k < ndocs ? start[k] : N, e = k + 1 < ndocs ? start[k + 1] : N;
        if (k < nslots) seq_len[k] = (int32_t)(k < ndocs ? (e - a < T ? e - a : T) : 0); /* <= T, the dims */
        off_q[k] = (int32_t)(a * hd);
        off_kv[k] = (int32_t)(a * hkd);
    }
    __syncthreads(); /* every read of start[] is done: now overwrite it with the lse offsets */
    for (int64_t k = threadIdx.x; k <= nslots; k += FT_DOCS_THREADS)
        off_lse[k] = (int32_t)((k < ndocs ? (int64_t)off_q[k] / hd : N) * H);
}

/* lse [B*T, H] <-> the packed [B, H, T] Stats copy (ft_sdpa_graph_lse_bht); to_bht picks the direction. */
__global__ void ft_k_cudnn_lse_bht(float *lse, float *bht, int64_t T, int64_t H, int64_t n, int to_bht) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t h = i % H, row = i / H, bt = (row / T * H + h) * T + row % T; /* i = row * H + h */
        if (to_bht)
            bht[bt] = lse[i];
        else
            lse[i] = bht[bt];
    }
}

/* Sequence slots for ndocs documents: a power of two >= 8, so batches share plans. */
static int64_t ft_cudnn_slots(int64_t ndocs) {
    int64_t s = 8;
    while (s < ndocs) s *= 2;
    return s;
}

static int ft_cudnn_aligned(const void *const *p, int n) {
    for (int i = 0; i < n; i++)
        if ((uintptr_t)p[i] % 16) return 0;
    return 1;
}

/* Runs g with its workspace, zeroed dq accumulator, document table and packed lse copy from the
 * cuDNN scratch slot (p->lse: the caller's lse [N, H]). */
static ft_status ft_cudnn_run(ft_backend_cuda *b, ft_sdpa_graph *g, const ft_sdpa_shape *s, const int32_t *doc_start,
                              ft_sdpa_ptrs *p) {
    const int64_t ws = ft_sdpa_graph_workspace(g), acc = ft_sdpa_graph_dq_accum_bytes(g);
    const int64_t ws_r = (ws + 255) / 256 * 256, acc_r = (acc + 255) / 256 * 256;
    /* seq_len, off_q, off_kv, off_lse, each 16-byte aligned: the graph declares 16 for every tensor,
     * and cuDNN may refuse a pointer below that (CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER) */
    const int64_t n = (s->docs + 1 + 3) / 4 * 4;
    const int64_t table = s->docs > 0 ? 4 * 4 * n : 0, table_r = (table + 255) / 256 * 256;
    const int64_t nl = s->B * s->T * s->H, bht = ft_sdpa_graph_lse_bht(g) ? 4 * nl : 0;
    if (b->attn_cudnn == 1 && ws_r + acc_r + table_r + bht > b->attn_ws) { /* past the plan's count */
        if (!b->cudnn->told_ws++)
            ft_info("cuda: cuDNN attention (B %lld T %lld H %lld) needs %.1f MiB, more than the %.1f MiB the plan "
                    "counted; ftune's own kernels run it", (long long)s->B, (long long)s->T, (long long)s->H,
                    (double)(ws_r + acc_r + table_r + bht) / (1 << 20), (double)b->attn_ws / (1 << 20));
        return FT_E_UNSUPPORTED;
    }
    float *lse = p->lse;
    char *buf = NULL;
    if (ws_r + acc_r + table_r + bht > 0)
        FT_TRY(ft_cuda_scratch_get(&b->base, FT_SCR_CUDNN, ws_r + acc_r + table_r + bht, (void **)&buf));
    p->workspace = ws ? buf : NULL;
    p->dq_accum = acc ? buf + ws_r : NULL;
    if (acc) FT_CUDA_TRY(cudaMemsetAsync(p->dq_accum, 0, (size_t)acc, b->stream));
    if (table) {
        int32_t *t = (int32_t *)(buf + ws_r + acc_r);
        p->seq_len = t, p->off_q = t + n, p->off_kv = t + 2 * n, p->off_lse = t + 3 * n;
        ft_k_cudnn_docs<<<1, FT_DOCS_THREADS, 0, b->stream>>>(t, t + n, t + 2 * n, t + 3 * n, doc_start, s->B * s->T,
                                                              s->T, s->docs, s->H * s->D, s->Hkv * s->D, s->H);
        FT_CUDA_LAUNCH_TRY("ft_k_cudnn_docs");
    }
    const unsigned grid = (unsigned)ft_grid_1d(nl, 256, 64LL * b->sm_count);
    if (bht) {
        p->lse = (float *)(buf + ws_r + acc_r + table_r);
        if (p->dout) { /* the backward reads it */
            ft_k_cudnn_lse_bht<<<grid, 256, 0, b->stream>>>(lse, p->lse, s->T, s->H, nl, 1);
            FT_CUDA_LAUNCH_TRY("ft_k_cudnn_lse_bht");
        }
    }
    FT_TRY(ft_sdpa_graph_run(g, b->cudnn->h, p));
    if (bht && !p->dout) { /* the forward wrote it */
        ft_k_cudnn_lse_bht<<<grid, 256, 0, b->stream>>>(lse, p->lse, s->T, s->H, nl, 0);
        FT_CUDA_LAUNCH_TRY("ft_k_cudnn_lse_bht");
    }
    return FT_OK;
}

/* The shape cuDNN sees: plain rows, or packed documents in ft_cudnn_slots(ndocs) slots (FT_OK), or
 * FT_E_UNSUPPORTED (documents without a count; offsets past int32). */
static ft_status ft_cudnn_shape(ft_sdpa_shape *s, const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T,
                                int64_t H, int64_t Hkv, int64_t D, float scale) {
    s->B = B, s->T = T, s->H = H, s->Hkv = Hkv, s->D = D, s->scale = scale, s->docs = 0;
    if (!doc_start) return FT_OK;
    if (ndocs <= 0 || B * T * H * D >= ((int64_t)1 << 31)) return FT_E_UNSUPPORTED;
    s->docs = ft_cudnn_slots(ndocs);
    return FT_OK;
}

/* Whether cuDNN may take this call: its head_dims, 16-byte aligned tensors, and on the default path
 * (attn_cudnn 1) plain rows with a workspace allowance; ft_cudnn_run still holds the allowance to the
 * plan's graph. */
static int ft_cudnn_takes(const ft_backend_cuda *b, const int32_t *doc_start, int64_t D, const void *const *ptrs,
                          int n) {
    if (!b->attn_cudnn || D % 8 || D > 128 || !ft_cudnn_aligned(ptrs, n)) return 0;
    return b->attn_cudnn == 2 || (!doc_start && b->attn_ws > 0); /* packed rows: ours by default */
}

ft_status ft_cuda_attn_cudnn_fwd(ft_backend_cuda *b, void *out, float *lse, const void *q, const void *k,
                                 const void *v, const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T,
                                 int64_t H, int64_t Hkv, int64_t D, float scale) {
    const void *ptrs[] = {out, lse, q, k, v};
    if (!ft_cudnn_takes(b, doc_start, D, ptrs, 5)) return FT_E_UNSUPPORTED;
    ft_sdpa_shape s;
    FT_TRY(ft_cudnn_shape(&s, doc_start, ndocs, B, T, H, Hkv, D, scale));
    ft_sdpa_graph *g = NULL;
    FT_TRY(ft_cudnn_plan_get(b, FT_SDPA_FWD, &s, &g));
    if (!g) return FT_E_UNSUPPORTED;
    ft_sdpa_ptrs p;
    memset(&p, 0, sizeof p);
    p.q = q, p.k = k, p.v = v, p.out = out, p.lse = lse;
    return ft_cudnn_run(b, g, &s, doc_start, &p);
}

ft_status ft_cuda_attn_cudnn_bwd(ft_backend_cuda *b, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                 const void *k, const void *v, const void *out, const float *lse,
                                 const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H,
                                 int64_t Hkv, int64_t D, float scale) {
    const void *ptrs[] = {dq, dk, dv, dout, q, k, v, out, lse};
    if (!ft_cudnn_takes(b, doc_start, D, ptrs, 9)) return FT_E_UNSUPPORTED;
    ft_sdpa_shape s;
    FT_TRY(ft_cudnn_shape(&s, doc_start, ndocs, B, T, H, Hkv, D, scale));
    ft_sdpa_graph *g = NULL;
    FT_TRY(ft_cudnn_plan_get(b, FT_SDPA_BWD, &s, &g));
    if (!g) return FT_E_UNSUPPORTED;
    ft_sdpa_ptrs p;
    memset(&p, 0, sizeof p);
    p.q = q, p.k = k, p.v = v, p.out = (void *)out, p.lse = (float *)lse, p.dout = dout;
    p.dq = dq, p.dk = dk, p.dv = dv;
    return ft_cudnn_run(b, g, &s, doc_start, &p);
}

void ft_cuda_cudnn_free(ft_backend_cuda *b) {
    struct ft_cuda_cudnn *c = b->cudnn;
    if (!c) return;
    for (int i = 0; i < c->nplan; i++) ft_sdpa_graph_free(c->plan[i].g);
    ft_sdpa_devprop_free(c->devprop);
    if (c->h) (void)cudnnDestroy(c->h);
    free(c);
    b->cudnn = NULL;
}

#else /* no cuDNN (or the CPU emulator): the op entries always run ftune's kernels */

ft_status ft_cuda_attn_cudnn_fwd(ft_backend_cuda *b, void *out, float *lse, const void *q, const void *k,
                                 const void *v, const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T,
                                 int64_t H, int64_t Hkv, int64_t D, float scale) {
    (void)b, (void)out, (void)lse, (void)q, (void)k, (void)v, (void)doc_start, (void)ndocs, (void)B, (void)T, (void)H,
        (void)Hkv, (void)D, (void)scale;
    return FT_E_UNSUPPORTED;
}

ft_status ft_cuda_attn_cudnn_bwd(ft_backend_cuda *b, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                 const void *k, const void *v, const void *out, const float *lse,
                                 const int32_t *doc_start, int64_t ndocs, int64_t B, int64_t T, int64_t H,
                                 int64_t Hkv, int64_t D, float scale) {
    (void)b, (void)dq, (void)dk, (void)dv, (void)dout, (void)q, (void)k, (void)v, (void)out, (void)lse,
        (void)doc_start, (void)ndocs, (void)B, (void)T, (void)H, (void)Hkv, (void)D, (void)scale;
    return FT_E_UNSUPPORTED;
}

void ft_cuda_cudnn_free(ft_backend_cuda *b) { (void)b; }
#endif
