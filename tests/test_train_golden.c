/* test_train_golden.c: LoRA training on the CPU backend against PEFT (fixtures by
 * tests/ref/make_train_golden.py, over the tiny models of tests/fixtures/forward/<case>/).
 *
 * Per case, through the library (ft_model_load, ft_lora_create + ft_lora_load, ft_train_tokens):
 *   (a) first-step LoRA gradients (micro-batch 2 of unequal-length rows, dumped with dump_grads)
 *       against PEFT's: every tensor rel-L2 <= 1e-4;
 *   (b) a 20-step AdamW + cosine/warmup + clipping curve with grad-accum 2 x micro-batch 1
 *       (unequal target counts per micro-batch): loss and grad norm within 1e-4, lr within 1e-6
 *       relative at every step;
 *   (c) (a) and (b) with NF4 base weights against PEFT over bitsandbytes' NF4 round trip;
 *   (d) recompute on and off give bit-identical gradient files (f32 and nf4);
 *   (e) grad-accum 2 x micro-batch 1 over {seq 0, seq 1} gives the same first-step gradients and
 *       updated adapter as one padded micro-batch of 2;
 *   (f) LoRA dropout 0.1: first-step gradients against PEFT's with ftune's masks in its dropout
 *       modules (rel-L2 <= 1e-4, tests/ref/make_dropout_golden.py); they differ from dropout 0, and
 *       the same seed reproduces them bit for bit (a different seed does not);
 *   (g) llama_gqa4 through `ftune train`'s flag mode: (b)'s curve from its printed steps, (a)'s
 *       gradients from --dump-grads, --save equal to the library's adapter; its bad input;
 *   (h) the MLP in slices (training.mlp_chunk): (a) to (c) again, and (f)'s gradients unchanged. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/safetensors_read.h"
#include "trainer/train.h"

#define FT_NSTEPS 20

static const char *const ft_cases[] = {"llama_gqa4", "llama_mha_tied", "mistral", "qwen2", "qwen3"};

static double ft_json_sub_number(const char *path, const char *obj, const char *key) {
    char *txt = NULL;
    if (ft_test_read_file(path, &txt, NULL) != FT_OK) return NAN;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, obj);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    double r = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(j);
    return r;
}


/* One training run from the fixture's initial adapter. Returns the adapter (caller frees) or NULL. */
typedef struct ft_run {
    int64_t steps, B, K;
    ft_sched_type sched;
    double lr, wd, dropout;
    double eps;              /* AdamW epsilon (0: 1e-8) */
    uint64_t seed;
    const char *dump;        /* gradient dump path or NULL */
} ft_run;

static ft_lora *ft_train_run(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *init,
                             const ft_run *r, ft_test_curve *curve) {
    ft_lora_cfg lc = {.r = 4, .alpha = 8.0, .dropout = r->dropout, .targets = FT_MOD_ALL, .seed = 42};
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
    ft_lora *lora = NULL;
    ft_status st = ft_lora_create(&lora, be, &lc, &shapes, ft_model_get_dims(m)->L);
    FT_CHECK_OK(st);
    if (st != FT_OK) return NULL;
    st = ft_lora_load(lora, be, init);
    FT_CHECK_OK(st);
    ft_train_cfg tc = {.steps = r->steps, .micro_batch = r->B, .grad_accum = r->K, .seed = r->seed,
                       .dump_grads = r->dump};
    tc.sched = (ft_schedule){.type = r->sched, .lr = r->lr, .warmup = r->sched == FT_SCHED_COSINE ? 3 : 0,
                             .total = r->steps};
    tc.opt = (ft_adamw_cfg){.beta1 = 0.9, .beta2 = 0.999, .eps = r->eps > 0 ? r->eps : 1e-8,
                            .weight_decay = r->wd, .clip = 1.0};
    ft_test_curve local;
    if (!curve) curve = &local;
    memset(curve, 0, sizeof *curve);
    if (st == FT_OK) st = ft_train_tokens(m, lora, seqs, &tc, ft_test_capture, curve);
    FT_CHECK_OK(st);
    ft_model_set_lora(m, NULL);
    if (st != FT_OK) {
        ft_lora_free(lora, be);
        return NULL;
    }
    return lora;
}

/* Compares every tensor of a gradient file with the golden; returns the worst rel-L2. */
static double ft_compare_grads(const char *ours_path, const char *ref_path, const char *what, double tol) {
    ft_st_cmp c = ft_test_st_compare(ours_path, ref_path, what, tol, NULL);
    printf("%s %s: worst gradient rel_l2 %.3e (%s, max_abs %.2e) over %d tensors\n", c.bad ? "FAIL" : "ok  ", what,
           c.worst, c.name, c.max_abs, c.n);
    return c.worst;
}

/* rel-L2 between two gradient files over all tensors together. */
static double ft_grad_files_rel(const char *p1, const char *ref) {
    ft_st_model *a = NULL, *b = NULL;
    double num = 0, den = 0;
    if (ft_st_open(&a, p1) != FT_OK || ft_st_open(&b, ref) != FT_OK) {
        ft_st_close(a);
        return NAN;
    }
    for (int64_t i = 0; i < ft_st_count(b); i++) {
        const ft_st_tensor *rt = ft_st_at(b, i), *ot = ft_st_lookup(a, rt->name);
        if (!ot || ot->numel != rt->numel) {
            num = NAN;
            break;
        }
        for (int64_t k = 0; k < rt->numel; k++) {
            float x, y;
            memcpy(&x, (const char *)ot->data + 4 * k, 4);
            memcpy(&y, (const char *)rt->data + 4 * k, 4);
            num += ((double)x - y) * ((double)x - y), den += (double)y * y;
        }
    }
    ft_st_close(a);
    ft_st_close(b);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* (a)/(c): first-step gradients; (b)/(c): the curve. Raises *worst_grad / *worst_curve. */
static void ft_check_golden(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *fix,
                            const char *cname, const char *sfx, const char *tag, double *worst_grad,
                            double *worst_curve) {
    char init[1200], ref[1200], dump[1200], what[256], path[1200];
    snprintf(init, sizeof init, "%s/lora_init.safetensors", fix);
    snprintf(ref, sizeof ref, "%s/grads%s.safetensors", fix, sfx);
    snprintf(dump, sizeof dump, "%s/%s_grads%s%s.safetensors", ft_test_tmpdir(), cname, sfx, *tag ? "_tag" : "");
    snprintf(what, sizeof what, "%s %s%s", cname, *sfx ? "nf4" : "f32", tag);

    /* (a) one step, micro-batch 2 = sequences 0 and 1 (padded), lr 0: the gradients as dumped */
    ft_run r = {.steps = 1, .B = 2, .K = 1, .sched = FT_SCHED_COSINE, .lr = 0, .dump = dump};
    ft_test_curve c1;
    ft_lora *l = ft_train_run(be, m, seqs, init, &r, &c1);
    ft_lora_free(l, be);
    if (!l) return;
    snprintf(path, sizeof path, "%s/meta.json", fix);
    char key[32];
    snprintf(key, sizeof key, "grads%s", sfx);
    double ref_loss = ft_json_sub_number(path, key, "loss"), ref_norm = ft_json_sub_number(path, key, "grad_norm");
    FT_CHECK(c1.n == 1 && c1.targets[0] == 42, "%s: step targets %lld, want 42", what, (long long)c1.targets[0]);
    FT_CHECK(ft_test_rel(c1.loss[0], ref_loss) <= 1e-5, "%s: first-step loss %.8f vs PEFT %.8f (rel %.2e)", what,
             c1.loss[0], ref_loss, ft_test_rel(c1.loss[0], ref_loss));
    FT_CHECK(ft_test_rel(c1.grad_norm[0], ref_norm) <= 1e-4, "%s: first-step grad norm %.8f vs PEFT %.8f (rel %.2e)",
             what, c1.grad_norm[0], ref_norm, ft_test_rel(c1.grad_norm[0], ref_norm));
    printf("     %s: micro-batch 2 loss %.8f vs PEFT %.8f (rel %.2e), grad norm rel %.2e\n", what, c1.loss[0], ref_loss,
           ft_test_rel(c1.loss[0], ref_loss), ft_test_rel(c1.grad_norm[0], ref_norm));
    double wg = ft_compare_grads(dump, ref, what, 1e-4);
    if (wg > *worst_grad) *worst_grad = wg;

    /* (b) 20 steps, grad-accum 2 x micro-batch 1, cosine with warmup 3, wd 0.01, clip 1 */
    ft_test_curve want, got;
    snprintf(path, sizeof path, "%s/curve%s.json", fix, sfx);
    int64_t nwant = ft_test_read_curve(path, &want);
    FT_CHECK(nwant == FT_NSTEPS, "%s: %s has %lld steps", what, path, (long long)nwant);
    ft_run rc = {.steps = FT_NSTEPS, .B = 1, .K = 2, .sched = FT_SCHED_COSINE, .lr = 1e-3, .wd = 0.01};
    l = ft_train_run(be, m, seqs, init, &rc, &got);
    ft_lora_free(l, be);
    if (!l || !FT_CHECK(got.n == FT_NSTEPS, "%s: %lld steps reported", what, (long long)got.n)) return;
    double wl = 0, wlr = 0, wn = 0;
    int bad = 0;
    for (int64_t s = 0; s < FT_NSTEPS; s++) {
        double el = ft_test_rel(got.loss[s], want.loss[s]), er = ft_test_rel(got.lr[s], want.lr[s]);
        double en = ft_test_rel(got.grad_norm[s], want.grad_norm[s]);
        int ok = el <= 1e-4 && er <= 1e-6 && en <= 1e-4 && got.targets[s] == want.targets[s];
        if (!ok) {
            bad++;
            printf("     %s step %lld: loss %.8f vs %.8f (%.2e), lr %.8e vs %.8e, grad_norm %.8f vs %.8f (%.2e), "
                   "targets %lld vs %lld\n", what, (long long)s + 1, got.loss[s], want.loss[s], el, got.lr[s],
                   want.lr[s], got.grad_norm[s], want.grad_norm[s], en, (long long)got.targets[s],
                   (long long)want.targets[s]);
        }
        if (!(el <= wl)) wl = el;
        if (!(er <= wlr)) wlr = er;
        if (!(en <= wn)) wn = en;
    }
    FT_CHECK(bad == 0, "%s: %d of %d curve steps outside tolerance (loss 1e-4, lr 1e-6, grad norm 1e-4)", what, bad,
             FT_NSTEPS);
    printf("%s %s: 20-step curve worst rel: loss %.2e, lr %.2e, grad_norm %.2e (loss %.5f -> %.5f)\n",
           bad ? "FAIL" : "ok  ", what, wl, wlr, wn, got.loss[0], got.loss[FT_NSTEPS - 1]);
    if (wl > *worst_curve) *worst_curve = wl;
    if (wn > *worst_curve) *worst_curve = wn;
}

/* (d): gradients with recomputation off equal those with it on, bit for bit. */
static void ft_check_recompute(ft_backend *be, const char *model_dir, const ft_token_seqs *seqs, const char *fix,
                               const char *cname, ft_quant q) {
    const char *sfx = q == FT_QUANT_NF4 ? "_nf4" : "";
    char init[1200], on[1200], off[1200];
    snprintf(init, sizeof init, "%s/lora_init.safetensors", fix);
    snprintf(on, sizeof on, "%s/%s_grads%s.safetensors", ft_test_tmpdir(), cname, sfx); /* from (a) */
    snprintf(off, sizeof off, "%s/%s_grads%s_norecompute.safetensors", ft_test_tmpdir(), cname, sfx);
    ft_load_opts lo = {.quant = q, .model = {.recompute = 0}};
    ft_model *m = NULL;
    FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
    if (!m) return;
    ft_run r = {.steps = 1, .B = 2, .K = 1, .sched = FT_SCHED_COSINE, .lr = 0, .dump = off};
    ft_lora_free(ft_train_run(be, m, seqs, init, &r, NULL), be);
    ft_model_free(m);
    int eq = ft_test_files_equal(on, off);
    FT_CHECK(eq, "%s %s: gradients with recompute off differ from recompute on (rel %.3e)", cname,
             *sfx ? "nf4" : "f32", ft_grad_files_rel(off, on));
    if (eq) printf("ok   %s %s: recompute on/off gradients bit-identical\n", cname, *sfx ? "nf4" : "f32");
}

/* (e) and (f) on the f32 model. */
static void ft_check_accum_dropout(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *fix,
                                   const char *cname) {
    char init[1200], g1[1200], g2[1200], g0[1200], g3[1200], g4[1200];
    const char *tmp = ft_test_tmpdir();
    snprintf(init, sizeof init, "%s/lora_init.safetensors", fix);
    snprintf(g1, sizeof g1, "%s/%s_accum_k2b1.safetensors", tmp, cname);
    snprintf(g2, sizeof g2, "%s/%s_accum_k1b2.safetensors", tmp, cname);

    /* (e) sequences 0 and 1 (19 and 23 targets): two micro-batches of 1 vs one padded micro-batch of 2.
     * AdamW's first update is lr * g / (|g| + eps) per element (bias corrections cancel): with eps = 1e-8
     * an element with |g| ~ 4 eps (qwen2 layer 1 q_proj lora_B has g = 4.1e-8 vs 4.7e-8, a float32
     * roundoff of 5e-9 next to gradients ~3e-3) moves its update by 2% and the adapter by 4e-6 relative,
     * so the parameters would measure the conditioning of that division, not the accumulation.
     * eps = 1e-3 (near the median |g|) keeps the update a smooth function of g. */
    ft_run ra = {.steps = 1, .B = 1, .K = 2, .sched = FT_SCHED_CONSTANT, .lr = 1e-3, .wd = 0.01, .eps = 1e-3,
                 .dump = g1};
    ft_run rb = ra;
    rb.B = 2, rb.K = 1, rb.dump = g2;
    ft_test_curve ca, cb;
    ft_lora *la = ft_train_run(be, m, seqs, init, &ra, &ca);
    ft_lora *lb = ft_train_run(be, m, seqs, init, &rb, &cb);
    if (la && lb) {
        int64_t n = la->n_params;
        float *pa = malloc((size_t)n * 4), *pb = malloc((size_t)n * 4), *p0 = malloc((size_t)n * 4);
        FT_CHECK_OK(ft_backend_download(be, pa, la->params, n * 4));
        FT_CHECK_OK(ft_backend_download(be, pb, lb->params, n * 4));
        double grel = ft_grad_files_rel(g1, g2);
        ft_cmp c = ft_compare_f32(pa, pb, n);
        /* the update itself (params after - before), the part that accumulation could get wrong */
        ft_lora *l0 = ft_train_run(be, m, seqs, init, &(ft_run){.steps = 1, .B = 2, .K = 1, .lr = 0}, NULL);
        double unum = 0, uden = 0;
        if (l0) {
            FT_CHECK_OK(ft_backend_download(be, p0, l0->params, n * 4));
            for (int64_t i = 0; i < n; i++) {
                double ua = (double)pa[i] - p0[i], ub = (double)pb[i] - p0[i];
                unum += (ua - ub) * (ua - ub), uden += ub * ub;
            }
        }
        ft_lora_free(l0, be);
        double urel = uden > 0 ? sqrt(unum / uden) : NAN;
        FT_CHECK(ca.targets[0] == 42 && cb.targets[0] == 42, "%s accum: targets %lld / %lld, want 42", cname,
                 (long long)ca.targets[0], (long long)cb.targets[0]);
        FT_CHECK(ft_test_rel(ca.loss[0], cb.loss[0]) <= 1e-6, "%s accum: loss %.8f (K=2,B=1) vs %.8f (K=1,B=2)", cname,
                 ca.loss[0], cb.loss[0]);
        FT_CHECK(grel <= 1e-5, "%s accum: gradients K=2,B=1 vs K=1,B=2 rel-L2 %.3e", cname, grel);
        FT_CHECK(c.n_nonfinite == 0 && c.rel_l2 <= 1e-6, "%s accum: adapter after one step rel-L2 %.3e", cname,
                 c.rel_l2);
        FT_CHECK(urel <= 1e-4, "%s accum: update rel-L2 %.3e", cname, urel);
        printf("ok   %s accum (K=2,B=1 vs K=1,B=2): loss rel %.2e, grads rel %.2e, params rel %.2e, update rel %.2e\n",
               cname, ft_test_rel(ca.loss[0], cb.loss[0]), grel, c.rel_l2, urel);
        free(pa);
        free(pb);
        free(p0);
    }
    ft_lora_free(la, be);
    ft_lora_free(lb, be);

    /* (f) LoRA dropout 0.1: differs from dropout 0, reproducible with the same seed */
    snprintf(g0, sizeof g0, "%s/%s_grads.safetensors", tmp, cname); /* dropout 0, from (a) */
    snprintf(g3, sizeof g3, "%s/%s_drop_a.safetensors", tmp, cname);
    snprintf(g4, sizeof g4, "%s/%s_drop_b.safetensors", tmp, cname);
    ft_run rd = {.steps = 1, .B = 2, .K = 1, .sched = FT_SCHED_COSINE, .lr = 0, .dropout = 0.1, .seed = 7,
                 .dump = g3};
    ft_lora_free(ft_train_run(be, m, seqs, init, &rd, NULL), be);
    rd.dump = g4;
    ft_lora_free(ft_train_run(be, m, seqs, init, &rd, NULL), be);
    int same = ft_test_files_equal(g3, g4);
    double vs0 = ft_grad_files_rel(g3, g0);
    /* against PEFT with ftune's masks in its lora_dropout modules (tests/ref/make_dropout_golden.py):
     * where the dropout acts, its 1/(1-p), the masks' seeds per layer, module and pass */
    char gd[1200], what[160];
    snprintf(gd, sizeof gd, "%s/grads_drop.safetensors", fix);
    snprintf(what, sizeof what, "%s f32 dropout 0.1 (PEFT, ftune's masks)", cname);
    ft_compare_grads(g3, gd, what, 1e-4);
    FT_CHECK(same, "%s dropout: same seed gives different gradients (rel %.3e)", cname, ft_grad_files_rel(g3, g4));
    FT_CHECK(vs0 > 1e-3 && isfinite(vs0), "%s dropout: gradients with dropout 0.1 vs 0 rel-L2 %.3e (want > 1e-3)",
             cname, vs0);
    rd.seed = 8;
    ft_lora_free(ft_train_run(be, m, seqs, init, &rd, NULL), be);
    double vs_seed = ft_grad_files_rel(g4, g3);
    FT_CHECK(vs_seed > 1e-3 && isfinite(vs_seed), "%s dropout: seed 8 vs seed 7 rel-L2 %.3e (want > 1e-3)", cname,
             vs_seed);
    printf("%s %s dropout 0.1: same seed bit-identical %s, vs dropout 0 rel %.3e, vs other seed rel %.3e\n",
           same && vs0 > 1e-3 && vs_seed > 1e-3 ? "ok  " : "FAIL", cname, same ? "yes" : "NO", vs0, vs_seed);
}

/* (h) the MLP in slices of 20 rows (training.mlp_chunk): (a)'s micro-batch of 2 x 24 rows runs as slices
 * of 20, 20 and 8, (b)'s micro-batches of 1 as one of 20 and a shorter one (or one, for the 13-token
 * sequence): (a) and (b) against PEFT with the same tolerances, and
 * (f)'s dropout gradients within 1e-6 of those without slices (the same masks: ft_dropout_seed_at). */
static void ft_check_mlp_chunk(ft_backend *be, const char *model_dir, const ft_token_seqs *seqs, const char *fix,
                               const char *cname, ft_quant q, double *worst_grad, double *worst_curve) {
    ft_load_opts lo = {.quant = q, .model = {.recompute = 1, .mlp_chunk = 20}};
    ft_model *m = NULL;
    FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
    if (!m) return;
    ft_check_golden(be, m, seqs, fix, cname, q == FT_QUANT_NF4 ? "_nf4" : "", " mlp_chunk 20", worst_grad, worst_curve);
    if (q == FT_QUANT_NONE) {
        char init[1200], whole[1200], sliced[1200];
        snprintf(init, sizeof init, "%s/lora_init.safetensors", fix);
        snprintf(whole, sizeof whole, "%s/%s_drop_a.safetensors", ft_test_tmpdir(), cname); /* (f), seed 7 */
        snprintf(sliced, sizeof sliced, "%s/%s_drop_sliced.safetensors", ft_test_tmpdir(), cname);
        ft_run rd = {.steps = 1, .B = 2, .K = 1, .sched = FT_SCHED_COSINE, .lr = 0, .dropout = 0.1, .seed = 7,
                     .dump = sliced};
        ft_lora_free(ft_train_run(be, m, seqs, init, &rd, NULL), be);
        double rel = ft_grad_files_rel(sliced, whole);
        FT_CHECK(rel <= 1e-6, "%s mlp_chunk 20: dropout 0.1 gradients vs the MLP whole rel-L2 %.3e (want <= 1e-6)", cname,
                 rel);
        if (rel <= 1e-6) printf("ok   %s mlp_chunk 20: dropout 0.1 gradients vs the MLP whole rel %.2e\n", cname, rel);
    }
    ft_model_free(m);
}

/* (g) the flag mode of the command line, `ftune train --model DIR --tokens FILE ...` (the command the
 * fixture's docs quote for the curve): its printed steps against PEFT's curve (same tolerances as
 * (b)), --dump-grads against PEFT's first-step gradients (grad-accum 2 x micro-batch 1 dumps those of
 * sequences 0 and 1, the same as one micro-batch of 2 by (e)), and --save: the trained adapter under
 * lora_init's PEFT names, equal to the library run's. Then its bad input: one error, exit 2 or 1. */
static void ft_check_cli(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *model_dir, const char *fix,
                         const char *cname) {
    char init[1200], dump[1200], save[1200], lib[1200], ref[1200], path[1200], what[256], cmd[8192];
    snprintf(init, sizeof init, "%s/lora_init.safetensors", fix);
    snprintf(ref, sizeof ref, "%s/grads.safetensors", fix);
    snprintf(dump, sizeof dump, "%s/%s_cli_grads.safetensors", ft_test_tmpdir(), cname);
    snprintf(save, sizeof save, "%s/%s_cli_save.safetensors", ft_test_tmpdir(), cname);
    snprintf(lib, sizeof lib, "%s/%s_lib_save.safetensors", ft_test_tmpdir(), cname);
    snprintf(what, sizeof what, "%s train (flag mode)", cname);
    snprintf(cmd, sizeof cmd,
             "('%s' train --model '%s' --tokens '%s/tokens.txt' --steps 20 --micro-batch 1 --grad-accum 2 --lr 1e-3 "
             "--schedule cosine --warmup 3 --weight-decay 0.01 --clip 1.0 --lora-r 4 --lora-alpha 8 --lora-init '%s' "
             "--quant none --device cpu --dump-grads '%s' --save '%s' 2>/dev/null)",
             ft_test_binary(), model_dir, fix, init, dump, save);
    char *out = NULL;
    int rc = ft_test_run(cmd, &out);
    ft_test_curve got = {0}, want;
    snprintf(path, sizeof path, "%s/curve.json", fix);
    ft_test_read_curve(path, &want);
    for (const char *l = out; rc == 0 && l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        long long step, tok;
        double loss, lr, gn;
        if (sscanf(l, "step %lld loss %lf lr %lf grad_norm %lf tokens %lld", &step, &loss, &lr, &gn, &tok) == 5 &&
            got.n < 64 && step == got.n + 1)
            got.loss[got.n] = loss, got.lr[got.n] = lr, got.grad_norm[got.n] = gn, got.targets[got.n++] = tok;
    }
    free(out);
    if (!FT_CHECK(rc == 0 && got.n == FT_NSTEPS && want.n == FT_NSTEPS, "%s: exit %d, %lld step lines (want %d)", what,
                  rc, (long long)got.n, FT_NSTEPS))
        return;
    int bad = 0;
    for (int64_t s = 0; s < FT_NSTEPS; s++) {
        double el = ft_test_rel(got.loss[s], want.loss[s]), er = ft_test_rel(got.lr[s], want.lr[s]);
        double en = ft_test_rel(got.grad_norm[s], want.grad_norm[s]);
        if (!(el <= 1e-4 && er <= 1e-6 && en <= 1e-4 && got.targets[s] == want.targets[s])) {
            bad++;
            printf("     %s step %lld: loss %.6f vs %.6f, lr %.6e vs %.6e, grad_norm %.6f vs %.6f, targets %lld vs %lld\n",
                   what, (long long)s + 1, got.loss[s], want.loss[s], got.lr[s], want.lr[s], got.grad_norm[s],
                   want.grad_norm[s], (long long)got.targets[s], (long long)want.targets[s]);
        }
    }
    FT_CHECK(bad == 0, "%s: %d of %d printed steps off PEFT's curve", what, bad, FT_NSTEPS);
    ft_compare_grads(dump, ref, what, 1e-4);
    ft_run rc20 = {.steps = FT_NSTEPS, .B = 1, .K = 2, .sched = FT_SCHED_COSINE, .lr = 1e-3, .wd = 0.01, .seed = 42};
    ft_lora *l = ft_train_run(be, m, seqs, init, &rc20, NULL);
    if (l) FT_CHECK_OK(ft_lora_save(l, be, lib, 'p'));
    ft_lora_free(l, be);
    double vs_lib = ft_grad_files_rel(save, lib), vs_init = ft_grad_files_rel(save, init);
    FT_CHECK(vs_lib <= 1e-6, "%s: --save vs the library's adapter rel-L2 %.3e", what, vs_lib);
    FT_CHECK(vs_init > 1e-3 && isfinite(vs_init), "%s: --save holds lora_init's names, trained (rel %.3e from init)",
             what, vs_init);
    printf("%s %s: 20 printed steps on PEFT's curve, --save vs library rel %.2e, vs init %.2e\n",
           bad || !(vs_lib <= 1e-6) ? "FAIL" : "ok  ", what, vs_lib, vs_init);

    /* bad input: exit 2 for the command line, 1 for a file; one line naming what is wrong */
    static const struct { int code; const char *args, *want; } bad_args[] = {
        {2, "--steps 0", "train: need --steps, --micro-batch, --grad-accum, --lora-r >= 1"},
        {2, "--schedule sawtooth", "sawtooth"},
        {2, "--lora-targets q_proj,x_proj", "x_proj"},
        {2, "--resume-fallback", "train: --resume-fallback works with a recipe and --resume"},
        /* refused before the model loads: --lora-init was read after the load, and --save failed
         * after the last step, losing the trained adapter */
        {1, "--lora-init /nonexistent/init.safetensors", "/nonexistent/init.safetensors: cannot open"},
        {1, "--save /nonexistent/dir/a.safetensors", "/nonexistent/dir/a.safetensors: cannot write: no directory"},
        {1, "--dump-grads /nonexistent/dir/g.safetensors", "/nonexistent/dir/g.safetensors: cannot write: no directory"},
        {2, "--save /tmp", "train: --save /tmp is a directory"},
        {1, "--tokens /nonexistent/tokens.txt", "/nonexistent/tokens.txt: cannot open token file"},
        {1, "--lora-r 4 --lora-init " FT_SOURCE_DIR "/tests/fixtures/train/llama_mha_tied/lora_init.safetensors",
         "llama_mha_tied/lora_init.safetensors: tensor "},
    };
    for (size_t k = 0; k < sizeof bad_args / sizeof *bad_args; k++) {
        snprintf(cmd, sizeof cmd, "('%s' train --model '%s' --tokens '%s/tokens.txt' --steps 1 --quant none %s 2>&1 >/dev/null)",
                 ft_test_binary(), model_dir, fix, bad_args[k].args);
        out = NULL;
        rc = ft_test_run(cmd, &out);
        int errors = 0; /* error lines; info lines (the plan's) may precede them */
        for (const char *q = out; q && (q = strstr(q, "error:")); q++) errors++;
        FT_CHECK(rc == bad_args[k].code && out && strstr(out, bad_args[k].want) && errors == 1,
                 "train %s: exit %d (want %d), %d errors: %s", bad_args[k].args, rc, bad_args[k].code, errors, out);
        free(out);
    }
}

int main(void) {
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    if (!be) return ft_test_finish();
    double summary[5][4];
    int ncases = (int)(sizeof ft_cases / sizeof *ft_cases);
    for (int i = 0; i < ncases; i++)
        for (int k = 0; k < 4; k++) summary[i][k] = -1;
    for (int i = 0; i < ncases; i++) {
        const char *cname = ft_cases[i];
        char fix[1024], model_dir[1024], tok[1100];
        snprintf(fix, sizeof fix, "%s/tests/fixtures/train/%s", ft_test_src_dir(), cname);
        snprintf(model_dir, sizeof model_dir, "%s/tests/fixtures/forward/%s", ft_test_src_dir(), cname);
        snprintf(tok, sizeof tok, "%s/tokens.txt", fix);
        ft_token_seqs seqs = {0};
        FT_CHECK_OK(ft_token_file_read(tok, &seqs));
        if (!FT_CHECK(seqs.n == 4, "%s: %lld sequences, want 4", tok, (long long)seqs.n)) continue;
        for (int qi = 0; qi < 2; qi++) {
            ft_quant q = qi ? FT_QUANT_NF4 : FT_QUANT_NONE;
            ft_load_opts lo = {.quant = q, .model = {.recompute = 1}};
            ft_model *m = NULL;
            FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
            if (!m) continue;
            ft_check_golden(be, m, &seqs, fix, cname, qi ? "_nf4" : "", "", &summary[i][2 * qi],
                            &summary[i][2 * qi + 1]);
            if (!qi) ft_check_accum_dropout(be, m, &seqs, fix, cname);
            if (!qi && i == 0) ft_check_cli(be, m, &seqs, model_dir, fix, cname);
            ft_model_free(m);
            ft_check_recompute(be, model_dir, &seqs, fix, cname, q);
            ft_check_mlp_chunk(be, model_dir, &seqs, fix, cname, q, &summary[i][2 * qi], &summary[i][2 * qi + 1]);
        }
        ft_token_seqs_free(&seqs);
    }
    printf("\nsummary (worst relative error vs PEFT)\n%-15s %12s %12s %12s %12s\n", "case", "grads f32", "curve f32",
           "grads nf4", "curve nf4");
    for (int i = 0; i < ncases; i++)
        printf("%-15s %12.3e %12.3e %12.3e %12.3e\n", ft_cases[i], summary[i][0], summary[i][1], summary[i][2],
               summary[i][3]);
    ft_backend_free(be);
    return ft_test_finish();
}
