/* model_dora.c: DoRA's part of the decoder passes (trainer/lora.h; PEFT's use_dora): a targeted
 * module's output scaled row by row by mag / ||W + s B A||, the norms kept per module in the adapter
 * and computed in the forward passes, the magnitudes' gradient in the backward. model.c's ft_proj
 * and ft_proj_bwd hand a DoRA module to the two functions here; the ops are kernels/ops.h's. */
#include "trainer/model_impl.h"

#include "kernels/ops.h"

/* DoRA (lora.h): module mod's weight norm wn, from the current A and B. Every pass computes it but
 * the recompute (which runs after its forward with the same adapter), a decoding step after the
 * prompt (the prompt's pass did) and a pass its caller vouched for (ft_model_reuse_dora_norms: a
 * step's micro-batches after the first), so an optimizer step, a loaded adapter or a restored
 * checkpoint never leaves a stale one behind. */
static ft_status ft_dora_norm_of(ft_model *m, int64_t l, int mod) {
    const ft_lora *lo = m->lora;
    const ft_lora_tensor *lt = ft_lora_get(lo, l, mod);
    return ft_op_dora_norm(m->be, lo->wn + lt->wn_off, &m->w.layers[l].lin[mod], lo->params + lt->a_off,
                           lo->params + lt->b_off, lo->cfg.r, lo->scale);
}

/* DoRA with LoRA dropout, as PEFT computes it in training (peft/tuners/lora/layer.py Linear.forward,
 * dora.py): the dropped input xd = dropout(x) feeds the LoRA product AND a second frozen product,
 *   y = x W^T + b + (mag / wn - 1) (xd W^T) + (mag / wn) scale (xd A^T) B^T,
 * so dropout reaches the base term of the rescaling too. Every targeted module runs the frozen
 * product twice in the forward (and the recompute): xd W^T beside x W^T. The LoRA product draws the
 * mask itself (ops.h ft_lora_drop); ft_op_dropout writes xd for the frozen one into bs.xd with the
 * same (p, seed), and z (bs.dz) takes first the LoRA product, then xd W^T. */
static ft_status ft_proj_dora_drop(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *y, const void *x,
                                   int accumulate, ft_lora_drop dr) {
    ft_model *m = p->m;
    const ft_lora *lo = m->lora;
    const ft_lora_tensor *lt = ft_lora_get(lo, l, mod);
    const ft_weight *W = &m->w.layers[l].lin[mod];
    const float *mag = lo->params + lt->m_off, *wn = lo->wn + lt->wn_off;
    void *z = m->bs.dz, *xd = m->bs.xd;
    FT_TRY(ft_op_lora_fwd(m->be, z, la->t[mod], p->t_kept ? NULL : x, dr, lo->params + lt->a_off,
                          lo->params + lt->b_off, p->N, lt->in, lt->out, lo->cfg.r, lo->scale, 0));
    FT_TRY(ft_op_dora_scale(m->be, y, z, mag, wn, 0.0f, ft_bias_of(&m->w.layers[l], mod), p->N, lt->out, accumulate));
    FT_TRY(ft_op_dropout(m->be, xd, x, p->N * lt->in, dr.p, dr.seed));
    FT_TRY(ft_op_linear(m->be, z, xd, W, NULL, p->N, 0));
    FT_TRY(ft_op_dora_scale(m->be, y, z, mag, wn, 1.0f, NULL, p->N, lt->out, 1));
    return ft_op_linear(m->be, y, x, W, NULL, p->N, 1);
}

/* A DoRA module's forward: z = scale t B^T + x W^T (no bias), then y (=, or +=) z * mag / wn + bias.
 * Without accumulate z is y itself; with it (o and down, which add onto the residual) z is bs.da,
 * [N,C], which no forward or recompute uses. With LoRA dropout in training: ft_proj_dora_drop. */
ft_status ft_proj_dora(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *y, const void *x,
                              int accumulate) {
    ft_model *m = p->m;
    const ft_lora *lo = m->lora;
    const ft_lora_tensor *lt = ft_lora_get(lo, l, mod);
    const ft_layer_weights *lw = &m->w.layers[l];
    if (!p->t_kept && !p->norms_kept && !(p->kv && p->kv->len > 0)) FT_TRY(ft_dora_norm_of(m, l, mod));
    const ft_lora_drop dr = ft_lora_drop_of(p, l, mod);
    if (dr.p > 0.0f) return ft_proj_dora_drop(p, l, mod, la, y, x, accumulate, dr);
    void *z = y;
    if (accumulate) {
        if (lt->out != m->d.C) return FT_ERR(FT_E_INTERNAL, "DoRA: a module of %lld outputs adds onto the residual",
                                             (long long)lt->out);
        z = m->bs.da;
    }
    FT_TRY(ft_op_lora_fwd(m->be, z, la->t[mod], p->t_kept ? NULL : x, dr, lo->params + lt->a_off,
                          lo->params + lt->b_off, p->N, lt->in, lt->out, lo->cfg.r, lo->scale, 0));
    FT_TRY(ft_op_linear(m->be, z, x, &lw->lin[mod], NULL, p->N, 1));
    return ft_op_dora_scale(m->be, y, z, lo->params + lt->m_off, lo->wn + lt->wn_off, 0.0f, ft_bias_of(lw, mod),
                            p->N, lt->out, accumulate);
}

/* ft_proj_dora_drop's backward. g = mag / wn; the magnitude's gradient is sum_n dy zd / wn with
 * zd = xd W^T + scale t B^T (PEFT's autograd: through mag / wn times the LoRA term and the base
 * term over xd), zd computed again here (the module's output is not g zd: it holds x W^T too);
 *   dx = dy W + mask / (1 - p) * ((g - 1) dy W + (LoRA's input gradient of g dy)),
 * the first from x W^T, the mask's part from the two products over xd. bs.xd takes xd, then the
 * masked (g - 1) dy W; bs.dz takes zd, then (g - 1) dy, then g dy for the LoRA backward, which applies
 * the mask to its own input gradient and to xd for dA (ft_op_lora_bwd). Three frozen products: zd's,
 * (g - 1) dy W and dy W (against DoRA's one or two without dropout). */
static ft_status ft_proj_bwd_dora_drop(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *dx,
                                       const void *dy, const void *x, int accumulate, ft_lora_drop dr) {
    ft_model *m = p->m;
    ft_lora *lo = m->lora;
    const ft_lora_tensor *lt = ft_lora_get(lo, l, mod);
    const ft_weight *W = &m->w.layers[l].lin[mod];
    const ft_lora_drop none = {0.0f, 0};
    const float *mag = lo->params + lt->m_off, *wn = lo->wn + lt->wn_off;
    const float *A = lo->params + lt->a_off, *B = lo->params + lt->b_off;
    void *z = m->bs.dz, *xd = m->bs.xd;
    const int64_t N = p->N, in = lt->in, out = lt->out;
    FT_TRY(ft_op_dropout(m->be, xd, x, N * in, dr.p, dr.seed));
    FT_TRY(ft_op_lora_fwd(m->be, z, la->t[mod], NULL, none, A, B, N, in, out, lo->cfg.r, lo->scale, 0));
    FT_TRY(ft_op_linear(m->be, z, xd, W, NULL, N, 1));
    FT_TRY(ft_op_dora_mag_grad(m->be, lo->grads + lt->m_off, dy, z, wn, N, out));
    FT_TRY(ft_op_dora_scale(m->be, z, dy, mag, wn, 1.0f, NULL, N, out, 0));
    FT_TRY(ft_op_linear_bwd_x(m->be, xd, z, W, N, 0));
    FT_TRY(ft_op_dropout(m->be, xd, xd, N * in, dr.p, dr.seed));
    FT_TRY(ft_op_dora_scale(m->be, z, dy, mag, wn, 0.0f, NULL, N, out, 0));
    FT_TRY(ft_op_lora_bwd(m->be, dx, lo->grads + lt->a_off, lo->grads + lt->b_off, z, x, dr, la->t[mod], A, B, N, in,
                          out, lo->cfg.r, lo->scale, accumulate));
    FT_TRY(ft_op_linear_bwd_x(m->be, dx, dy, W, N, 1));
    return ft_op_add(m->be, dx, xd, N * in);
}

/* A DoRA module's backward. The magnitude's gradient needs the unscaled output z (PEFT's autograd
 * keeps it). y, the module's output where the backward still holds it (ft_dora_output_kept), gives
 * sum_n dy z / wn as sum_n dy y / mag; otherwise z is computed again here from the kept t and x: one
 * more frozen product for that module, 2 in out FLOPs a token on top of LoRA's 6. Then dz = dy * mag /
 * wn goes through the LoRA and frozen backward as dy does without DoRA (wn is a constant: no
 * gradient through it). z and dz share bs.dz. */
ft_status ft_proj_bwd_dora(const ft_pass *p, int64_t l, int mod, ft_layer_acts *la, void *dx, const void *dy,
                                  const void *x, const void *y, int accumulate) {
    ft_model *m = p->m;
    ft_lora *lo = m->lora;
    const ft_lora_tensor *lt = ft_lora_get(lo, l, mod);
    const ft_layer_weights *lw = &m->w.layers[l];
    const ft_lora_drop dr = ft_lora_drop_of(p, l, mod);
    if (dr.p > 0.0f) return ft_proj_bwd_dora_drop(p, l, mod, la, dx, dy, x, accumulate, dr); /* y is not g zd */
    void *z = m->bs.dz;
    const ft_lora_drop none = {0.0f, 0};
    const float *mag = lo->params + lt->m_off, *wn = lo->wn + lt->wn_off;
    if (y) {
        FT_TRY(ft_op_dora_mag_grad(m->be, lo->grads + lt->m_off, dy, y, mag, p->N, lt->out));
    } else {
        FT_TRY(ft_op_lora_fwd(m->be, z, la->t[mod], NULL, none, lo->params + lt->a_off, lo->params + lt->b_off, p->N,
                              lt->in, lt->out, lo->cfg.r, lo->scale, 0));
        FT_TRY(ft_op_linear(m->be, z, x, &lw->lin[mod], NULL, p->N, 1));
        FT_TRY(ft_op_dora_mag_grad(m->be, lo->grads + lt->m_off, dy, z, wn, p->N, lt->out));
    }
    FT_TRY(ft_op_dora_scale(m->be, z, dy, mag, wn, 0.0f, NULL, p->N, lt->out, 0));
    FT_TRY(ft_op_lora_bwd(m->be, dx, lo->grads + lt->a_off, lo->grads + lt->b_off, z, x, none,
                          la->t[mod], lo->params + lt->a_off, lo->params + lt->b_off, p->N, lt->in, lt->out, lo->cfg.r,
                          lo->scale, accumulate));
    return ft_op_linear_bwd_x(m->be, dx, z, &lw->lin[mod], p->N, 1);
}

/* DoRA's magnitudes start as the norms of the weights they scale (PEFT's initialization: with B = 0
 * that is ||W||; after a plain LoRA init file, ||W + scale B A||, so the module's output starts as
 * LoRA's), once, before the first pass of an adapter whose magnitudes were not loaded
 * (lora.h mag_set). */
ft_status ft_dora_init(ft_model *m) {
    ft_lora *lo = m->lora;
    if (!lo || !lo->cfg.dora || lo->mag_set) return FT_OK;
    for (int64_t l = 0; l < m->d.L; l++)
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) {
            const ft_lora_tensor *lt = ft_lora_get(lo, l, mod);
            if (!lt) continue;
            FT_TRY(ft_dora_norm_of(m, l, mod));
            FT_TRY(ft_backend_copy(m->be, lo->params + lt->m_off, lo->wn + lt->wn_off, lt->out * 4));
        }
    lo->mag_set = 1;
    return FT_OK;
}

void ft_model_reuse_dora_norms(ft_model *m) { m->dora_reuse = m->lora && m->lora->cfg.dora && m->lora->mag_set; }

