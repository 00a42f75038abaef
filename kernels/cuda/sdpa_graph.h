/* sdpa_graph.h: cuDNN's fused scaled-dot-product attention (flash attention), forward and backward,
 * built through the cuDNN backend graph API from C (cudnn_frontend, a C++ header library, is not
 * part of the toolkit).
 *
 * The graphs are the ones cudnn_frontend's SDPA nodes lower to (matmul, scale, causal mask by
 * index comparison, softmax with log-sum-exp statistics, matmul; the backward recomputes P from
 * the statistics), which cuDNN's runtime fusion engines recognise and compile into one flash
 * attention kernel. Causal rows, or packed documents in cuDNN's ragged layout (shape.docs > 0).
 *
 * Layouts are ftune's (kernels/ops.h), expressed as strides, so nothing is copied:
 *   q, out, dout, dq [N = B*T, H*D]   -> [B, H, T, D] strides (T*H*D, D, H*D, 1)
 *   k, v, dk, dv     [N, Hkv*D]       -> [B, Hkv, T, D] strides (T*Hkv*D, D, Hkv*D, 1)
 *   lse              [N, H] f32       -> cuDNN's Stats [B, H, T, 1] strides (T*H, 1, H, 1)
 * except where ft_sdpa_graph_lse_bht says the graph's Stats is a packed [B, H, T] buffer: cuDNN
 * before 9.12 writes, and before 9.26 reads (in the backward), a Stats without ragged offsets as
 * packed BHSD whatever its strides (cudnn_frontend refuses other layouts there), so the caller
 * moves lse through such a copy. cuDNN's Stats is max + log(sum exp(s - max)) of the scaled,
 * masked scores in natural log: our lse.
 *
 * A plan is built for one device, described by a finalized CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR:
 * at run time from the cuDNN handle, in tests from a JSON description (cuDNN >= 9.8 builds plans
 * without the device), so CI checks on a machine without a GPU that cuDNN accepts these graphs for
 * the H100 and compiles a plan for each real shape. */
#ifndef FT_SDPA_GRAPH_H
#define FT_SDPA_GRAPH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "kernels/status.h"

typedef struct ft_sdpa_shape {
    int64_t B, T, H, Hkv, D;
    float scale;  /* applied to q.k (usually 1/sqrt(D)); part of the plan (a by-value scalar) */
    int64_t docs; /* 0: B plain causal rows of T. > 0: packed documents, each its own causal
                   * sequence of at most T tokens, this many sequence slots (cuDNN's ragged
                   * layout; unused slots have length 0), described per call by ft_sdpa_ptrs */
} ft_sdpa_shape;

enum { FT_SDPA_FWD = 0, FT_SDPA_BWD = 1 };

/* The device pointers of one call. Forward: q, k, v in, out and lse out. Backward: q, k, v, out,
 * lse, dout in; dq, dk, dv out (overwritten); dq_accum a zeroed f32 buffer of
 * ft_sdpa_graph_dq_accum_bytes bytes when that is > 0; workspace of ft_sdpa_graph_workspace. */
typedef struct ft_sdpa_ptrs {
    const void *q, *k, *v;
    void *out;
    float *lse; /* [N, H] as above, or the packed [B, H, T] copy where ft_sdpa_graph_lse_bht(g) */
    const void *dout;
    void *dq, *dk, *dv;
    void *dq_accum;
    void *workspace;
    /* packed documents (shape.docs > 0), device int32: seq_len[docs] each slot's length; off_q,
     * off_kv, off_lse [docs + 1] the element offset of each slot's first token in q (and out, dq,
     * dout: token * H * D), in k (v, dk, dv: token * Hkv * D) and in lse (token * H); each array
     * 16-byte aligned, the alignment the graph declares for every tensor */
    const int32_t *seq_len, *off_q, *off_kv, *off_lse;
} ft_sdpa_ptrs;

typedef struct ft_sdpa_graph ft_sdpa_graph;

/* A device description from cuDNN's JSON form (what ft_sdpa_devprop_json writes on a GPU), or from
 * a cuDNN handle; *out is an opaque cudnnBackendDescriptor_t, freed by ft_sdpa_devprop_free. A
 * failure is FT_E_UNSUPPORTED with cuDNN's reason. */
ft_status ft_sdpa_devprop_from_json(const char *json, void **out);
ft_status ft_sdpa_devprop_from_handle(void *cudnn_handle, void **out);
/* The JSON form of a device description, into buf[cap] (NUL-terminated). */
ft_status ft_sdpa_devprop_json(void *devprop, char *buf, int64_t cap);
void ft_sdpa_devprop_free(void *devprop);

/* Builds the graph of `kind` for shape s and the first execution plan cuDNN's heuristics offer
 * that finalizes on devprop. deterministic != 0 skips engines with cuDNN's nondeterministic note
 * (the backward's dq otherwise accumulates with atomics, and then exact resume would not be
 * bit-exact). FT_E_UNSUPPORTED, with cuDNN's reason, when no engine serves the graph. */
ft_status ft_sdpa_graph_build(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop,
                              ft_sdpa_graph **out);
/* The graph and the heuristics only, no plan: *viable = the engine configurations cuDNN offers
 * for it on devprop (which have passed cuDNN's support checks), less nondeterministic ones when
 * asked; *workspace (when not NULL) the smallest workspace among them. A plan cannot be finalized
 * without a CUDA driver (cuDNN loads the compiled kernel), so this is what a machine without a GPU
 * can check. */
ft_status ft_sdpa_graph_check(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop, int64_t *viable,
                              int64_t *workspace);
int64_t ft_sdpa_graph_workspace(const ft_sdpa_graph *g);
/* 1 when the graph's Stats is a packed [B, H, T] f32 buffer instead of lse [N, H] (see above). */
int ft_sdpa_graph_lse_bht(const ft_sdpa_graph *g);
/* The most workspace (plus dq accumulator) the op entry accepts from a plan on a device of
 * device_bytes: the deterministic backward keeps dP in the workspace, slots * H * T^2 * 2 bytes
 * (146 GB for Llama-3-70B at T 4096 in 64 document slots), which the memory plan does not count;
 * a plan past this falls back to our kernels. */
int64_t ft_sdpa_workspace_cap(int64_t device_bytes);
int64_t ft_sdpa_graph_dq_accum_bytes(const ft_sdpa_graph *g);
/* "engine 7 (12 of 40 configs tried)" and the like, for logs. */
const char *ft_sdpa_graph_desc(const ft_sdpa_graph *g);
/* Enqueues the plan on the handle's stream. */
ft_status ft_sdpa_graph_run(ft_sdpa_graph *g, void *cudnn_handle, const ft_sdpa_ptrs *p);
void ft_sdpa_graph_free(ft_sdpa_graph *g);

#ifdef __cplusplus
}
#endif
#endif
