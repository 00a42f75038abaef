/* test_merge_tokens.c: trainable tokens (PEFT's trainable_token_indices) leaving ftune, against PEFT
 * (tests/fixtures/train_tokens/<case>, tests/ref/make_trainable_tokens_golden.py): the fixture's PEFT
 * adapter on tests/fixtures/forward/<case> (llama_gqa4 untied: embedding + lm_head rows;
 * llama_mha_tied: embedding rows only, lm_head IS the embedding), through export/merge.c,
 * merge_gguf.c and adapter_tokens_out.c:
 *   - merged safetensors and merged F32 GGUF: logits on tokens0.txt = PEFT's merge_and_unload()
 *     model's (logits_merged.bin), rel-L2 <= 1e-5;
 *   - merged Q4_K_M and Q8_0 GGUFs: token_embd (and output) rows of the ids are the encoding of the
 *     adapter's rows in the tensor's type, every other row the base-alone merge's bytes;
 *   - merge into a GGUF base: an F32 base (--type base) gives PEFT's logits (1e-5); a Q8_0 base keeps
 *     every other row's bytes and re-encodes the ids' rows;
 *   - llama.cpp LoRA GGUF: the pairs of token_embd / output, applied as llama.cpp does
 *     (base row + alpha/k * b a), give the adapter's rows exactly and leave other rows alone; a tied
 *     model is refused and nothing is written.
 * DoRA (PEFT's use_dora; tests/fixtures/train_dora/<case>, tests/ref/make_dora_golden.py: llama_gqa4,
 * whose q/k rows a llama-arch GGUF permutes, and qwen2, tied, with q/k/v biases), through
 * export/adapter_dora.c's ft_adapter_apply_rows in both merges and trainer/adapter_attach.c:
 *   - merged safetensors, merged F32 GGUF, and a merge into an F32 GGUF base (--type base): logits on
 *     tokens0.txt = PEFT's merge_and_unload() model's (merged_logits.bin), rel-L2 <= 1e-5;
 *   - the adapter applied on the fly (`ftune eval --adapter`): PEFT's PeftModel logits (logits.bin), 1e-5;
 *     its layer 0 alone (layers_to_transform) refused there, pointing at `ftune merge`.
 * The forward fixtures have no tokenizer; a GGUF needs one: a byte-level BPE of exactly 256 ids is
 * written beside a copy of the checkpoint (as tests/cli/merge_arch.sh makes it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/adapter.h"
#include "export/gguf.h"
#include "export/merge.h"
#include "kernels/ggml_quants.h"
#include "tests/harness.h"
#include "trainer/adapter_attach.h"
#include "trainer/loader.h"
#include "trainer/safetensors_read.h"
#include "trainer/token_file.h"

/* GPT-2's byte-to-unicode symbols: the 188 printable bytes, then 256 + n for the others. */
static int ft_byte_symbols(int *cs) {
    int n = 0, k = 0, printable[256] = {0};
    for (int b = 0; b < 256; b++) printable[b] = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    for (int b = 0; b < 256; b++)
        if (printable[b]) cs[k++] = b;
    for (int b = 0; b < 256; b++)
        if (!printable[b]) cs[k++] = 256 + n++;
    return k;
}

static void ft_write_tokenizer(const char *path) {
    int cs[256];
    ft_byte_symbols(cs);
    FILE *f = fopen(path, "w");
    if (!FT_CHECK(f != NULL, "cannot write %s", path)) return;
    fputs("{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
          "\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":true},\"post_processor\":null,"
          "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":true},"
          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
          "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,\"vocab\":{",
          f);
    for (int i = 0; i < 254; i++) fprintf(f, "\"\\u%04x\":%d,", cs[i], i);
    fputs("\"\\u0120t\":254,\"he\":255},\"merges\":[\"\\u0120 t\",\"h e\"]}}", f);
    fclose(f);
}

/* dir: config.json + model.safetensors (links to the fixture) + tokenizer.json */
static void ft_make_base(const char *fx, const char *dir) {
    char a[1400], b[1400];
    mkdir(dir, 0755);
    static const char *const files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", fx, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        unlink(b);
        FT_CHECK(symlink(a, b) == 0, "symlink %s", b);
    }
    snprintf(b, sizeof b, "%s/tokenizer.json", dir);
    ft_write_tokenizer(b);
}

/* Logits [T, V] of the model at `path` (with adapter `a` applied on the fly as `ftune eval --adapter`
 * does when not NULL) on the case's tokens0.txt against the case's file `ref`. */
static void ft_check_logits(ft_backend *be, const char *tc, const char *ref, const char *path, const ft_adapter *a,
                            int gguf_f32, double tol, const char *what) {
    char p[1400];
    ft_token_seqs seqs = {0};
    ft_model *m = NULL;
    ft_lora *lora = NULL;
    char *raw = NULL;
    int64_t len = 0;
    snprintf(p, sizeof p, "%s/tokens0.txt", tc);
    FT_CHECK_OK(ft_token_file_read(p, &seqs));
    ft_load_opts lo = {.quant = FT_QUANT_NONE, .gguf_f32 = gguf_f32};
    FT_CHECK_OK(ft_model_load(&m, be, path, &lo));
    if (m && a) FT_CHECK_OK(ft_model_attach_adapter(m, be, a, &lora));
    if (!m || seqs.n < 1 || (a && !lora)) goto done;
    const int64_t T = seqs.start[1], V = ft_model_get_dims(m)->V;
    float *out = calloc((size_t)(T * V), 4);
    ft_batch bt = {.B = 1, .T = T, .tokens = seqs.ids};
    FT_CHECK_OK(ft_model_logits(m, &bt, out));
    snprintf(p, sizeof p, "%s/%s", tc, ref);
    FT_CHECK_OK(ft_test_read_file(p, &raw, &len));
    if (FT_CHECK(len == T * V * 4, "%s: %s has %lld bytes, want %lld", what, p, (long long)len, (long long)(T * V * 4)))
        FT_CHECK_CLOSE(out, (const float *)raw, T * V, tol, what);
    free(raw);
    free(out);
done:
    ft_model_free(m);
    ft_lora_free(lora, be);
    ft_token_seqs_free(&seqs);
}

static int ft_is_id(const ft_token_rows *r, int64_t v, int64_t *j) {
    for (int64_t k = 0; k < r->n; k++)
        if (r->ids[k] == v) return *j = k, 1;
    return 0;
}

/* Tensor `name` of GGUF `path` against `base` (same name in base_path, NULL: none): rows at r's ids
 * decode to enc(r's row) (enc: ggml's encoding in the tensor's type, requant against the base's bytes
 * when `requant`), every other row holds the base's bytes. */
static void ft_check_gguf_rows(const char *path, const char *base_path, const char *name, const ft_token_rows *r,
                               int requant) {
    ft_gguf *g = NULL, *gb = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    FT_CHECK_OK(ft_gguf_open(&gb, base_path));
    if (!g || !gb) return;
    const ft_gguf_tensor *t = ft_gguf_tensor_find(g, name), *tb = ft_gguf_tensor_find(gb, name);
    if (FT_CHECK(t && tb && t->type == tb->type && t->ne[0] == r->C && t->ne[1] == tb->ne[1],
                 "%s: %s missing or not the base's type/shape", path, name)) {
        const int64_t n0 = t->ne[0], rowb = ft_ggml_row_size(t->type, n0);
        uint8_t *enc = malloc((size_t)rowb);
        int64_t same = 0, bad_rows = 0;
        for (int64_t v = 0; v < t->ne[1]; v++) {
            const uint8_t *got = (const uint8_t *)t->data + v * rowb, *was = (const uint8_t *)tb->data + v * rowb;
            int64_t j;
            if (ft_is_id(r, v, &j)) {
                if (requant) ft_ggml_requantize_row(t->type, was, r->rows + j * n0, enc, n0, NULL);
                else ft_ggml_quantize_row(t->type, r->rows + j * n0, enc, n0);
                bad_rows += memcmp(got, enc, (size_t)rowb) != 0;
            } else {
                same += memcmp(got, was, (size_t)rowb) == 0;
            }
        }
        FT_CHECK(bad_rows == 0, "%s %s: %lld of %lld trainable-token rows are not the encoding of the adapter's rows",
                 path, name, (long long)bad_rows, (long long)r->n);
        FT_CHECK(same == t->ne[1] - r->n, "%s %s: %lld of %lld other rows hold the base's bytes", path, name,
                 (long long)same, (long long)(t->ne[1] - r->n));
        free(enc);
    }
    ft_gguf_close(g);
    ft_gguf_close(gb);
}

/* The llama.cpp adapter's pairs applied as llama.cpp applies them to the base's rows (the F32 checkpoint
 * fx, or the GGUF model file gbase when not NULL: its decoded rows), against the adapter's rows. */
static void ft_check_adapter_gguf(const char *path, const char *fx, const char *gbase, const ft_adapter *a) {
    ft_gguf *g = NULL, *gb = NULL;
    ft_st_model *sm = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    FT_CHECK_OK(ft_st_open(&sm, fx));
    if (gbase) FT_CHECK_OK(ft_gguf_open(&gb, gbase));
    if (!g || !sm || (gbase && !gb)) goto done;
    float alpha = 0;
    FT_CHECK(ft_gguf_get_f32(g, ft_gguf_find_key(g, "adapter.lora.alpha"), &alpha), "%s: no adapter.lora.alpha", path);
    for (int head = 0; head < 2; head++) {
        const ft_token_rows r = ft_adapter_token_rows(a, head, 0);
        const char *nm = head ? "output.weight" : "token_embd.weight";
        char na[64], nb[64];
        snprintf(na, sizeof na, "%s.lora_a", nm);
        snprintf(nb, sizeof nb, "%s.lora_b", nm);
        const ft_gguf_tensor *ta = ft_gguf_tensor_find(g, na), *tb = ft_gguf_tensor_find(g, nb);
        const ft_st_tensor *w = ft_st_lookup(sm, head ? "lm_head.weight" : "model.embed_tokens.weight");
        if (!FT_CHECK(ta && tb && w, "%s: %s / %s missing", path, na, nb)) continue;
        const int64_t k = r.n, C = r.C, V = w->shape[0];
        /* llama-adapter.cpp's shape rules: token_embd b ne[1] = n_embd, a ne[1] = n_vocab; output a ne [C, k],
         * b ne [k, V]; rank = b ne[0] */
        const int ok = head ? (ta->ne[0] == C && ta->ne[1] == k && tb->ne[0] == k && tb->ne[1] == V)
                            : (ta->ne[0] == k && ta->ne[1] == V && tb->ne[0] == k && tb->ne[1] == C);
        if (!FT_CHECK(ok, "%s: %s/%s shapes [%lld %lld] [%lld %lld]", path, na, nb, (long long)ta->ne[0],
                      (long long)ta->ne[1], (long long)tb->ne[0], (long long)tb->ne[1]))
            continue;
        float *A = malloc((size_t)(ta->nelem) * 4), *B = malloc((size_t)(tb->nelem) * 4);
        float *got = malloc((size_t)(V * C) * 4), *want = malloc((size_t)(V * C) * 4), *rows = malloc((size_t)(V * C) * 4);
        memcpy(rows, w->data, (size_t)(V * C) * 4); /* the fixture is F32 */
        if (gb) FT_CHECK_OK(ft_gguf_tensor_rows_f32(gb, ft_gguf_tensor_find(gb, nm), 0, V, rows));
        FT_CHECK_OK(ft_gguf_tensor_rows_f32(g, ta, 0, ta->ne[1], A));
        FT_CHECK_OK(ft_gguf_tensor_rows_f32(g, tb, 0, tb->ne[1], B));
        const double scale = alpha / (double)k;
        for (int64_t v = 0; v < V; v++) {
            const float *base = rows + v * C;
            int64_t j;
            for (int64_t c = 0; c < C; c++) {
                double d = 0;
                for (int64_t q = 0; q < k; q++)
                    d += head ? (double)B[v * k + q] * A[q * C + c] : (double)B[c * k + q] * A[v * k + q];
                got[v * C + c] = (float)(base[c] + scale * d);
                want[v * C + c] = ft_is_id(&r, v, &j) ? r.rows[j * C + c] : base[c];
            }
        }
        FT_CHECK_CLOSE(got, want, V * C, 1e-6, head ? "llama.cpp adapter: output rows" : "llama.cpp adapter: token_embd rows");
        free(A), free(B), free(got), free(want), free(rows);
    }
done:
    ft_st_close(sm);
    ft_gguf_close(g);
    ft_gguf_close(gb);
}

static void ft_case(ft_backend *be, const char *name, int tied) {
    char fx[1024], tc[1024], ad[1200], base[1200], p[1400], q[1400];
    const char *tmp = ft_test_tmpdir();
    snprintf(fx, sizeof fx, "%s/tests/fixtures/forward/%s", ft_test_src_dir(), name);
    snprintf(tc, sizeof tc, "%s/tests/fixtures/train_tokens/%s", ft_test_src_dir(), name);
    snprintf(ad, sizeof ad, "%s/peft_adapter", tc);
    snprintf(base, sizeof base, "%s/%s-base", tmp, name);
    ft_make_base(fx, base);
    ft_adapter a = {0};
    FT_CHECK_OK(ft_adapter_load(&a, ad));
    FT_CHECK(a.n_embed_tokens == 3 && a.n_head_tokens == (tied ? 0 : 3) && a.tokens_C == 64,
             "%s: adapter has %lld embedding / %lld lm_head token rows of %lld", name, (long long)a.n_embed_tokens,
             (long long)a.n_head_tokens, (long long)a.tokens_C);
    if (!a.n_embed_tokens) return;
    const ft_token_rows re = ft_adapter_token_rows(&a, 0, tied), rh = ft_adapter_token_rows(&a, 1, tied);
    char what[256];

    /* merged checkpoint, merged F32 GGUF: PEFT's merged logits */
    snprintf(p, sizeof p, "%s/%s-merged", tmp, name);
    ft_merge_opts o = {.base_dir = base, .adapter = &a, .out = p, .kind = FT_MERGE_SAFETENSORS};
    FT_CHECK_OK(ft_merge(&o, NULL));
    snprintf(what, sizeof what, "%s: merged safetensors vs PEFT merge_and_unload logits", name);
    ft_check_logits(be, tc, "logits_merged.bin", p, NULL, 0, 1e-5, what);
    snprintf(p, sizeof p, "%s/%s-merged-f32.gguf", tmp, name);
    o.out = p, o.kind = FT_MERGE_F32;
    FT_CHECK_OK(ft_merge(&o, NULL));
    snprintf(what, sizeof what, "%s: merged F32 GGUF vs PEFT merge_and_unload logits", name);
    ft_check_logits(be, tc, "logits_merged.bin", p, NULL, 1, 1e-5, what);

    /* Q4_K_M, Q8_0: the ids' rows encoded from the adapter's, the others the base-alone merge's bytes
     * (Q8_0 last: its base-alone file is the GGUF base below) */
    ft_merge_opts ob = {.base_dir = base, .out = q};
    for (int k = 0; k < 2; k++) {
        const char *kn = k ? "q8_0" : "q4_k_m";
        snprintf(q, sizeof q, "%s/%s-alone-%s.gguf", tmp, name, kn);
        ob.kind = k ? FT_MERGE_Q8_0 : FT_MERGE_Q4_K_M;
        FT_CHECK_OK(ft_merge(&ob, NULL));
        snprintf(p, sizeof p, "%s/%s-merged-%s.gguf", tmp, name, kn);
        o.out = p, o.kind = ob.kind;
        FT_CHECK_OK(ft_merge(&o, NULL));
        ft_check_gguf_rows(p, q, "token_embd.weight", &re, 0);
        if (!tied) ft_check_gguf_rows(p, q, "output.weight", &rh, 0);
    }

    /* into a GGUF base: F32 (--type base) gives PEFT's logits; Q8_0 keeps the other rows' bytes */
    snprintf(q, sizeof q, "%s/%s-alone-f32.gguf", tmp, name);
    ob.out = q, ob.kind = FT_MERGE_F32;
    FT_CHECK_OK(ft_merge(&ob, NULL));
    snprintf(p, sizeof p, "%s/%s-into-f32.gguf", tmp, name);
    ft_merge_opts og = {.base_dir = q, .adapter = &a, .out = p, .kind = FT_MERGE_BASE};
    FT_CHECK_OK(ft_merge(&og, NULL));
    snprintf(what, sizeof what, "%s: F32 GGUF base + adapter merged (--type base) vs PEFT logits", name);
    /* float32 throughout (as stored, a GGUF base's embeddings are BF16) */
    ft_check_logits(be, tc, "logits_merged.bin", p, NULL, 1, 1e-5, what);
    snprintf(q, sizeof q, "%s/%s-alone-q8_0.gguf", tmp, name);
    snprintf(p, sizeof p, "%s/%s-into-q8_0.gguf", tmp, name);
    og.base_dir = q, og.out = p;
    FT_CHECK_OK(ft_merge(&og, NULL));
    ft_check_gguf_rows(p, q, "token_embd.weight", &re, 1);
    if (!tied) ft_check_gguf_rows(p, q, "output.weight", &rh, 1);

    /* llama.cpp LoRA GGUF */
    ft_model_config cfg;
    char bdir[4096];
    FT_CHECK_OK(ft_adapter_base_config(&a, base, &cfg, bdir, sizeof bdir));
    snprintf(p, sizeof p, "%s/%s-adapter.gguf", tmp, name);
    unlink(p);
    ft_status st = ft_adapter_write_gguf(&a, &cfg, p, FT_GGML_F32);
    if (tied) {
        FT_CHECK(st == FT_E_UNSUPPORTED && strstr(ft_error_msg(), "tied model") &&
                     strstr(ft_error_msg(), "ftune merge"),
                 "%s: adapter GGUF of a tied model: status %d, '%s'", name, (int)st, ft_error_msg());
        FT_CHECK(access(p, F_OK) != 0, "%s: refused adapter GGUF left %s", name, p);
        ft_error_clear();
    } else {
        FT_CHECK_OK(st);
        ft_check_adapter_gguf(p, fx, NULL, &a);
        /* a GGUF base (base_model_name_or_path naming a Q8_0 file): new rows minus its decoded rows */
        snprintf(a.base, sizeof a.base, "%s", q);
        FT_CHECK_OK(ft_adapter_write_gguf(&a, &cfg, p, FT_GGML_F32));
        ft_check_adapter_gguf(p, fx, q, &a);
    }
    /* an id outside the vocabulary: refused before anything is written */
    const int32_t keep = a.embed_ids[0];
    a.embed_ids[0] = 256;
    snprintf(p, sizeof p, "%s/%s-bad", tmp, name);
    o.out = p, o.kind = FT_MERGE_SAFETENSORS;
    st = ft_merge(&o, NULL);
    FT_CHECK(st == FT_E_FORMAT && strstr(ft_error_msg(), "256") && access(p, F_OK) != 0,
             "%s: trainable token id 256 of a 256-id vocabulary: status %d '%s'", name, (int)st, ft_error_msg());
    ft_error_clear();
    snprintf(p, sizeof p, "%s/%s-bad.gguf", tmp, name);
    og.out = p;
    st = ft_merge(&og, NULL);
    FT_CHECK(st == FT_E_FORMAT && access(p, F_OK) != 0, "%s: id 256 into a GGUF base: status %d '%s'", name, (int)st,
             ft_error_msg());
    ft_error_clear();
    a.embed_ids[0] = keep;
    ft_adapter_free(&a);
}

/* A DoRA adapter merged three ways and applied on the fly, against PEFT (see the top). */
static void ft_case_dora(ft_backend *be, const char *name) {
    char fx[1024], tc[1024], ad[1200], base[1200], p[1400], q[1400], what[256];
    const char *tmp = ft_test_tmpdir();
    snprintf(fx, sizeof fx, "%s/tests/fixtures/forward/%s", ft_test_src_dir(), name);
    snprintf(tc, sizeof tc, "%s/tests/fixtures/train_dora/%s", ft_test_src_dir(), name);
    snprintf(ad, sizeof ad, "%s/peft_adapter", tc);
    snprintf(base, sizeof base, "%s/%s-dora-base", tmp, name);
    ft_make_base(fx, base);
    ft_adapter a = {0};
    FT_CHECK_OK(ft_adapter_load(&a, ad));
    if (!FT_CHECK(a.dora && a.n == 14, "%s: DoRA %d, %lld modules", name, a.dora, (long long)a.n)) goto done;
    snprintf(p, sizeof p, "%s/%s-dora-merged", tmp, name);
    ft_merge_opts o = {.base_dir = base, .adapter = &a, .out = p, .kind = FT_MERGE_SAFETENSORS};
    FT_CHECK_OK(ft_merge(&o, NULL));
    snprintf(what, sizeof what, "%s DoRA: merged safetensors vs PEFT merge_and_unload logits", name);
    ft_check_logits(be, tc, "merged_logits.bin", p, NULL, 0, 1e-5, what);
    snprintf(p, sizeof p, "%s/%s-dora-merged-f32.gguf", tmp, name);
    o.kind = FT_MERGE_F32;
    FT_CHECK_OK(ft_merge(&o, NULL));
    snprintf(what, sizeof what, "%s DoRA: merged F32 GGUF vs PEFT merge_and_unload logits", name);
    ft_check_logits(be, tc, "merged_logits.bin", p, NULL, 1, 1e-5, what);
    /* into a GGUF base: the norms from its decoded rows (float32 here, so PEFT's) */
    snprintf(q, sizeof q, "%s/%s-dora-alone-f32.gguf", tmp, name);
    ft_merge_opts ob = {.base_dir = base, .out = q, .kind = FT_MERGE_F32};
    FT_CHECK_OK(ft_merge(&ob, NULL));
    snprintf(p, sizeof p, "%s/%s-dora-into-f32.gguf", tmp, name);
    ft_merge_opts og = {.base_dir = q, .adapter = &a, .out = p, .kind = FT_MERGE_BASE};
    FT_CHECK_OK(ft_merge(&og, NULL));
    snprintf(what, sizeof what, "%s DoRA: F32 GGUF base + adapter merged (--type base) vs PEFT logits", name);
    ft_check_logits(be, tc, "merged_logits.bin", p, NULL, 1, 1e-5, what);
    /* on the fly: the unmerged PeftModel's logits */
    snprintf(what, sizeof what, "%s DoRA: base + adapter applied on the fly vs PeftModel logits", name);
    ft_check_logits(be, tc, "logits.bin", base, &a, 0, 1e-5, what);
    /* layer 0 only (PEFT's layers_to_transform): on the fly the other layer's magnitudes would have to be
     * ||W||, which only a merge applies: refused, pointing at `ftune merge` */
    ft_model *m = NULL;
    ft_lora *lora = NULL;
    ft_load_opts lo = {.quant = FT_QUANT_NONE};
    FT_CHECK_OK(ft_model_load(&m, be, base, &lo));
    const int64_t n = a.n;
    a.n = 7; /* modules sorted by (layer, module): layer 0's seven */
    ft_status st = m ? ft_model_attach_adapter(m, be, &a, &lora) : FT_E_INTERNAL;
    FT_CHECK(st == FT_E_UNSUPPORTED && strstr(ft_error_msg(), "layer 1") && strstr(ft_error_msg(), "ftune merge") && !lora,
             "%s DoRA of layer 0 only, on the fly: status %d '%s'", name, (int)st, ft_error_msg());
    ft_error_clear();
    a.n = n;
    ft_lora_free(lora, be);
    ft_model_free(m);
done:
    ft_adapter_free(&a);
}

int main(void) {
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 0));
    ft_case(be, "llama_gqa4", 0);
    ft_case(be, "llama_mha_tied", 1);
    ft_case_dora(be, "llama_gqa4");
    ft_case_dora(be, "qwen2");
    ft_backend_free(be);
    return ft_test_finish();
}
