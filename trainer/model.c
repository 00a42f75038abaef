/* model.c: the decoder's forward, recomputation and backward through kernels/ops.h.
 *
 * Per layer (x = layer input [N,C]):
 *   a   = RMSNorm(x) * attn_norm                       rstd1[N]
 *   q   = a Wq^T (+bq) (+LoRA)   [N,H*D]   k, v = ... [N,Hkv*D]
 *   (Qwen3) q = RMSNorm_D(q) * q_norm, k likewise     rstd_q[N*H], rstd_k[N*Hkv]
 *   q, k  rotated in place (RoPE)
 *   att = causal GQA attention(q, k, v)  [N,H*D]      lse[N,H]
 *   x2  = x + att Wo^T (+bo) (+LoRA)                   [N,C]
 *   f   = RMSNorm(x2) * ffn_norm                       rstd2[N]
 *   g, u = f Wg^T, f Wu^T (+LoRA)                      [N,F]
 *   s   = silu(g) * u                                   [N,F]
 *   out = x2 + s Wd^T (+LoRA)                           [N,C] (the next layer's input)
 * The backward walks the same list in reverse. Activation buffers are carved from one backend
 * allocation sized by ft_model_act_bytes (the function `ftune plan` reports; trainer/model_acts.c).
 *
 * Recompute (opts.recompute): the forward keeps each layer's input (its boundary) and the backward
 * runs the layer's forward again from it before its backward, except the last opts.keep_layers
 * layers, which keep their own working sets and recompute only three elementwise outputs.
 *
 * Host-kept boundaries (opts.host_boundaries, with recompute): boundary l lives in device slot
 * l % 2 while it is used and in host memory otherwise. Forward: before layer l runs, boundary l's
 * copy to the host starts (side queue) and layer l waits only for boundary l-1's copy, whose slot
 * it overwrites. Backward: layer l-1's boundary is copied in while layer l recomputes (which writes
 * no boundary) and runs its backward. Boundaries L-1 (still in its slot after the forward) and L (the head
 * reads it) never leave the device. The ops and their inputs are the same, so are the results.
 *
 * Incremental decoding (ft_model_decode) runs the same layer forward on the new tokens alone: their
 * keys and values go into the sequence's cache (ft_kv_cache) and their queries attend to all of it
 * (ft_op_attention_kv); a prompt, with the cache empty, runs as one causal row. */
#include "trainer/model_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mem.h"
#include "kernels/ops.h"
#include "kernels/rng.h"

ft_lora_shapes ft_model_lora_shapes(const ft_model_dims *d) {
    ft_lora_shapes s;
    int64_t hd = d->H * d->D, kvd = d->Hkv * d->D;
    s.out[FT_MOD_Q] = hd, s.in[FT_MOD_Q] = d->C;
    s.out[FT_MOD_K] = kvd, s.in[FT_MOD_K] = d->C;
    s.out[FT_MOD_V] = kvd, s.in[FT_MOD_V] = d->C;
    s.out[FT_MOD_O] = d->C, s.in[FT_MOD_O] = hd;
    s.out[FT_MOD_GATE] = d->F, s.in[FT_MOD_GATE] = d->C;
    s.out[FT_MOD_UP] = d->F, s.in[FT_MOD_UP] = d->C;
    s.out[FT_MOD_DOWN] = d->C, s.in[FT_MOD_DOWN] = d->F;
    return s;
}

/* Device memory holding boundary l now (host boundaries: its slot). */
static void *ft_bdev(const ft_model *m, int64_t l) { return m->cap_host ? m->slot[l & 1] : m->bound[l]; }
/* Host copy of boundary l (host boundaries, 0 <= l <= L-2) for N tokens. */
static void *ft_bhost(const ft_model *m, int64_t N, int64_t l) { return m->hbound + l * N * m->d.C * m->es; }

/* ---- creation ------------------------------------------------------------------------------ */

static ft_status ft_walloc(ft_model *m, ft_weight *w, ft_dtype t, int64_t rows, int64_t cols, const char *what) {
    return ft_weight_alloc(m->be, w, t, rows, cols, what);
}

ft_status ft_model_create(ft_model **out, ft_backend *be, const ft_model_dims *d, ft_dtype linear_dtype,
                          ft_dtype other_dtype, const ft_model_opts *opts) {
    return ft_model_create_typed(out, be, d, linear_dtype, NULL, other_dtype, opts);
}

ft_status ft_model_create_typed(ft_model **out, ft_backend *be, const ft_model_dims *d, ft_dtype linear_dtype,
                                const ft_dtype *lin_types, ft_dtype other_dtype, const ft_model_opts *opts) {
    ft_status st;
    ft_model *m = NULL;
    *out = NULL;
    FT_TRY(ft_calloc((void **)&m, sizeof *m, "model"));
    m->be = be, m->d = *d, m->act = ft_backend_act_dtype(be), m->es = ft_dtype_nbytes(m->act, 1);
    if (opts) m->opts = *opts;
    if (m->opts.keep_layers < 0 || m->opts.keep_layers > d->L) {
        st = FT_ERR(FT_E_ARG, "keep_layers %lld: the model has %lld layers", (long long)m->opts.keep_layers,
                    (long long)d->L);
        goto fail;
    }
    FT_CHECK_GOTO(st, ft_calloc((void **)&m->w.layers, (size_t)d->L * sizeof *m->w.layers, "layers"), fail);
    FT_CHECK_GOTO(st, ft_calloc((void **)&m->bound, (size_t)(d->L + 1) * sizeof *m->bound, "boundaries"), fail);
    FT_CHECK_GOTO(st, ft_calloc((void **)&m->acts, (size_t)(d->L + 1) * sizeof *m->acts, "layer acts"), fail);
    FT_CHECK_GOTO(st, ft_calloc((void **)&m->katt, (size_t)d->L * sizeof *m->katt, "kept attention"), fail);
    FT_CHECK_GOTO(st, ft_calloc((void **)&m->klse, (size_t)d->L * sizeof *m->klse, "kept attention lse"), fail);
    FT_CHECK_GOTO(st, ft_calloc((void **)&m->kt, (size_t)(d->L * FT_MOD_COUNT) * sizeof *m->kt, "kept LoRA t"), fail);

    int64_t hd = d->H * d->D, kvd = d->Hkv * d->D;
    ft_lora_shapes s = ft_model_lora_shapes(d);
    FT_CHECK_GOTO(st, ft_walloc(m, &m->w.embed, other_dtype, d->V, d->C, "embed_tokens"), fail);
    FT_CHECK_GOTO(st, ft_walloc(m, &m->w.final_norm, other_dtype, 1, d->C, "norm"), fail);
    if (d->tied) {
        m->w.lm_head = m->w.embed;
    } else {
        FT_CHECK_GOTO(st, ft_walloc(m, &m->w.lm_head, other_dtype, d->V, d->C, "lm_head"), fail);
    }
    for (int64_t l = 0; l < d->L; l++) {
        ft_layer_weights *lw = &m->w.layers[l];
        FT_CHECK_GOTO(st, ft_walloc(m, &lw->attn_norm, other_dtype, 1, d->C, "input_layernorm"), fail);
        FT_CHECK_GOTO(st, ft_walloc(m, &lw->ffn_norm, other_dtype, 1, d->C, "post_attention_layernorm"), fail);
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) {
            const ft_dtype t = lin_types ? lin_types[l * FT_MOD_COUNT + mod] : linear_dtype;
            FT_CHECK_GOTO(st, ft_walloc(m, &lw->lin[mod], t, s.out[mod], s.in[mod], ft_module_name(mod)), fail);
        }
        if (d->qkv_bias) {
            FT_CHECK_GOTO(st, ft_walloc(m, &lw->q_bias, other_dtype, 1, hd, "q_proj.bias"), fail);
            FT_CHECK_GOTO(st, ft_walloc(m, &lw->k_bias, other_dtype, 1, kvd, "k_proj.bias"), fail);
            FT_CHECK_GOTO(st, ft_walloc(m, &lw->v_bias, other_dtype, 1, kvd, "v_proj.bias"), fail);
        }
        if (d->o_bias) FT_CHECK_GOTO(st, ft_walloc(m, &lw->o_bias, other_dtype, 1, d->C, "o_proj.bias"), fail);
        if (d->qk_norm) {
            FT_CHECK_GOTO(st, ft_walloc(m, &lw->q_norm, other_dtype, 1, d->D, "q_norm"), fail);
            FT_CHECK_GOTO(st, ft_walloc(m, &lw->k_norm, other_dtype, 1, d->D, "k_norm"), fail);
        }
    }
    float *inv = NULL;
    FT_CHECK_GOTO(st, ft_malloc((void **)&inv, (size_t)(d->D / 2) * 4, "rope frequencies"), fail);
    ft_rope_cfg rc = d->rope;
    rc.dim = d->D;
    st = ft_rope_inv_freq(&rc, inv);
    if (st == FT_OK) st = ft_backend_alloc(be, (void **)&m->inv_freq, d->D / 2 * 4, "rope frequencies");
    if (st == FT_OK) st = ft_backend_upload(be, m->inv_freq, inv, d->D / 2 * 4);
    if (st == FT_OK) st = ft_backend_alloc(be, (void **)&m->scalars, ft_model_fixed_bytes(), "loss accumulators");
    if (st == FT_OK) st = ft_backend_weight_cache(be, ft_model_weight_cache_bytes(d, linear_dtype));
    ft_free(inv);
    if (st != FT_OK) goto fail;
    *out = m;
    return FT_OK;
fail:
    ft_model_free(m);
    return st;
}

int64_t ft_model_weight_cache_bytes(const ft_model_dims *d, ft_dtype linear_dtype) {
    if (linear_dtype == FT_BF16) return 0;
    ft_lora_shapes s = ft_model_lora_shapes(d);
    int64_t numel[FT_MOD_COUNT];
    for (int mod = 0; mod < FT_MOD_COUNT; mod++) numel[mod] = s.out[mod] * s.in[mod];
    return ft_weight_cache_bytes(numel, FT_MOD_COUNT);
}

void ft_model_free(ft_model *m) {
    if (!m) return;
    if (m->w.layers) {
        for (int64_t l = 0; l < m->d.L; l++) {
            ft_layer_weights *lw = &m->w.layers[l];
            ft_weight *all[] = {&lw->attn_norm, &lw->ffn_norm, &lw->q_bias, &lw->k_bias, &lw->v_bias,
                                &lw->o_bias, &lw->q_norm, &lw->k_norm};
            for (size_t i = 0; i < sizeof all / sizeof *all; i++) ft_weight_release(m->be, all[i]);
            for (int mod = 0; mod < FT_MOD_COUNT; mod++) ft_weight_release(m->be, &lw->lin[mod]);
        }
    }
    if (!m->d.tied) ft_weight_release(m->be, &m->w.lm_head);
    ft_weight_release(m->be, &m->w.embed);
    ft_weight_release(m->be, &m->w.final_norm);
    ft_backend_release(m->be, m->inv_freq);
    ft_backend_release(m->be, m->scalars);
    (void)ft_backend_weight_cache(m->be, 0); /* frees the cache; cannot fail */
    ft_model_unreserve(m);
    ft_tt_release(m);
    ft_free(m->w.layers);
    ft_free(m->bound);
    ft_free(m->katt);
    ft_free(m->klse);
    ft_free(m->kt);
    ft_free(m->acts);
    ft_free(m);
}

ft_model_weights *ft_model_get_weights(ft_model *m) { return &m->w; }
const ft_model_dims *ft_model_get_dims(const ft_model *m) { return &m->d; }
ft_backend *ft_model_backend(ft_model *m) { return m->be; }
void ft_model_set_lora(ft_model *m, ft_lora *lora) {
    if (lora != m->lora) {
        /* LoRA changes the activation layout (t buffers): re-carve on next use */
        ft_model_unreserve(m);
        ft_tt_release(m);
    }
    m->lora = lora;
}

/* ---- projections with LoRA -------------------------------------------------------------------- */

/* Layer l's cached keys (which = 0) or values (1), from token `at` on. */
static char *ft_kv_at(const ft_model *m, const ft_kv_cache *kv, int64_t l, int which, int64_t at) {
    const int64_t row = m->d.Hkv * m->d.D * m->es;
    return kv->mem + ((l * 2 + which) * kv->cap + at) * row;
}

static uint64_t ft_drop_seed(const ft_pass *p, int64_t layer, int mod) {
    return ft_mix64(p->seed ^ ft_mix64((uint64_t)(layer * FT_MOD_COUNT + mod) + 0x5eed));
}

const ft_weight *ft_bias_of(const ft_layer_weights *lw, int mod) {
    const ft_weight *b = NULL;
    if (mod == FT_MOD_Q) b = &lw->q_bias;
    if (mod == FT_MOD_K) b = &lw->k_bias;
    if (mod == FT_MOD_V) b = &lw->v_bias;
    if (mod == FT_MOD_O) b = &lw->o_bias;
    return b && b->rows ? b : NULL;
}

/* The dropout on module mod's LoRA input: drawn only in training passes, never at inference; the
 * ops apply it (ops.h), the recompute needs none (the kept t). */
ft_lora_drop ft_lora_drop_of(const ft_pass *p, int64_t l, int mod) {
    ft_lora_drop dr = {p->train ? (float)p->m->lora->cfg.dropout : 0.0f, 0};
    if (dr.p > 0.0f) dr.seed = ft_drop_seed(p, l, mod);
    if (dr.p > 0.0f && p->row0 > 0) /* a slice of the MLP's rows: its part of the whole pass's mask */
        dr.seed = ft_dropout_seed_at(dr.seed, (uint64_t)(p->row0 * ft_lora_get(p->m->lora, l, mod)->in));
    return dr;
}

/* y (=, or += with accumulate) = x W^T (+ bias) (+ scale B A dropout(x)); t saved for backward.
 * The LoRA product goes first, writing (or adding into) y, and the frozen linear accumulates on
 * top: the rank-r product is bound by memory, and overwriting y spares it the read of y[N,out] that
 * adding after the base product cost, while the big GEMM is bound by compute and reads y in its
 * epilogue for next to nothing. bf16 activations then round y once, after the base product, instead
 * of after each product.
 * First names the weight the next projection reads (ft_backend_weight_prefetch), so a backend
 * with a weight cache dequantizes it while this module's products run (not in a pass of at most
 * FT_LINEAR_FEW_ROWS tokens, a decoding step, whose products read the weights directly): the layer's next module,
 * or after `down` the next layer's q in the forward pass (p->next_layer); in the recompute the next
 * weights are this layer's own, already cached, for its backward.
 * In the recompute (p->t_kept) the LoRA t is the forward's: only its B product runs, with no
 * dropout draw and no read of x; y NULL (the recompute's `down`, whose output the backward never
 * reads) leaves only the prefetch, or without kept t the LoRA t alone. */
static ft_status ft_proj(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *y, const void *x,
                         int accumulate) {
    ft_model *m = p->m;
    const ft_layer_weights *lw = &m->w.layers[l];
    /* a decoding step's products read the weights directly; an MLP slice names them as its pass would
     * (a short last slice must still prefetch the next layer's q) */
    const int ahead = (p->row0 > 0 || p->partial ? p->pass_N : p->N) > FT_LINEAR_FEW_ROWS;
    if (ahead && mod == 0) /* a layer's first weight goes into the ring first (a no-op when prefetched): the
                            * ring then holds every layer at the same offsets, and a recompute keeps all seven */
        FT_TRY(ft_backend_weight_prefetch(m->be, &lw->lin[0]));
    if (ahead && mod + 1 < FT_MOD_COUNT)
        FT_TRY(ft_backend_weight_prefetch(m->be, &lw->lin[mod + 1]));
    else if (ahead && p->next_layer && l + 1 < m->d.L)
        FT_TRY(ft_backend_weight_prefetch(m->be, &m->w.layers[l + 1].lin[0]));
    const ft_lora_tensor *lt = m->lora ? ft_lora_get(m->lora, l, mod) : NULL;
    if (lt && y && m->lora->cfg.dora) return ft_proj_dora(p, l, mod, la, y, x, accumulate);
    if (lt && (y || !p->t_kept)) { /* x NULL: t is the forward's */
        FT_TRY(ft_op_lora_fwd(m->be, y, la->t[mod], p->t_kept ? NULL : x, ft_lora_drop_of(p, l, mod),
                              m->lora->params + lt->a_off, m->lora->params + lt->b_off, p->N, lt->in, lt->out,
                              m->lora->cfg.r, m->lora->scale, y ? accumulate : 0));
        accumulate = 1; /* y holds the LoRA term (and whatever it added to): the base adds on top */
    }
    if (!y) return FT_OK;
    return ft_op_linear(m->be, y, x, &lw->lin[mod], ft_bias_of(lw, mod), p->N, accumulate);
}

/* Layer l is kept (ft_model_opts.keep_layers): one of the last cap_kl, not recomputed. */
static int ft_layer_kept(const ft_model *m, int64_t l) { return m->cap_recompute && l >= m->d.L - m->cap_kl; }
static int ft_layer_recomputed(const ft_model *m, int64_t l) { return m->cap_recompute && !ft_layer_kept(m, l); }

/* The order ft_layer_backward reads a layer's weights in. */
static const int ft_bwd_order[FT_MOD_COUNT] = {FT_MOD_DOWN, FT_MOD_GATE, FT_MOD_UP, FT_MOD_O,
                                                FT_MOD_Q,    FT_MOD_K,    FT_MOD_V};

/* Where a backend's weight cache holds layer l's weights during its backward. The cache is a ring with
 * room for one layer's seven weights (kernels/cuda/wcache.cu) that places each weight at its head in
 * the order they are first named, so every layer filled whole from the ring's start sits at the same
 * offsets in that order: the forward's (q first) for a layer the recompute refilled or the forward
 * left there (the last), the backward's (down first) for one fetched for its backward
 * (ft_layer_fetch), except layer 0, fetched in the forward's order so that the next forward finds
 * the ring as a forward leaves it. */
static int ft_bwd_placed(const ft_model *m, int64_t l) {
    return !ft_layer_recomputed(m, l) && l != 0 && l != m->d.L - 1;
}

/* Before the backward of a layer that is not recomputed: its seven weights into the cache, the
 * backward's order but for layer 0 (ft_bwd_placed). Usually all are there already (ft_bwd_next named
 * them during the backward of the layer after; the last layer's, the forward left); the one layer
 * fetched here whole waits for its first weight only, the rest dequantize behind its products. */
static ft_status ft_layer_fetch(const ft_model *m, int64_t l) {
    const ft_layer_weights *lw = &m->w.layers[l];
    for (int i = 0; i < FT_MOD_COUNT; i++)
        FT_TRY(ft_backend_weight_prefetch(m->be, &lw->lin[l == 0 ? i : ft_bwd_order[i]]));
    return FT_OK;
}

/* The weight to dequantize once layer l's backward has read module mod's (its last use this pass),
 * or NULL: the weight of layer l-1 whose place in the ring that was, so it dequantizes behind l's
 * remaining products instead of holding up l-1's start. A kept layer l-1 (other than 0) takes over
 * l's places module by module when l sits in the backward's order; a recomputed one takes the
 * ring's first place with its q, the first weight its recompute reads. tests/bench/wcache_ring_sim.py
 * replays this order (tests/test_wcache_order.c holds the two equal): no misses, and at most ~1
 * layer's dequantization a step left on the path. */
static const ft_weight *ft_bwd_next(const ft_model *m, int64_t l, int mod) {
    if (l == 0) return NULL;
    const ft_layer_weights *prev = &m->w.layers[l - 1];
    const int first = ft_bwd_placed(m, l) ? FT_MOD_DOWN : FT_MOD_Q; /* what sits at the ring's start */
    const int64_t K = ft_model_boundary_every(&m->opts, m->d.L);
    if (K > 1 && l % K == 0) /* the segment below runs forward next (ft_segment_refill), from its first layer */
        return mod == first ? &m->w.layers[l - K].lin[FT_MOD_Q] : NULL;
    if (ft_layer_recomputed(m, l - 1)) return mod == first ? &prev->lin[FT_MOD_Q] : NULL;
    if (l - 1 == 0 || !ft_bwd_placed(m, l)) return NULL; /* ft_layer_fetch fetches l-1 whole */
    return &prev->lin[mod];
}

/* dx (=, or +=) = dy W (+ LoRA input gradient); LoRA dA, dB accumulate. x is the forward input.
 * As in ft_proj, the LoRA input gradient (a rank-r product, bound by memory, masked by the dropout
 * inside the op) goes into dx first and the frozen linear's backward (bound by compute) accumulates
 * on top, which saves writing it to a scratch and adding that to dx. */
static ft_status ft_proj_bwd(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *dx, const void *dy,
                             const void *x, int accumulate) {
    ft_model *m = p->m;
    const ft_layer_weights *lw = &m->w.layers[l];
    const ft_lora_tensor *lt = m->lora ? ft_lora_get(m->lora, l, mod) : NULL;
    if (lt && m->lora->cfg.dora) {
        /* the module's own output, where the forward's buffers still hold it (model.h ft_dora_output_kept) */
        const void *y = !ft_dora_output_kept(&m->d, (ft_module)mod) ? NULL
                        : mod == FT_MOD_GATE                         ? la->g
                        : mod == FT_MOD_UP                           ? la->u
                        : mod == FT_MOD_V                            ? la->v
                        : mod == FT_MOD_Q                            ? la->q_pre
                                                                     : la->k_pre;
        FT_TRY(ft_proj_bwd_dora(p, l, mod, la, dx, dy, x, y, accumulate));
    } else if (lt) {
        ft_lora *lo = m->lora;
        FT_TRY(ft_op_lora_bwd(m->be, dx, lo->grads + lt->a_off, lo->grads + lt->b_off, dy, x,
                              ft_lora_drop_of(p, l, mod), la->t[mod], lo->params + lt->a_off, lo->params + lt->b_off,
                              p->N, lt->in, lt->out, lo->cfg.r, lo->scale, accumulate));
        accumulate = 1;
    }
    if (!(lt && m->lora->cfg.dora)) FT_TRY(ft_op_linear_bwd_x(m->be, dx, dy, &lw->lin[mod], p->N, accumulate));
    if (p->partial) return FT_OK; /* the MLP's later slices read this weight again */
    const ft_weight *next = ft_bwd_next(m, l, mod);
    return next ? ft_backend_weight_prefetch(m->be, next) : FT_OK;
}

/* ---- one layer ---------------------------------------------------------------------------------- */

/* The MLP runs over the pass's rows in slices of ft_model_mlp_rows (ft_model_opts.mlp_chunk; one
 * slice without). Slice [r0, r0+n)'s pass and working set: the rows' part of f and of the LoRA
 * A-products t, and of gate and up where the layer holds them for every row (a kept layer, or no
 * recompute); the set the recomputed layers share holds gate, up and SwiGLU's output for one slice,
 * from its start. Its dropout masks are the rows' part of the pass's (ft_lora_drop_of). */
static void ft_mlp_slice(const ft_pass *p, int64_t l, const ft_layer_acts *la, int64_t r0, int64_t n, ft_pass *sp,
                         ft_layer_acts *sa) {
    const ft_model *m = p->m;
    const int64_t es = m->es, F = m->d.F, R = m->cap_r;
    *sp = *p, *sa = *la;
    sp->N = n, sp->row0 = r0, sp->partial = r0 + n < p->N, sp->pass_N = p->N;
    if (r0 > 0) sp->norms_kept = 1; /* DoRA: the first slice's forward computed the norms */
    sa->f = (char *)la->f + r0 * m->d.C * es;
    for (int mod = 0; mod < FT_MOD_COUNT; mod++)
        if (la->t[mod]) sa->t[mod] = (char *)la->t[mod] + r0 * R * es;
    if (!m->cap_recompute || ft_layer_kept(m, l)) {
        sa->g = (char *)la->g + r0 * F * es;
        sa->u = (char *)la->u + r0 * F * es;
    }
    if (!m->cap_recompute) sa->s = (char *)la->s + r0 * F * es; /* one slice: r0 is 0 */
}

/* Layer l's working set: its own without recompute, a kept layer's, or the one every recomputed
 * layer shares. */
static ft_layer_acts *ft_acts_of(ft_model *m, int64_t l) {
    if (!m->cap_recompute) return &m->acts[l];
    return ft_layer_kept(m, l) ? &m->acts[1 + l - (m->d.L - m->cap_kl)] : &m->acts[0];
}

/* Points the one-layer working set at layer l's own kept buffers: its attention output and lse
 * (keep_attention), its LoRA A-products (recompute with LoRA). */
static void ft_layer_bind(ft_model *m, int64_t l, ft_layer_acts *la) {
    if (m->cap_keep) la->att = m->katt[l], la->lse = m->klse[l];
    if (m->cap_recompute && m->lora)
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) la->t[mod] = m->kt[l * FT_MOD_COUNT + mod];
}

/* recompute: the backward's recompute of layer l. It stops at what the backward reads: not the
 * layer's output (the next boundary, which the forward kept), so neither the residual copy nor the
 * frozen `down` product (a quarter of a layer's GEMM FLOPs for Llama/Qwen/Mistral shapes). The
 * LoRA A-products t are the forward's (kept per layer, [N,R] each): the recompute runs only their
 * B products. With kept attention it skips the attention too, whose output and lse the forward
 * left in the layer's own buffers. */
static ft_status ft_layer_forward(const ft_pass *p, int64_t l, ft_layer_acts *la, const void *x, void *out,
                                  int recompute) {
    ft_model *m = p->m;
    ft_backend *be = m->be;
    const ft_model_dims *d = &m->d;
    const ft_layer_weights *lw = &m->w.layers[l];
    int64_t N = p->N;
    /* With recomputation the forward pass keeps nothing of the layer but its output, so x2 is built
     * in the output itself and `down` adds onto it there: one residual copy instead of two. The
     * recompute (whose x2 the backward reads), a kept layer and a run without recomputation keep x2. */
    const int x2_in_out = !recompute && m->cap_recompute && !ft_layer_kept(m, l);
    void *x2 = x2_in_out ? out : la->x2;
    ft_layer_bind(m, l, la);
    ft_pass rp = *p;
    rp.t_kept = recompute && m->cap_recompute;
    p = &rp;

    FT_TRY(ft_op_rmsnorm(be, la->a, la->rstd1, x, &lw->attn_norm, N, d->C, d->eps));
    FT_TRY(ft_proj(p, l, FT_MOD_Q, la, d->qk_norm ? la->q_pre : la->q, la->a, 0));
    FT_TRY(ft_proj(p, l, FT_MOD_K, la, d->qk_norm ? la->k_pre : la->k, la->a, 0));
    FT_TRY(ft_proj(p, l, FT_MOD_V, la, la->v, la->a, 0));
    if (d->qk_norm) {
        FT_TRY(ft_op_rmsnorm(be, la->q, la->rstd_q, la->q_pre, &lw->q_norm, N * d->H, d->D, d->eps));
        FT_TRY(ft_op_rmsnorm(be, la->k, la->rstd_k, la->k_pre, &lw->k_norm, N * d->Hkv, d->D, d->eps));
    }
    FT_TRY(ft_op_rope(be, la->q, m->pos, m->inv_freq, N, d->H, d->D, 0));
    FT_TRY(ft_op_rope(be, la->k, m->pos, m->inv_freq, N, d->Hkv, d->D, 0));
    if (p->kv) { /* decoding: these keys and values join the sequence's, after those already cached */
        const int64_t kvb = N * d->Hkv * d->D * m->es;
        FT_TRY(ft_backend_copy(be, ft_kv_at(m, p->kv, l, 0, p->kv->len), la->k, kvb));
        FT_TRY(ft_backend_copy(be, ft_kv_at(m, p->kv, l, 1, p->kv->len), la->v, kvb));
    }
    if (p->kv && p->kv->len > 0) /* the new queries against the whole sequence; a prompt (empty cache) is a row */
        FT_TRY(ft_op_attention_kv(be, la->att, la->q, ft_kv_at(m, p->kv, l, 0, 0), ft_kv_at(m, p->kv, l, 1, 0), N,
                                  p->kv->len + N, d->H, d->Hkv, d->D, 1.0f / sqrtf((float)d->D)));
    else if (!(recompute && m->cap_keep))
        FT_TRY(ft_op_attention(be, la->att, la->lse, la->q, la->k, la->v, m->attn_docs, m->ndocs, p->B, p->T, d->H,
                               d->Hkv, d->D, 1.0f / sqrtf((float)d->D)));
    FT_TRY(ft_backend_copy(be, x2, x, N * d->C * m->es));
    FT_TRY(ft_proj(p, l, FT_MOD_O, la, x2, la->att, 1));
    FT_TRY(ft_op_rmsnorm(be, la->f, la->rstd2, x2, &lw->ffn_norm, N, d->C, d->eps));
    const int64_t Nm = ft_model_mlp_rows(&m->opts, N);
    if (recompute && Nm < N) { /* the backward redoes gate and up slice by slice: only name the weights */
        FT_TRY(ft_proj(p, l, FT_MOD_GATE, la, NULL, la->f, 0));
        FT_TRY(ft_proj(p, l, FT_MOD_UP, la, NULL, la->f, 0));
        return ft_proj(p, l, FT_MOD_DOWN, la, NULL, la->s, 0);
    }
    if (!recompute && !x2_in_out) FT_TRY(ft_backend_copy(be, out, x2, N * d->C * m->es));
    for (int64_t r0 = 0; r0 < N; r0 += Nm) {
        ft_pass sp;
        ft_layer_acts sa;
        ft_mlp_slice(p, l, la, r0, N - r0 < Nm ? N - r0 : Nm, &sp, &sa);
        FT_TRY(ft_proj(&sp, l, FT_MOD_GATE, &sa, sa.g, sa.f, 0));
        FT_TRY(ft_proj(&sp, l, FT_MOD_UP, &sa, sa.u, sa.f, 0));
        FT_TRY(ft_op_swiglu(be, sa.s, sa.g, sa.u, sp.N * d->F));
        FT_TRY(ft_proj(&sp, l, FT_MOD_DOWN, &sa, recompute ? NULL : (char *)out + r0 * d->C * m->es, sa.s, 1));
    }
    return FT_OK;
}

/* Before a kept layer's backward: what it did not keep, the two RMSNorm outputs and SwiGLU's, from
 * x, x2, gate and up (the same ops on the same inputs: the same values; rstd is rewritten as it
 * was). Its weights are in the backend's cache or on their way (ft_layer_fetch, ft_bwd_next). */
static ft_status ft_layer_refresh(const ft_pass *p, int64_t l, ft_layer_acts *la, const void *x) {
    ft_model *m = p->m;
    ft_backend *be = m->be;
    const ft_model_dims *d = &m->d;
    const ft_layer_weights *lw = &m->w.layers[l];
    ft_layer_bind(m, l, la);
    FT_TRY(ft_op_rmsnorm(be, la->a, la->rstd1, x, &lw->attn_norm, p->N, d->C, d->eps));
    FT_TRY(ft_op_rmsnorm(be, la->f, la->rstd2, la->x2, &lw->ffn_norm, p->N, d->C, d->eps));
    if (ft_model_mlp_rows(&m->opts, p->N) < p->N) return FT_OK; /* SwiGLU's output: slice by slice in the backward */
    return ft_op_swiglu(be, la->s, la->g, la->u, p->N * d->F);
}

/* dres[N,C] holds d(loss)/d(out) on entry and d(loss)/d(x) on return (x is the layer input): the
 * residual stream's gradient stays in one buffer, and each RMSNorm's backward adds its branch's
 * input gradient into it (one pass, no separate add). */
static ft_status ft_layer_backward(const ft_pass *p, int64_t l, ft_layer_acts *la, const void *x, void *dres) {
    ft_model *m = p->m;
    ft_backend *be = m->be;
    const ft_model_dims *d = &m->d;
    const ft_layer_weights *lw = &m->w.layers[l];
    const ft_bwd_scratch *s = &m->bs;
    int64_t N = p->N;

    /* MLP branch: out = x2 + down(silu(gate f) * up f), slice by slice (ft_mlp_slice). Sliced, a
     * recomputed layer's gate and up are redone here from the kept t, and every layer's SwiGLU output */
    const int64_t Nm = ft_model_mlp_rows(&m->opts, N), es = m->es;
    for (int64_t r0 = 0; r0 < N; r0 += Nm) {
        ft_pass sp;
        ft_layer_acts sa;
        ft_mlp_slice(p, l, la, r0, N - r0 < Nm ? N - r0 : Nm, &sp, &sa);
        if (Nm < N && ft_layer_recomputed(m, l)) {
            ft_pass rp = sp;
            rp.t_kept = 1;
            FT_TRY(ft_proj(&rp, l, FT_MOD_GATE, &sa, sa.g, sa.f, 0));
            FT_TRY(ft_proj(&rp, l, FT_MOD_UP, &sa, sa.u, sa.f, 0));
        }
        if (Nm < N) FT_TRY(ft_op_swiglu(be, sa.s, sa.g, sa.u, sp.N * d->F));
        void *df = (char *)s->df + r0 * d->C * es;
        FT_TRY(ft_proj_bwd(&sp, l, FT_MOD_DOWN, &sa, s->ds, (char *)dres + r0 * d->C * es, sa.s, 0));
        FT_TRY(ft_op_swiglu_bwd(be, s->dg, s->du, s->ds, sa.g, sa.u, sp.N * d->F));
        FT_TRY(ft_proj_bwd(&sp, l, FT_MOD_GATE, &sa, df, s->dg, sa.f, 0));
        FT_TRY(ft_proj_bwd(&sp, l, FT_MOD_UP, &sa, df, s->du, sa.f, 1));
    }
    FT_TRY(ft_op_rmsnorm_bwd(be, dres, s->df, la->x2, &lw->ffn_norm, la->rstd2, N, d->C, 1)); /* now d/d(x2) */

    /* attention branch: x2 = x + o(attention(rope(q), rope(k), v)) */
    FT_TRY(ft_proj_bwd(p, l, FT_MOD_O, la, s->datt, dres, la->att, 0));
    FT_TRY(ft_op_attention_bwd(be, s->dq, s->dk, s->dv, s->datt, la->q, la->k, la->v, la->att, la->lse, m->attn_docs,
                               m->ndocs, p->B, p->T, d->H, d->Hkv, d->D, 1.0f / sqrtf((float)d->D)));
    FT_TRY(ft_op_rope(be, s->dq, m->pos, m->inv_freq, N, d->H, d->D, 1));
    FT_TRY(ft_op_rope(be, s->dk, m->pos, m->inv_freq, N, d->Hkv, d->D, 1));
    void *dq = s->dq, *dk = s->dk;
    if (d->qk_norm) {
        FT_TRY(ft_op_rmsnorm_bwd(be, s->dqp, s->dq, la->q_pre, &lw->q_norm, la->rstd_q, N * d->H, d->D, 0));
        FT_TRY(ft_op_rmsnorm_bwd(be, s->dkp, s->dk, la->k_pre, &lw->k_norm, la->rstd_k, N * d->Hkv, d->D, 0));
        dq = s->dqp, dk = s->dkp;
    }
    FT_TRY(ft_proj_bwd(p, l, FT_MOD_Q, la, s->da, dq, la->a, 0));
    FT_TRY(ft_proj_bwd(p, l, FT_MOD_K, la, s->da, dk, la->a, 1));
    FT_TRY(ft_proj_bwd(p, l, FT_MOD_V, la, s->da, s->dv, la->a, 1));
    return ft_op_rmsnorm_bwd(be, dres, s->da, x, &lw->attn_norm, la->rstd1, N, d->C, 1); /* now d/dx */
}

/* ---- passes ---------------------------------------------------------------------------------------- */

static ft_status ft_upload_batch(ft_model *m, const ft_batch *b) {
    int64_t N = b->B * b->T;
    for (int64_t i = 0; i < N; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= m->d.V)
            return FT_ERR(FT_E_FORMAT, "token id %d at position %lld is outside the vocabulary (0..%lld)", b->tokens[i],
                          (long long)i, (long long)m->d.V - 1);
        if (b->labels && b->labels[i] >= m->d.V)
            return FT_ERR(FT_E_FORMAT, "label %d at position %lld is outside the vocabulary", b->labels[i], (long long)i);
    }
    ft_backend *be = m->be;
    FT_TRY(ft_backend_upload(be, m->tokens, b->tokens, N * 4));
    FT_TRY(ft_tt_batch(m, b->tokens, N));
    int32_t *tmp = NULL;
    FT_TRY(ft_malloc((void **)&tmp, (size_t)N * 4, "batch positions"));
    ft_status st = FT_OK;
    if (!b->pos || !b->labels) {
        for (int64_t i = 0; i < N; i++) tmp[i] = (int32_t)(i % b->T);
    }
    st = ft_backend_upload(be, m->pos, b->pos ? b->pos : tmp, N * 4);
    if (st == FT_OK && !b->labels) {
        for (int64_t i = 0; i < N; i++) tmp[i] = -100;
    }
    if (st == FT_OK) st = ft_backend_upload(be, m->labels, b->labels ? b->labels : tmp, N * 4);
    m->ndocs = ft_attn_doc_count(b->doc_start, b->B, b->T);
    m->attn_docs = m->ndocs > b->B ? m->doc_start : NULL; /* a second document starts in some row */
    if (st == FT_OK) {
        if (b->doc_start) {
            st = ft_backend_upload(be, m->doc_start, b->doc_start, N * 4);
        } else {
            memset(tmp, 0, (size_t)N * 4);
            st = ft_backend_upload(be, m->doc_start, tmp, N * 4);
        }
    }
    ft_free(tmp);
    return st;
}

/* Forward through every layer, leaving the final hidden state in boundary L (ft_bdev) and,
 * without recomputation, every layer's working set in acts[l]. offload: host boundaries are
 * copied out for a backward pass. */
static ft_status ft_forward_layers(const ft_pass *pass, int offload) {
    ft_pass fwd = *pass;
    fwd.next_layer = 1; /* layers in increasing order: the next layer's q may be prefetched */
    const ft_pass *p = &fwd;
    ft_model *m = p->m;
    ft_backend *be = m->be;
    const int64_t L = m->d.L, bytes = p->N * m->d.C * m->es;
    int64_t out_ticket[2] = {0, 0}; /* copy to the host pending on each slot */
    FT_TRY(ft_dora_init(m));
    FT_TRY(ft_op_embed(be, ft_bdev(m, 0), m->tokens, &m->w.embed, p->N));
    FT_TRY(ft_tt_embed(m, ft_bdev(m, 0)));
    for (int64_t l = 0; l < L; l++) {
        ft_layer_acts *la = ft_acts_of(m, l);
        if (m->cap_host) {
            /* layer l writes the slot of boundary l-1: its copy out must be done */
            FT_TRY(ft_backend_copy_wait(be, out_ticket[(l + 1) & 1]));
            out_ticket[(l + 1) & 1] = 0;
            if (offload && l <= L - 2)
                FT_TRY(ft_backend_copy_async(be, ft_bhost(m, p->N, l), ft_bdev(m, l), bytes, &out_ticket[l & 1]));
        }
        FT_TRY(ft_layer_forward(p, l, la, ft_bdev(m, l), ft_bdev(m, l + 1), 0));
    }
    return FT_OK;
}

/* Two-level recomputation (ft_model_opts.boundary_every = K): before the backward of layer l, the
 * top layer of its segment [sK, sK + K), the segment's inner boundaries sK+1 .. l into their shared
 * slots by running layers sK .. l-1 forward again from the kept input sK: the forward's computation
 * on the forward's inputs (its dropout masks, its LoRA A-products and DoRA norms, which the step has
 * not changed), so the same values. The last segment's the forward itself left in the slots. */
static ft_status ft_segment_refill(const ft_pass *p, int64_t l, int64_t K) {
    ft_model *m = p->m;
    const int64_t L = m->d.L, s = l / K;
    if (K <= 1 || l % K == 0 || l != (s + 1) * K - 1 || s == (L - 1) / K) return FT_OK;
    ft_pass fp = *p;
    fp.norms_kept = 1;
    for (int64_t j = s * K; j < l; j++) {
        /* the last one names layer l's q only when l is recomputed (q first); a kept layer l is fetched
         * in the backward's order (ft_layer_fetch), where its q at the ring's head would be misplaced */
        fp.next_layer = j + 1 < l || ft_layer_recomputed(m, l);
        FT_TRY(ft_layer_forward(&fp, j, ft_acts_of(m, j), ft_bdev(m, j), ft_bdev(m, j + 1), 0));
    }
    return FT_OK;
}

static ft_status ft_prepare(ft_model *m, const ft_batch *b, ft_pass *p, uint64_t seed, int train) {
    if (b->B <= 0 || b->T <= 0) return FT_ERR(FT_E_ARG, "empty batch");
    FT_TRY(ft_model_reserve(m, b->B, b->T));
    FT_TRY(ft_upload_batch(m, b));
    *p = (ft_pass){.m = m, .B = b->B, .T = b->T, .N = b->B * b->T, .seed = seed, .train = train,
                   .norms_kept = m->dora_reuse};
    m->dora_reuse = 0; /* one pass only */
    return FT_OK;
}

ft_status ft_model_step_async(ft_model *m, const ft_batch *b, float grad_scale, uint64_t dropout_seed,
                              int64_t slot) {
    ft_pass p;
    ft_backend *be = m->be;
    const ft_model_dims *d = &m->d;
    int grad = grad_scale != 0.0f;
    if (grad && !m->lora) return FT_ERR(FT_E_INTERNAL, "backward without adapters");
    if (slot < 0 || slot >= FT_MODEL_LOSS_SLOTS) return FT_ERR(FT_E_INTERNAL, "loss slot %lld", (long long)slot);
    FT_TRY(ft_prepare(m, b, &p, dropout_seed, grad));
    FT_TRY(ft_forward_layers(&p, grad));

    /* head: final norm, then lm_head + cross-entropy chunk by chunk */
    int64_t N = p.N, C = d->C, chunk = ft_model_logits_chunk(d, N, m->opts.logits_chunk);
    float *sc = m->scalars + 2 * slot;
    void *top = ft_bdev(m, d->L);
    FT_TRY(ft_op_rmsnorm(be, m->hn, m->rstdn, top, &m->w.final_norm, N, C, d->eps));
    FT_TRY(ft_backend_memset(be, sc, 0, 2 * 4));
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        int64_t n = N - r0 < chunk ? N - r0 : chunk;
        const char *hrow = (const char *)m->hn + r0 * C * m->es;
        char *dhrow = (char *)m->dhn + r0 * C * m->es;
        FT_TRY(ft_op_linear(be, m->logits, hrow, &m->w.lm_head, NULL, n, 0));
        FT_TRY(ft_tt_head(m, hrow, n));
        FT_TRY(ft_op_xent(be, &sc[0], &sc[1], m->logits, m->labels + r0, n, d->V, grad_scale));
        if (!grad) continue;
        FT_TRY(ft_tt_head_take(m, n));
        FT_TRY(ft_op_linear_bwd_x(be, dhrow, m->logits, &m->w.lm_head, n, 0));
        FT_TRY(ft_tt_head_bwd(m, dhrow, hrow, n));
    }
    if (!grad) return FT_OK;

    /* backward through the layers, recomputing each from its boundary when asked (not the kept ones) */
    void *dres = m->dres;
    const int64_t bytes = N * C * m->es;
    int64_t in_ticket = 0; /* host boundaries: boundary l's copy in */
    const int64_t K = ft_model_boundary_every(&m->opts, d->L);
    FT_TRY(ft_op_rmsnorm_bwd(be, dres, m->dhn, top, &m->w.final_norm, m->rstdn, N, C, 0));
    for (int64_t l = d->L - 1; l >= 0; l--) {
        ft_layer_acts *la = ft_acts_of(m, l);
        if (m->cap_host) {
            FT_TRY(ft_backend_copy_wait(be, in_ticket));
            in_ticket = 0;
            /* boundary l-1 goes to the slot of boundary l+1, whose last reader is already enqueued */
            if (l >= 1) FT_TRY(ft_backend_copy_async(be, ft_bdev(m, l - 1), ft_bhost(m, p.N, l - 1), bytes, &in_ticket));
        }
        FT_TRY(ft_segment_refill(&p, l, K));
        if (ft_layer_recomputed(m, l)) {
            FT_TRY(ft_layer_forward(&p, l, la, ft_bdev(m, l), NULL, 1));
        } else {
            FT_TRY(ft_layer_fetch(m, l));
            if (ft_layer_kept(m, l)) FT_TRY(ft_layer_refresh(&p, l, la, ft_bdev(m, l)));
        }
        FT_TRY(ft_layer_backward(&p, l, la, ft_bdev(m, l), dres));
    }
    return ft_tt_embed_bwd(m, dres); /* dres: the gradient at the embedding output now */
}

ft_status ft_model_read_losses(ft_model *m, int64_t n, float *out) {
    if (n < 0 || n > FT_MODEL_LOSS_SLOTS || !m->scalars) return FT_ERR(FT_E_INTERNAL, "read_losses(%lld)", (long long)n);
    return ft_backend_download(m->be, out, m->scalars, n * 2 * 4);
}

ft_status ft_model_step(ft_model *m, const ft_batch *b, float grad_scale, uint64_t dropout_seed, double *loss_sum,
                        int64_t *n_targets) {
    float sc[2];
    FT_TRY(ft_model_step_async(m, b, grad_scale, dropout_seed, 0));
    FT_TRY(ft_model_read_losses(m, 1, sc));
    *loss_sum += sc[0];
    *n_targets += (int64_t)llroundf(sc[1]);
    return FT_OK;
}

/* Shared inference head: logits for rows [r0, r0+n) of hn into host memory. */
static ft_status ft_head_rows(ft_model *m, const void *h, int64_t n, float *host_out) {
    ft_backend *be = m->be;
    FT_TRY(ft_op_linear(be, m->logits, h, &m->w.lm_head, NULL, n, 0));
    FT_TRY(ft_tt_head(m, h, n));
    int64_t cnt = n * m->d.V;
    if (m->act == FT_F32) return ft_backend_download(be, host_out, m->logits, cnt * 4);
    /* non-f32 activations: download then widen in place from the back */
    FT_TRY(ft_backend_download(be, host_out, m->logits, cnt * m->es));
    uint16_t *h16 = (uint16_t *)host_out;
    for (int64_t i = cnt - 1; i >= 0; i--) {
        uint16_t v = h16[i];
        host_out[i] = m->act == FT_BF16 ? ft_bf16_to_f32(v) : ft_f16_to_f32(v);
    }
    return FT_OK;
}

ft_status ft_model_logits(ft_model *m, const ft_batch *b, float *logits) {
    ft_pass p;
    FT_TRY(ft_prepare(m, b, &p, 0, 0));
    FT_TRY(ft_forward_layers(&p, 0));
    int64_t N = p.N, C = m->d.C, chunk = ft_model_logits_chunk(&m->d, N, m->opts.logits_chunk);
    FT_TRY(ft_op_rmsnorm(m->be, m->hn, m->rstdn, ft_bdev(m, m->d.L), &m->w.final_norm, N, C, m->d.eps));
    for (int64_t r0 = 0; r0 < N; r0 += chunk) {
        int64_t n = N - r0 < chunk ? N - r0 : chunk;
        FT_TRY(ft_head_rows(m, (const char *)m->hn + r0 * C * m->es, n, logits + r0 * m->d.V));
    }
    return FT_OK;
}

/* The logits of each row's last position after a forward (the final hidden state in boundary L). */
static ft_status ft_last_head(ft_model *m, const ft_pass *p, float *logits) {
    int64_t C = m->d.C;
    size_t row = (size_t)(C * m->es);
    for (int64_t r = 0; r < p->B; r++) { /* gather the last position of each row into bs.df */
        const char *src = (const char *)ft_bdev(m, m->d.L) + ((r + 1) * p->T - 1) * row;
        FT_TRY(ft_backend_copy(m->be, (char *)m->bs.df + r * row, src, (int64_t)row));
    }
    FT_TRY(ft_op_rmsnorm(m->be, m->hn, m->rstdn, m->bs.df, &m->w.final_norm, p->B, C, m->d.eps));
    for (int64_t r0 = 0; r0 < p->B;) {
        int64_t chunk = ft_model_logits_chunk(&m->d, p->N, m->opts.logits_chunk);
        int64_t n = p->B - r0 < chunk ? p->B - r0 : chunk;
        FT_TRY(ft_head_rows(m, (const char *)m->hn + r0 * row, n, logits + r0 * m->d.V));
        r0 += n;
    }
    return FT_OK;
}

ft_status ft_model_last_logits(ft_model *m, const ft_batch *b, float *logits) {
    ft_pass p;
    FT_TRY(ft_prepare(m, b, &p, 0, 0));
    FT_TRY(ft_forward_layers(&p, 0));
    return ft_last_head(m, &p, logits);
}

/* ---- incremental decoding -------------------------------------------------------------------- */

int64_t ft_model_kv_bytes(const ft_model_dims *d, int64_t max_tokens, ft_dtype act) {
    return 2 * d->L * max_tokens * ft_dtype_nbytes(act, d->Hkv * d->D);
}

ft_status ft_model_kv_new(ft_model *m, int64_t max_tokens, ft_kv_cache **out) {
    *out = NULL;
    if (max_tokens <= 0) return FT_ERR(FT_E_ARG, "KV cache for %lld tokens", (long long)max_tokens);
    ft_kv_cache *kv;
    FT_TRY(ft_calloc((void **)&kv, sizeof *kv, "KV cache"));
    ft_status st = ft_backend_alloc(m->be, (void **)&kv->mem, ft_model_kv_bytes(&m->d, max_tokens, m->act), "KV cache");
    if (st != FT_OK) {
        ft_free(kv);
        return st;
    }
    kv->cap = max_tokens;
    *out = kv;
    return FT_OK;
}

void ft_model_kv_free(ft_model *m, ft_kv_cache *kv) {
    if (!kv) return;
    ft_backend_release(m->be, kv->mem);
    ft_free(kv);
}

int64_t ft_model_kv_len(const ft_kv_cache *kv) { return kv->len; }

ft_status ft_model_decode(ft_model *m, ft_kv_cache *kv, const int32_t *tokens, int64_t n, float *logits) {
    if (n <= 0 || n > kv->cap - kv->len)
        return FT_ERR(FT_E_ARG, "decode: %lld tokens after %lld in a KV cache of %lld", (long long)n, (long long)kv->len,
                      (long long)kv->cap);
    int32_t *pos;
    FT_TRY(ft_malloc((void **)&pos, (size_t)n * sizeof *pos, "positions"));
    for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(kv->len + i);
    ft_batch b = {.B = 1, .T = n, .tokens = tokens, .pos = pos};
    ft_pass p;
    ft_status st = ft_prepare(m, &b, &p, 0, 0);
    ft_free(pos);
    FT_TRY(st);
    p.kv = kv;
    FT_TRY(ft_forward_layers(&p, 0));
    kv->len += n;
    return ft_last_head(m, &p, logits);
}
