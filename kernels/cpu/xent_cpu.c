/* xent_cpu.c: softmax cross-entropy over the vocabulary with ignored labels (label < 0), loss and
 * d(loss)/d(logits) in one pass per row.
 *
 * Per row in double: m = max, lse = m + log(sum exp(l - m)), loss = lse - l[label]. The row losses
 * go to a scratch array and are summed in row order afterwards, so the total is independent of the
 * thread count. Gradient (grad_scale != 0): grad_scale * (softmax - onehot), zero rows when ignored. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/mem.h"

ft_status ft_cpu_xent(ft_backend *be, float *loss_sum, float *count, void *logitsv, const int32_t *labels,
                      int64_t n, int64_t V, float grad_scale) {
    float *logits = logitsv; /* [n, V] */
    for (int64_t r = 0; r < n; r++)
        if (labels[r] >= V)
            return FT_ERR(FT_E_INTERNAL, "xent: label %d at %lld outside the vocabulary of %lld", labels[r],
                          (long long)r, (long long)V);
    double *loss; /* [n] */
    FT_TRY(ft_malloc((void **)&loss, (size_t)(n > 0 ? n : 1) * sizeof(double), "xent row losses"));
#pragma omp parallel for num_threads(ft_cpu_threads_for(be, n * V)) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        float *l = logits + r * V;
        const int32_t y = labels[r];
        if (y < 0) {
            loss[r] = 0.0;
            if (grad_scale != 0.0f)
                for (int64_t j = 0; j < V; j++) l[j] = 0.0f;
            continue;
        }
        double m = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < V; j++)
            if (l[j] > m) m = l[j];
        for (int64_t j = 0; j < V; j++) s += exp((double)l[j] - m);
        const double lse = m + log(s), ly = l[y];
        loss[r] = lse - ly;
        if (grad_scale != 0.0f) {
            for (int64_t j = 0; j < V; j++) l[j] = (float)((double)grad_scale * exp((double)l[j] - lse));
            l[y] = (float)((double)grad_scale * (exp(ly - lse) - 1.0));
        }
    }
    double total = 0.0;
    int64_t cnt = 0;
    for (int64_t r = 0; r < n; r++) {
        if (labels[r] < 0) continue;
        total += loss[r];
        cnt++;
    }
    *loss_sum = (float)((double)*loss_sum + total);
    if (count) *count = (float)((double)*count + (double)cnt);
    ft_free(loss);
    return FT_OK;
}
