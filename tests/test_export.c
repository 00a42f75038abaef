/* test_export.c: adapter conversion and merging (export/adapter.h, export/merge.h,
 * export/gguf_vocab.h) checked against independent arithmetic on stories260K and the committed PEFT
 * adapter tests/fixtures/export/stories_adapter (rsLoRA, r=4, alpha=8, q_proj + v_proj):
 * - PEFT load: modules, ranks, rsLoRA scale alpha/sqrt(r);
 * - LoRA GGUF: lora_a = A as-is, lora_b = B with llama's Q/K row permutation (k_proj: per kv head),
 *   alpha rescaled so llama.cpp's alpha/r equals alpha/sqrt(r); a per-module alpha folded into lora_b;
 * - merged F32 GGUF: every tensor equals W + s*B*A (permuted for q/k) computed here in double;
 *   untouched tensors are bit-exact; the tokenizer metadata matches tokenizer.model;
 * - the merged safetensors checkpoint holds the unpermuted merged weights;
 * - the Q/K permutation is the one of convert_hf_to_gguf.py (a hand-checked head). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "export/adapter.h"
#include "export/gguf.h"
#include "export/gguf_vocab.h"
#include "export/merge.h"
#include "tests/harness.h"
#include "trainer/bench.h"
#include "trainer/safetensors_read.h"

static char g_model[4096], g_adapter[4096];

static void test_permutation(void) {
    /* LlamaModel.permute for one head of D=8: reshape(2, 4) -> swap -> rows 0,4,1,5,2,6,3,7 */
    int64_t want[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    for (int64_t k = 0; k < 8; k++) FT_CHECK(ft_gguf_permuted_row(k, 8) == want[k], "perm[%lld]", (long long)k);
    FT_CHECK(ft_gguf_permuted_row(8 + 3, 8) == 8 + 5, "second head");
}

static void test_adapter_gguf(const ft_adapter *a, const ft_model_config *cfg) {
    char path[4200];
    snprintf(path, sizeof path, "%s/a.gguf", ft_test_tmpdir());
    FT_CHECK_OK(ft_adapter_write_gguf(a, cfg, path, FT_GGML_F32));
    ft_gguf *g = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    if (!g) return;
    float alpha = 0;
    FT_CHECK(ft_gguf_get_f32(g, ft_gguf_find_key(g, "adapter.lora.alpha"), &alpha) && fabsf(alpha - 16.0f) < 1e-6f,
             "alpha %g = 8*sqrt(4)", alpha);
    const char *s;
    int64_t n;
    FT_CHECK(ft_gguf_get_str(g, ft_gguf_find_key(g, "general.type"), &s, &n) && n == 7 && !memcmp(s, "adapter", 7), "type");
    FT_CHECK(ft_gguf_tensor_count(g) == 2 * a->n, "two tensors per module");
    for (int64_t k = 0; k < a->n; k++) {
        const ft_adapter_mod *m = &a->m[k];
        char nm[96];
        snprintf(nm, sizeof nm, "blk.%lld.%s.weight.lora_a", (long long)m->layer, m->lin == FT_LIN_Q ? "attn_q" : "attn_v");
        const ft_gguf_tensor *ta = ft_gguf_tensor_find(g, nm);
        nm[strlen(nm) - 1] = 'b';
        const ft_gguf_tensor *tb = ft_gguf_tensor_find(g, nm);
        FT_CHECK(ta && tb, "tensors of layer %lld", (long long)m->layer);
        if (!ta || !tb) continue;
        FT_CHECK(ta->ne[0] == m->in && ta->ne[1] == m->r && tb->ne[0] == m->r && tb->ne[1] == m->out, "shapes");
        FT_CHECK(memcmp(ta->data, m->A, (size_t)(m->r * m->in) * 4) == 0, "lora_a == A");
        const float *b = tb->data;
        int exact = 1;
        for (int64_t row = 0; row < m->out; row++) {
            int64_t src = m->lin == FT_LIN_Q ? ft_gguf_permuted_row(row, cfg->head_dim) : row;
            exact &= memcmp(b + row * m->r, m->B + src * m->r, (size_t)m->r * 4) == 0;
        }
        FT_CHECK(exact, "layer %lld %s lora_b = B (rows permuted for q)", (long long)m->layer,
                 m->lin == FT_LIN_Q ? "q" : "v");
    }
    ft_gguf_close(g);

    /* a module with its own alpha: its lora_b carries (s*r)/alpha_written */
    ft_adapter b = *a;
    ft_adapter_mod *mods = malloc((size_t)a->n * sizeof *mods);
    memcpy(mods, a->m, (size_t)a->n * sizeof *mods);
    b.m = mods;
    mods[1].scale *= 3.0; /* layer 0 v_proj */
    FT_CHECK_OK(ft_adapter_write_gguf(&b, cfg, path, FT_GGML_F32));
    FT_CHECK_OK(ft_gguf_open(&g, path));
    if (g) {
        const ft_gguf_tensor *t = ft_gguf_tensor_find(g, "blk.0.attn_v.weight.lora_b");
        const float *v = t ? t->data : NULL;
        FT_CHECK(v && fabsf(v[5] - 3.0f * mods[1].B[5]) <= 1e-6f * fabsf(v[5]) + 1e-12f, "folded factor 3");
        t = ft_gguf_tensor_find(g, "blk.1.attn_v.weight.lora_b");
        FT_CHECK(t && memcmp(t->data, mods[3].B, (size_t)(mods[3].out * mods[3].r) * 4) == 0, "others untouched");
        ft_gguf_close(g);
    }
    free(mods);
}

static void test_merged(const ft_adapter *a, const ft_model_config *cfg) {
    char path[4200];
    snprintf(path, sizeof path, "%s/m.gguf", ft_test_tmpdir());
    ft_merge_opts o = {.base_dir = g_model, .adapter = a, .out = path, .kind = FT_MERGE_F32};
    ft_vocab_info vi;
    FT_CHECK_OK(ft_merge(&o, &vi));
    FT_CHECK(vi.bos == 1 && vi.eos == 2 && strcmp(vi.model, "llama") == 0, "vocab info");
    ft_vocab_info_free(&vi);
    ft_gguf *g = NULL;
    ft_st_model *sm = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    FT_CHECK_OK(ft_st_open(&sm, g_model));
    if (!g || !sm) return;
    const int64_t D = cfg->head_dim;
    double worst = 0;
    int exact_untouched = 1, n_checked = 0;
    for (int64_t l = 0; l < cfg->num_hidden_layers; l++) {
        static const char *const hf[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"};
        static const char *const gg[] = {"attn_q", "attn_k", "attn_v", "ffn_down"};
        static const ft_linear lin[] = {FT_LIN_Q, FT_LIN_K, FT_LIN_V, FT_LIN_DOWN};
        for (int k = 0; k < 4; k++) {
            char hn[128], gn[64];
            snprintf(hn, sizeof hn, "model.layers.%lld.%s.weight", (long long)l, hf[k]);
            snprintf(gn, sizeof gn, "blk.%lld.%s.weight", (long long)l, gg[k]);
            const ft_st_tensor *w = ft_st_lookup(sm, hn);
            const ft_gguf_tensor *t = ft_gguf_tensor_find(g, gn);
            FT_CHECK(w && t && t->type == FT_GGML_F32, "%s present as F32", gn);
            if (!w || !t) continue;
            const float *W = w->data, *M = t->data;
            const ft_adapter_mod *m = ft_adapter_find(a, l, lin[k]);
            int perm = lin[k] == FT_LIN_Q || lin[k] == FT_LIN_K;
            int64_t rows = w->shape[0], cols = w->shape[1];
            for (int64_t r = 0; r < rows; r++) {
                int64_t sr = perm ? ft_gguf_permuted_row(r, D) : r;
                for (int64_t c = 0; c < cols; c++) {
                    double want = W[sr * cols + c];
                    if (m) {
                        double acc = 0;
                        for (int64_t j = 0; j < m->r; j++) acc += (double)m->B[sr * m->r + j] * m->A[j * m->in + c];
                        want += m->scale * acc;
                    }
                    double got = M[r * cols + c];
                    if (m) {
                        double e = fabs(got - want) / (fabs(want) + 1e-3);
                        if (e > worst) worst = e;
                    } else {
                        exact_untouched &= got == want;
                    }
                }
            }
            n_checked++;
        }
    }
    FT_CHECK(n_checked == 4 * cfg->num_hidden_layers, "all checked");
    FT_CHECK(worst <= 1e-5, "merged q/v = W + s*B*A (permuted q): worst relative error %.3g", worst);
    FT_CHECK(exact_untouched, "k (permuted) and ffn_down without adapter are bit-exact copies");
    /* tokenizer from tokenizer.model: <0x00> is a BYTE token, <s> CONTROL */
    int64_t kt = ft_gguf_find_key(g, "tokenizer.ggml.token_type"), kk = ft_gguf_find_key(g, "tokenizer.ggml.tokens");
    double ty;
    const char *tok;
    int64_t tl;
    FT_CHECK(ft_gguf_arr_n(g, kk) == 512 && ft_gguf_arr_str(g, kk, 3, &tok, &tl) && tl == 6 && !memcmp(tok, "<0x00>", 6),
             "token 3 = <0x00>");
    FT_CHECK(ft_gguf_arr_num(g, kt, 3, &ty) && ty == 6, "BYTE type");
    FT_CHECK(ft_gguf_arr_num(g, kt, 1, &ty) && ty == 3, "<s> CONTROL");
    FT_CHECK(ft_gguf_find_key(g, "tokenizer.ggml.scores") >= 0 && ft_gguf_find_key(g, "tokenizer.ggml.merges") < 0,
             "SPM: scores, no merges");
    ft_gguf_close(g);
    ft_st_close(sm);

    /* merged HF checkpoint: unpermuted */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/merged_hf", ft_test_tmpdir());
    ft_merge_opts os = {.base_dir = g_model, .adapter = a, .out = dir, .kind = FT_MERGE_SAFETENSORS};
    FT_CHECK_OK(ft_merge(&os, NULL));
    ft_st_model *mm = NULL, *bm = NULL;
    FT_CHECK_OK(ft_st_open(&mm, dir));
    FT_CHECK_OK(ft_st_open(&bm, g_model));
    if (mm && bm) {
        const ft_adapter_mod *m = ft_adapter_find(a, 2, FT_LIN_Q);
        const ft_st_tensor *w = ft_st_lookup(bm, "model.layers.2.self_attn.q_proj.weight");
        const ft_st_tensor *t = ft_st_lookup(mm, "model.layers.2.self_attn.q_proj.weight");
        FT_CHECK(w && t && t->st_dtype == w->st_dtype && m, "merged q_proj present, same dtype");
        if (w && t && m) {
            const float *W = w->data, *M = t->data;
            double acc = 0;
            for (int64_t j = 0; j < m->r; j++) acc += (double)m->B[7 * m->r + j] * m->A[j * m->in + 9];
            double want = W[7 * 64 + 9] + m->scale * acc;
            FT_CHECK(fabs(M[7 * 64 + 9] - want) <= 1e-6 * (fabs(want) + 1), "merged HF element (7,9) unpermuted");
        }
        FT_CHECK(ft_st_count(mm) == ft_st_count(bm), "same tensors");
    }
    ft_st_close(mm);
    ft_st_close(bm);
}

/* ft_merge_gguf_tensor_bytes (what `ftune plan` counts for export.merged) against the merges
 * themselves: the file less its header is the count to the byte, and so is the tensor count, for
 * stories260K in every GGUF kind (the Q4_K_M mix falls back at its 64-wide rows) and for one layer
 * of the llama-3-8b shape (llama3 RoPE: rope_freqs; 4096-wide rows: Q8_0 and the Q4_K_M mix proper
 * would take too long here, Q8_0 does). */
static void check_merged_bytes(const char *base, ft_merge_kind kind) {
    char path[4200];
    snprintf(path, sizeof path, "%s/size-%s.gguf", ft_test_tmpdir(), ft_merge_kind_name(kind));
    ft_model_config cfg;
    FT_CHECK_OK(ft_cfg_load(&cfg, base));
    int64_t bytes = -1, count = -1;
    FT_CHECK_OK(ft_merge_gguf_tensor_bytes(&cfg, kind, &bytes, &count));
    ft_merge_opts o = {.base_dir = base, .out = path, .kind = kind};
    FT_CHECK_OK(ft_merge(&o, NULL));
    ft_gguf *g = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    if (!g) return;
    const int64_t data = ft_gguf_file_size(g) - ft_gguf_data_offset(g);
    FT_CHECK(data == bytes && ft_gguf_tensor_count(g) == count, "%s %s: tensors %lld bytes in %lld, counted %lld in %lld",
             base, ft_merge_kind_name(kind), (long long)data, (long long)ft_gguf_tensor_count(g), (long long)bytes,
             (long long)count);
    ft_gguf_close(g);
    remove(path);
}

static void test_merged_bytes(void) {
    static const ft_merge_kind kinds[] = {FT_MERGE_F32,  FT_MERGE_F16,    FT_MERGE_BF16,   FT_MERGE_Q8_0,
                                          FT_MERGE_Q4_0, FT_MERGE_Q4_K_M, FT_MERGE_Q5_K_M, FT_MERGE_Q6_K};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) check_merged_bytes(g_model, kinds[i]);
    const ft_bench_shape *s = ft_bench_shape_find("llama-3-8b");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/l3-1layer", ft_test_tmpdir());
    FT_CHECK_OK(ft_bench_write_checkpoint(s, 1, 512, 1, dir, 7));
    static const char *const tok[] = {"tokenizer.json", "tokenizer_config.json"}; /* stories260K's: 512 tokens */
    for (int i = 0; i < 2; i++) {
        char src[4300], dst[4300], *buf = NULL;
        int64_t len = 0;
        snprintf(src, sizeof src, "%s/%s", g_model, tok[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, tok[i]);
        FT_CHECK_OK(ft_test_read_file(src, &buf, &len));
        FILE *f = fopen(dst, "wb");
        FT_CHECK(f && buf && fwrite(buf, 1, (size_t)len, f) == (size_t)len, "copy %s", tok[i]);
        if (f) fclose(f);
        free(buf);
    }
    check_merged_bytes(dir, FT_MERGE_Q8_0);
    ft_model_config cfg;
    FT_CHECK_OK(ft_cfg_load(&cfg, dir));
    FT_CHECK(cfg.rope.type == FT_ROPE_LLAMA3, "llama-3-8b shape: llama3 RoPE (rope_freqs in the GGUF)");
}

/* The elements of GGUF string array k, indexed once (ft_gguf_arr_str walks from the start: a
 * lookup per token of a 150k vocab took minutes). Each element is a u64 length and its bytes. */
typedef struct { const char **s; int64_t *len, n; } str_index;
static str_index index_strs(const ft_gguf *g, int64_t k) {
    str_index x = {0};
    const char *p;
    int64_t n = ft_gguf_arr_n(g, k), len;
    if (n <= 0 || !ft_gguf_arr_str(g, k, 0, &p, &len)) return x;
    x.s = malloc((size_t)n * sizeof *x.s), x.len = malloc((size_t)n * sizeof *x.len), x.n = n;
    const uint8_t *q = (const uint8_t *)p - 8;
    for (int64_t j = 0; j < n; j++) {
        uint64_t l;
        memcpy(&l, q, 8);
        x.s[j] = (const char *)q + 8, x.len[j] = (int64_t)l;
        q += 8 + l;
    }
    return x;
}
static int str_is(const str_index *x, int64_t j, const char *s) {
    return j >= 0 && j < x->n && x->len[j] == (int64_t)strlen(s) && memcmp(x->s[j], s, (size_t)x->len[j]) == 0;
}

/* The tokenizer.* metadata of a byte-level BPE model (Llama 3, Qwen2/3: none of the stories260K
 * cases above), against the tokenizer's own files read here and convert_hf_to_gguf.py's rules:
 * tokenizer.ggml.model "gpt2", .pre from the Split regex, every vocab and added token at its id
 * (added special ones CONTROL), [PADn] (UNUSED) up to config's vocab_size, every merge in the
 * "a b" form (Llama 3 stores them as strings, Qwen as pairs), no scores, EOS and padding ids from
 * tokenizer_config.json, add_bos_token from it (-1: absent, as convert leaves it when neither
 * tokenizer_config.json nor a TemplateProcessing post-processor says). An added token is CONTROL
 * when marked special or when it looks special ("<|...|>": convert's does_token_look_special, so
 * Qwen's "<|fim_prefix|>", special false, is CONTROL), else USER_DEFINED. */
static void test_vocab_byte_level(const char *asset, const char *want_pre, int64_t V, int want_add_bos) {
    char dir[4200], cmd[16000], path[4300];
    snprintf(dir, sizeof dir, "%s/vocab-%s", ft_test_tmpdir(), asset);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && gzip -dc '%s/assets/%s/tokenizer.json.gz' > '%s/tokenizer.json' && "
             "cp '%s/assets/%s/tokenizer_config.json' '%s/'",
             dir, ft_test_shared_dir(), asset, dir, ft_test_shared_dir(), asset, dir);
    if (!FT_CHECK(ft_test_run(cmd, NULL) == 0, "%s from the shared assets", asset)) return;
    char *text = NULL, *ctext = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FT_CHECK_OK(ft_test_read_file(path, &text, NULL));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FT_CHECK_OK(ft_test_read_file(path, &ctext, NULL));
    cJSON *tj = text ? cJSON_Parse(text) : NULL, *tc = ctext ? cJSON_Parse(ctext) : NULL;
    free(text);
    free(ctext);
    if (!FT_CHECK(tj && tc, "%s: tokenizer files parse", asset)) goto out;
    const cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "model"), "vocab");
    const cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(tj, "model"), "merges");
    const cJSON *added = cJSON_GetObjectItem(tj, "added_tokens");

    snprintf(path, sizeof path, "%s/vocab.gguf", dir);
    ft_ggufw *w = NULL;
    ft_vocab_info vi = {0};
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    FT_CHECK_OK(ft_gguf_vocab_write(w, dir, V, -1, -1, &vi));
    FT_CHECK_OK(ft_ggufw_finish(w));
    const int64_t n_tok = cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added);
    FT_CHECK(!strcmp(vi.model, "gpt2") && !strcmp(vi.pre, want_pre) && vi.n_tokens == n_tok,
             "%s: info model %s pre %s, %lld tokens (want gpt2, %s, %lld)", asset, vi.model, vi.pre,
             (long long)vi.n_tokens, want_pre, (long long)n_tok);
    ft_vocab_info_free(&vi);
    ft_gguf *g = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    if (!g) goto out;
    int64_t kt = ft_gguf_find_key(g, "tokenizer.ggml.tokens"), ky = ft_gguf_find_key(g, "tokenizer.ggml.token_type");
    int64_t km = ft_gguf_find_key(g, "tokenizer.ggml.merges");
    const char *sp;
    int64_t sl;
    FT_CHECK(ft_gguf_get_str(g, ft_gguf_find_key(g, "tokenizer.ggml.model"), &sp, &sl) && sl == 4 && !memcmp(sp, "gpt2", 4),
             "%s: tokenizer.ggml.model gpt2", asset);
    FT_CHECK(ft_gguf_get_str(g, ft_gguf_find_key(g, "tokenizer.ggml.pre"), &sp, &sl) &&
                 sl == (int64_t)strlen(want_pre) && !memcmp(sp, want_pre, (size_t)sl),
             "%s: tokenizer.ggml.pre %s", asset, want_pre);
    FT_CHECK(ft_gguf_arr_n(g, kt) == V && ft_gguf_arr_n(g, ky) == V, "%s: %lld tokens and types", asset, (long long)V);
    FT_CHECK(ft_gguf_find_key(g, "tokenizer.ggml.scores") < 0, "%s: no scores (byte-level BPE)", asset);
    str_index toks = index_strs(g, kt), mrg = index_strs(g, km);
    int64_t bad_tok = 0, checked = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int64_t id = (int64_t)e->valuedouble;
        double ty = 0;
        if (!str_is(&toks, id, e->string) || !ft_gguf_arr_num(g, ky, id, &ty) || ty != 1) bad_tok++;
        checked++;
    }
    cJSON_ArrayForEach(e, added) {
        int64_t id = (int64_t)cJSON_GetObjectItem(e, "id")->valuedouble;
        double ty = 0;
        const char *c = cJSON_GetObjectItem(e, "content")->valuestring;
        size_t cl = strlen(c);
        int special = cJSON_IsTrue(cJSON_GetObjectItem(e, "special")) ||
                      (cl >= 4 && !strncmp(c, "<|", 2) && !strcmp(c + cl - 2, "|>"));
        if (!str_is(&toks, id, c) || !ft_gguf_arr_num(g, ky, id, &ty) || ty != (special ? 3 : 4)) bad_tok++;
        checked++;
    }
    FT_CHECK(bad_tok == 0 && checked == n_tok, "%s: %lld of %lld tokens wrong (text or type)", asset, (long long)bad_tok,
             (long long)checked);
    char pad[32];
    double ty = 0;
    snprintf(pad, sizeof pad, "[PAD%lld]", (long long)(V - 1));
    FT_CHECK(n_tok == V || (str_is(&toks, V - 1, pad) && ft_gguf_arr_num(g, ky, V - 1, &ty) && ty == 5),
             "%s: id %lld is %s, UNUSED", asset, (long long)(V - 1), pad);
    int64_t bad_merge = 0, j = 0;
    FT_CHECK(ft_gguf_arr_n(g, km) == cJSON_GetArraySize(merges), "%s: %lld merges, tokenizer.json has %d", asset,
             (long long)ft_gguf_arr_n(g, km), cJSON_GetArraySize(merges));
    cJSON_ArrayForEach(e, merges) {
        char m[1024];
        if (cJSON_IsString(e)) snprintf(m, sizeof m, "%s", e->valuestring);
        else snprintf(m, sizeof m, "%s %s", cJSON_GetArrayItem(e, 0)->valuestring, cJSON_GetArrayItem(e, 1)->valuestring);
        bad_merge += !str_is(&mrg, j++, m);
    }
    FT_CHECK(bad_merge == 0, "%s: %lld merges differ from tokenizer.json's", asset, (long long)bad_merge);
    /* special ids: EOS and padding as tokenizer_config.json names them */
    const char *names[] = {"eos_token", "pad_token", "bos_token"};
    const char *keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.bos_token_id"};
    for (int k = 0; k < 3; k++) {
        const cJSON *t = cJSON_GetObjectItem(tc, names[k]);
        int64_t want = -1;
        if (cJSON_IsString(t)) {
            const cJSON *v = cJSON_GetObjectItem(vocab, t->valuestring);
            if (v) want = (int64_t)v->valuedouble;
            cJSON_ArrayForEach(e, added) if (!strcmp(cJSON_GetObjectItem(e, "content")->valuestring, t->valuestring))
                want = (int64_t)cJSON_GetObjectItem(e, "id")->valuedouble;
        }
        uint32_t got = 0;
        int64_t kk = ft_gguf_find_key(g, keys[k]);
        int id_ok = want < 0 ? kk < 0 : (ft_gguf_get_u32(g, kk, &got) && got == (uint32_t)want);
        FT_CHECK(id_ok, "%s: %s %lld (got %u)", asset, keys[k], (long long)want, got);
    }
    int add_bos = -1;
    int64_t kb = ft_gguf_find_key(g, "tokenizer.ggml.add_bos_token");
    int bos_ok = want_add_bos < 0 ? kb < 0 : (ft_gguf_get_bool(g, kb, &add_bos) && add_bos == want_add_bos);
    FT_CHECK(bos_ok, "%s: add_bos_token %d (want %d)", asset, add_bos, want_add_bos);
    free(toks.s), free(toks.len), free(mrg.s), free(mrg.len);
    ft_gguf_close(g);
out:
    cJSON_Delete(tj);
    cJSON_Delete(tc);
}

int main(void) {
    snprintf(g_model, sizeof g_model, "%s/models/stories260K", ft_test_src_dir());
    snprintf(g_adapter, sizeof g_adapter, "%s/tests/fixtures/export/stories_adapter", ft_test_src_dir());
    test_permutation();
    ft_adapter a;
    FT_CHECK_OK(ft_adapter_load(&a, g_adapter));
    FT_CHECK(a.n == 10 && a.r == 4 && a.rslora, "10 modules, r=4, rsLoRA");
    FT_CHECK(a.n > 0 && fabs(a.m[0].scale - 4.0) < 1e-12, "scale alpha/sqrt(r) = 4 (got %g)", a.n ? a.m[0].scale : 0);
    FT_CHECK(a.n > 1 && a.m[0].layer == 0 && a.m[0].lin == FT_LIN_Q && a.m[1].lin == FT_LIN_V, "sorted by layer, module");
    ft_model_config cfg;
    char base[4096];
    FT_CHECK_OK(ft_adapter_base_config(&a, NULL, &cfg, base, sizeof base)); /* relative base_model_name_or_path */
    FT_CHECK_OK(ft_adapter_check(&a, &cfg, base));
    if (a.n == 10) {
        test_adapter_gguf(&a, &cfg);
        test_merged(&a, &cfg);
    }
    test_merged_bytes();
    test_vocab_byte_level("qwen3-tokenizer", "qwen2", 151936, 0);
    test_vocab_byte_level("llama3-tokenizer", "llama-bpe", 128256, -1);
    ft_adapter_free(&a);
    return ft_test_finish();
}
