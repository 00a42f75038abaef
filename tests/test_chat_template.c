/* test_chat_template.c: native chat templates against transformers.
 *  - tests/fixtures/chat/goldens.json (tests/ref/make_chat_golden.py): for llama3, llama3.1,
 *    qwen2.5, qwen3 and mistral (Nemo Jinja) conversations, the rendered string must equal
 *    apply_chat_template(tokenize=False) byte for byte, and (with the real Llama 3 / Qwen3
 *    tokenizers, decompressed from the shared assets) the ids and the assistant mask must equal
 *    apply_chat_template(tokenize=True) and the offset-based mask;
 *  - mistral-v3 against mistral-common's text_v3 golden (no_tools);
 *  - segment-wise encoding equals encoding the whole rendered string, on real datasets;
 *  - raw formats (Stanford Alpaca text, prompt-completion, text) and their masks;
 *  - template errors, names and detection from the Jinja files;
 *  - the whole pipeline on a real dataset (JSONL -> template -> ids -> shards -> packing), which
 *    prints the packing efficiency with real token counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/chat_prompt.h"
#include "data/chat_template.h"
#include "data/jsonl.h"
#include "data/pack.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/log.h"
#include "tests/harness.h"

/* ---- tokenizers from the shared assets ---------------------------------------------------- */

static ft_tok *load_tok(const char *name) {
    char dir[1024], cmd[8192], src[1024];
    snprintf(src, sizeof src, "%s/assets/%s", ft_test_shared_dir(), name);
    snprintf(dir, sizeof dir, "%s/%s", ft_test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && gzip -dc '%s/tokenizer.json.gz' > '%s/tokenizer.json' && cp '%s/tokenizer_config.json' '%s/'",
             dir, src, dir, src, dir);
    if (system(cmd) != 0) {
        printf("skip: cannot unpack %s\n", src);
        return NULL;
    }
    ft_tok *tok = NULL;
    FT_CHECK_OK(ft_tok_load(&tok, dir));
    return tok;
}

/* The Mistral v3 SentencePiece tokenizer committed with the tokenizer goldens (zstd). */
static ft_tok *load_fixture_tok(const char *name) {
    char dir[1024], src[1024], cmd[4096];
    snprintf(src, sizeof src, "%s/tests/fixtures/tokenizer/%s", ft_test_src_dir(), name);
    snprintf(dir, sizeof dir, "%s/%s", ft_test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/tokenizer_config.json' '%s/'", dir, src, dir);
    char zst[1100], tj[1100];
    snprintf(zst, sizeof zst, "%s/tokenizer.json.zst", src);
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    if (!FT_CHECK(system(cmd) == 0 && ft_test_unzstd(zst, tj), "unpack %s", zst)) return NULL;
    ft_tok *tok = NULL;
    FT_CHECK_OK(ft_tok_load(&tok, dir));
    return tok;
}

static ft_tok *TOK_LLAMA3, *TOK_QWEN3, *TOK_MISTRAL_SPM;
static ft_tok *tok_for(const char *name) {
    if (!name) return NULL;
    if (!strcmp(name, "llama3-tokenizer")) return TOK_LLAMA3;
    if (!strcmp(name, "qwen3-tokenizer")) return TOK_QWEN3;
    if (!strcmp(name, "mistral-spm")) return TOK_MISTRAL_SPM;
    return NULL;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static void show_diff(const char *what, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t a = i > 30 ? i - 30 : 0;
    printf("  %s: first difference at byte %zu\n    got:  \"%.60s\"\n    want: \"%.60s\"\n", what, i, got + a, want + a);
}

static int msgs_from_json(const cJSON *arr, ft_chat_msg *out) {
    int n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        const char *role = cJSON_GetObjectItem(m, "role")->valuestring;
        out[n].role = !strcmp(role, "system") ? FT_ROLE_SYSTEM : !strcmp(role, "user") ? FT_ROLE_USER : FT_ROLE_ASSISTANT;
        out[n].content = cJSON_GetObjectItem(m, "content")->valuestring;
        const cJSON *r = cJSON_GetObjectItem(m, "reasoning_content");
        out[n].reasoning = cJSON_IsString(r) ? r->valuestring : NULL;
        n++;
    }
    return n;
}

/* ---- goldens ---------------------------------------------------------------------------------- */

static void test_goldens(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat/goldens.json", ft_test_src_dir());
    char *text;
    int64_t len;
    FT_CHECK_OK(ft_test_read_file(path, &text, &len));
    cJSON *root = cJSON_Parse(text);
    free(text);
    FT_CHECK(root != NULL, "goldens parse");
    if (!root) return;
    ft_rendered r = {0};
    ft_encoded e = {0};
    int n_text = 0, n_ids = 0, n_cases = 0, n_prompt = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        ft_chat_msg msgs[32];
        int n = msgs_from_json(cJSON_GetObjectItem(c, "messages"), msgs);
        ft_render_opts o = {0};
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        /* mistral-spm: the mistral template over a SentencePiece tokenizer (make_chat_golden.py) */
        FT_CHECK_OK(ft_chat_template_parse(strcmp(tname, "mistral-spm") == 0 ? "mistral" : tname, &o.tmpl));
        FT_CHECK_OK(ft_loss_mode_parse(cJSON_GetObjectItem(c, "loss")->valuestring, &o.loss));
        o.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        const cJSON *ds = cJSON_GetObjectItem(c, "date_string");
        o.date_string = cJSON_IsString(ds) ? ds->valuestring : NULL;
        n_cases++;
        ft_status st = ft_chat_render(msgs, n, &o, &r);
        FT_CHECK(st == FT_OK, "%s: render: %s", name, ft_error_msg());
        if (st != FT_OK) continue;
        const char *want = cJSON_GetObjectItem(c, "text")->valuestring;
        if (!FT_CHECK(strcmp(r.text, want) == 0 && r.len == (int64_t)strlen(want), "%s: rendered text", name))
            show_diff(name, r.text, want);
        else
            n_text++;
        const cJSON *tn = cJSON_GetObjectItem(c, "tokenizer");
        ft_tok *tok = tok_for(cJSON_IsString(tn) ? tn->valuestring : NULL);
        if (!tok) continue;
        FT_CHECK_OK(ft_rendered_encode(tok, &r, &e));
        const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *mask = cJSON_GetObjectItem(c, "mask");
        int64_t nw = cJSON_GetArraySize(ids), bad_id = -1, bad_mask = -1;
        for (int64_t i = 0; i < nw && i < e.n; i++) {
            if (bad_id < 0 && e.ids[i] != cJSON_GetArrayItem(ids, (int)i)->valueint) bad_id = i;
            if (bad_mask < 0 && e.mask[i] != cJSON_GetArrayItem(mask, (int)i)->valueint) bad_mask = i;
        }
        int ok = FT_CHECK(e.n == nw && bad_id < 0, "%s: ids (%lld vs %lld golden, first mismatch at %lld)", name,
                          (long long)e.n, (long long)nw, (long long)bad_id);
        ok &= FT_CHECK(bad_mask < 0, "%s: assistant mask (first mismatch at token %lld)", name, (long long)bad_mask);
        n_ids += ok;
        /* a user turn for generation: what training's samples and `ftune generate --chat` encode */
        if (strstr(name, "/user_prompt") && o.add_generation_prompt && n == 1) {
            int32_t *pids = NULL;
            int64_t np = 0;
            ft_render_opts po = {.tmpl = o.tmpl};
            FT_CHECK_OK(ft_chat_prompt_ids(tok, &po, msgs[0].content, &pids, &np));
            int same = np == nw;
            for (int64_t i = 0; same && i < np; i++) same = pids[i] == cJSON_GetArrayItem(ids, (int)i)->valueint;
            FT_CHECK(same, "%s: ft_chat_prompt_ids gives the ids of apply_chat_template(add_generation_prompt=True)",
                     name);
            n_prompt += same;
            free(pids);
        }
    }
    printf("goldens: %d/%d rendered strings and %d id+mask sequences match transformers\n", n_text, n_cases, n_ids);
    FT_CHECK(n_prompt == 5, "%d of 5 generation prompts (llama3, llama3.1, qwen2.5, qwen3, mistral-spm) checked", n_prompt);
    ft_rendered_free(&r);
    ft_encoded_free(&e);
    cJSON_Delete(root);
}

/* mistral-common's no_tools text_v3 ("▁" for spaces, <0x0A> for newlines): the v3 convention. */
static void test_mistral_v3(void) {
    char path[1024];
    char *sample, *want;
    int64_t len;
    snprintf(path, sizeof path, "%s/assets/mistral-chat-goldens/no_tools/sample.json", ft_test_shared_dir());
    if (ft_test_read_file(path, &sample, &len) != FT_OK) {
        printf("skip: %s\n", path);
        return;
    }
    snprintf(path, sizeof path, "%s/assets/mistral-chat-goldens/no_tools/text_v3.txt", ft_test_shared_dir());
    FT_CHECK_OK(ft_test_read_file(path, &want, &len));
    /* pieces -> text */
    char *exp = malloc((size_t)len + 1), *q = exp;
    for (const char *p = want; *p;) {
        if (!strncmp(p, "\xe2\x96\x81", 3)) *q++ = ' ', p += 3;
        else if (!strncmp(p, "<0x0A>", 6)) *q++ = '\n', p += 6;
        else *q++ = *p++;
    }
    *q = 0;
    while (q > exp && q[-1] == '\n') *--q = 0;
    cJSON *root = cJSON_Parse(sample);
    ft_chat_msg msgs[32];
    int n = msgs_from_json(cJSON_GetObjectItem(root, "messages"), msgs);
    ft_render_opts o = {.tmpl = FT_TMPL_MISTRAL_V3, .add_generation_prompt = 1};
    ft_rendered r = {0};
    FT_CHECK_OK(ft_chat_render(msgs, n, &o, &r));
    if (!FT_CHECK(strcmp(r.text, exp) == 0, "mistral-v3 equals mistral-common text_v3 (no_tools)"))
        show_diff("mistral-v3", r.text, exp);
    /* same conversation with a system prompt: it opens the last user message */
    ft_chat_msg with_sys[33];
    with_sys[0] = (ft_chat_msg){FT_ROLE_SYSTEM, "Be brief.", NULL};
    memcpy(with_sys + 1, msgs, (size_t)n * sizeof *msgs);
    FT_CHECK_OK(ft_chat_render(with_sys, n + 1, &o, &r));
    FT_CHECK(strstr(r.text, "[INST] Be brief.\n\nThanks[/INST]") != NULL && !strstr(r.text, "Be brief.\n\nWhat"),
             "mistral-v3 system prompt in the last user message");
    /* training conversation ending with the assistant: the system prompt still goes in */
    ft_chat_msg tr[3] = {{FT_ROLE_SYSTEM, "S", NULL}, {FT_ROLE_USER, "U", NULL}, {FT_ROLE_ASSISTANT, "A", NULL}};
    o.tmpl = FT_TMPL_MISTRAL;
    FT_CHECK_OK(ft_chat_render(tr, 3, &o, &r));
    FT_CHECK(!strcmp(r.text, "<s>[INST]S\n\nU[/INST]A</s>"), "mistral training render: %s", r.text);
    /* bad role orders */
    ft_chat_msg bad[3] = {{FT_ROLE_USER, "U", NULL}, {FT_ROLE_USER, "U2", NULL}, {FT_ROLE_ASSISTANT, "A", NULL}};
    FT_CHECK(ft_chat_render(bad, 3, &o, &r) == FT_E_FORMAT && strstr(ft_error_msg(), "messages[1]") &&
                 strstr(ft_error_msg(), "alternating"),
             "mistral alternation error: %s", ft_error_msg());
    ft_chat_msg bad2[3] = {{FT_ROLE_USER, "U", NULL}, {FT_ROLE_SYSTEM, "S", NULL}, {FT_ROLE_ASSISTANT, "A", NULL}};
    FT_CHECK(ft_chat_render(bad2, 3, &o, &r) == FT_E_FORMAT && strstr(ft_error_msg(), "only at the start"),
             "mistral late system error: %s", ft_error_msg());
    ft_rendered_free(&r);
    cJSON_Delete(root);
    free(sample);
    free(want);
    free(exp);
}

static void test_raw_formats(void) {
    ft_rendered r = {0};
    ft_record rec = {0};
    ft_render_opts o = {.bos_token = "<|begin_of_text|>", .eos_token = "<|end_of_text|>"};
    rec.format = FT_FMT_ALPACA;
    rec.instruction = "Add the numbers.";
    rec.input = "2 3";
    rec.output = "5";
    FT_CHECK_OK(ft_render_record(&rec, &o, &r));
    const char *want =
        "<|begin_of_text|>Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n"
        "### Input:\n2 3\n\n### Response:5<|end_of_text|>";
    FT_CHECK(!strcmp(r.text, want), "alpaca with input: %s", r.text);
    FT_CHECK(r.n_segs == 4 && !r.segs[0].train && !r.segs[1].train && r.segs[2].train && r.segs[3].train,
             "alpaca segments: bos, prompt untrained; output, eos trained");
    rec.input = "";
    FT_CHECK_OK(ft_render_record(&rec, &o, &r));
    FT_CHECK(!strcmp(r.text, "<|begin_of_text|>Below is an instruction that describes a task. Write a response that "
                             "appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n"
                             "### Response:5<|end_of_text|>"),
             "alpaca without input: %s", r.text);
    rec = (ft_record){.format = FT_FMT_TEXT, .text = "hello"};
    FT_CHECK_OK(ft_render_record(&rec, &o, &r));
    FT_CHECK(r.n_segs == 3 && r.segs[0].train && r.segs[1].train && r.segs[2].train, "text trains everything");
    rec = (ft_record){.format = FT_FMT_PROMPT_COMPLETION, .prompt = "Q: hi\nA:", .completion = " yo"};
    o.bos_token = NULL;
    FT_CHECK_OK(ft_render_record(&rec, &o, &r));
    FT_CHECK(!strcmp(r.text, "Q: hi\nA: yo<|end_of_text|>") && !r.segs[0].train && r.segs[1].train,
             "prompt-completion raw");
    /* through a chat template */
    o.tmpl = FT_TMPL_QWEN3;
    rec = (ft_record){.format = FT_FMT_ALPACA, .instruction = "Do X.", .input = "data", .output = "done"};
    FT_CHECK_OK(ft_render_record(&rec, &o, &r));
    FT_CHECK(!strcmp(r.text, "<|im_start|>user\nDo X.\n\ndata<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                             "done<|im_end|>\n"),
             "alpaca through qwen3: %s", r.text);
    o.tmpl = FT_TMPL_NONE;
    ft_chat_msg m[2] = {{FT_ROLE_USER, "u", NULL}, {FT_ROLE_ASSISTANT, "a", NULL}};
    FT_CHECK(ft_chat_render(m, 2, &o, &r) == FT_E_ARG, "chat without a template refused");

    if (TOK_LLAMA3) {
        ft_encoded e = {0};
        ft_render_opts_from_tok(&o, TOK_LLAMA3);
        rec = (ft_record){.format = FT_FMT_PROMPT_COMPLETION, .prompt = "The capital of France is", .completion = " Paris."};
        FT_CHECK_OK(ft_render_record(&rec, &o, &r));
        FT_CHECK_OK(ft_rendered_encode(TOK_LLAMA3, &r, &e));
        int32_t *whole;
        int64_t nw;
        FT_CHECK_OK(ft_tok_encode(TOK_LLAMA3, "The capital of France is Paris.", -1, 1, &whole, &nw));
        int eos = ft_tok_eos_id(TOK_LLAMA3);
        FT_CHECK(e.n == nw + 1 && !memcmp(e.ids, whole, (size_t)nw * 4) && e.ids[nw] == eos,
                 "prompt-completion ids = tokenizer(prompt+completion, add_special) + eos (%lld vs %lld)",
                 (long long)e.n, (long long)nw);
        /* " Paris." is " Paris" "." : the last two real tokens and eos are trained */
        int64_t trained = 0;
        for (int64_t i = 0; i < e.n; i++) trained += e.mask[i];
        FT_CHECK(trained == 3 && e.mask[e.n - 1] && e.mask[e.n - 2] && e.mask[e.n - 3] && !e.mask[e.n - 4],
                 "completion mask (%lld trained)", (long long)trained);
        free(whole);
        ft_encoded_free(&e);
    }
    ft_rendered_free(&r);
}

static void test_names(void) {
    static const struct { const char *file; ft_chat_template t; } det[] = {
        {"meta-llama-Meta-Llama-3-8B-Instruct.jinja", FT_TMPL_LLAMA3},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", FT_TMPL_LLAMA31},
        {"meta-llama-Llama-3.2-3B-Instruct.jinja", FT_TMPL_LLAMA31},
        {"Qwen-Qwen2.5-7B-Instruct.jinja", FT_TMPL_QWEN25},
        {"Qwen-Qwen3-0.6B.jinja", FT_TMPL_QWEN3},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", FT_TMPL_MISTRAL},
    };
    for (size_t i = 0; i < sizeof det / sizeof det[0]; i++) {
        char path[1024];
        char *j;
        int64_t len;
        snprintf(path, sizeof path, "%s/assets/chat-templates/%s", ft_test_shared_dir(), det[i].file);
        if (ft_test_read_file(path, &j, &len) != FT_OK) continue;
        ft_chat_template t;
        FT_CHECK(ft_chat_template_detect(j, &t) == FT_OK && t == det[i].t, "detect %s -> %s", det[i].file,
                 ft_chat_template_name(t));
        free(j);
    }
    ft_chat_template t;
    { /* Mistral Small 3's template (committed beside the goldens: not among the shared assets) */
        char path[1024];
        char *j;
        int64_t len;
        snprintf(path, sizeof path, "%s/tests/fixtures/chat/mistralai-Mistral-Small-24B-Instruct-2501.jinja",
                 ft_test_src_dir());
        FT_CHECK_OK(ft_test_read_file(path, &j, &len));
        FT_CHECK(j && ft_chat_template_detect(j, &t) == FT_OK && t == FT_TMPL_MISTRAL_V7, "detect Mistral Small 3 -> %s",
                 j ? ft_chat_template_name(t) : "?");
        free(j);
    }
    FT_CHECK(ft_chat_template_detect("{{ messages }}", &t) == FT_E_UNSUPPORTED, "unknown template refused");
    FT_CHECK(ft_chat_template_parse("llama3.2", &t) == FT_OK && t == FT_TMPL_LLAMA31, "llama3.2 alias");
    FT_CHECK(ft_chat_template_parse("vicuna", &t) == FT_E_ARG && strstr(ft_error_msg(), "vicuna"), "bad name");
    /* Qwen2's ChatML (default system "You are a helpful assistant.") is its own, not Qwen2.5's, which puts
     * Alibaba's system prompt into every example without one */
    FT_CHECK(ft_chat_template_parse("qwen2", &t) == FT_OK && t == FT_TMPL_QWEN2, "qwen2 is its own template");
    FT_CHECK(ft_chat_template_detect("{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
                                     "are a helpful assistant.<|im_end|>\\n' }}{% endif %}", &t) == FT_OK &&
                 t == FT_TMPL_QWEN2,
             "Qwen2's ChatML (its default system prompt) detected as qwen2");
    FT_CHECK(ft_chat_template_detect("<|im_start|>{{ message.role }}", &t) == FT_E_UNSUPPORTED,
             "a ChatML template that is none of Qwen2's, Qwen2.5's, Qwen3's is refused");
    ft_error_clear();
    { /* LLaMA-Factory's tests/data/test_template.py (test_qwen_template) asserts this rendering of
       * Qwen/Qwen2-7B-Instruct's own template (transformers' apply_chat_template) */
        const ft_chat_msg m[3] = {{FT_ROLE_USER, "How are you", NULL}, {FT_ROLE_ASSISTANT, "I am fine!", NULL},
                                  {FT_ROLE_USER, "\u4f60\u597d", NULL}};
        ft_render_opts o = {.tmpl = FT_TMPL_QWEN2, .add_generation_prompt = 1};
        ft_rendered r = {0};
        FT_CHECK_OK(ft_chat_render(m, 3, &o, &r));
        const char *want = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                           "<|im_start|>user\nHow are you<|im_end|>\n"
                           "<|im_start|>assistant\nI am fine!<|im_end|>\n"
                           "<|im_start|>user\n\u4f60\u597d<|im_end|>\n"
                           "<|im_start|>assistant\n";
        FT_CHECK(r.text && strcmp(r.text, want) == 0, "qwen2 renders as Qwen2-7B-Instruct's template: %s",
                 r.text ? r.text : "(none)");
        ft_rendered_free(&r);
    }
    if (TOK_QWEN3) {
        FT_CHECK(ft_chat_template_detect(ft_tok_chat_template(TOK_QWEN3), &t) == FT_OK && t == FT_TMPL_QWEN3,
                 "detect from the Qwen3 tokenizer_config");
    }
}

/* Segment-wise encoding must equal encoding the rendered string at once, on real data. */
static int64_t check_whole_vs_segments(ft_tok *tok, ft_chat_template tmpl, const char *rel, int64_t max_records) {
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/%s", ft_test_shared_dir(), rel);
    ft_jsonl *jr;
    if (ft_jsonl_open(&jr, path, NULL) != FT_OK) return 0;
    ft_render_opts o = {.tmpl = tmpl};
    ft_render_opts_from_tok(&o, tok);
    ft_rendered r = {0};
    ft_encoded e = {0};
    ft_tok_ids whole = {0};
    const ft_record *rec;
    int64_t n = 0, bad = 0;
    while (n < max_records && ft_jsonl_next(jr, &rec) == FT_OK && rec) {
        FT_CHECK_OK(ft_render_record(rec, &o, &r));
        FT_CHECK_OK(ft_rendered_encode(tok, &r, &e));
        whole.n = 0;
        FT_CHECK_OK(ft_tok_encode_append(tok, r.text, r.len, 0, &whole));
        if (whole.n != e.n || memcmp(whole.ids, e.ids, (size_t)e.n * 4)) {
            if (bad++ < 3) printf("  %s line %lld: segment encoding differs from whole-string encoding\n", rel, (long long)rec->line);
        }
        n++;
    }
    FT_CHECK(bad == 0, "%s with %s: %lld of %lld records differ", rel, ft_chat_template_name(tmpl), (long long)bad,
             (long long)n);
    ft_tok_ids_free(&whole);
    ft_rendered_free(&r);
    ft_encoded_free(&e);
    ft_jsonl_close(jr);
    return n;
}

static void test_whole_vs_segments(void) {
    int64_t n = 0;
    if (TOK_LLAMA3) {
        n += check_whole_vs_segments(TOK_LLAMA3, FT_TMPL_LLAMA31, "datasets/mlx-wwdc25-prompt-completion/valid.jsonl", 150);
        n += check_whole_vs_segments(TOK_LLAMA3, FT_TMPL_NONE, "datasets/llamafactory/identity.json", 100);
    }
    if (TOK_QWEN3) {
        n += check_whole_vs_segments(TOK_QWEN3, FT_TMPL_QWEN3, "datasets/mlx-wwdc25-prompt-completion/valid.jsonl", 150);
        n += check_whole_vs_segments(TOK_QWEN3, FT_TMPL_QWEN25, "datasets/llamafactory/identity.json", 100);
    }
    printf("segment-wise encoding equals whole-string encoding on %lld real records\n", (long long)n);
}

/* JSONL -> template -> ids -> shards -> packing on the WWDC prompt-completion set. */
static void test_pipeline(void) {
    if (!TOK_LLAMA3) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/assets/datasets/mlx-wwdc25-prompt-completion/train.jsonl", ft_test_shared_dir());
    ft_jsonl *jr;
    FT_CHECK_OK(ft_jsonl_open(&jr, path, NULL));
    ft_render_opts o = {.tmpl = FT_TMPL_LLAMA31};
    ft_render_opts_from_tok(&o, TOK_LLAMA3);
    ft_rendered r = {0};
    ft_encoded e = {0};
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", ft_test_tmpdir());
    ft_shard_writer *w;
    ft_shard_writer_opts so = {.shard_tokens = 200000, .fingerprint = "llama3/llama3.1/assistant"};
    FT_CHECK_OK(ft_shard_writer_open(&w, dir, "wwdc", &so));
    const ft_record *rec;
    int64_t n = 0;
    while (ft_jsonl_next(jr, &rec) == FT_OK && rec) {
        FT_CHECK_OK(ft_render_record(rec, &o, &r));
        FT_CHECK_OK(ft_rendered_encode(TOK_LLAMA3, &r, &e));
        FT_CHECK_OK(ft_shard_writer_add(w, e.ids, e.mask, e.n));
        n++;
    }
    ft_jsonl_close(jr);
    FT_CHECK_OK(ft_shard_writer_finish(w));
    char idx[1100];
    snprintf(idx, sizeof idx, "%s/wwdc.index.json", dir);
    ft_examples ex;
    ft_shard_info info;
    FT_CHECK_OK(ft_shards_load(idx, "llama3/llama3.1/assistant", &ex, &info));
    FT_CHECK(ex.n == n && n == 1800, "pipeline: %lld records -> %lld examples", (long long)n, (long long)ex.n);
    printf("wwdc train (llama3.1 template): %lld examples, %lld tokens in %lld shards (%.2f MB)\n", (long long)ex.n,
           (long long)ex.n_tokens, (long long)info.n_shards, info.compressed_bytes / 1e6);
    for (int s = 0; s < 3; s++) {
        for (int64_t T = 1024; T <= 4096; T *= 2) {
            ft_pack_opts po = {.seq_len = T, .strategy = (ft_pack_strategy)s, .pad_id = ft_tok_eos_id(TOK_LLAMA3)};
            ft_pack p;
            FT_CHECK_OK(ft_pack_build(&ex, &po, &p));
            char line[256];
            ft_pack_stats_str(&p.stats, line, sizeof line);
            printf("  pack %-10s T=%-5lld %s\n", s == 0 ? "bfd" : s == 1 ? "sequential" : "none", (long long)T, line);
            ft_pack_free(&p);
        }
    }
    ft_examples_free(&ex);
    ft_rendered_free(&r);
    ft_encoded_free(&e);
}

int main(void) {
    TOK_LLAMA3 = load_tok("llama3-tokenizer");
    TOK_QWEN3 = load_tok("qwen3-tokenizer");
    TOK_MISTRAL_SPM = load_fixture_tok("mistral-spm");
    test_goldens();
    test_mistral_v3();
    test_raw_formats();
    test_names();
    test_whole_vs_segments();
    test_pipeline();
    ft_tok_free(TOK_LLAMA3);
    ft_tok_free(TOK_MISTRAL_SPM);
    ft_tok_free(TOK_QWEN3);
    return ft_test_finish();
}
