/* sdpa_graph.cu: cuDNN's fused attention through the backend graph API (see sdpa_graph.h).
 *
 * Host code only; nvcc compiles it so that cuDNN statuses go through check.h like every other
 * library call. Graph construction failing is not an error of the run: cuDNN may simply have no
 * engine for a shape, and the caller falls back to our kernels. Such failures return
 * FT_E_UNSUPPORTED with cuDNN's own reason (cudnnGetLastErrorString); only execution goes through
 * FT_CUDNN_TRY. The CUDA emulator (tests/gpu/emu) has no cuDNN, nor has a toolkit without it
 * (FT_NO_CUDNN, set by kernels/CMakeLists.txt): there every entry says so and the op entry keeps
 * our own kernels. */
extern "C" {
#include "kernels/backend.h" /* ft_attn_workspace_cap */
}

#if !defined(FT_CUDA_EMULATED) && !defined(FT_NO_CUDNN)
#include <cudnn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/sdpa_graph.h"

/* Unique ids of the tensors the caller binds; virtual tensors are numbered from FT_UID_VIRTUAL. */
enum {
    FT_UID_Q = 1, FT_UID_K, FT_UID_V, FT_UID_O, FT_UID_STATS, FT_UID_DO, FT_UID_DQ, FT_UID_DK, FT_UID_DV,
    FT_UID_DQ_ACCUM, FT_UID_SCALE, FT_UID_LOWEST, FT_UID_ONE, FT_UID_SEQ_LEN, FT_UID_OFF_Q, FT_UID_OFF_KV,
    FT_UID_OFF_LSE, FT_UID_VIRTUAL = 100
};
/* FT_GB_MAX_BIND: the most tensors a run binds, 17 = q k v o stats scale lowest, dout dq dk dv one,
 * dq_accum (a nondeterministic backward), seq_len and three offsets (packed documents) */
enum { FT_GB_MAX_DESC = 192, FT_GB_MAX_OPS = 48, FT_GB_MAX_BIND = 17 };

struct ft_sdpa_graph {
    ft_sdpa_shape s;
    int kind;
    cudnnBackendDescriptor_t desc[FT_GB_MAX_DESC]; /* every descriptor made, destroyed at free */
    int ndesc;
    cudnnBackendDescriptor_t ops[FT_GB_MAX_OPS];
    int nops;
    int64_t next_uid;
    cudnnStatus_t st;  /* first failure while building */
    char why[512];
    cudnnBackendDescriptor_t plan;
    int64_t workspace, dq_accum_bytes;
    int64_t cfg_workspace; /* the smallest workspace among the viable configurations (check) */
    int lse_bht;           /* Stats is a packed [B, H, T] buffer, not lse [N, H] (sdpa_graph.h) */
    float scale, lowest, one; /* by-value scalars, bound by address at each run */
    /* packed documents (s.docs > 0): each document is one of s.docs sequences of at most s.T tokens,
     * given per call by its length and the element offsets of its first token in q/out/dq/dout,
     * in k/v/dk/dv and in lse; NULL for plain rows */
    cudnnBackendDescriptor_t seq, off_q, off_kv, off_lse;
    char text[96];
};

/* Four dimensions or strides, passed by value. */
typedef struct ft_d4 {
    int64_t v[4];
} ft_d4;
static ft_d4 ft_dim(int64_t a, int64_t b, int64_t c, int64_t d) {
    ft_d4 r = {{a, b, c, d}};
    return r;
}

/* ---- a tiny builder: each call is a no-op once a call failed ------------------------------- */

static void ft_gb_fail(ft_sdpa_graph *g, cudnnStatus_t st, const char *what) {
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    char reason[384];
    cudnnGetLastErrorString(reason, sizeof reason);
    g->st = st;
    snprintf(g->why, sizeof g->why, "%s: %s%s%s", what, cudnnGetErrorString(st), reason[0] ? ": " : "", reason);
}

static cudnnBackendDescriptor_t ft_gb_new(ft_sdpa_graph *g, cudnnBackendDescriptorType_t type) {
    cudnnBackendDescriptor_t d = NULL;
    if (g->st != CUDNN_STATUS_SUCCESS) return NULL;
    if (g->ndesc == FT_GB_MAX_DESC) {
        ft_gb_fail(g, CUDNN_STATUS_INTERNAL_ERROR, "sdpa graph: too many descriptors");
        return NULL;
    }
    cudnnStatus_t st = cudnnBackendCreateDescriptor(type, &d);
    if (st != CUDNN_STATUS_SUCCESS) {
        ft_gb_fail(g, st, "cudnnBackendCreateDescriptor");
        return NULL;
    }
    g->desc[g->ndesc++] = d;
    return d;
}

static void ft_gb_set(ft_sdpa_graph *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                      cudnnBackendAttributeType_t type, int64_t count, const void *val, const char *what) {
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    cudnnStatus_t st = cudnnBackendSetAttribute(d, name, type, count, val);
    if (st != CUDNN_STATUS_SUCCESS) ft_gb_fail(g, st, what);
}

static void ft_gb_link(ft_sdpa_graph *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                       cudnnBackendDescriptor_t v, const char *what) {
    ft_gb_set(g, d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v, what);
}

static void ft_gb_fin(ft_sdpa_graph *g, cudnnBackendDescriptor_t d, const char *what) {
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    cudnnStatus_t st = cudnnBackendFinalize(d);
    if (st != CUDNN_STATUS_SUCCESS) ft_gb_fail(g, st, what);
}

/* A tensor of 4 dimensions. virt: lives only inside the fused kernel; byval: a host scalar. */
static cudnnBackendDescriptor_t ft_gb_tensor_r(ft_sdpa_graph *g, int64_t uid, cudnnDataType_t dt, ft_d4 dim,
                                               ft_d4 stride, int virt, int byval, int reorder_f16x16,
                                               cudnnBackendDescriptor_t ragged) {
    cudnnBackendDescriptor_t t = ft_gb_new(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t align = 16;
    const bool v = virt != 0, bv = byval != 0;
    ft_gb_set(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid");
    ft_gb_set(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt, "tensor data type");
    ft_gb_set(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim.v, "tensor dims");
    ft_gb_set(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride.v, "tensor strides");
    ft_gb_set(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align, "tensor alignment");
    ft_gb_set(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v, "tensor virtual");
    if (bv) ft_gb_set(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &bv, "tensor by value");
    if (reorder_f16x16) {
        const cudnnBackendTensorReordering_t r = CUDNN_TENSOR_REORDERING_F16x16;
        ft_gb_set(g, t, CUDNN_ATTR_TENSOR_REORDERING_MODE, CUDNN_TYPE_TENSOR_REORDERING_MODE, 1, &r, "tensor reorder");
    }
    if (ragged) ft_gb_link(g, t, CUDNN_ATTR_TENSOR_RAGGED_OFFSET_DESC, ragged, "tensor ragged offsets");
    ft_gb_fin(g, t, "tensor finalize");
    return t;
}

static cudnnBackendDescriptor_t ft_gb_tensor(ft_sdpa_graph *g, int64_t uid, cudnnDataType_t dt, ft_d4 dim,
                                             ft_d4 stride, int virt, int byval, int reorder_f16x16) {
    return ft_gb_tensor_r(g, uid, dt, dim, stride, virt, byval, reorder_f16x16, NULL);
}

/* A caller's BF16 tensor (ragged by `off` when the graph packs documents). */
static cudnnBackendDescriptor_t ft_gb_io(ft_sdpa_graph *g, int64_t uid, ft_d4 dim, ft_d4 stride,
                                         cudnnBackendDescriptor_t off) {
    return ft_gb_tensor_r(g, uid, CUDNN_DATA_BFLOAT16, dim, stride, 0, 0, 0, off);
}

/* A virtual tensor (a new uid) of dt with the given dims and strides. */
static cudnnBackendDescriptor_t ft_gb_virt(ft_sdpa_graph *g, cudnnDataType_t dt, ft_d4 dim, ft_d4 stride) {
    return ft_gb_tensor(g, g->next_uid++, dt, dim, stride, 1, 0, 0);
}

/* A host scalar bound by value. */
static cudnnBackendDescriptor_t ft_gb_scalar(ft_sdpa_graph *g, int64_t uid) {
    return ft_gb_tensor(g, uid, CUDNN_DATA_FLOAT, ft_dim(1, 1, 1, 1), ft_dim(1, 1, 1, 1), 0, 1, 0);
}

static void ft_gb_op(ft_sdpa_graph *g, cudnnBackendDescriptor_t op, const char *what) {
    ft_gb_fin(g, op, what);
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    if (g->nops == FT_GB_MAX_OPS) {
        ft_gb_fail(g, CUDNN_STATUS_INTERNAL_ERROR, "sdpa graph: too many operations");
        return;
    }
    g->ops[g->nops++] = op;
}

/* y = mode(x[, b[, t]]) computed in `comp`; axis >= 0 for GEN_INDEX. */
static void ft_gb_pw(ft_sdpa_graph *g, cudnnPointwiseMode_t mode, cudnnDataType_t comp, int64_t axis,
                     cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                     cudnnBackendDescriptor_t y, const char *what) {
    cudnnBackendDescriptor_t pw = ft_gb_new(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    ft_gb_set(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, what);
    ft_gb_set(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    if (axis >= 0) ft_gb_set(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis, what);
    ft_gb_fin(g, pw, what);
    cudnnBackendDescriptor_t op = ft_gb_new(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x, what);
    if (b) ft_gb_link(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b, what);
    if (t) ft_gb_link(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y, what);
    ft_gb_op(g, op, what);
}

static void ft_gb_reduce(ft_sdpa_graph *g, cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                         cudnnBackendDescriptor_t y, const char *what) {
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t r = ft_gb_new(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    ft_gb_set(g, r, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode, what);
    ft_gb_set(g, r, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    ft_gb_fin(g, r, what);
    cudnnBackendDescriptor_t op = ft_gb_new(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, r, what);
    ft_gb_op(g, op, what);
}

/* c = a . b over the last two dimensions, batched (and broadcast for grouped heads) over the first two.
 * With packed documents, the dimensions named by ovr (FT_MM_M | FT_MM_N | FT_MM_K) run to each
 * sequence's own length instead of T. */
enum { FT_MM_M = 1, FT_MM_N = 2, FT_MM_K = 4 };
static void ft_gb_matmul(ft_sdpa_graph *g, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                           cudnnBackendDescriptor_t c, int ovr, const char *what) {
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t m = ft_gb_new(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    ft_gb_set(g, m, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp, what);
    ft_gb_fin(g, m, what);
    cudnnBackendDescriptor_t op = ft_gb_new(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, b, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, m, what);
    if (g->seq && (ovr & FT_MM_M)) ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, g->seq, what);
    if (g->seq && (ovr & FT_MM_N)) ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, g->seq, what);
    if (g->seq && (ovr & FT_MM_K)) ft_gb_link(g, op, CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, g->seq, what);
    ft_gb_op(g, op, what);
}

static void ft_gb_reshape(ft_sdpa_graph *g, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y,
                          const char *what) {
    cudnnBackendDescriptor_t op = ft_gb_new(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x, what);
    ft_gb_link(g, op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y, what);
    ft_gb_op(g, op, what);
}

/* ---- the two graphs ---------------------------------------------------------------------------- */

/* Sequences in the graph: B rows, or s.docs packed documents. */
static int64_t ft_sdpa_nseq(const ft_sdpa_graph *g) { return g->s.docs > 0 ? g->s.docs : g->s.B; }

/* Packed documents: scores outside a document's own length (rows or columns) get the lowest
 * float, as cudnn_frontend's padding mask. */
static cudnnBackendDescriptor_t ft_sdpa_padding(ft_sdpa_graph *g, cudnnBackendDescriptor_t x, ft_d4 sd, ft_d4 ss,
                                                const char *what) {
    if (!g->seq) return x;
    cudnnBackendDescriptor_t row = ft_gb_virt(g, CUDNN_DATA_INT32, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, 2, x, NULL, NULL, row, what);
    cudnnBackendDescriptor_t col = ft_gb_virt(g, CUDNN_DATA_INT32, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, 3, x, NULL, NULL, col, what);
    cudnnBackendDescriptor_t rin = ft_gb_virt(g, CUDNN_DATA_BOOLEAN, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, -1, row, g->seq, NULL, rin, what);
    cudnnBackendDescriptor_t cin = ft_gb_virt(g, CUDNN_DATA_BOOLEAN, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, -1, col, g->seq, NULL, cin, what);
    cudnnBackendDescriptor_t in = ft_gb_virt(g, CUDNN_DATA_BOOLEAN, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_LOGICAL_AND, CUDNN_DATA_BOOLEAN, -1, rin, cin, NULL, in, what);
    cudnnBackendDescriptor_t y = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, -1, x, ft_gb_scalar(g, FT_UID_LOWEST), in, y, what);
    return y;
}

/* The masked, scaled scores s = mask(scale * q.k^T) [Bn,H,T,T] f32 (virtual), as both graphs start;
 * with stats (the backward), mask(scale * q.k^T - stats): cudnn_frontend's backward subtracts the
 * statistics right after the scale and masks after that. */
static cudnnBackendDescriptor_t ft_sdpa_scores(ft_sdpa_graph *g, cudnnBackendDescriptor_t q,
                                               cudnnBackendDescriptor_t kt, cudnnBackendDescriptor_t stats) {
    const int64_t Bn = ft_sdpa_nseq(g), H = g->s.H, T = g->s.T;
    const ft_d4 sd = ft_dim(Bn, H, T, T), ss = ft_dim(H * T * T, T * T, T, 1);
    cudnnBackendDescriptor_t s0 = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_matmul(g, q, kt, s0, FT_MM_M | FT_MM_N, "sdpa q.k^T");
    cudnnBackendDescriptor_t s1 = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, -1, s0, ft_gb_scalar(g, FT_UID_SCALE), NULL, s1, "sdpa scale");
    if (stats) {
        cudnnBackendDescriptor_t sl = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
        ft_gb_pw(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, -1, s1, stats, NULL, sl, "sdpa s - lse");
        s1 = sl;
    }
    s1 = ft_sdpa_padding(g, s1, sd, ss, "sdpa padding mask");
    /* causal: keep s where row (query) >= column (key), else the lowest float, so exp gives 0 */
    cudnnBackendDescriptor_t row = ft_gb_virt(g, CUDNN_DATA_INT32, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, 2, s1, NULL, NULL, row, "sdpa row index");
    cudnnBackendDescriptor_t col = ft_gb_virt(g, CUDNN_DATA_INT32, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, 3, s1, NULL, NULL, col, "sdpa column index");
    cudnnBackendDescriptor_t keep = ft_gb_virt(g, CUDNN_DATA_BOOLEAN, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, -1, row, col, NULL, keep, "sdpa causal compare");
    cudnnBackendDescriptor_t s2 = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, -1, s1, ft_gb_scalar(g, FT_UID_LOWEST), keep, s2,
             "sdpa causal select");
    return s2;
}

/* The per-call tensors of packed documents: lengths [Bn,1,1,1] and element offsets [Bn+1,1,1,1]. */
static void ft_sdpa_doc_tensors(ft_sdpa_graph *g) {
    if (g->s.docs <= 0) return;
    const int64_t n = g->s.docs;
    g->seq = ft_gb_tensor(g, FT_UID_SEQ_LEN, CUDNN_DATA_INT32, ft_dim(n, 1, 1, 1), ft_dim(1, 1, 1, 1), 0, 0, 0);
    g->off_q = ft_gb_tensor(g, FT_UID_OFF_Q, CUDNN_DATA_INT32, ft_dim(n + 1, 1, 1, 1), ft_dim(1, 1, 1, 1), 0, 0, 0);
    g->off_kv = ft_gb_tensor(g, FT_UID_OFF_KV, CUDNN_DATA_INT32, ft_dim(n + 1, 1, 1, 1), ft_dim(1, 1, 1, 1), 0, 0, 0);
    g->off_lse = ft_gb_tensor(g, FT_UID_OFF_LSE, CUDNN_DATA_INT32, ft_dim(n + 1, 1, 1, 1), ft_dim(1, 1, 1, 1), 0, 0,
                              0);
}

/* Stats [Bn,H,T,1] f32: our lse [N, H] (ragged by off_lse with packed documents), or the packed
 * [B, H, T] copy where cuDNN would not honour the strides (lse_bht, sdpa_graph.h). */
static cudnnBackendDescriptor_t ft_sdpa_stats_tensor(ft_sdpa_graph *g) {
    const int64_t Bn = ft_sdpa_nseq(g), H = g->s.H, T = g->s.T;
    const ft_d4 st = g->lse_bht ? ft_dim(H * T, T, 1, 1) : ft_dim(T * H, 1, H, 1);
    return ft_gb_tensor_r(g, FT_UID_STATS, CUDNN_DATA_FLOAT, ft_dim(Bn, H, T, 1), st, 0, 0, 0, g->off_lse);
}

static void ft_sdpa_fwd_graph(ft_sdpa_graph *g) {
    const int64_t B = ft_sdpa_nseq(g), H = g->s.H, Hk = g->s.Hkv, T = g->s.T, D = g->s.D;
    ft_sdpa_doc_tensors(g);
    cudnnBackendDescriptor_t q = ft_gb_io(g, FT_UID_Q, ft_dim(B, H, T, D), ft_dim(T * H * D, D, H * D, 1), g->off_q);
    cudnnBackendDescriptor_t kt =
        ft_gb_io(g, FT_UID_K, ft_dim(B, Hk, D, T), ft_dim(T * Hk * D, D, 1, Hk * D), g->off_kv);
    cudnnBackendDescriptor_t v =
        ft_gb_io(g, FT_UID_V, ft_dim(B, Hk, T, D), ft_dim(T * Hk * D, D, Hk * D, 1), g->off_kv);
    cudnnBackendDescriptor_t o = ft_gb_io(g, FT_UID_O, ft_dim(B, H, T, D), ft_dim(T * H * D, D, H * D, 1), g->off_q);
    cudnnBackendDescriptor_t stats = ft_sdpa_stats_tensor(g);
    const ft_d4 sd = ft_dim(B, H, T, T), ss = ft_dim(H * T * T, T * T, T, 1);
    const ft_d4 rd = ft_dim(B, H, T, 1), rs = ft_dim(H * T, T, 1, 1);
    cudnnBackendDescriptor_t s = ft_sdpa_scores(g, q, kt, NULL);
    /* softmax with statistics, as cudnn_frontend's composite softmax node lowers it */
    cudnnBackendDescriptor_t m = ft_gb_virt(g, CUDNN_DATA_FLOAT, rd, rs);
    ft_gb_reduce(g, CUDNN_REDUCE_TENSOR_MAX, s, m, "sdpa row max");
    cudnnBackendDescriptor_t sm = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, -1, s, m, NULL, sm, "sdpa s - max");
    cudnnBackendDescriptor_t e = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, -1, sm, NULL, NULL, e, "sdpa exp");
    cudnnBackendDescriptor_t z = ft_gb_virt(g, CUDNN_DATA_FLOAT, rd, rs);
    ft_gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, e, z, "sdpa row sum");
    cudnnBackendDescriptor_t lz = ft_gb_virt(g, CUDNN_DATA_FLOAT, rd, rs);
    ft_gb_pw(g, CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, -1, z, NULL, NULL, lz, "sdpa log sum");
    ft_gb_pw(g, CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, -1, m, lz, NULL, stats, "sdpa stats");
    /* P in the input type, as the second product's A operand must be */
    cudnnBackendDescriptor_t p = ft_gb_virt(g, CUDNN_DATA_BFLOAT16, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, -1, e, z, NULL, p, "sdpa softmax");
    ft_gb_matmul(g, p, v, o, FT_MM_M | FT_MM_K, "sdpa p.v");
}

/* GQA: a [Bn,H,T,D] product (rows: keys, reduction: queries) summed over each group of H/Hkv heads
 * into out [Bn,Hkv,T,D]. */
static void ft_sdpa_group_sum(ft_sdpa_graph *g, cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                              cudnnBackendDescriptor_t out, const char *what) {
    const int64_t B = ft_sdpa_nseq(g), H = g->s.H, T = g->s.T, D = g->s.D;
    if (g->s.Hkv == H) {
        ft_gb_matmul(g, a, b, out, FT_MM_M | FT_MM_K, what);
        return;
    }
    cudnnBackendDescriptor_t full = ft_gb_virt(g, CUDNN_DATA_BFLOAT16, ft_dim(B, H, T, D),
                                               ft_dim(H * T * D, T * D, D, 1));
    ft_gb_matmul(g, a, b, full, FT_MM_M | FT_MM_K, what);
    ft_gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, full, out, what);
}

static void ft_sdpa_bwd_graph(ft_sdpa_graph *g, int with_dq_accum) {
    const int64_t B = ft_sdpa_nseq(g), H = g->s.H, Hk = g->s.Hkv, T = g->s.T, D = g->s.D;
    const ft_d4 qd = ft_dim(B, H, T, D), qs = ft_dim(T * H * D, D, H * D, 1);
    const ft_d4 kd = ft_dim(B, Hk, T, D), ks = ft_dim(T * Hk * D, D, Hk * D, 1);
    const ft_d4 ktd = ft_dim(B, Hk, D, T), kts = ft_dim(T * Hk * D, D, 1, Hk * D);
    const ft_d4 sd = ft_dim(B, H, T, T), ss = ft_dim(H * T * T, T * T, T, 1);
    const ft_d4 std_ = ft_dim(B, H, T, T), sts = ft_dim(H * T * T, T * T, 1, T); /* transposed view */
    const ft_d4 rd = ft_dim(B, H, T, 1), rs = ft_dim(H * T, T, 1, 1);
    ft_sdpa_doc_tensors(g);
    cudnnBackendDescriptor_t q = ft_gb_io(g, FT_UID_Q, qd, qs, g->off_q);
    cudnnBackendDescriptor_t kt = ft_gb_io(g, FT_UID_K, ktd, kts, g->off_kv);
    cudnnBackendDescriptor_t vt = ft_gb_io(g, FT_UID_V, ktd, kts, g->off_kv);
    cudnnBackendDescriptor_t o = ft_gb_io(g, FT_UID_O, qd, qs, g->off_q);
    cudnnBackendDescriptor_t dout = ft_gb_io(g, FT_UID_DO, qd, qs, g->off_q);
    cudnnBackendDescriptor_t stats = ft_sdpa_stats_tensor(g);
    cudnnBackendDescriptor_t dq = ft_gb_io(g, FT_UID_DQ, qd, qs, g->off_q);
    cudnnBackendDescriptor_t dk = ft_gb_io(g, FT_UID_DK, kd, ks, g->off_kv);
    cudnnBackendDescriptor_t dv = ft_gb_io(g, FT_UID_DV, kd, ks, g->off_kv);

    /* Dl = rowsum(dout * out) (cuDNN's softmax_sum) */
    cudnnBackendDescriptor_t doo = ft_gb_virt(g, CUDNN_DATA_FLOAT, qd, ft_dim(H * T * D, T * D, H * D, 1));
    ft_gb_pw(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, -1, dout, o, NULL, doo, "sdpa dout*out");
    cudnnBackendDescriptor_t dl0 = ft_gb_virt(g, CUDNN_DATA_FLOAT, rd, rs);
    ft_gb_reduce(g, CUDNN_REDUCE_TENSOR_ADD, doo, dl0, "sdpa rowsum(dout*out)");
    cudnnBackendDescriptor_t dl = ft_gb_virt(g, CUDNN_DATA_FLOAT, rd, rs);
    ft_gb_pw(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, -1, dl0, ft_gb_scalar(g, FT_UID_ONE), NULL, dl, "sdpa Dl");

    /* P = exp(mask(scale * q.k^T - lse)), recomputed */
    cudnnBackendDescriptor_t sl = ft_sdpa_scores(g, q, kt, stats);
    cudnnBackendDescriptor_t p = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, -1, sl, NULL, NULL, p, "sdpa P");

    /* dv = P^T dout (summed over the group) */
    cudnnBackendDescriptor_t pt = ft_gb_virt(g, CUDNN_DATA_BFLOAT16, std_, sts);
    ft_gb_reshape(g, p, pt, "sdpa P^T");
    ft_sdpa_group_sum(g, pt, dout, dv, "sdpa dv");

    /* dS = scale * P * (dout.v^T - Dl) */
    cudnnBackendDescriptor_t dp = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_matmul(g, dout, vt, dp, FT_MM_M | FT_MM_N, "sdpa dout.v^T");
    cudnnBackendDescriptor_t dp1 = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, -1, dp, ft_gb_scalar(g, FT_UID_ONE), NULL, dp1, "sdpa dP");
    cudnnBackendDescriptor_t dp2 = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, -1, dp1, dl, NULL, dp2, "sdpa dP - Dl");
    cudnnBackendDescriptor_t ds0 = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, -1, dp2, p, NULL, ds0, "sdpa P*(dP - Dl)");
    cudnnBackendDescriptor_t ds = ft_gb_virt(g, CUDNN_DATA_FLOAT, sd, ss);
    ft_gb_pw(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, -1, ds0, ft_gb_scalar(g, FT_UID_SCALE), NULL, ds, "sdpa dS");

    /* dk = dS^T q (summed over the group) */
    cudnnBackendDescriptor_t dst = ft_gb_virt(g, CUDNN_DATA_BFLOAT16, std_, sts);
    ft_gb_reshape(g, ds, dst, "sdpa dS^T");
    ft_sdpa_group_sum(g, dst, q, dk, "sdpa dk");

    /* dq = dS k: k seen again as [Bn,Hkv,T,D] through a reshape of k^T (ragged like k) */
    cudnnBackendDescriptor_t k = ft_gb_tensor_r(g, g->next_uid++, CUDNN_DATA_BFLOAT16, kd, ks, 1, 0, 0, g->off_kv);
    ft_gb_reshape(g, kt, k, "sdpa k");
    if (with_dq_accum) { /* f32 accumulation buffer (atomics), then a copy into dq */
        cudnnBackendDescriptor_t acc = ft_gb_tensor(g, FT_UID_DQ_ACCUM, CUDNN_DATA_FLOAT, qd,
                                                    ft_dim(H * T * D, T * D, D, 1), 0, 0, 1);
        ft_gb_matmul(g, ds, k, acc, FT_MM_M | FT_MM_K, "sdpa dq (accumulated)");
        ft_gb_pw(g, CUDNN_POINTWISE_IDENTITY, CUDNN_DATA_FLOAT, -1, acc, NULL, NULL, dq, "sdpa dq");
        g->dq_accum_bytes = B * H * T * D * 4;
    } else {
        ft_gb_matmul(g, ds, k, dq, FT_MM_M | FT_MM_K, "sdpa dq");
    }
}

/* ---- plans --------------------------------------------------------------------------------------- */

static int ft_cfg_nondeterministic(cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t eng = NULL;
    int64_t n = 0;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS) return 1;
    int nd = 1;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng) ==
        CUDNN_STATUS_SUCCESS) {
        cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
        int64_t nn = 0;
        nd = 0;
        if (cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                     CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, notes) == CUDNN_STATUS_SUCCESS)
            for (int64_t i = 0; i < nn; i++) nd |= notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
    }
    cudnnBackendDestroyDescriptor(eng);
    return nd;
}

static int64_t ft_cfg_engine_index(cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t eng = NULL;
    int64_t n = 0, idx = -1;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS) return -1;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng) ==
        CUDNN_STATUS_SUCCESS)
        cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &idx);
    cudnnBackendDestroyDescriptor(eng);
    return idx;
}

/* The operation graph, the heuristics' configurations (*viable: how many cuDNN offers, less the
 * nondeterministic ones when asked), and, when finalize, the first plan that finalizes. */
static void ft_sdpa_plan(ft_sdpa_graph *g, int deterministic, cudnnBackendDescriptor_t devprop, int finalize,
                         int64_t *viable) {
    cudnnBackendDescriptor_t og = ft_gb_new(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    ft_gb_set(g, og, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->nops, g->ops, "graph ops");
    ft_gb_fin(g, og, "operation graph");
    cudnnBackendDescriptor_t heur = ft_gb_new(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    ft_gb_link(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, og, "heuristics graph");
    ft_gb_set(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
    ft_gb_link(g, heur, CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, devprop, "heuristics device");
    ft_gb_fin(g, heur, "heuristics");
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    int64_t ncfg = 0;
    cudnnStatus_t st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                                &ncfg, NULL);
    if (st != CUDNN_STATUS_SUCCESS) return ft_gb_fail(g, st, "heuristics results");
    if (ncfg > 32) ncfg = 32;
    if (ncfg > FT_GB_MAX_DESC - g->ndesc - 2) ncfg = FT_GB_MAX_DESC - g->ndesc - 2;
    if (ncfg <= 0) {
        if (viable) *viable = 0;
        return ft_gb_fail(g, CUDNN_STATUS_NOT_SUPPORTED, "heuristics: no engine for this graph");
    }
    cudnnBackendDescriptor_t *cfg = g->desc + g->ndesc;
    for (int64_t i = 0; i < ncfg; i++) ft_gb_new(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    if (g->st != CUDNN_STATUS_SUCCESS) return;
    /* the count asked for first is before cuDNN's support checks; what comes back passed them */
    st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ncfg, &ncfg, cfg);
    if (st != CUDNN_STATUS_SUCCESS) return ft_gb_fail(g, st, "heuristics results");
    if (ncfg <= 0) {
        if (viable) *viable = 0;
        return ft_gb_fail(g, CUDNN_STATUS_NOT_SUPPORTED, "heuristics: no engine passes its support checks");
    }
    char first_why[384] = "";
    int tried = 0, skipped = 0;
    if (viable) {
        *viable = 0;
        g->cfg_workspace = -1;
        for (int64_t i = 0; i < ncfg; i++) {
            if (deterministic && ft_cfg_nondeterministic(cfg[i])) continue;
            int64_t ws = -1, n = 0;
            ++*viable;
            if (cudnnBackendGetAttribute(cfg[i], CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &ws) ==
                    CUDNN_STATUS_SUCCESS &&
                ws >= 0 && (g->cfg_workspace < 0 || ws < g->cfg_workspace))
                g->cfg_workspace = ws;
        }
        if (*viable == 0)
            return ft_gb_fail(g, CUDNN_STATUS_NOT_SUPPORTED, "heuristics: every engine for this graph is nondeterministic");
    }
    if (!finalize) return;
    for (int64_t i = 0; i < ncfg && !g->plan; i++) {
        if (deterministic && ft_cfg_nondeterministic(cfg[i])) {
            skipped++;
            continue;
        }
        tried++;
        cudnnBackendDescriptor_t plan = ft_gb_new(g, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        ft_gb_link(g, plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfg[i], "plan config");
        ft_gb_link(g, plan, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP, devprop, "plan device");
        if (g->st != CUDNN_STATUS_SUCCESS) return;
        st = cudnnBackendFinalize(plan);
        if (st == CUDNN_STATUS_SUCCESS) {
            g->plan = plan;
            snprintf(g->text, sizeof g->text, "engine %lld (config %lld of %lld%s)",
                     (long long)ft_cfg_engine_index(cfg[i]), (long long)i + 1, (long long)ncfg,
                     deterministic ? ", deterministic" : "");
        } else if (!first_why[0]) {
            cudnnGetLastErrorString(first_why, sizeof first_why);
            if (!first_why[0]) snprintf(first_why, sizeof first_why, "%s", cudnnGetErrorString(st));
        }
    }
    if (!g->plan) {
        g->st = CUDNN_STATUS_NOT_SUPPORTED;
        snprintf(g->why, sizeof g->why, "no plan finalizes (%d configs tried, %d skipped as nondeterministic)%s%s",
                 tried, skipped, first_why[0] ? ": " : "", first_why);
        return;
    }
    st = cudnnBackendGetAttribute(g->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, NULL,
                                  &g->workspace);
    if (st != CUDNN_STATUS_SUCCESS) ft_gb_fail(g, st, "plan workspace size");
}

static ft_status ft_sdpa_make(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop, int finalize,
                              int64_t *viable, int64_t *workspace, ft_sdpa_graph **out) {
    *out = NULL;
    if (s->B <= 0 || s->T <= 0 || s->H <= 0 || s->Hkv <= 0 || s->H % s->Hkv || s->D % 8 || s->D > 128 || s->docs < 0)
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn sdpa: shape B %lld T %lld H %lld/%lld D %lld not served",
                      (long long)s->B, (long long)s->T, (long long)s->H, (long long)s->Hkv, (long long)s->D);
    ft_sdpa_graph *g = (ft_sdpa_graph *)calloc(1, sizeof *g);
    if (!g) return FT_ERR(FT_E_OOM, "cudnn sdpa: out of host memory");
    g->s = *s;
    g->kind = kind;
    g->next_uid = FT_UID_VIRTUAL;
    g->st = CUDNN_STATUS_SUCCESS;
    g->scale = s->scale, g->lowest = -3.402823466e38f, g->one = 1.0f;
    /* cuDNN's forward honours a non-ragged Stats' strides from 9.12, its backward from 9.26 (before,
     * packed BHSD whatever the strides; cudnn_frontend's sdpa_support_surface.h refuses the rest) */
    g->lse_bht = s->docs == 0 && cudnnGetVersion() < (kind == FT_SDPA_FWD ? 91200u : 92600u);
    if (kind == FT_SDPA_FWD)
        ft_sdpa_fwd_graph(g);
    else /* cuDNN's deterministic backward is the graph without the f32 dq accumulator (which the
          * other fills with atomics), as cudnn_frontend builds it for set_deterministic_algorithm */
        ft_sdpa_bwd_graph(g, !deterministic);
    ft_sdpa_plan(g, deterministic, (cudnnBackendDescriptor_t)devprop, finalize, viable);
    if (g->st != CUDNN_STATUS_SUCCESS) {
        ft_status e = FT_ERR(FT_E_UNSUPPORTED, "cudnn sdpa %s (B %lld T %lld H %lld/%lld D %lld): %s",
                             kind == FT_SDPA_FWD ? "forward" : "backward", (long long)s->B, (long long)s->T,
                             (long long)s->H, (long long)s->Hkv, (long long)s->D, g->why);
        ft_sdpa_graph_free(g);
        return e;
    }
    if (workspace) *workspace = g->cfg_workspace;
    if (finalize)
        *out = g;
    else
        ft_sdpa_graph_free(g);
    return FT_OK;
}

ft_status ft_sdpa_graph_build(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop,
                              ft_sdpa_graph **out) {
    return ft_sdpa_make(s, kind, deterministic, devprop, 1, NULL, NULL, out);
}

ft_status ft_sdpa_graph_check(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop, int64_t *viable,
                              int64_t *workspace) {
    ft_sdpa_graph *g = NULL;
    *viable = 0;
    if (workspace) *workspace = -1;
    return ft_sdpa_make(s, kind, deterministic, devprop, 0, viable, workspace, &g);
}

int64_t ft_sdpa_graph_workspace(const ft_sdpa_graph *g) { return g->workspace; }
int ft_sdpa_graph_lse_bht(const ft_sdpa_graph *g) { return g->lse_bht; }
int64_t ft_sdpa_graph_dq_accum_bytes(const ft_sdpa_graph *g) { return g->dq_accum_bytes; }
const char *ft_sdpa_graph_desc(const ft_sdpa_graph *g) { return g->text; }

ft_status ft_sdpa_graph_run(ft_sdpa_graph *g, void *handle, const ft_sdpa_ptrs *p) {
    int64_t uid[FT_GB_MAX_BIND];
    void *ptr[FT_GB_MAX_BIND];
    int n = 0;
#define FT_BIND(u, x) (uid[n] = (u), ptr[n] = (void *)(x), n++)
    FT_BIND(FT_UID_Q, p->q), FT_BIND(FT_UID_K, p->k), FT_BIND(FT_UID_V, p->v), FT_BIND(FT_UID_O, p->out);
    FT_BIND(FT_UID_STATS, p->lse), FT_BIND(FT_UID_SCALE, &g->scale), FT_BIND(FT_UID_LOWEST, &g->lowest);
    if (g->kind == FT_SDPA_BWD) {
        FT_BIND(FT_UID_DO, p->dout), FT_BIND(FT_UID_DQ, p->dq), FT_BIND(FT_UID_DK, p->dk);
        FT_BIND(FT_UID_DV, p->dv), FT_BIND(FT_UID_ONE, &g->one);
        if (g->dq_accum_bytes) FT_BIND(FT_UID_DQ_ACCUM, p->dq_accum);
    }
    if (g->seq) {
        FT_BIND(FT_UID_SEQ_LEN, p->seq_len), FT_BIND(FT_UID_OFF_Q, p->off_q), FT_BIND(FT_UID_OFF_KV, p->off_kv);
        FT_BIND(FT_UID_OFF_LSE, p->off_lse);
    }
#undef FT_BIND
    cudnnBackendDescriptor_t pack = NULL;
    void *ws = p->workspace;
    ft_status st = FT_OK;
    FT_CUDNN_TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
#define FT_PACK_TRY(stmt)                                                                           \
    do {                                                                                            \
        cudnnStatus_t e_ = (stmt);                                                                  \
        if (e_ != CUDNN_STATUS_SUCCESS && st == FT_OK) st = ft_cudnn_status(e_, #stmt, __func__, __FILE__, __LINE__); \
    } while (0)
    FT_PACK_TRY(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uid));
    FT_PACK_TRY(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptr));
    FT_PACK_TRY(cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws));
    if (st == FT_OK) FT_PACK_TRY(cudnnBackendFinalize(pack));
    if (st == FT_OK) FT_PACK_TRY(cudnnBackendExecute((cudnnHandle_t)handle, g->plan, pack));
#undef FT_PACK_TRY
    cudnnBackendDestroyDescriptor(pack);
    return st;
}

void ft_sdpa_graph_free(ft_sdpa_graph *g) {
    if (!g) return;
    for (int i = g->ndesc - 1; i >= 0; i--)
        if (g->desc[i]) cudnnBackendDestroyDescriptor(g->desc[i]);
    free(g);
}

/* ---- device descriptions ------------------------------------------------------------------------ */

static ft_status ft_devprop_finish(cudnnBackendDescriptor_t d, const char *what, void **out) {
    cudnnStatus_t st = cudnnBackendFinalize(d);
    if (st != CUDNN_STATUS_SUCCESS) {
        char reason[384];
        cudnnGetLastErrorString(reason, sizeof reason);
        cudnnBackendDestroyDescriptor(d);
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn device description from %s: %s%s%s", what, cudnnGetErrorString(st),
                      reason[0] ? ": " : "", reason);
    }
    *out = d;
    return FT_OK;
}

ft_status ft_sdpa_devprop_from_json(const char *json, void **out) {
    cudnnBackendDescriptor_t d = NULL;
    *out = NULL;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &d) != CUDNN_STATUS_SUCCESS)
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn: no device descriptions in this cuDNN (%zu)", cudnnGetVersion());
    if (cudnnBackendSetAttribute(d, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                                 (int64_t)strlen(json) + 1, json) != CUDNN_STATUS_SUCCESS) {
        cudnnBackendDestroyDescriptor(d);
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn device description: the JSON was refused");
    }
    return ft_devprop_finish(d, "JSON", out);
}

ft_status ft_sdpa_devprop_from_handle(void *handle, void **out) {
    cudnnBackendDescriptor_t d = NULL;
    *out = NULL;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &d) != CUDNN_STATUS_SUCCESS)
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn: no device descriptions in this cuDNN (%zu)", cudnnGetVersion());
    cudnnHandle_t h = (cudnnHandle_t)handle;
    if (cudnnBackendSetAttribute(d, CUDNN_ATTR_DEVICEPROP_HANDLE, CUDNN_TYPE_HANDLE, 1, &h) != CUDNN_STATUS_SUCCESS) {
        cudnnBackendDestroyDescriptor(d);
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn device description: the handle was refused");
    }
    return ft_devprop_finish(d, "the device", out);
}

ft_status ft_sdpa_devprop_json(void *devprop, char *buf, int64_t cap) {
    int64_t n = 0;
    if (cap <= 0) return FT_ERR(FT_E_ARG, "cudnn device description: no room");
    buf[0] = 0;
    if (cudnnBackendGetAttribute((cudnnBackendDescriptor_t)devprop, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION,
                                 CUDNN_TYPE_CHAR, cap - 1, &n, buf) != CUDNN_STATUS_SUCCESS)
        return FT_ERR(FT_E_UNSUPPORTED, "cudnn device description: no JSON form");
    buf[n < cap ? n : cap - 1] = 0;
    return FT_OK;
}

void ft_sdpa_devprop_free(void *devprop) {
    if (devprop) cudnnBackendDestroyDescriptor((cudnnBackendDescriptor_t)devprop);
}

/* 1/16 of the device: the 70B layer's deterministic backward at T 4096 (2.3 GB) passes on an H100,
 * packed documents in 16-64 slots of T 4096 (36-146 GB) do not. */
int64_t ft_sdpa_workspace_cap(int64_t device_bytes) { return ft_attn_workspace_cap(device_bytes); }
#else /* no cuDNN */
#include <stddef.h>

#include "kernels/cuda/sdpa_graph.h"

static ft_status ft_no_cudnn(void) { return FT_ERR(FT_E_UNSUPPORTED, "this build has no cuDNN"); }
ft_status ft_sdpa_devprop_from_json(const char *json, void **out) { (void)json, *out = NULL; return ft_no_cudnn(); }
ft_status ft_sdpa_devprop_from_handle(void *handle, void **out) { (void)handle, *out = NULL; return ft_no_cudnn(); }
ft_status ft_sdpa_devprop_json(void *devprop, char *buf, int64_t cap) {
    (void)devprop, (void)buf, (void)cap;
    return ft_no_cudnn();
}
void ft_sdpa_devprop_free(void *devprop) { (void)devprop; }
ft_status ft_sdpa_graph_build(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop,
                              ft_sdpa_graph **out) {
    (void)s, (void)kind, (void)deterministic, (void)devprop, *out = NULL;
    return ft_no_cudnn();
}
ft_status ft_sdpa_graph_check(const ft_sdpa_shape *s, int kind, int deterministic, void *devprop, int64_t *viable,
                              int64_t *workspace) {
    (void)s, (void)kind, (void)deterministic, (void)devprop, *viable = 0;
    if (workspace) *workspace = -1;
    return ft_no_cudnn();
}
int64_t ft_sdpa_graph_workspace(const ft_sdpa_graph *g) { (void)g; return 0; }
int ft_sdpa_graph_lse_bht(const ft_sdpa_graph *g) { (void)g; return 0; }
int64_t ft_sdpa_workspace_cap(int64_t device_bytes) { return ft_attn_workspace_cap(device_bytes); }
int64_t ft_sdpa_graph_dq_accum_bytes(const ft_sdpa_graph *g) { (void)g; return 0; }
const char *ft_sdpa_graph_desc(const ft_sdpa_graph *g) { (void)g; return ""; }
ft_status ft_sdpa_graph_run(ft_sdpa_graph *g, void *handle, const ft_sdpa_ptrs *p) {
    (void)g, (void)handle, (void)p;
    return ft_no_cudnn();
}
void ft_sdpa_graph_free(ft_sdpa_graph *g) { (void)g; }
#endif
