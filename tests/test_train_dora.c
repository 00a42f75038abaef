/* test_train_dora.c: DoRA (PEFT's LoraConfig(use_dora=True); trainer/lora.h ft_lora_cfg.dora, the
 * model's ft_proj_dora) on the CPU backend against PEFT (fixtures by tests/ref/make_dora_golden.py in
 * tests/fixtures/train_dora/<case>/, over the tiny models of tests/fixtures/forward/<case>/ and the
 * sequences of tests/fixtures/train/<case>/).
 *
 * A DoRA module computes y = (m / wn) (x W^T + s x A^T B^T) + b, wn = ||W + s B A|| row-wise from the
 * current A, B, detached; m (lora_magnitude_vector [out]) is trained. The init file
 * lora_init_dora.safetensors holds train/<case>/lora_init.safetensors' A/B and magnitudes set 10% off
 * the norms (m = wn (1 + 0.1 u), u in [-1, 1]), so m / wn != 1 and every term of the gradient shows.
 *
 * Cases: llama_gqa4 (untied, no biases), qwen2 (q/k/v biases, which DoRA must not scale) and qwen3
 * (q/k-norm: the backward takes every module's magnitude gradient but o's and down's from the
 * module's kept output, model.h ft_dora_output_kept).
 * Per case, through the library:
 *   (a) first-step gradients of every A, B and magnitude (micro-batch 2 of unequal rows, dumped)
 *       against PEFT's: every tensor rel-L2 <= 1e-4 (PEFT's own float32 vs float64 headroom is
 *       2e-6); llama_gqa4 also over the NF4 base (grads_nf4.safetensors);
 *   (b) 20 AdamW steps (cosine/warmup, weight decay on the magnitudes too, clipping over everything,
 *       grad-accum 2 x micro-batch 1): loss and grad norm within 1e-4 at every step;
 *   (c) the adapter after (b) against the one PEFT saved after the same 20 steps: every tensor,
 *       the magnitudes included, rel-L2 <= 1e-4; and each magnitude's movement (trained - initial:
 *       ~0.7% of it in 20 steps, so 1e-4 on the values alone barely sees the update) rel-L2 <= 1e-3
 *       against PEFT's (PEFT's own float32 vs float64: 3e-5; leaving out the weight decay on the
 *       magnitudes moves it by 1.3e-2, moves the values by only 1.0e-4);
 *   (d) recomputation on and off give bit-identical gradient files;
 *   (e) m / wn = 1 makes DoRA the model it wraps: a fresh DoRA adapter (B = 0, magnitudes set to the
 *       norms by the first pass) has the one-step loss of a fresh plain LoRA adapter (= the base
 *       model's), and a DoRA adapter started from the plain lora_init.safetensors (no magnitudes:
 *       they start at ||W + s B A||) the one-step loss of plain LoRA from that file; both within
 *       1e-6 relative, not bit for bit: the DoRA path multiplies by m / wn computed in f32 and may
 *       sum W + s B A and x W^T + s x A^T B^T in another order than plain LoRA's (PEFT itself
 *       gives 0 here; make_dora_golden.py meta.json checks.invariants);
 *   (f) the DoRA init file into an adapter without DoRA is refused, naming DoRA;
 *   (g) (a) and (b) with the MLP in slices of 20 rows;
 *   (h) DoRA with LoRA dropout 0.1 (seed 7): first-step gradients against PEFT's dropout path (its
 *       second frozen product over the dropped input) with ftune's masks in its dropout modules
 *       (tests/ref/make_dropout_golden.py, grads_drop.safetensors): rel-L2 <= 1e-4 with recompute,
 *       without, and with the MLP in slices of 20. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/safetensors_read.h"
#include "trainer/train.h"

#define FT_NSTEPS 20

typedef struct ft_dcase {
    const char *name;
    int nf4;     /* grads_nf4.safetensors exists */
    int biases;  /* q/k/v biases */
} ft_dcase;

static const ft_dcase ft_dcases[] = {{"llama_gqa4", 1, 0}, {"qwen2", 0, 1}, {"qwen3", 0, 0}};

typedef struct ft_run {
    int64_t steps, B, K;
    double lr, wd;
    const char *init;        /* NULL: a fresh adapter (A drawn from the seed, B = 0) */
    const char *dump, *save;
    int dora;
} ft_run;

/* Trains one adapter; returns 1 when it ran. */
static int ft_train_run(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const ft_run *r, ft_test_curve *curve) {
    ft_lora_cfg lc = {.r = 4, .alpha = 8.0, .targets = FT_MOD_ALL, .seed = 42, .tied = ft_model_get_dims(m)->tied,
                      .dora = r->dora};
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
    ft_lora *lora = NULL;
    ft_status st = ft_lora_create(&lora, be, &lc, &shapes, ft_model_get_dims(m)->L);
    if (st == FT_OK && r->init) st = ft_lora_load(lora, be, r->init);
    if (st == FT_OK) st = ft_test_train_golden(m, lora, seqs, r->steps, r->B, r->K, r->lr, r->wd, r->dump, curve);
    if (st == FT_OK && r->save) st = ft_lora_save(lora, be, r->save, 'p');
    FT_CHECK_OK(st);
    ft_model_set_lora(m, NULL);
    ft_lora_free(lora, be);
    return st == FT_OK;
}

/* Every tensor of `ref` against the same name in `ours`: rel-L2 <= tol, each magnitude's error shown. */
static void ft_compare_files(const char *ours, const char *ref, const char *what, double tol) {
    ft_st_cmp c = ft_test_st_compare(ours, ref, what, tol, ".lora_magnitude_vector");
    FT_CHECK(c.shown > 0, "%s: no magnitude tensor in %s", what, ref);
    printf("%s %s: worst rel_l2 %.3e (%s) over %d tensors (%d magnitudes)\n", c.bad ? "FAIL" : "ok  ", what, c.worst,
           c.name, c.n, c.shown);
}

/* f32 tensor `name` of an open file into a malloc'd double array of n (NULL: missing or another shape). */
static double *ft_tensor_f64(ft_st_model *f, const char *name, int64_t n) {
    const ft_st_tensor *t = f ? ft_st_lookup(f, name) : NULL;
    if (!t || t->st_dtype != FT_ST_F32 || t->numel != n) return NULL;
    double *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, (const char *)t->data + 4 * i, 4); /* the mapped data need not be 4-byte aligned */
        d[i] = v;
    }
    return d;
}

/* (c): every magnitude's movement from `init`, ours against PEFT's: rel-L2 <= tol. */
static void ft_check_mag_moves(const char *ours, const char *peft, const char *init, const char *cname, double tol) {
    ft_st_model *fo = NULL, *fp = NULL, *fi = NULL;
    FT_CHECK_OK(ft_st_open(&fo, ours));
    FT_CHECK_OK(ft_st_open(&fp, peft));
    FT_CHECK_OK(ft_st_open(&fi, init));
    double worst = -1, worst_move = 0;
    int n = 0, bad = 0;
    char wname[256] = "";
    for (int64_t i = 0; fp && i < ft_st_count(fp); i++) {
        const ft_st_tensor *t = ft_st_at(fp, i);
        if (!strstr(t->name, ".lora_magnitude_vector")) continue;
        double *o = ft_tensor_f64(fo, t->name, t->numel), *p = ft_tensor_f64(fp, t->name, t->numel),
               *s = ft_tensor_f64(fi, t->name, t->numel);
        if (FT_CHECK(o && p && s, "%s: magnitude %s missing in ours or the init file", cname, t->name)) {
            double num = 0, den = 0, ini = 0;
            for (int64_t j = 0; j < t->numel; j++) {
                num += (o[j] - p[j]) * (o[j] - p[j]);
                den += (p[j] - s[j]) * (p[j] - s[j]);
                ini += s[j] * s[j];
            }
            double e = den > 0 ? sqrt(num / den) : INFINITY;
            n++;
            if (!(e <= tol)) {
                bad++;
                printf("     %s: %s moved %.3e (relative), ours off PEFT's move by rel_l2 %.3e\n", cname, t->name,
                       sqrt(den / ini), e);
            }
            if (!(e <= worst)) worst = e, worst_move = sqrt(den / ini), snprintf(wname, sizeof wname, "%s", t->name);
        }
        free(o), free(p), free(s);
    }
    FT_CHECK(n == 14 && bad == 0, "%s: %d of %d magnitude moves over rel-L2 %.0e (worst %.3e, %s)", cname, bad, n, tol,
             worst, wname);
    printf("%s %s: magnitude moves (trained - initial) vs PEFT's: worst rel_l2 %.3e over %d (%s, moved %.2e)\n",
           bad || n != 14 ? "FAIL" : "ok  ", cname, worst, n, wname, worst_move);
    ft_st_close(fo), ft_st_close(fp), ft_st_close(fi);
}

/* (h): one step of DoRA with LoRA dropout 0.1 at seed 7 from the init file, gradients dumped. */
static int ft_dropout_run(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *init, const char *dump) {
    ft_lora_cfg lc = {.r = 4, .alpha = 8.0, .dropout = 0.1, .targets = FT_MOD_ALL, .seed = 42,
                      .tied = ft_model_get_dims(m)->tied, .dora = 1};
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
    ft_lora *lora = NULL;
    ft_status st = ft_lora_create(&lora, be, &lc, &shapes, ft_model_get_dims(m)->L);
    if (st == FT_OK) st = ft_lora_load(lora, be, init);
    ft_train_cfg cfg = {.steps = 1, .micro_batch = 2, .grad_accum = 1, .seed = 7, .dump_grads = dump};
    cfg.sched = (ft_schedule){.type = FT_SCHED_COSINE, .lr = 0, .warmup = 3, .total = 1};
    cfg.opt = (ft_adamw_cfg){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 1.0};
    ft_test_curve curve;
    memset(&curve, 0, sizeof curve);
    if (st == FT_OK) st = ft_train_tokens(m, lora, seqs, &cfg, ft_test_capture, &curve);
    FT_CHECK_OK(st);
    ft_model_set_lora(m, NULL);
    ft_lora_free(lora, be);
    return st == FT_OK;
}

static ft_model *ft_load(ft_backend *be, const char *dir, ft_quant q, int recompute) {
    ft_model *m = NULL;
    ft_load_opts lo = {.quant = q, .model = {.recompute = recompute}};
    FT_CHECK_OK(ft_model_load(&m, be, dir, &lo));
    return m;
}

/* (e): the one-step loss of DoRA with m / wn = 1 against plain LoRA's, both from `init` (NULL: fresh). */
static void ft_check_invariant(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *init,
                               const char *cname, const char *what) {
    ft_test_curve cd, cl;
    ft_run rd = {.steps = 1, .B = 2, .K = 1, .lr = 0, .init = init, .dora = 1}, rl = rd;
    rl.dora = 0;
    if (!ft_train_run(be, m, seqs, &rd, &cd) || !ft_train_run(be, m, seqs, &rl, &cl)) return;
    double e = ft_test_rel(cd.loss[0], cl.loss[0]);
    FT_CHECK(cd.n == 1 && cl.n == 1 && e <= 1e-6, "%s: %s: DoRA loss %.9g, plain LoRA %.9g (rel %.2e > 1e-6)", cname,
             what, cd.loss[0], cl.loss[0], e);
    printf("%s %s: %s: DoRA %.9g vs plain LoRA %.9g, rel %.2e%s\n", e <= 1e-6 ? "ok  " : "FAIL", cname, what,
           cd.loss[0], cl.loss[0], e, cd.loss[0] == cl.loss[0] ? " (bit-identical)" : "");
}

/* (b): the 20-step curve against PEFT's, loss and grad norm within 1e-4 at every step. */
static void ft_check_curve(const ft_test_curve *got, const double *want_loss, const double *want_norm,
                           const char *what) {
    double wl = 0, wn = 0;
    int bad = 0;
    for (int64_t s = 0; s < FT_NSTEPS; s++) {
        double el = ft_test_rel(got->loss[s], want_loss[s]), en = ft_test_rel(got->grad_norm[s], want_norm[s]);
        if (!(el <= 1e-4 && en <= 1e-4)) {
            bad++;
            printf("     %s step %lld: loss %.7f (PEFT %.7f, rel %.2e) grad_norm %.7f (PEFT %.7f, rel %.2e)\n",
                   what, (long long)s + 1, got->loss[s], want_loss[s], el, got->grad_norm[s], want_norm[s], en);
        }
        if (!(el <= wl)) wl = el;
        if (!(en <= wn)) wn = en;
    }
    FT_CHECK(got->n == FT_NSTEPS && bad == 0, "%s: %d of %d curve steps outside 1e-4 (worst loss %.2e, norm %.2e)",
             what, bad, FT_NSTEPS, wl, wn);
    printf("%s %s: 20-step curve worst rel: loss %.2e, grad_norm %.2e (loss %.5f -> %.5f)\n",
           bad ? "FAIL" : "ok  ", what, wl, wn, got->loss[0], got->loss[FT_NSTEPS - 1]);
}

static void ft_check_case(ft_backend *be, const char *root, const ft_dcase *tc) {
    char model_dir[1024], fix[1200], init[1300], plain[1300], ref[1300], dump[1300], path[1300], saved[1300],
        tokp[1300], what[160];
    const char *tmp = ft_test_tmpdir();
    snprintf(model_dir, sizeof model_dir, "%s/forward/%s", root, tc->name);
    snprintf(fix, sizeof fix, "%s/train_dora/%s", root, tc->name);
    snprintf(init, sizeof init, "%s/lora_init_dora.safetensors", fix);
    snprintf(plain, sizeof plain, "%s/train/%s/lora_init.safetensors", root, tc->name);
    snprintf(tokp, sizeof tokp, "%s/train/%s/tokens.txt", root, tc->name);
    snprintf(ref, sizeof ref, "%s/grads.safetensors", fix);
    snprintf(dump, sizeof dump, "%s/%s_dora_grads.safetensors", tmp, tc->name);

    ft_token_seqs seqs = {0};
    FT_CHECK_OK(ft_token_file_read(tokp, &seqs));
    ft_model *m = ft_load(be, model_dir, FT_QUANT_NONE, 1);
    if (!m) goto done;
    FT_CHECK((ft_model_get_weights(m)->layers[0].q_bias.rows != 0) == tc->biases, "%s: q_proj bias %s", tc->name,
             tc->biases ? "missing" : "unexpected");

    /* (a) */
    ft_run r1 = {.steps = 1, .B = 2, .K = 1, .lr = 0, .init = init, .dump = dump, .dora = 1};
    if (ft_train_run(be, m, &seqs, &r1, NULL)) {
        snprintf(what, sizeof what, "%s first-step grads", tc->name);
        ft_compare_files(dump, ref, what, 1e-4);
    }

    /* (e) */
    ft_check_invariant(be, m, &seqs, NULL, tc->name, "fresh adapter (B = 0, m = ||W||)");
    ft_check_invariant(be, m, &seqs, plain, tc->name, "from lora_init.safetensors (m = ||W + s B A||)");

    /* (f) */
    {
        ft_lora_cfg lc = {.r = 4, .alpha = 8.0, .targets = FT_MOD_ALL, .seed = 42, .tied = ft_model_get_dims(m)->tied};
        ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
        ft_lora *l = NULL;
        FT_CHECK_OK(ft_lora_create(&l, be, &lc, &shapes, ft_model_get_dims(m)->L));
        if (l) {
            ft_status st = ft_lora_load(l, be, init);
            FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "DoRA"),
                     "%s: a DoRA adapter into a plain LoRA adapter gave %d (%s)", tc->name, (int)st, ft_error_msg());
            if (st != FT_OK) printf("ok   %s: DoRA file without DoRA refused: %s\n", tc->name, ft_error_msg());
            ft_error_clear();
            ft_lora_free(l, be);
        }
    }

    /* (b) + (c) */
    ft_test_curve got;
    double want_loss[64], want_norm[64];
    snprintf(path, sizeof path, "%s/curve.json", fix);
    int64_t nl = ft_test_json_array(path, "loss", want_loss, 64), nn = ft_test_json_array(path, "grad_norm", want_norm, 64);
    FT_CHECK(nl == FT_NSTEPS && nn == FT_NSTEPS, "%s: %s has %lld/%lld steps", tc->name, path, (long long)nl,
             (long long)nn);
    snprintf(saved, sizeof saved, "%s/%s_dora_trained.safetensors", tmp, tc->name);
    ft_run rc = {.steps = FT_NSTEPS, .B = 1, .K = 2, .lr = 1e-3, .wd = 0.01, .init = init, .save = saved, .dora = 1};
    if (ft_train_run(be, m, &seqs, &rc, &got) && nl == FT_NSTEPS && nn == FT_NSTEPS) {
        ft_check_curve(&got, want_loss, want_norm, tc->name);
        snprintf(path, sizeof path, "%s/peft_adapter/adapter_model.safetensors", fix);
        snprintf(what, sizeof what, "%s trained adapter", tc->name);
        ft_compare_files(saved, path, what, 1e-4);
        ft_check_mag_moves(saved, path, init, tc->name, 1e-3);
    }
    ft_model_free(m);

    /* (d) */
    char off[1300];
    snprintf(off, sizeof off, "%s/%s_dora_grads_norecompute.safetensors", tmp, tc->name);
    m = ft_load(be, model_dir, FT_QUANT_NONE, 0);
    if (!m) goto done;
    ft_run rn = r1;
    rn.dump = off;
    if (ft_train_run(be, m, &seqs, &rn, NULL)) {
        int eq = ft_test_files_equal(dump, off);
        FT_CHECK(eq, "%s: gradients with recompute off differ from recompute on", tc->name);
        if (eq) printf("ok   %s: recompute on/off gradients bit-identical\n", tc->name);
    }
    ft_model_free(m);
    m = NULL;

    /* (g) the MLP in slices of 20 rows (training.mlp_chunk): (a) and (b) again. The magnitudes' gradient
     * adds up slice by slice, the first slice's forward computes the norms, gate's and up's kept
     * outputs are the slice's */
    {
        ft_load_opts lo = {.quant = FT_QUANT_NONE, .model = {.recompute = 1, .mlp_chunk = 20}};
        FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
        if (!m) goto done;
        char sliced[1300];
        snprintf(sliced, sizeof sliced, "%s/%s_dora_grads_sliced.safetensors", tmp, tc->name);
        ft_run rs = r1;
        rs.dump = sliced;
        if (ft_train_run(be, m, &seqs, &rs, NULL)) {
            snprintf(what, sizeof what, "%s mlp_chunk 20 first-step grads", tc->name);
            ft_compare_files(sliced, ref, what, 1e-4);
        }
        ft_run rcs = rc;
        rcs.save = NULL;
        snprintf(what, sizeof what, "%s mlp_chunk 20", tc->name);
        if (ft_train_run(be, m, &seqs, &rcs, &got) && nl == FT_NSTEPS && nn == FT_NSTEPS)
            ft_check_curve(&got, want_loss, want_norm, what);
        ft_model_free(m);
        m = NULL;
    }

    /* (h) DoRA with LoRA dropout: recompute on, off, and the MLP in slices of 20 */
    snprintf(ref, sizeof ref, "%s/grads_drop.safetensors", fix);
    for (int v = 0; v < 3; v++) {
        ft_load_opts lo = {.quant = FT_QUANT_NONE, .model = {.recompute = v != 1, .mlp_chunk = v == 2 ? 20 : 0}};
        FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
        if (!m) goto done;
        snprintf(dump, sizeof dump, "%s/%s_dora_drop_%d.safetensors", tmp, tc->name, v);
        snprintf(what, sizeof what, "%s dropout 0.1 first-step grads (%s; PEFT, ftune's masks)", tc->name,
                 v == 0 ? "recompute" : v == 1 ? "no recompute" : "mlp_chunk 20");
        if (ft_dropout_run(be, m, &seqs, init, dump)) ft_compare_files(dump, ref, what, 1e-4);
        ft_model_free(m);
        m = NULL;
    }

    /* (a) over the NF4 base */
    if (tc->nf4) {
        m = ft_load(be, model_dir, FT_QUANT_NF4, 1);
        if (!m) goto done;
        snprintf(ref, sizeof ref, "%s/grads_nf4.safetensors", fix);
        snprintf(dump, sizeof dump, "%s/%s_dora_grads_nf4.safetensors", tmp, tc->name);
        ft_run rq = r1;
        rq.dump = dump;
        if (ft_train_run(be, m, &seqs, &rq, NULL)) {
            snprintf(what, sizeof what, "%s nf4 first-step grads", tc->name);
            ft_compare_files(dump, ref, what, 1e-4);
        }
    }
done:
    ft_model_free(m);
    ft_token_seqs_free(&seqs);
}

int main(void) {
    char root[1024];
    snprintf(root, sizeof root, "%s/tests/fixtures", ft_test_src_dir());
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    if (be)
        for (size_t i = 0; i < sizeof ft_dcases / sizeof *ft_dcases; i++) ft_check_case(be, root, &ft_dcases[i]);
    ft_backend_free(be);
    return ft_test_finish();
}
