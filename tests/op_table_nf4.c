/* op_table_nf4.c: the runner of the op test table (tests/op_table.h) for NF4 quantization and
 * dequantization. Its reference is the host quantizer (kernels/nf4.h), itself checked against
 * bitsandbytes by test_nf4; codes, absmax and offset must match exactly. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/nf4.h"
#include "kernels/ops.h"
#include "tests/op_table.h"

/* s = {rows, cols}; wt = source dtype. Outputs the packed codes, qabsmax, absmax2 and offset as
 * floats (exact) and the op's dequantized weight; the reference is the host quantizer. */
void ot_run_nf4(ot_ctx *c, const ot_case *k, ot_out *o) {
    const int64_t rows = k->s[0], cols = k->s[1], n = rows * cols;
    const int64_t nc = (n + 1) / 2, nb = ft_nf4_nblocks(n), nb2 = ft_nf4_nblocks2(n);
    c->bytes = (double)n * ((double)ft_dtype_nbytes(k->wt, 1) + 0.5);
    float *x = ot_gen(c, 131, n, 1.0f);
    for (int64_t i = 0; i < n; i++) x[i] *= (float)pow(10.0, (double)((i / 64) % 5) - 3.0);
    if (k->wt == FT_BF16)
        for (int64_t i = 0; i < n; i++) x[i] = ft_bf16_to_f32(ft_f32_to_bf16(x[i]));
    ft_nf4 h = {malloc((size_t)nc), malloc((size_t)nb), malloc((size_t)(4 * nb2)), 0.0f};
    float *deq = ot_hmalloc(n);
    if (c->be) {
        ft_weight *w = &c->w[c->nw++];
        FT_CHECK_OK(ft_weight_alloc(c->be, w, FT_NF4, rows, cols, "nf4 test"));
        void *src = ot_dev_alloc(c, ft_dtype_nbytes(k->wt, n));
        void *tmp = malloc((size_t)ft_dtype_nbytes(k->wt, n));
        ft_from_f32(tmp, k->wt, x, n);
        FT_CHECK_OK(ft_backend_upload(c->be, src, tmp, ft_dtype_nbytes(k->wt, n)));
        free(tmp);
        OT_RUN(c, 1, ft_op_nf4_quantize(c->be, w, src, k->wt));
        FT_CHECK_OK(ft_backend_sync(c->be));
        FT_CHECK_OK(ft_backend_download(c->be, h.codes, w->nf4.codes, nc));
        FT_CHECK_OK(ft_backend_download(c->be, h.qabsmax, w->nf4.qabsmax, nb));
        FT_CHECK_OK(ft_backend_download(c->be, h.absmax2, w->nf4.absmax2, 4 * nb2));
        h.offset = w->nf4.offset;
        void *out = ot_poison(c, ot_act_size(c) * n);
        OT_RUN(c, 0, ft_op_nf4_dequantize(c->be, out, w));
        free(deq);
        deq = ot_down_act(c, out, n);
    } else {
        FT_CHECK_OK(ft_nf4_quantize_host(x, n, &h, 1));
        ft_nf4_dequantize_host(&h, n, deq, 1);
    }
    float *q = ot_hmalloc(nc + nb + nb2 + 1), *exact = ot_hmalloc(n);
    for (int64_t i = 0; i < nc; i++) q[i] = h.codes[i];
    for (int64_t i = 0; i < nb; i++) q[nc + i] = h.qabsmax[i];
    for (int64_t i = 0; i < nb2; i++) q[nc + nb + i] = h.absmax2[i];
    q[nc + nb + nb2] = h.offset;
    ft_nf4_dequantize_host(&h, n, exact, 1); /* f32 from the backend's bytes */
    ot_out_add(o, "codes,qabsmax,absmax2,offset", q, nc + nb + nb2 + 1);
    ot_out_add(o, "dequantized (host from its bytes)", exact, n);
    ot_out_add_tol(o, "dequantized (op, act)", deq, n, 4e-3);
    free(h.codes), free(h.qabsmax), free(h.absmax2), free(x);
}
