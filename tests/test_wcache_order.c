/* test_wcache_order.c: the order in which trainer/model.c names its frozen weights to the backend's
 * cache (ft_backend_weight_prefetch) and reads them in products (linear, linear_bwd_x) is the order
 * tests/bench/wcache_ring_sim.py replays. The simulation's figures for the real shapes (docs/perf.md:
 * no misses, what the main stream waits for), and tests/gpu/emu/ring.sh's check of the CUDA ring's
 * counts against it, hold only while the two orders are the same; no CPU result shows the order
 * otherwise (it changes no value). A 6-layer tiny model trains two steps on the CPU backend, whose
 * vtable is wrapped to record each call of the second step; the record must equal the simulation's
 * `--trace` for keep_layers 0, 3 and 6 and for training without recompute, and with boundary_every 2
 * and 4 (keep_layers 0) and 2 (keep_layers 3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend_impl.h"
#include "kernels/rng.h"
#include "kernels/weight.h"
#include "tests/harness.h"
#include "trainer/bench.h"
#include "trainer/loader.h"
#include "trainer/lora.h"
#include "trainer/model.h"

enum { NL = 6 };

/* The CPU backend's vtable with three entries wrapped; vt first, so the backend's vt pointer is
 * this recorder's address. */
typedef struct rec_vt {
    ft_backend_vtbl vt;
    const ft_backend_vtbl *orig;
    const ft_model_weights *w;
    int on;           /* recording */
    char *text;       /* "p L M\n" and "u L M\n" lines */
    size_t len, cap;
} rec_vt;

static void rec_note(rec_vt *r, char kind, const ft_weight *w) {
    if (!r->on || !r->w) return;
    for (int64_t l = 0; l < NL; l++)
        for (int m = 0; m < FT_MOD_COUNT; m++) {
            if (w != &r->w->layers[l].lin[m]) continue;
            if (r->len + 64 > r->cap) {
                r->cap = r->cap ? 2 * r->cap : 4096;
                char *t = realloc(r->text, r->cap);
                if (!t) abort();
                r->text = t;
            }
            r->len += (size_t)snprintf(r->text + r->len, r->cap - r->len, "%c %lld %d\n", kind, (long long)l, m);
            return;
        }
}

static ft_status rec_prefetch(ft_backend *be, const ft_weight *w) {
    rec_vt *r = (rec_vt *)be->vt;
    rec_note(r, 'p', w);
    return r->orig->weight_prefetch ? r->orig->weight_prefetch(be, w) : FT_OK;
}
static ft_status rec_linear(ft_backend *be, void *y, const void *x, const ft_weight *W, const ft_weight *bias, int64_t N,
                            int acc) {
    rec_vt *r = (rec_vt *)be->vt;
    rec_note(r, 'u', W);
    return r->orig->linear(be, y, x, W, bias, N, acc);
}
static ft_status rec_linear_bwd_x(ft_backend *be, void *dx, const void *dy, const ft_weight *W, int64_t N, int acc) {
    rec_vt *r = (rec_vt *)be->vt;
    rec_note(r, 'u', W);
    return r->orig->linear_bwd_x(be, dx, dy, W, N, acc);
}

/* The simulation's trace of a step for keep (-1: no recompute), or NULL when it cannot run. */
static char *sim_trace(int keep, int every) {
    char cmd[4400], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "python3 '%s/tests/bench/wcache_ring_sim.py' --shape tiny --layers %d --trace --keep %d --every %d",
             ft_test_src_dir(), NL, keep, every);
    if (ft_test_run(cmd, &out) == 0) return out;
    if (out) printf("%s", out);
    free(out);
    return NULL;
}

/* The first line where a and b differ, for the failure message. */
static void first_diff(const char *a, const char *b, char *out, size_t cap) {
    int line = 1;
    while (*a && *a == *b) line += *a == '\n', a++, b++;
    while (line > 1 && a[-1] != '\n') a--, b--;
    const int na = (int)strcspn(a, "\n"), nb = (int)strcspn(b, "\n");
    snprintf(out, cap, "line %d: the model's '%.*s', the simulation's '%.*s'", line, na, a, nb, b);
}

static void check_order(int keep, int every) {
    ft_model_config cfg;
    FT_CHECK_OK(ft_bench_config(ft_bench_shape_find("tiny"), NL, 0, &cfg));
    ft_model_dims d;
    ft_model_dims_from_config(&cfg, &d);
    ft_backend *be = NULL;
    ft_model *m = NULL;
    ft_lora *lora = NULL;
    rec_vt r = {0};
    FT_CHECK_OK(ft_backend_cpu_create(&be, 1));
    ft_model_opts mo = {.recompute = keep >= 0, .keep_layers = keep > 0 ? keep : 0, .boundary_every = every};
    FT_CHECK_OK(ft_model_create(&m, be, &d, FT_NF4, FT_F32, &mo));
    if (!m) goto done;
    ft_model_weights *w = ft_model_get_weights(m);
    for (int64_t l = 0; l < NL; l++)
        for (int mod = 0; mod < FT_MOD_COUNT; mod++)
            FT_CHECK_OK(ft_weight_init_random(be, &w->layers[l].lin[mod], ft_mix64((uint64_t)(l * 7 + mod)), 0.0f, 0.03f));
    FT_CHECK_OK(ft_weight_init_random(be, &w->embed, 11, 0.0f, 0.03f));
    FT_CHECK_OK(ft_weight_init_random(be, &w->final_norm, 12, 1.0f, 0.0f));
    if (w->lm_head.rows) FT_CHECK_OK(ft_weight_init_random(be, &w->lm_head, 13, 0.0f, 0.03f));
    for (int64_t l = 0; l < NL; l++) {
        FT_CHECK_OK(ft_weight_init_random(be, &w->layers[l].attn_norm, 14, 1.0f, 0.0f));
        FT_CHECK_OK(ft_weight_init_random(be, &w->layers[l].ffn_norm, 15, 1.0f, 0.0f));
    }
    ft_lora_cfg lc = {.r = 4, .alpha = 8, .targets = FT_MOD_ALL, .seed = 1};
    ft_lora_shapes s = ft_model_lora_shapes(&d);
    FT_CHECK_OK(ft_lora_create(&lora, be, &lc, &s, d.L));
    if (!lora) goto done;
    ft_model_set_lora(m, lora);

    r.vt = *be->vt;
    r.orig = be->vt;
    r.w = w;
    r.vt.weight_prefetch = rec_prefetch;
    r.vt.linear = rec_linear;
    r.vt.linear_bwd_x = rec_linear_bwd_x;
    be->vt = &r.vt;
    enum { T = 16 };
    int32_t tok[T], lab[T];
    for (int i = 0; i < T; i++) tok[i] = (i * 5 + 1) % (int)d.V, lab[i] = (i * 3 + 2) % (int)d.V;
    ft_batch b = {.B = 1, .T = T, .tokens = tok, .labels = lab};
    double loss = 0;
    int64_t n = 0;
    FT_CHECK_OK(ft_model_step(m, &b, 1.0f / T, 1, &loss, &n));
    r.on = 1;
    FT_CHECK_OK(ft_model_step(m, &b, 1.0f / T, 2, &loss, &n));
    r.on = 0;
    be->vt = r.orig;

    char *want = sim_trace(keep, every);
    FT_CHECK(want != NULL, "keep %d: running tests/bench/wcache_ring_sim.py (python3) failed", keep);
    if (want && r.text) {
        char msg[160], label[48];
        first_diff(r.text, want, msg, sizeof msg);
        const int same = strcmp(r.text, want) == 0;
        FT_CHECK(same, "keep %d, boundary_every %d: the model's order differs from the simulation's, %s", keep, every,
                 msg);
        if (same) {
            int calls = 0;
            for (const char *c = r.text; *c; c++) calls += *c == '\n';
            if (keep < 0) snprintf(label, sizeof label, "no recompute");
            else snprintf(label, sizeof label, "keep_layers %d%s", keep, every > 1 ? ", boundary_every" : "");
            printf("ok   %s: %d calls of a step (names and reads) as tests/bench/wcache_ring_sim.py replays them\n",
                   label, calls);
        }
    }
    FT_CHECK(r.text != NULL, "keep %d: nothing recorded", keep);
    free(want);
done:
    free(r.text);
    if (m) ft_model_set_lora(m, NULL);
    ft_lora_free(lora, be);
    ft_model_free(m);
    ft_backend_free(be);
}

int main(void) {
    const int keeps[] = {0, 3, NL, -1};
    for (size_t i = 0; i < sizeof keeps / sizeof *keeps; i++) check_order(keeps[i], 1);
    /* training.boundary_every: segments of 2 (a kept layer 3 atop a refilled one) and of 4 of the 6 */
    check_order(0, 2);
    check_order(0, 4);
    check_order(3, 2);
    return ft_test_finish();
}
