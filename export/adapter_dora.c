/* adapter_dora.c: DoRA adapters (PEFT's LoraConfig(use_dora=True); Liu et al. 2024) where they enter
 * and leave ftune outside training: their magnitudes read from a PEFT file (export/adapter.c calls
 * in here), a module applied to a merge's rows, and the refusal of the llama.cpp adapter.
 *
 * PEFT's DoRA module (peft/tuners/lora/dora.py, variants.py DoraLinearVariant) computes
 * y = (mag / wn) * (x W^T + s x A^T B^T) + bias with wn[o] = ||W[o,:] + s (B A)[o,:]||_2 (row-wise,
 * treated as a constant), and merges as W' = (mag / wn)[:, None] * (W + s B A), the bias unchanged
 * (merge_safe: the norm from the weight the delta is added to, dequantized for a quantized base).
 * mag is saved as `<module>.lora_magnitude_vector` [out] (LoraModel._get_adapter_state_dict drops
 * the ".weight" of the DoraLinearLayer that has held it since PEFT 0.12, so the key is what the
 * earlier ParameterDict wrote; PEFT's loader appends ".weight" again, and a key that already has it
 * loads too, so both are read here).
 *
 * llama.cpp's adapters (src/llama-adapter.cpp, build_lora_mm: res = W x + scale B (A x)) have no
 * per-row factor, and mag / wn depends on W: a DoRA adapter has no llama.cpp form. It is merged
 * instead (`ftune merge`). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/adapter.h"
#include "kernels/dtype.h"
#include "kernels/mem.h"
#include "trainer/safetensors_read.h"

#define FT_DORA_MAG ".lora_magnitude_vector"

static int ft_ends(const char *s, size_t ls, const char *suf) {
    size_t lf = strlen(suf);
    return ls > lf && strcmp(s + ls - lf, suf) == 0;
}

int ft_adapter_dora_match(const char *name, size_t *suffix_len) {
    const size_t ln = strlen(name);
    if (ft_ends(name, ln, FT_DORA_MAG)) return *suffix_len = strlen(FT_DORA_MAG), 1;
    if (ft_ends(name, ln, FT_DORA_MAG ".weight")) return *suffix_len = strlen(FT_DORA_MAG ".weight"), 1;
    return 0;
}

ft_status ft_adapter_dora_read(ft_adapter_mod *m, const ft_st_tensor *t, const char *nm, const char *stp) {
    ft_dtype dt;
    FT_TRY(ft_st_tensor_dtype(t, &dt));
    if (t->ndim != 1 || t->shape[0] < 1 || !(dt == FT_F32 || dt == FT_F16 || dt == FT_BF16))
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s must be a 1-D F32/F16/BF16 vector (DoRA's magnitude per output row)",
                      stp, nm);
    if (m->mag) return FT_ERR(FT_E_FORMAT, "%s: tensor %s appears twice (with and without .weight)", stp, nm);
    if (m->B && m->out != t->shape[0])
        return FT_ERR(FT_E_FORMAT, "%s: tensor %s has %lld values but the module's lora_B has %lld rows", stp, nm,
                      (long long)t->shape[0], (long long)m->out);
    FT_TRY(ft_malloc((void **)&m->mag, (size_t)t->numel * 4, "DoRA magnitude"));
    ft_to_f32(m->mag, t->data, dt, t->numel);
    for (int64_t e = 0; e < t->numel; e++)
        if (!isfinite(m->mag[e]))
            return FT_ERR(FT_E_FORMAT, "%s: tensor %s holds %s at element %lld (a diverged adapter)", stp, nm,
                          isnan(m->mag[e]) ? "NaN" : "Inf", (long long)e); /* m->mag freed with the adapter */
    m->out = t->shape[0];
    return FT_OK;
}

ft_status ft_adapter_dora_finish(const ft_adapter *a, const char *cfgp, const char *stp) {
    if (!a->dora) return FT_OK; /* a magnitude without use_dora was refused where it was read */
    for (int64_t k = 0; k < a->n; k++)
        if (!a->m[k].mag)
            return FT_ERR(FT_E_FORMAT, "%s: %s sets use_dora: true but layer %lld %s has no lora_magnitude_vector", stp,
                          cfgp, (long long)a->m[k].layer, ft_linear_info_get(a->m[k].lin)->peft_name);
    return FT_OK;
}

ft_status ft_adapter_dora_gguf_refuse(const ft_adapter *a) {
    if (!a->dora) return FT_OK;
    return FT_ERR(FT_E_UNSUPPORTED,
                  "%s: a DoRA adapter (use_dora) cannot go into a llama.cpp adapter or an Ollama Modelfile's ADAPTER "
                  "(llama.cpp adds scale B A x and has no per-row magnitude): merge it into the model with "
                  "`ftune merge --base BASE --adapter %s --out model.gguf`, or export it with --format peft",
                  a->dir, a->dir);
}

ft_status ft_adapter_apply_rows(const ft_adapter_mod *m, int64_t row0, int64_t nrows, int64_t perm_d, float **scratch,
                                int64_t *cap, float *dst) {
    if (perm_d) { /* the HF lora_B rows of these GGUF rows, gathered */
        if (nrows * m->r > *cap) {
            free(*scratch);
            *scratch = NULL, *cap = 0;
            FT_TRY(ft_malloc((void **)scratch, (size_t)(nrows * m->r) * 4, "lora_B rows"));
            *cap = nrows * m->r;
        }
        for (int64_t r = 0; r < nrows; r++)
            memcpy(*scratch + r * m->r, m->B + ft_gguf_permuted_row(row0 + r, perm_d) * m->r, (size_t)m->r * 4);
        ft_adapter_mod g = *m;
        g.B = *scratch;
        ft_adapter_add_delta(&g, 0, nrows, dst);
    } else {
        ft_adapter_add_delta(m, row0, nrows, dst);
    }
    if (!m->mag) return FT_OK;
    const int64_t in = m->in;
#pragma omp parallel for schedule(static) if (nrows * in >= 65536)
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t o = perm_d ? ft_gguf_permuted_row(row0 + r, perm_d) : row0 + r;
        float *row = dst + r * in;
        double ss = 0;
        for (int64_t c = 0; c < in; c++) ss += (double)row[c] * row[c];
        /* a zero row stays zero (PEFT's 0/0 would be NaN) */
        const float f = ss > 0 ? (float)((double)m->mag[o] / sqrt(ss)) : 0.0f;
        for (int64_t c = 0; c < in; c++) row[c] *= f;
    }
    return FT_OK;
}
