/* model_acts.c: the model's activation memory: one walk over the buffers a micro-batch of B x T
 * needs, run once to measure (ft_model_act_bytes, which `ftune plan` reports) and once to carve the
 * backend allocation, so the two cannot differ.
 *
 * With recompute the block holds the layer boundaries, one working set that every recomputed layer
 * reuses, and per layer only what the recompute does not redo: the LoRA A-products t, the attention
 * output with keep_attention, and everything but three elementwise outputs for the last keep_layers
 * layers. Without recompute, every layer's whole working set. */
#include <stdint.h>

#include "kernels/mem.h"
#include "trainer/model_impl.h"

/* ---- activation sizing: one walk used both to measure and to carve ------------------------ */

typedef struct ft_carver {
    char *base;     /* NULL while measuring */
    int64_t off;
} ft_carver;

static void *ft_carve(ft_carver *c, int64_t bytes) {
    int64_t at = (c->off + 255) & ~(int64_t)255;
    c->off = at + bytes;
    return c->base ? c->base + at : NULL;
}

int64_t ft_model_mlp_rows(const ft_model_opts *o, int64_t N) {
    if (!o->recompute || o->mlp_chunk <= 0 || o->mlp_chunk >= N) return N; /* (and no overflow below) */
    /* whole dropout groups (ft_dropout_seed_at), and at least 16 rows: a slice of at most
     * FT_LINEAR_FEW_ROWS would take the decoding path's products, which read the weights past the
     * cache its pass keeps filled */
    int64_t c = (o->mlp_chunk + 3) & ~(int64_t)3;
    if (c < 16) c = 16;
    return c < N ? c : N;
}

int64_t ft_model_logits_chunk(const ft_model_dims *d, int64_t N, int64_t chunk) {
    if (chunk <= 0) {
        /* bound the logits buffer near 64 Mi elements (256 MiB f32), at least 16 rows */
        chunk = (64LL << 20) / (d->V > 0 ? d->V : 1);
        if (chunk < 16) chunk = 16;
    }
    return chunk < N ? chunk : N;
}

/* A layer's working set, or the parts of it named: FT_SET_AFS the two RMSNorm outputs and SwiGLU's
 * (recomputable from the rest), FT_SET_OWN everything else the backward reads; att: the attention
 * output and lse too (not with keep_attention: each layer's own, carved apart); R > 0: the LoRA
 * A-products (not with recompute: each layer's own, carved apart). Gate, up and SwiGLU's output hold
 * Nm rows: N, or the MLP's slice (ft_model_mlp_rows) in the set the recomputed layers share. */
enum { FT_SET_AFS = 1, FT_SET_OWN = 2 };
static ft_layer_acts ft_carve_set(ft_carver *c, const ft_model_dims *d, int64_t N, int64_t Nm, int64_t es, int64_t R,
                                  int parts, int att) {
    ft_layer_acts la = {0};
    const int64_t hd = d->H * d->D, kvd = d->Hkv * d->D;
    if (parts & FT_SET_AFS) {
        la.a = ft_carve(c, N * d->C * es);
        la.f = ft_carve(c, N * d->C * es);
        la.s = ft_carve(c, Nm * d->F * es);
    }
    if (!(parts & FT_SET_OWN)) return la;
    la.rstd1 = ft_carve(c, N * 4);
    if (d->qk_norm) {
        la.q_pre = ft_carve(c, N * hd * es);
        la.k_pre = ft_carve(c, N * kvd * es);
        la.rstd_q = ft_carve(c, N * d->H * 4);
        la.rstd_k = ft_carve(c, N * d->Hkv * 4);
    }
    la.q = ft_carve(c, N * hd * es);
    la.k = ft_carve(c, N * kvd * es);
    la.v = ft_carve(c, N * kvd * es);
    if (att) {
        la.att = ft_carve(c, N * hd * es);
        la.lse = ft_carve(c, N * d->H * 4);
    }
    la.x2 = ft_carve(c, N * d->C * es);
    la.rstd2 = ft_carve(c, N * 4);
    la.g = ft_carve(c, Nm * d->F * es);
    la.u = ft_carve(c, Nm * d->F * es);
    for (int mod = 0; R > 0 && mod < FT_MOD_COUNT; mod++) la.t[mod] = ft_carve(c, N * R * es);
    return la;
}

/* Lays out every activation buffer for N = B*T tokens; returns the per-part byte counts. */
static ft_act_bytes ft_layout(ft_model *m, const ft_model_dims *d, ft_carver *c, int64_t B, int64_t T,
                              int64_t R, int recompute, int host, int keep, int64_t kl, int64_t chunk, int64_t es,
                              int dora, int64_t Nm, int64_t K) {
    ft_act_bytes r = {0};
    int64_t N = B * T, hd = d->H * d->D, kvd = d->Hkv * d->D;
    int64_t n_sets = recompute ? 1 : d->L, start;
    kl = recompute ? (kl < 0 ? 0 : kl > d->L ? d->L : kl) : 0;

    start = c->off;
    if (host) {
        for (int i = 0; i < 2; i++) {
            void *p = ft_carve(c, N * d->C * es);
            if (m) m->slot[i] = p;
        }
        r.boundaries_host = (d->L > 1 ? d->L - 1 : 0) * N * d->C * es;
    } else {
        /* K > 1 (ft_model_opts.boundary_every): boundary l is its own where l % K == 0 and at the top;
         * a segment's inner ones share K - 1 slots, the first inner one in slot 0 */
        void *slots[FT_MODEL_MAX_SEGMENT] = {0};
        for (int64_t j = 0; j + 1 < K && j < FT_MODEL_MAX_SEGMENT; j++) slots[j] = ft_carve(c, N * d->C * es);
        for (int64_t l = 0; l <= d->L; l++) {
            void *p = l % K == 0 || l == d->L ? ft_carve(c, N * d->C * es) : slots[l % K - 1];
            if (m) m->bound[l] = p;
        }
    }
    r.boundaries = c->off - start;

    /* Without recompute every layer has a whole set. With it, one set serves every recomputed layer,
     * and each kept layer (the last kl) has its own but for a, f and s, which its backward recomputes
     * into the shared set's (ft_layer_refresh). */
    start = c->off;
    ft_layer_acts shared = {0};
    for (int64_t i = 0; i < n_sets; i++) {
        const int parts = !recompute || kl < d->L ? FT_SET_AFS | FT_SET_OWN : FT_SET_AFS;
        ft_layer_acts la = ft_carve_set(c, d, N, recompute ? Nm : N, es, recompute ? 0 : R, parts, !keep);
        if (i == 0) shared = la;
        if (m) m->acts[i] = la;
    }
    r.layer_working = c->off - start;

    start = c->off;
    for (int64_t i = 0; i < kl; i++) {
        ft_layer_acts la = ft_carve_set(c, d, N, N, es, 0, FT_SET_OWN, !keep);
        la.a = shared.a, la.f = shared.f, la.s = shared.s;
        if (m) m->acts[1 + i] = la;
    }
    r.layers_kept = c->off - start;

    start = c->off;
    for (int64_t l = 0; keep && l < d->L; l++) {
        void *att = ft_carve(c, N * hd * es);
        float *lse = ft_carve(c, N * d->H * 4);
        if (m) m->katt[l] = att, m->klse[l] = lse;
    }
    r.attention_kept = c->off - start;

    start = c->off;
    for (int64_t i = 0; recompute && R > 0 && i < d->L * FT_MOD_COUNT; i++) {
        void *t = ft_carve(c, N * R * es);
        if (m) m->kt[i] = t;
    }
    r.lora_kept = c->off - start;

    start = c->off;
    ft_bwd_scratch bs = {0};
    bs.ds = ft_carve(c, Nm * d->F * es);
    bs.dg = ft_carve(c, Nm * d->F * es);
    bs.du = ft_carve(c, Nm * d->F * es);
    bs.df = ft_carve(c, N * d->C * es);
    bs.da = ft_carve(c, N * d->C * es);
    bs.datt = ft_carve(c, N * hd * es);
    bs.dq = ft_carve(c, N * hd * es);
    bs.dk = ft_carve(c, N * kvd * es);
    bs.dv = ft_carve(c, N * kvd * es);
    if (d->qk_norm) {
        bs.dqp = ft_carve(c, N * hd * es);
        bs.dkp = ft_carve(c, N * kvd * es);
    }
    if (dora) { /* DoRA's module output before its row scale, then its gradient (model.c ft_proj_bwd): an
                 * attention module's over N rows, an MLP module's over the MLP's slice */
        const int64_t attn = N * (hd > d->C ? hd : d->C), mlp = Nm * (d->F > d->C ? d->F : d->C);
        bs.dz = ft_carve(c, (attn > mlp ? attn : mlp) * es);
        if (dora >= 2) bs.xd = ft_carve(c, (attn > mlp ? attn : mlp) * es); /* with dropout: an input, as wide */
    }
    void *dres = ft_carve(c, N * d->C * es);
    /* the head's gradient at the final norm's output: df's room, which no layer uses until the head's
     * backward has consumed it (ft_model_step_async) */
    void *dhn = bs.df;
    r.backward = c->off - start;

    /* the final norm's output: with recompute the shared working set's attention-norm output, dead
     * between the last layer's forward and the first recompute (or kept layer's refresh), which
     * runs after the head; without, every layer's set is its own backward's, so a buffer of its own */
    start = c->off;
    void *hn = recompute ? shared.a : ft_carve(c, N * d->C * es);
    float *rstdn = ft_carve(c, N * 4);
    void *logits = ft_carve(c, ft_model_logits_chunk(d, N, chunk) * d->V * es);
    int32_t *tok = ft_carve(c, N * 4), *lab = ft_carve(c, N * 4), *pos = ft_carve(c, N * 4),
            *ds = ft_carve(c, N * 4);
    r.logits = c->off - start;
    r.total = c->off;
    if (m) {
        m->bs = bs, m->dres = dres, m->dhn = dhn;
        m->hn = hn, m->rstdn = rstdn, m->logits = logits;
        m->tokens = tok, m->labels = lab, m->pos = pos, m->doc_start = ds;
    }
    return r;
}

int64_t ft_model_fixed_bytes(void) { return FT_MODEL_LOSS_SLOTS * 2 * 4; }

ft_act_bytes ft_model_act_bytes_opts(const ft_model_dims *d, int64_t B, int64_t T, int64_t lora_r,
                                     const ft_model_opts *o, ft_dtype act) {
    ft_carver c = {NULL, 0};
    return ft_layout(NULL, d, &c, B, T, lora_r, o->recompute, o->recompute && o->host_boundaries,
                     o->recompute && o->keep_attention, o->keep_layers, o->logits_chunk, ft_dtype_nbytes(act, 1),
                     lora_r > 0 ? o->dora : 0, ft_model_mlp_rows(o, B * T), ft_model_boundary_every(o, d->L));
}

ft_act_bytes ft_model_act_bytes(const ft_model_dims *d, int64_t B, int64_t T, int64_t lora_r, int recompute,
                                int64_t logits_chunk, ft_dtype act) {
    ft_model_opts o = {.recompute = recompute, .logits_chunk = logits_chunk};
    return ft_model_act_bytes_opts(d, B, T, lora_r, &o, act);
}

void ft_model_unreserve(ft_model *m) {
    ft_backend_release(m->be, m->block);
    ft_backend_release_host(m->be, m->hbound);
    m->block = NULL;
    m->hbound = NULL;
}

ft_status ft_model_reserve(ft_model *m, int64_t B, int64_t T) {
    int rc = m->opts.recompute, host = rc && m->opts.host_boundaries, keep = rc && m->opts.keep_attention;
    const int64_t kl = rc ? m->opts.keep_layers : 0; /* in [0, L]: ft_model_create checked */
    int64_t R = m->lora ? m->lora->cfg.r : 0; /* the LoRA t buffers' width: adapters attached later re-lay out */
    const int dora = m->lora && m->lora->cfg.dora ? 1 + (m->lora->cfg.dropout > 0) : 0; /* ft_model_opts.dora */
    /* a block for more tokens serves fewer: its MLP slices too (ft_model_mlp_rows grows with N) */
    if (m->block && B * T <= m->capN && rc == m->cap_recompute && host == m->cap_host && keep == m->cap_keep &&
        R == m->cap_r && kl == m->cap_kl && dora == m->cap_dora)
        return FT_OK;
    ft_model_unreserve(m);
    ft_model_opts o = m->opts;
    o.dora = dora;
    ft_act_bytes sz = ft_model_act_bytes_opts(&m->d, B, T, R, &o, m->act);
    void *blk;
    FT_TRY(ft_backend_alloc(m->be, &blk, sz.total + 256, "activations"));
    if (host && sz.boundaries_host > 0) {
        ft_status st = ft_backend_alloc_host(m->be, (void **)&m->hbound, sz.boundaries_host, "layer boundaries (host)");
        if (st != FT_OK) {
            ft_backend_release(m->be, blk);
            return st;
        }
    }
    ft_carver c = {(char *)(((uintptr_t)blk + 255) & ~(uintptr_t)255), 0};
    ft_layout(m, &m->d, &c, B, T, R, rc, host, keep, kl, m->opts.logits_chunk, m->es, dora,
              ft_model_mlp_rows(&m->opts, B * T), ft_model_boundary_every(&m->opts, m->d.L));
    m->block = blk, m->capN = B * T, m->cap_recompute = rc, m->cap_host = host, m->cap_keep = keep, m->cap_r = R;
    m->cap_kl = kl, m->cap_dora = dora;
    return FT_OK;
}
