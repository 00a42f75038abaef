/* test_train_tokens.c: LoRA with trainable tokens (PEFT's trainable_token_indices; trainer/lora.h
 * ft_lora_tokens, trainer/model_tokens.c) on the CPU backend against PEFT (fixtures by
 * tests/ref/make_trainable_tokens_golden.py in tests/fixtures/train_tokens/<case>/, over the tiny
 * models of tests/fixtures/forward/<case>/ and the sequences of tests/fixtures/train/<case>/).
 *
 * Cases: llama_gqa4 (untied lm_head: embedding and lm_head rows of 3 tokens, two deltas) and
 * llama_mha_tied (tied: one set of rows that both uses train). Per case, through the library:
 *   (a) first-step gradients of every LoRA tensor and of the token rows (micro-batch 2 of
 *       unequal rows, dumped) against PEFT's: every tensor rel-L2 <= 1e-4 (PEFT's own float32 vs
 *       float64 headroom is 2e-6);
 *   (b) 20 AdamW steps (cosine/warmup, weight decay on the rows too, clipping over everything,
 *       grad-accum 2 x micro-batch 1): loss and grad norm within 1e-4 at every step;
 *   (c) the adapter after (b) against the one PEFT saved after the same 20 steps: every tensor,
 *       the token rows included, rel-L2 <= 1e-4;
 *   (d) recomputation on and off give bit-identical gradient files;
 *   (e) the rows start as the base's: a one-step loss equals plain LoRA's bit for bit (the
 *       replacement changes nothing until the rows move), and a token in no sequence gets no
 *       embedding gradient (untied: exactly 0);
 *   (f) bad lists: a repeated id, an id outside the vocabulary. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"
#include "trainer/loader.h"
#include "trainer/safetensors_read.h"
#include "trainer/train.h"

#define FT_NSTEPS 20

typedef struct ft_tcase {
    const char *name;
    int32_t ids[3];
} ft_tcase;

/* the ids make_trainable_tokens_golden.py picked (meta.json "trainable_tokens"; checked below) */
static const ft_tcase ft_tcases[] = {{"llama_gqa4", {3, 7, 14}}, {"llama_mha_tied", {3, 15, 60}}};

typedef struct ft_run {
    int64_t steps, B, K;
    double lr, wd;
    const char *dump, *save;
    int n_tokens;            /* 0: plain LoRA */
} ft_run;

/* Trains from the fixture's initial A/B with the case's tokens; returns 1 when it ran. */
static int ft_train_run(ft_backend *be, ft_model *m, const ft_token_seqs *seqs, const char *init, const ft_tcase *tc,
                        const ft_run *r, ft_test_curve *curve) {
    ft_lora_cfg lc = {.r = 4, .alpha = 8.0, .targets = FT_MOD_ALL, .seed = 42, .tokens = tc->ids,
                      .n_tokens = r->n_tokens, .tied = ft_model_get_dims(m)->tied};
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
    ft_lora *lora = NULL;
    ft_status st = ft_lora_create(&lora, be, &lc, &shapes, ft_model_get_dims(m)->L);
    if (st == FT_OK) st = ft_lora_init_tokens(lora, be, &ft_model_get_weights(m)->embed, &ft_model_get_weights(m)->lm_head);
    if (st == FT_OK) st = ft_lora_load(lora, be, init);
    if (st == FT_OK) st = ft_test_train_golden(m, lora, seqs, r->steps, r->B, r->K, r->lr, r->wd, r->dump, curve);
    if (st == FT_OK && r->save) st = ft_lora_save(lora, be, r->save, 'p');
    FT_CHECK_OK(st);
    ft_model_set_lora(m, NULL);
    ft_lora_free(lora, be);
    return st == FT_OK;
}

/* Every tensor of `ref` against the same name in `ours`: rel-L2 <= tol, the token rows among them. */
static void ft_compare_files(const char *ours, const char *ref, const char *what, double tol) {
    ft_st_cmp c = ft_test_st_compare(ours, ref, what, tol, ".token_adapter.");
    FT_CHECK(c.shown > 0, "%s: no token-row tensor in %s", what, ref);
    printf("%s %s: worst rel_l2 %.3e over %d tensors (%d of token rows)\n", c.bad ? "FAIL" : "ok  ", what, c.worst, c.n,
           c.shown);
}

static void ft_check_case(ft_backend *be, const char *root, const ft_tcase *tc) {
    char model_dir[1024], fix[1200], init[1300], ref[1300], dump[1300], path[1300], saved[1300], tokp[1300];
    const char *tmp = ft_test_tmpdir();
    snprintf(model_dir, sizeof model_dir, "%s/forward/%s", root, tc->name);
    snprintf(fix, sizeof fix, "%s/train_tokens/%s", root, tc->name);
    snprintf(init, sizeof init, "%s/train/%s/lora_init.safetensors", root, tc->name);
    snprintf(tokp, sizeof tokp, "%s/train/%s/tokens.txt", root, tc->name);
    snprintf(ref, sizeof ref, "%s/grads.safetensors", fix);
    snprintf(dump, sizeof dump, "%s/%s_tt_grads.safetensors", tmp, tc->name);

    double ids[8];
    snprintf(path, sizeof path, "%s/meta.json", fix);
    int64_t nids = ft_test_json_array(path, "trainable_tokens", ids, 8);
    FT_CHECK(nids == 3 && ids[0] == tc->ids[0] && ids[1] == tc->ids[1] && ids[2] == tc->ids[2],
             "%s: meta.json ids are not {%d, %d, %d}", tc->name, tc->ids[0], tc->ids[1], tc->ids[2]);

    ft_token_seqs seqs = {0};
    ft_model *m = NULL;
    ft_load_opts lo = {.quant = FT_QUANT_NONE, .model = {.recompute = 1}};
    FT_CHECK_OK(ft_token_file_read(tokp, &seqs));
    FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
    if (!m) goto done;
    FT_CHECK(ft_model_get_dims(m)->tied == (strstr(tc->name, "tied") != NULL), "%s: tied is %d", tc->name,
             ft_model_get_dims(m)->tied);

    /* (a) + (e) */
    ft_test_curve c1, c0;
    ft_run r1 = {.steps = 1, .B = 2, .K = 1, .lr = 0, .dump = dump, .n_tokens = 3};
    if (!ft_train_run(be, m, &seqs, init, tc, &r1, &c1)) goto done;
    ft_run r0 = {.steps = 1, .B = 2, .K = 1, .lr = 0, .n_tokens = 0};
    if (!ft_train_run(be, m, &seqs, init, tc, &r0, &c0)) goto done;
    FT_CHECK(c1.n == 1 && c0.n == 1 && c1.loss[0] == c0.loss[0],
             "%s: first-step loss with trainable tokens %.9g, plain LoRA %.9g: the base rows must change nothing",
             tc->name, c1.loss[0], c0.loss[0]);
    ft_compare_files(dump, ref, tc->name, 1e-4);
    ft_st_model *g = NULL;
    if (!ft_model_get_dims(m)->tied && ft_st_open(&g, dump) == FT_OK) {
        const ft_st_tensor *t = ft_st_lookup(g, "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta");
        int64_t C = t ? t->shape[1] : 0, nz = 0;
        for (int64_t c = 0; c < C; c++) { /* row 0 = id 3, in no sequence */
            float v;
            memcpy(&v, (const char *)t->data + 4 * c, 4);
            nz += v != 0.0f;
        }
        FT_CHECK(t && C > 0 && nz == 0, "%s: the embedding row of token 3 (in no sequence) has %lld nonzero gradients",
                 tc->name, (long long)nz);
        ft_st_close(g);
    }

    /* (b) + (c) */
    ft_test_curve got;
    double want_loss[64], want_norm[64];
    snprintf(path, sizeof path, "%s/curve.json", fix);
    int64_t nl = ft_test_json_array(path, "loss", want_loss, 64), nn = ft_test_json_array(path, "grad_norm", want_norm, 64);
    FT_CHECK(nl == FT_NSTEPS && nn == FT_NSTEPS, "%s: %s has %lld/%lld steps", tc->name, path, (long long)nl,
             (long long)nn);
    snprintf(saved, sizeof saved, "%s/%s_tt_trained.safetensors", tmp, tc->name);
    ft_run rc = {.steps = FT_NSTEPS, .B = 1, .K = 2, .lr = 1e-3, .wd = 0.01, .save = saved, .n_tokens = 3};
    if (ft_train_run(be, m, &seqs, init, tc, &rc, &got) && nl == FT_NSTEPS && nn == FT_NSTEPS) {
        double wl = 0, wn = 0;
        int bad = 0;
        for (int64_t s = 0; s < FT_NSTEPS; s++) {
            double el = ft_test_rel(got.loss[s], want_loss[s]), en = ft_test_rel(got.grad_norm[s], want_norm[s]);
            if (!(el <= 1e-4 && en <= 1e-4)) bad++;
            if (!(el <= wl)) wl = el;
            if (!(en <= wn)) wn = en;
        }
        FT_CHECK(got.n == FT_NSTEPS && bad == 0, "%s: %d of %d curve steps outside 1e-4 (worst loss %.2e, norm %.2e)",
                 tc->name, bad, FT_NSTEPS, wl, wn);
        printf("%s %s: 20-step curve worst rel: loss %.2e, grad_norm %.2e (loss %.5f -> %.5f)\n",
               bad ? "FAIL" : "ok  ", tc->name, wl, wn, got.loss[0], got.loss[FT_NSTEPS - 1]);
        snprintf(path, sizeof path, "%s/peft_adapter/adapter_model.safetensors", fix);
        char what[128];
        snprintf(what, sizeof what, "%s trained adapter", tc->name);
        ft_compare_files(saved, path, what, 1e-4);
    }
    ft_model_free(m);
    m = NULL;

    /* (d) */
    char off[1300];
    snprintf(off, sizeof off, "%s/%s_tt_grads_norecompute.safetensors", tmp, tc->name);
    lo.model.recompute = 0;
    FT_CHECK_OK(ft_model_load(&m, be, model_dir, &lo));
    if (!m) goto done;
    ft_run rn = r1;
    rn.dump = off;
    if (ft_train_run(be, m, &seqs, init, tc, &rn, NULL)) {
        int eq = ft_test_files_equal(dump, off);
        FT_CHECK(eq, "%s: gradients with recompute off differ from recompute on", tc->name);
        if (eq) printf("ok   %s: recompute on/off gradients bit-identical\n", tc->name);
    }

    /* (f) */
    const ft_tcase dup = {tc->name, {7, 3, 7}}, big = {tc->name, {3, 7, 256}};
    ft_lora_cfg lc = {.r = 4, .alpha = 8.0, .targets = FT_MOD_ALL, .tokens = dup.ids, .n_tokens = 3};
    ft_lora_shapes shapes = ft_model_lora_shapes(ft_model_get_dims(m));
    ft_lora *l = NULL;
    ft_status st = ft_lora_create(&l, be, &lc, &shapes, ft_model_get_dims(m)->L);
    FT_CHECK(st == FT_E_ARG && strstr(ft_error_msg(), "listed twice"), "%s: a repeated id gave %d (%s)", tc->name,
             (int)st, ft_error_msg());
    ft_error_clear();
    lc.tokens = big.ids;
    FT_CHECK_OK(ft_lora_create(&l, be, &lc, &shapes, ft_model_get_dims(m)->L));
    if (l) {
        st = ft_lora_init_tokens(l, be, &ft_model_get_weights(m)->embed, &ft_model_get_weights(m)->lm_head);
        FT_CHECK(st == FT_E_ARG && strstr(ft_error_msg(), "outside the vocabulary"), "%s: id 256 of 256 gave %d (%s)",
                 tc->name, (int)st, ft_error_msg());
        ft_error_clear();
        ft_lora_free(l, be);
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
        for (size_t i = 0; i < sizeof ft_tcases / sizeof *ft_tcases; i++) ft_check_case(be, root, &ft_tcases[i]);
    ft_backend_free(be);
    return ft_test_finish();
}
