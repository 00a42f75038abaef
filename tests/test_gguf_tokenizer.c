/* test_gguf_tokenizer.c: the tokenizer of a GGUF file (trainer/gguf_tokenizer.c over
 * data/tokenizer_vocab.c) against references nobody here wrote:
 * - llama.cpp's own vocab GGUFs (gpt-2, llama-spm, phi-3; ../shared/assets/llamacpp-vocab) with
 *   their .inp/.out vectors (ids made by HF tokenizers / sentencepiece, no BOS);
 * - llama-bpe and qwen2, whose upstream GGUFs are too big to stage: the GGUF is written from
 *   ../shared/assets/llama3-tokenizer and qwen3-tokenizer by our vocab writer (export/gguf_vocab.c,
 *   as `ftune merge` does) and loaded back; the vectors, and the same ids and decoded text as the
 *   tokenizer.json tokenizer over the vectors, tests/fixtures/tokenizer/corpus.json and chat text
 *   with special tokens; special ids, vocab size, chat template; the same for "tekken" with Llama 3's
 *   tokenizer.json under the Tekken Split regex as the stand-in tokenizer.json; and Llama 2's
 *   tokenizer.model written by the same writer, against the llama-spm vectors;
 * Also decode round trips of every vector, and the refusals (bert/t5 models, an unknown pre-tokenizer,
 * missing and mistyped keys), each message naming the file and the key. Skips (77) without
 * ../shared/assets (CI has them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "data/tokenizer.h"
#include "data/tokenizer_pre.h"
#include "export/gguf.h"
#include "export/gguf_vocab.h"
#include "tests/harness.h"
#include "trainer/gguf_tokenizer.h"

static char *fmt(char *buf, size_t n, const char *f, const char *a, const char *b) {
    snprintf(buf, n, f, a, b);
    return buf;
}

static ft_tok *load_gguf(const char *path) {
    ft_gguf *g = NULL;
    ft_tok *tok = NULL;
    ft_status st = ft_gguf_open(&g, path);
    if (st == FT_OK) st = ft_gguf_tok_load(&tok, g, path);
    FT_CHECK(st == FT_OK, "load %s: %s", path, ft_error_msg());
    ft_gguf_close(g);
    return tok;
}

/* ids as " a b c" (the .out form). */
static char *ids_str(const int32_t *ids, int64_t n) {
    char *s = calloc(1, (size_t)n * 12 + 1);
    size_t o = 0;
    for (int64_t i = 0; s && i < n; i++) o += (size_t)sprintf(s + o, " %d", ids[i]);
    return s;
}

/* The 46 llama.cpp cases of one vocab: each input is followed by "\n__ggml_vocab_test__\n", each
 * output line is " id id ...". Also decode(encode(text)) == text. Returns matches; *total set. */
static int run_vectors(ft_tok *tok, const char *label, const char *vocab, int *total, int *round_trips) {
    char p1[4200], p2[4200];
    const char *sh = ft_test_shared_dir();
    char *inp = NULL, *out = NULL;
    *total = 0, *round_trips = 0;
    if (ft_test_read_file(fmt(p1, sizeof p1, "%s/assets/llamacpp-vocab/ggml-vocab-%s.gguf.inp", sh, vocab), &inp, NULL) ||
        ft_test_read_file(fmt(p2, sizeof p2, "%s/assets/llamacpp-vocab/ggml-vocab-%s.gguf.out", sh, vocab), &out, NULL)) {
        FT_CHECK(0, "%s: llama.cpp vectors missing", vocab);
        free(inp);
        return 0;
    }
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = inp, *o = out, *q;
    int ok = 0, shown = 0;
    while ((q = strstr(p, sep))) {
        *q = 0;
        char *want = o, *oe = strchr(o, '\n');
        if (oe) *oe = 0, o = oe + 1;
        else o += strlen(o);
        int32_t *ids = NULL;
        int64_t n = 0;
        if (ft_tok_encode(tok, p, -1, 0, &ids, &n) == FT_OK) {
            char *got = ids_str(ids, n);
            int same = got && strcmp(got, want) == 0;
            ok += same;
            if (!same && shown++ < 4) printf("  %s/%s mismatch on [%s]:\n    ours [%s]\n    want [%s]\n", label, vocab, p, got, want);
            free(got);
            char *text = NULL;
            if (ft_tok_decode(tok, ids, n, 0, &text, NULL) == FT_OK && strcmp(text, p) == 0) (*round_trips)++;
            else if (shown++ < 4) printf("  %s round trip of [%s] gave [%s]\n", label, p, text ? text : "(error)");
            free(text);
            free(ids);
        }
        (*total)++;
        p = q + strlen(sep);
    }
    printf("%-10s llama.cpp %-9s vectors %d/%d, round trips %d/%d\n", label, vocab, ok, *total, *round_trips, *total);
    free(inp);
    free(out);
    return ok;
}

static void test_upstream_gguf(const char *vocab) {
    char path[4200];
    fmt(path, sizeof path, "%s/assets/llamacpp-vocab/ggml-vocab-%s.gguf", ft_test_shared_dir(), vocab);
    ft_tok *tok = load_gguf(path);
    if (!tok) return;
    int total, rt, ok = run_vectors(tok, "gguf", vocab, &total, &rt);
    FT_CHECK(total == 46 && ok == total, "%s: llama.cpp vectors %d/%d", vocab, ok, total);
    FT_CHECK(rt == total, "%s: round trips %d/%d", vocab, rt, total);
    FT_CHECK(!strcmp(ft_tok_path(tok), path), "path kept");
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!strcmp(vocab, "gpt-2")) {
        FT_CHECK(ft_tok_vocab_size(tok) == 50257 && ft_tok_bos_id(tok) == 50256 && ft_tok_eos_id(tok) == 50256,
                 "gpt-2 size %lld bos %d eos %d", (long long)ft_tok_vocab_size(tok), ft_tok_bos_id(tok), ft_tok_eos_id(tok));
        FT_CHECK(!ft_tok_adds_bos(tok), "gpt-2 (pre gpt-2, no add_bos_token): no BOS, as llama.cpp");
        FT_CHECK(ft_tok_encode(tok, "a<|endoftext|>b", -1, 0, &ids, &n) == FT_OK && n == 3 && ids[0] == 64 &&
                     ids[1] == 50256 && ids[2] == 65, "a control token is matched whole");
        FT_CHECK(ft_tok_is_special(tok, 50256), "control -> special");
    } else {
        int phi = !strcmp(vocab, "phi-3");
        /* phi-3's [PAD32011..32063] fillers are not tokens of its tokenizer.json */
        FT_CHECK(ft_tok_vocab_size(tok) == (phi ? 32011 : 32000), "%s vocab size %lld", vocab,
                 (long long)ft_tok_vocab_size(tok));
        if (phi) FT_CHECK(ft_tok_id_to_piece(tok, 32020) == NULL, "phi-3 filler [PAD32020] has no piece");
        FT_CHECK(ft_tok_id_to_piece(tok, 31999) != NULL, "%s: last piece", vocab);
        FT_CHECK(ft_tok_adds_bos(tok) && ft_tok_bos_id(tok) == 1 && ft_tok_unk_id(tok) == 0, "%s: BOS added, unk 0", vocab);
        FT_CHECK(ft_tok_eos_id(tok) == (phi ? 32000 : 2), "%s eos %d", vocab, ft_tok_eos_id(tok));
        /* BOS + legacy SentencePiece: a space before the text and after each special token */
        const char *text = phi ? "<|user|>Hello<|end|>" : "Hello</s>Hello";
        FT_CHECK(ft_tok_encode(tok, text, -1, 1, &ids, &n) == FT_OK, "encode");
        char *got = ids_str(ids, n);
        const char *want = phi ? " 1 32010 15043 32007" : " 1 15043 2 15043";
        FT_CHECK(got && !strcmp(got, want), "%s [%s]: [%s] want [%s]", vocab, text, got, want);
        free(got);
        char *dec = NULL;
        FT_CHECK(ft_tok_decode(tok, ids, n, 1, &dec, NULL) == FT_OK && !strcmp(dec, phi ? "Hello" : "Hello Hello"),
                 "%s decode skip_special [%s]", vocab, dec ? dec : "");
        free(dec);
        if (phi) FT_CHECK(ft_tok_chat_template(tok) && strstr(ft_tok_chat_template(tok), "<|user|>"), "phi-3 chat template");
    }
    free(ids);
    ft_tok_free(tok);
}

/* Replaces the Split regex of DIR/tokenizer.json with re. */
static int set_split_regex(const char *dir, const char *re) {
    char path[4300], *text = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (ft_test_read_file(path, &text, NULL) != FT_OK) return 0;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *list = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pre_tokenizer"), "pretokenizers"), *p;
    int n = 0;
    cJSON_ArrayForEach(p, list) {
        cJSON *pat = cJSON_GetObjectItem(p, "pattern");
        if (pat && cJSON_GetObjectItem(pat, "Regex")) n += cJSON_ReplaceItemInObject(pat, "Regex", cJSON_CreateString(re));
    }
    char *out = n == 1 ? cJSON_PrintUnformatted(j) : NULL;
    FILE *f = out ? fopen(path, "wb") : NULL;
    int ok = f && fputs(out, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(out);
    cJSON_Delete(j);
    return ok;
}

/* DIR/tokenizer.json (+ config) of the llama3 / qwen3 asset in the tmpdir. "tekken": no Tekken
 * tokenizer.json is in ../shared/assets; Llama 3's with the Tekken Split regex stands in (as in
 * tests/ref/interop_llamacpp.py), which checks the "tekken" row of data/tokenizer_pre.h end to end. */
static int prepare(const char *name, char *dir, size_t dsz) {
    const char *sh = ft_test_shared_dir(), *src = !strcmp(name, "tekken") ? "llama3" : name;
    char cmd[16384];
    snprintf(dir, dsz, "%s/%s", ft_test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && gzip -dc '%s/assets/%s-tokenizer/tokenizer.json.gz' > '%s/tokenizer.json' && "
             "cp '%s/assets/%s-tokenizer/tokenizer_config.json' '%s/'", dir, sh, src, dir, sh, src, dir);
    if (ft_test_run(cmd, NULL) != 0) return 0;
    return strcmp(name, "tekken") != 0 || set_split_regex(dir, FT_TOK_RE_TEKKEN);
}

static int same_ids(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* One text through both tokenizers: ids, decode, decode skip_special (where both agree on which ids
 * are special). Returns 1 when everything matched. */
static int compare_text(ft_tok *js, ft_tok *gg, const char *text, int *special_differs) {
    int32_t *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    int ok = ft_tok_encode(js, text, -1, 0, &a, &na) == FT_OK && ft_tok_encode(gg, text, -1, 0, &b, &nb) == FT_OK &&
             same_ids(a, na, b, nb);
    for (int skip = 0; ok && skip < 2; skip++) {
        int differs = 0;
        for (int64_t i = 0; skip && i < na; i++) differs |= ft_tok_is_special(js, a[i]) != ft_tok_is_special(gg, a[i]);
        if (differs) {
            (*special_differs)++;
            continue;
        }
        char *x = NULL, *y = NULL;
        ok = ft_tok_decode(js, a, na, skip, &x, NULL) == FT_OK && ft_tok_decode(gg, a, na, skip, &y, NULL) == FT_OK &&
             strcmp(x, y) == 0;
        free(x);
        free(y);
    }
    free(a);
    free(b);
    return ok;
}

static void test_written_gguf(const char *name, const char *vocab, int64_t V) {
    char dir[4200], path[4300];
    if (!FT_CHECK(prepare(name, dir, sizeof dir), "%s: prepare", name)) return;
    snprintf(path, sizeof path, "%s/%s-vocab.gguf", ft_test_tmpdir(), name);
    ft_ggufw *w = NULL;
    ft_vocab_info vi;
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    FT_CHECK_OK(ft_gguf_vocab_write(w, dir, V, -1, -1, &vi));
    FT_CHECK_OK(ft_ggufw_finish(w));
    FT_CHECK(!strcmp(vi.pre, vocab), "%s: writer chose pre %s", name, vi.pre);
    ft_vocab_info_free(&vi);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ft_tok *gg = load_gguf(path), *js = NULL;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%-10s GGUF tokenizer loaded in %.2f s\n", name, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    FT_CHECK_OK(ft_tok_load(&js, dir));
    if (!gg || !js) {
        ft_tok_free(gg);
        ft_tok_free(js);
        return;
    }
    if (strcmp(vocab, "tekken") != 0) {
        int total, rt, ok = run_vectors(gg, name, vocab, &total, &rt);
        FT_CHECK(total == 46 && ok == total, "%s: llama.cpp vectors %d/%d", name, ok, total);
        /* Qwen's NFC normalizer makes decode differ from a text that is not in NFC; none of the vectors is */
        FT_CHECK(rt == total, "%s: round trips %d/%d", name, rt, total);
    }

    /* the same tokenizer as tokenizer.json: the vectors, the tokenizer corpus, chat text */
    char cp[4200];
    char *cj = NULL;
    cJSON *corpus = NULL;
    snprintf(cp, sizeof cp, "%s/tests/fixtures/tokenizer/corpus.json", ft_test_src_dir());
    if (ft_test_read_file(cp, &cj, NULL) == FT_OK) corpus = cJSON_Parse(cj);
    free(cj);
    FT_CHECK(corpus != NULL, "corpus.json");
    static const char *const chat[] = {
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant"
        "<|end_header_id|>\n\n",
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
        "four</think>\n\n4<|im_end|>\n<tool_call>{\"a\": 1}</tool_call><|fim_prefix|>x<|fim_suffix|>",
        "<|endoftext|>plain<|reserved_special_token_5|> text <|finetune_right_pad_id|>",
        "HelloWorld CamelCaseWords XMLHttpRequest \xC3\x80\xC3\x89\xC3\x8E\xC3\xB4\xC3\xBC/path/to\r\n  x"};
    int n = 0, same = 0, special_differs = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, corpus) {
        if (!cJSON_IsString(e)) continue;
        n++;
        same += compare_text(js, gg, e->valuestring, &special_differs);
    }
    for (size_t i = 0; i < sizeof chat / sizeof *chat; i++) {
        n++;
        same += compare_text(js, gg, chat[i], &special_differs);
    }
    cJSON_Delete(corpus);
    printf("%-10s same as tokenizer.json on %d/%d texts (skip_special decode not compared on %d: the GGUF marks "
           "<|...|> added tokens CONTROL)\n", name, same, n, special_differs);
    FT_CHECK(same == n, "%s: %d/%d texts as tokenizer.json", name, same, n);
    FT_CHECK(ft_tok_vocab_size(gg) == ft_tok_vocab_size(js), "%s vocab size %lld vs %lld", name,
             (long long)ft_tok_vocab_size(gg), (long long)ft_tok_vocab_size(js));
    FT_CHECK(ft_tok_bos_id(gg) == ft_tok_bos_id(js) && ft_tok_eos_id(gg) == ft_tok_eos_id(js) &&
                 ft_tok_pad_id(gg) == ft_tok_pad_id(js), "%s special ids bos %d/%d eos %d/%d pad %d/%d", name,
             ft_tok_bos_id(gg), ft_tok_bos_id(js), ft_tok_eos_id(gg), ft_tok_eos_id(js), ft_tok_pad_id(gg), ft_tok_pad_id(js));
    FT_CHECK(ft_tok_chat_template(gg) && ft_tok_chat_template(js) && !strcmp(ft_tok_chat_template(gg), ft_tok_chat_template(js)),
             "%s chat template", name);
    /* llama.cpp's add_bos: Llama 3 and Tekken (no add_bos_token in the config) get BOS, Qwen (false) not */
    FT_CHECK(ft_tok_adds_bos(gg) == (strcmp(vocab, "qwen2") != 0), "%s adds_bos %d", name, ft_tok_adds_bos(gg));
    /* every id has the same piece (fillers past the tokenizer have none) */
    int64_t bad = 0;
    for (int32_t id = 0; id < (int32_t)V; id++) {
        const char *x = ft_tok_id_to_piece(js, id), *y = ft_tok_id_to_piece(gg, id);
        bad += (x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0);
    }
    FT_CHECK(bad == 0, "%s: %lld ids with another piece", name, (long long)bad);
    ft_tok_free(gg);
    ft_tok_free(js);
}

/* ---- refusals ---- */

typedef struct {
    const char *model, *pre;
    int tokens;          /* 0 none, 1 strings, 2 wrong type (u32 array) */
    int types;           /* 0 none, 1 i32, 2 f32 */
    int merges;
    int bos_i32;         /* bos id written as INT32 */
} bad_vocab;

static void expect_refusal(const char *label, const bad_vocab *b, ft_status want, const char *key) {
    char path[4300];
    snprintf(path, sizeof path, "%s/bad-%s.gguf", ft_test_tmpdir(), label);
    static const char *const toks[] = {"a", "b", "ab", "<|end|>"};
    const int32_t tt[] = {1, 1, 1, 3};
    const float tf[] = {1, 1, 1, 3};
    const uint32_t tu[] = {1, 2, 3, 4};
    static const char *const mg[] = {"a b"};
    ft_ggufw *w = NULL;
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    if (b->model) FT_CHECK_OK(ft_ggufw_set_str(w, "tokenizer.ggml.model", b->model));
    if (b->pre) FT_CHECK_OK(ft_ggufw_set_str(w, "tokenizer.ggml.pre", b->pre));
    if (b->tokens == 1) FT_CHECK_OK(ft_ggufw_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4));
    if (b->tokens == 2) FT_CHECK_OK(ft_ggufw_set_arr_u32(w, "tokenizer.ggml.tokens", tu, 4));
    if (b->types == 1) FT_CHECK_OK(ft_ggufw_set_arr_i32(w, "tokenizer.ggml.token_type", tt, 4));
    if (b->types == 2) FT_CHECK_OK(ft_ggufw_set_arr_f32(w, "tokenizer.ggml.token_type", tf, 4));
    if (b->merges) FT_CHECK_OK(ft_ggufw_set_arr_str(w, "tokenizer.ggml.merges", mg, 1));
    if (b->bos_i32) FT_CHECK_OK(ft_ggufw_set_i32(w, "tokenizer.ggml.bos_token_id", 0));
    FT_CHECK_OK(ft_ggufw_finish(w));
    ft_gguf *g = NULL;
    ft_tok *tok = NULL;
    FT_CHECK_OK(ft_gguf_open(&g, path));
    ft_status st = g ? ft_gguf_tok_load(&tok, g, path) : FT_E_IO;
    const char *msg = ft_error_msg();
    FT_CHECK(st == want && tok == NULL, "%s: status %s, want %s (%s)", label, ft_status_str(st), ft_status_str(want), msg);
    FT_CHECK(strstr(msg, path) && strstr(msg, key), "%s: message names file and %s: %s", label, key, msg);
    if (b->model && st == want) printf("refused %-14s %s\n", label, msg);
    ft_tok_free(tok);
    ft_gguf_close(g);
}

static void test_refusals(void) {
    expect_refusal("bert", &(bad_vocab){"bert", NULL, 1, 1, 0, 0}, FT_E_UNSUPPORTED, "\"bert\"");
    expect_refusal("t5", &(bad_vocab){"t5", NULL, 1, 1, 0, 0}, FT_E_UNSUPPORTED, "tokenizer.ggml.model");
    expect_refusal("rwkv", &(bad_vocab){"rwkv", NULL, 1, 1, 0, 0}, FT_E_UNSUPPORTED, "\"rwkv\"");
    expect_refusal("no-model", &(bad_vocab){NULL, NULL, 1, 1, 1, 0}, FT_E_FORMAT, "tokenizer.ggml.model");
    expect_refusal("pre", &(bad_vocab){"gpt2", "falcon", 1, 1, 1, 0}, FT_E_UNSUPPORTED, "tokenizer.ggml.pre");
    expect_refusal("no-tokens", &(bad_vocab){"gpt2", "qwen2", 0, 0, 1, 0}, FT_E_FORMAT, "tokenizer.ggml.tokens");
    expect_refusal("tokens-type", &(bad_vocab){"gpt2", "qwen2", 2, 0, 1, 0}, FT_E_FORMAT, "tokenizer.ggml.tokens");
    expect_refusal("types-f32", &(bad_vocab){"gpt2", "qwen2", 1, 2, 1, 0}, FT_E_FORMAT, "tokenizer.ggml.token_type");
    expect_refusal("no-merges", &(bad_vocab){"gpt2", "qwen2", 1, 1, 0, 0}, FT_E_FORMAT, "tokenizer.ggml.merges");
    expect_refusal("bos-i32", &(bad_vocab){"gpt2", "qwen2", 1, 1, 1, 1}, FT_E_FORMAT, "tokenizer.ggml.bos_token_id");
    expect_refusal("spm-no-scores", &(bad_vocab){"llama", NULL, 1, 1, 0, 0}, FT_E_FORMAT, "tokenizer.ggml.scores");

    /* the smallest good one: a merge applies, the control token is special */
    char path[4300];
    snprintf(path, sizeof path, "%s/bad-good.gguf", ft_test_tmpdir());
    ft_ggufw *w = NULL;
    static const char *const toks[] = {"a", "b", "ab", "<|end|>"};
    const int32_t tt[] = {1, 1, 1, 3};
    static const char *const mg[] = {"a b"};
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    FT_CHECK_OK(ft_ggufw_set_str(w, "tokenizer.ggml.model", "gpt2"));
    FT_CHECK_OK(ft_ggufw_set_str(w, "tokenizer.ggml.pre", "qwen2"));
    FT_CHECK_OK(ft_ggufw_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4));
    FT_CHECK_OK(ft_ggufw_set_arr_i32(w, "tokenizer.ggml.token_type", tt, 4));
    FT_CHECK_OK(ft_ggufw_set_arr_str(w, "tokenizer.ggml.merges", mg, 1));
    FT_CHECK_OK(ft_ggufw_set_u32(w, "tokenizer.ggml.eos_token_id", 3));
    FT_CHECK_OK(ft_ggufw_set_u32(w, "tokenizer.ggml.bos_token_id", 99)); /* outside: ignored with a warning */
    FT_CHECK_OK(ft_ggufw_finish(w));
    ft_tok *tok = load_gguf(path);
    if (tok) {
        int32_t *ids = NULL;
        int64_t n = 0;
        FT_CHECK(ft_tok_encode(tok, "aab<|end|>", -1, 1, &ids, &n) == FT_OK && n == 3 && ids[0] == 0 && ids[1] == 2 &&
                     ids[2] == 3, "tiny gpt2 vocab encodes");
        FT_CHECK(ft_tok_is_special(tok, 3) && ft_tok_eos_id(tok) == 3 && ft_tok_bos_id(tok) == -1, "tiny specials");
        free(ids);
        ft_tok_free(tok);
    }
}

/* Llama 2's tokenizer.model alone through our writer (its SentencePiece path: pieces, scores, types)
 * and back: the llama-spm vectors as from llama.cpp's own GGUF. */
static void test_written_spm(void) {
    char dir[4200], path[4300], cmd[9000];
    snprintf(dir, sizeof dir, "%s/llama2-model", ft_test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/assets/llama2-sentencepiece/tokenizer.model' '%s/'", dir,
             ft_test_shared_dir(), dir);
    if (!FT_CHECK(ft_test_run(cmd, NULL) == 0, "llama2 tokenizer.model")) return;
    snprintf(path, sizeof path, "%s/llama2-vocab.gguf", ft_test_tmpdir());
    ft_ggufw *w = NULL;
    FT_CHECK_OK(ft_ggufw_open(&w, path));
    FT_CHECK_OK(ft_gguf_vocab_write(w, dir, 32000, -1, -1, NULL));
    FT_CHECK_OK(ft_ggufw_finish(w));
    ft_tok *tok = load_gguf(path);
    if (!tok) return;
    int total, rt, ok = run_vectors(tok, "llama2", "llama-spm", &total, &rt);
    FT_CHECK(total == 46 && ok == total && rt == total, "llama2 tokenizer.model: vectors %d/%d, round trips %d", ok,
             total, rt);
    FT_CHECK(ft_tok_adds_bos(tok) && ft_tok_bos_id(tok) == 1 && ft_tok_eos_id(tok) == 2, "llama2 specials");
    ft_tok_free(tok);
}

static char *encode_str(ft_tok *tok, const char *text, int add_special) {
    int32_t *ids = NULL;
    int64_t n = 0;
    char *s = ft_tok_encode(tok, text, -1, add_special, &ids, &n) == FT_OK ? ids_str(ids, n) : NULL;
    free(ids);
    return s;
}

static char *decode_str(ft_tok *tok, const int32_t *ids, int64_t n, int skip) {
    char *text = NULL;
    if (ft_tok_decode(tok, ids, n, skip, &text, NULL) != FT_OK) return NULL;
    return text;
}

/* ft_tok_load_vocab on a hand-made SentencePiece vocabulary: merges derived from the scores, byte
 * fallback, an unknown fallback id, the "[PADi]" filler left out, add_space_prefix both ways. */
static void test_synthetic_spm(void) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "h", "i", "hi", "\xE2\x96\x81hi",
                                       "<0x21>", "[PAD9]", "<x>"};
    const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 6, 5, 4};
    /* "▁h"+"i" is no split (▁h is no token); hi (-4) merges before ▁hi (-5) */
    const float scores[] = {0, 0, 0, -1, -2, -3, -4, -5, 0, 0, 0};
    for (int prefix = 1; prefix >= 0; prefix--) {
        ft_tok_vocab v = {.model = "llama", .tokens = toks, .types = types, .scores = scores, .n_tokens = 11,
                          .bos_id = -1, .eos_id = -1, .unk_id = -1, .pad_id = -1, .add_bos = -1, .add_eos = 1,
                          .add_space_prefix = prefix, .path = "synthetic.gguf"};
        ft_tok *tok = NULL;
        FT_CHECK_OK(ft_tok_load_vocab(&tok, &v));
        if (!tok) return;
        FT_CHECK(ft_tok_vocab_size(tok) == 11 && ft_tok_id_to_piece(tok, 9) == NULL, "filler left out");
        FT_CHECK(ft_tok_bos_id(tok) == 1 && ft_tok_eos_id(tok) == 2 && ft_tok_unk_id(tok) == 0 && ft_tok_adds_bos(tok),
                 "llama.cpp's SentencePiece defaults: bos 1, eos 2, unk 0, add_bos");
        char *a = encode_str(tok, "hi!", 1), *b = encode_str(tok, " hi<x>hi", 0), *c = encode_str(tok, "hq", 0);
        /* prefix: "▁hi" "!"; without: "hi" "!". After the user-defined <x> a space again (legacy). "q" has
         * no byte token: unk */
        FT_CHECK(a && !strcmp(a, prefix ? " 1 7 8 2" : " 1 6 8 2"), "prefix %d: [hi!] -> [%s]", prefix, a);
        FT_CHECK(b && !strcmp(b, prefix ? " 3 7 10 7" : " 7 10 6"), "prefix %d: [ hi<x>hi] -> [%s]", prefix, b);
        FT_CHECK(c && !strcmp(c, prefix ? " 3 4 0" : " 4 0"), "prefix %d: [hq] -> [%s]", prefix, c);
        const int32_t ids[] = {1, 7, 8, 10, 6, 2};
        char *d = decode_str(tok, ids, 6, 1), *e = decode_str(tok, ids, 6, 0);
        FT_CHECK(d && !strcmp(d, prefix ? "hi!<x>hi" : " hi!<x>hi"), "prefix %d: decode skip [%s]", prefix, d ? d : "(null)");
        FT_CHECK(e && !strcmp(e, prefix ? "<s> hi!<x>hi</s>" : "<s> hi!<x>hi</s>"), "prefix %d: decode [%s]", prefix, e ? e : "(null)");
        free(a), free(b), free(c), free(d), free(e);
        ft_tok_free(tok);
    }
    ft_tok_vocab bad = {.model = "t5", .tokens = toks, .n_tokens = 11, .path = "synthetic.gguf"};
    ft_tok *tok = NULL;
    FT_CHECK(ft_tok_load_vocab(&tok, &bad) == FT_E_UNSUPPORTED && !tok, "t5 refused by ft_tok_load_vocab");
}

int main(void) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/assets/llamacpp-vocab/ggml-vocab-gpt-2.gguf", ft_test_shared_dir());
    if (access(probe, R_OK) != 0) {
        printf("SKIP: %s not found (../shared/assets)\n", probe);
        return 77;
    }
    test_upstream_gguf("gpt-2");
    test_upstream_gguf("llama-spm");
    test_upstream_gguf("phi-3");
    test_written_gguf("llama3", "llama-bpe", 128256);
    test_written_gguf("qwen3", "qwen2", 151936);
    test_written_gguf("tekken", "tekken", 128256);
    test_written_spm();
    test_refusals();
    test_synthetic_spm();
    return ft_test_finish();
}
