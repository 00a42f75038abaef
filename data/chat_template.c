/* chat_template.c: see chat_template.h. Each template is a plain C transcription of its Jinja
 * file; comments quote the Jinja expressions where the behaviour is subtle. */
#include "data/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"
#include "kernels/mem.h"

static const char *const ALPACA_INTRO_INPUT =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n";
static const char *const ALPACA_INTRO =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n";
static const char *const QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
/* Qwen2-Instruct's and Qwen1.5-Chat's (LLaMA-Factory's tests/data/test_template.py checks the same
 * rendering of Qwen/Qwen2-7B-Instruct against transformers) */
static const char *const QWEN2_DEFAULT_SYSTEM = "You are a helpful assistant.";

/* ---- names ------------------------------------------------------------------------------- */

static const struct { const char *name; ft_chat_template t; } TMPL_NAMES[] = {
    {"none", FT_TMPL_NONE},       {"llama3", FT_TMPL_LLAMA3},     {"llama3.1", FT_TMPL_LLAMA31},
    {"llama3.2", FT_TMPL_LLAMA31}, {"llama3.3", FT_TMPL_LLAMA31},  {"qwen2.5", FT_TMPL_QWEN25},
    {"qwen2", FT_TMPL_QWEN2},     {"qwen3", FT_TMPL_QWEN3},       {"mistral", FT_TMPL_MISTRAL},
    {"mistral-v3", FT_TMPL_MISTRAL_V3}, {"mistral-v7", FT_TMPL_MISTRAL_V7},
};

const char *ft_chat_template_list(void) {
    return "llama3, llama3.1, qwen2, qwen2.5, qwen3, mistral, mistral-v3, mistral-v7";
}

ft_status ft_chat_template_parse(const char *name, ft_chat_template *out) {
    for (size_t i = 0; i < sizeof TMPL_NAMES / sizeof TMPL_NAMES[0]; i++) {
        if (strcmp(name, TMPL_NAMES[i].name) == 0) {
            *out = TMPL_NAMES[i].t;
            return FT_OK;
        }
    }
    return FT_ERR(FT_E_ARG, "unknown chat template \"%s\" (expected %s or none)", name, ft_chat_template_list());
}

const char *ft_chat_template_name(ft_chat_template t) {
    for (size_t i = 0; i < sizeof TMPL_NAMES / sizeof TMPL_NAMES[0]; i++)
        if (TMPL_NAMES[i].t == t) return TMPL_NAMES[i].name;
    return "?";
}

ft_status ft_chat_template_detect(const char *j, ft_chat_template *out) {
    if (!j) return FT_ERR(FT_E_UNSUPPORTED, "the tokenizer has no chat_template; name one (e.g. llama3.1, qwen3)");
    if (strstr(j, "<|im_start|>")) {
        if (strstr(j, "<think>") || strstr(j, "reasoning_content")) *out = FT_TMPL_QWEN3;
        else if (strstr(j, "You are Qwen, created by Alibaba Cloud")) *out = FT_TMPL_QWEN25;
        /* Qwen2's and Qwen1.5's: the same ChatML, their own default system prompt, no tools */
        else if (strstr(j, "You are a helpful assistant.") && !strstr(j, "tool")) *out = FT_TMPL_QWEN2;
        else return FT_ERR(FT_E_UNSUPPORTED, "unrecognized ChatML chat_template; name one (qwen2, qwen2.5 or qwen3) "
                                             "only if it is that model's");
    } else if (strstr(j, "<|start_header_id|>")) {
        *out = strstr(j, "Cutting Knowledge Date") ? FT_TMPL_LLAMA31 : FT_TMPL_LLAMA3;
    } else if (strstr(j, "[SYSTEM_PROMPT]")) { /* Mistral Small 3+: its system tokens, checked before [INST] */
        *out = FT_TMPL_MISTRAL_V7;
    } else if (strstr(j, "[INST]")) {
        *out = strstr(j, "'[INST] '") || strstr(j, "\"[INST] \"") ? FT_TMPL_MISTRAL_V3 : FT_TMPL_MISTRAL;
    } else {
        return FT_ERR(FT_E_UNSUPPORTED, "unrecognized chat_template; name one of %s", ft_chat_template_list());
    }
    return FT_OK;
}

ft_status ft_loss_mode_parse(const char *name, ft_loss_mode *out) {
    if (!strcmp(name, "auto")) *out = FT_LOSS_AUTO;
    else if (!strcmp(name, "assistant") || !strcmp(name, "output") || !strcmp(name, "completion")) *out = FT_LOSS_ASSISTANT;
    else if (!strcmp(name, "last")) *out = FT_LOSS_LAST;
    else if (!strcmp(name, "all")) *out = FT_LOSS_ALL;
    else return FT_ERR(FT_E_ARG, "unknown loss mask \"%s\" (expected auto, assistant, output, last or all)", name);
    return FT_OK;
}

void ft_render_opts_from_tok(ft_render_opts *o, const ft_tok *tok) {
    int32_t bos = ft_tok_bos_id(tok), eos = ft_tok_eos_id(tok);
    o->bos_token = bos >= 0 && ft_tok_adds_bos(tok) ? ft_tok_id_to_piece(tok, bos) : NULL;
    o->eos_token = eos >= 0 ? ft_tok_id_to_piece(tok, eos) : NULL;
}

/* ---- the segment buffer ------------------------------------------------------------------ */

void ft_rendered_free(ft_rendered *r) {
    free(r->text);
    free(r->segs);
    memset(r, 0, sizeof *r);
}

static ft_status rd_add(ft_rendered *r, const char *s, int64_t n, int special, int train) {
    if (n < 0) n = (int64_t)strlen(s);
    if (n == 0 && !special) return FT_OK;
    if (r->len + n + 1 > r->cap) {
        int64_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1) cap *= 2;
        char *t = realloc(r->text, (size_t)cap);
        if (!t) return FT_ERR(FT_E_OOM, "out of memory rendering a chat (%lld bytes)", (long long)cap);
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->len, s, (size_t)n);
    ft_seg *last = r->n_segs ? &r->segs[r->n_segs - 1] : NULL;
    if (!special && last && !last->special && last->train == train && last->off + last->len == r->len) {
        last->len += n; /* extend the previous text piece */
    } else {
        if (r->n_segs == r->cap_segs) {
            int64_t cap = r->cap_segs ? 2 * r->cap_segs : 64;
            ft_seg *g = realloc(r->segs, (size_t)cap * sizeof *g);
            if (!g) return FT_ERR(FT_E_OOM, "out of memory rendering a chat");
            r->segs = g;
            r->cap_segs = cap;
        }
        r->segs[r->n_segs++] = (ft_seg){r->len, n, (uint8_t)(special != 0), (uint8_t)(train != 0)};
    }
    r->len += n;
    r->text[r->len] = 0;
    return FT_OK;
}
#define ADD_TEXT(s, n, train) FT_TRY(rd_add(r, (s), (n), 0, (train)))
#define ADD_SPECIAL(s, train) FT_TRY(rd_add(r, (s), -1, 1, (train)))

static void rd_reset(ft_rendered *r) {
    r->len = 0;
    r->n_segs = 0;
    if (r->text) r->text[0] = 0;
}

/* ---- string helpers with Python semantics -------------------------------------------------- */

/* Length of the Python-whitespace code point at s (0 if none); Jinja's trim is str.strip(). */
static int py_space_at(const unsigned char *s, const unsigned char *end) {
    if (s >= end) return 0;
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && s + 1 < end && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (c == 0xe1 && s + 2 < end && s[1] == 0x9a && s[2] == 0x80) return 3; /* U+1680 */
    if (c == 0xe2 && s + 2 < end) {
        unsigned a = s[1], b = s[2];
        if (a == 0x80 && ((b >= 0x80 && b <= 0x8a) || b == 0xa8 || b == 0xa9 || b == 0xaf)) return 3;
        if (a == 0x81 && b == 0x9f) return 3; /* U+205F */
    }
    if (c == 0xe3 && s + 2 < end && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
    return 0;
}

/* Start of the last code point of [b, e). */
static const unsigned char *prev_cp(const unsigned char *b, const unsigned char *e) {
    const unsigned char *p = e - 1;
    while (p > b && (*p & 0xc0) == 0x80) p--;
    return p;
}

/* s.strip() (Python whitespace) as [*out, *out + *n). */
static void py_strip(const char *s, const char **out, int64_t *n) {
    const unsigned char *b = (const unsigned char *)s, *e = b + strlen(s);
    int k;
    while (b < e && (k = py_space_at(b, e)) > 0) b += k;
    while (e > b) {
        const unsigned char *p = prev_cp(b, e);
        if (py_space_at(p, e) != e - p) break;
        e = p;
    }
    *out = (const char *)b;
    *n = e - b;
}

/* s.lstrip('\n') / rstrip('\n') on [*b, *e). */
static void lstrip_nl(const char **b, const char *e) {
    while (*b < e && **b == '\n') (*b)++;
}
static void rstrip_nl(const char *b, const char **e) {
    while (*e > b && (*e)[-1] == '\n') (*e)--;
}

static const char *str_rfind(const char *hay, const char *needle) {
    const char *last = NULL, *p = hay;
    while ((p = strstr(p, needle))) last = p++;
    return last;
}

static int starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
static int ends_with(const char *s, const char *p) {
    size_t a = strlen(s), b = strlen(p);
    return a >= b && memcmp(s + a - b, p, b) == 0;
}

/* Which assistant messages train: all (assistant mode) or only the last one. */
static int64_t last_assistant(const ft_chat_msg *m, int64_t n) {
    for (int64_t i = n - 1; i >= 0; i--)
        if (m[i].role == FT_ROLE_ASSISTANT) return i;
    return -1;
}
static int trains(const ft_render_opts *o, const ft_chat_msg *m, int64_t n, int64_t i) {
    if (m[i].role != FT_ROLE_ASSISTANT) return 0;
    return o->loss != FT_LOSS_LAST || i == last_assistant(m, n);
}

/* ---- Llama 3 / 3.1 ------------------------------------------------------------------------- */

/* '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>' */
static ft_status llama_message(ft_rendered *r, const char *role, const char *content, int train) {
    const char *c;
    int64_t n;
    py_strip(content, &c, &n);
    ADD_SPECIAL("<|start_header_id|>", 0);
    ADD_TEXT(role, -1, 0);
    ADD_SPECIAL("<|end_header_id|>", 0);
    ADD_TEXT("\n\n", 2, 0);
    ADD_TEXT(c, n, train);
    ADD_SPECIAL("<|eot_id|>", train);
    return FT_OK;
}

static ft_status llama_gen_prompt(ft_rendered *r) {
    ADD_SPECIAL("<|start_header_id|>", 0);
    ADD_TEXT("assistant", -1, 0);
    ADD_SPECIAL("<|end_header_id|>", 0);
    ADD_TEXT("\n\n", 2, 0);
    return FT_OK;
}

static ft_status render_llama3(const ft_chat_msg *m, int64_t n, const ft_render_opts *o, ft_rendered *r) {
    ADD_SPECIAL("<|begin_of_text|>", 0); /* bos_token before message 0 */
    for (int64_t i = 0; i < n; i++) FT_TRY(llama_message(r, ft_role_name(m[i].role), m[i].content, trains(o, m, n, i)));
    return llama_gen_prompt(r); /* unconditional in this template */
}

static ft_status render_llama31(const ft_chat_msg *m, int64_t n, const ft_render_opts *o, ft_rendered *r) {
    ADD_SPECIAL("<|begin_of_text|>", 0);
    int64_t first = 0;
    const char *sys = "";
    int64_t sys_n = 0;
    if (n > 0 && m[0].role == FT_ROLE_SYSTEM) {
        py_strip(m[0].content, &sys, &sys_n); /* messages[0]['content']|trim */
        first = 1;
    }
    ADD_SPECIAL("<|start_header_id|>", 0);
    ADD_TEXT("system", -1, 0);
    ADD_SPECIAL("<|end_header_id|>", 0);
    ADD_TEXT("\n\nCutting Knowledge Date: December 2023\nToday Date: ", -1, 0);
    ADD_TEXT(o->date_string ? o->date_string : "26 Jul 2024", -1, 0);
    ADD_TEXT("\n\n", 2, 0);
    ADD_TEXT(sys, sys_n, 0);
    ADD_SPECIAL("<|eot_id|>", 0);
    for (int64_t i = first; i < n; i++)
        FT_TRY(llama_message(r, ft_role_name(m[i].role), m[i].content, trains(o, m, n, i)));
    if (o->add_generation_prompt) FT_TRY(llama_gen_prompt(r));
    return FT_OK;
}

/* ---- Qwen (ChatML) ------------------------------------------------------------------------- */

/* '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n' */
static ft_status chatml_message(ft_rendered *r, const char *role, const char *content, int train) {
    ADD_SPECIAL("<|im_start|>", 0);
    ADD_TEXT(role, -1, 0);
    ADD_TEXT("\n", 1, 0);
    ADD_TEXT(content, -1, train);
    ADD_SPECIAL("<|im_end|>", train);
    ADD_TEXT("\n", 1, 0);
    return FT_OK;
}

/* Qwen2.5's template for conversations without tools, and Qwen2's, which differs only in the
 * system prompt it puts first when the conversation has none */
static ft_status render_qwen25(const ft_chat_msg *m, int64_t n, const ft_render_opts *o, const char *dflt,
                               ft_rendered *r) {
    if (m[0].role == FT_ROLE_SYSTEM) FT_TRY(chatml_message(r, "system", m[0].content, 0));
    else FT_TRY(chatml_message(r, "system", dflt, 0));
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 && m[i].role == FT_ROLE_SYSTEM) continue; /* (message.role == "system" and not loop.first) */
        FT_TRY(chatml_message(r, ft_role_name(m[i].role), m[i].content, trains(o, m, n, i)));
    }
    if (o->add_generation_prompt) {
        ADD_SPECIAL("<|im_start|>", 0);
        ADD_TEXT("assistant\n", -1, 0);
    }
    return FT_OK;
}

static ft_status render_qwen3(const ft_chat_msg *m, int64_t n, const ft_render_opts *o, ft_rendered *r) {
    if (m[0].role == FT_ROLE_SYSTEM) FT_TRY(chatml_message(r, "system", m[0].content, 0));
    /* ns.last_query_index: the last user message that is not a wrapped tool response. */
    int64_t last_query = n - 1;
    for (int64_t i = n - 1; i >= 0; i--) {
        if (m[i].role == FT_ROLE_USER &&
            !(starts_with(m[i].content, "<tool_response>") && ends_with(m[i].content, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        if (m[i].role != FT_ROLE_ASSISTANT) {
            if (i == 0 && m[i].role == FT_ROLE_SYSTEM) continue;
            FT_TRY(chatml_message(r, ft_role_name(m[i].role), m[i].content, 0));
            continue;
        }
        const int train = trains(o, m, n, i);
        const char *cb = m[i].content, *ce = cb + strlen(cb); /* content */
        const char *rb = "", *re = rb;                          /* reasoning_content */
        if (m[i].reasoning) {
            rb = m[i].reasoning;
            re = rb + strlen(rb);
        } else if (strstr(m[i].content, "</think>")) {
            /* content.split('</think>')[-1].lstrip('\n') */
            cb = str_rfind(m[i].content, "</think>") + 8;
            lstrip_nl(&cb, ce);
            /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
            rb = m[i].content;
            re = strstr(m[i].content, "</think>");
            rstrip_nl(rb, &re);
            for (const char *p = rb; (p = strstr(p, "<think>")) && p + 7 <= re; p++) rb = p + 7;
            lstrip_nl(&rb, re);
        }
        ADD_SPECIAL("<|im_start|>", 0);
        ADD_TEXT("assistant\n", -1, 0);
        if (i > last_query && (i == n - 1 || re > rb)) {
            /* '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') */
            lstrip_nl(&rb, re);
            rstrip_nl(rb, &re);
            lstrip_nl(&cb, ce);
            ADD_SPECIAL("<think>", train);
            ADD_TEXT("\n", 1, train);
            ADD_TEXT(rb, re - rb, train);
            ADD_TEXT("\n", 1, train);
            ADD_SPECIAL("</think>", train);
            ADD_TEXT("\n\n", 2, train);
        }
        ADD_TEXT(cb, ce - cb, train);
        ADD_SPECIAL("<|im_end|>", train);
        ADD_TEXT("\n", 1, 0);
    }
    if (o->add_generation_prompt) {
        ADD_SPECIAL("<|im_start|>", 0);
        ADD_TEXT("assistant\n", -1, 0);
    }
    return FT_OK;
}

/* ---- Mistral --------------------------------------------------------------------------------- */

static ft_status render_mistral(const ft_chat_msg *m, int64_t n, const ft_render_opts *o, ft_rendered *r, int v3) {
    int64_t first = 0;
    while (first < n && m[first].role == FT_ROLE_SYSTEM) first++;
    int64_t last_user = -1;
    for (int64_t i = first; i < n; i++) {
        if (m[i].role == FT_ROLE_SYSTEM)
            return FT_ERR(FT_E_FORMAT, "messages[%lld]: %s takes system messages only at the start", (long long)i,
                          ft_chat_template_name(o->tmpl));
        if ((m[i].role == FT_ROLE_USER) != ((i - first) % 2 == 0))
            return FT_ERR(FT_E_FORMAT, "messages[%lld]: %s needs roles alternating user/assistant after the system "
                          "messages (got %s)", (long long)i, ft_chat_template_name(o->tmpl), ft_role_name(m[i].role));
        if (m[i].role == FT_ROLE_USER) last_user = i;
    }
    if (last_user < 0) return FT_ERR(FT_E_FORMAT, "%s needs a user message", ft_chat_template_name(o->tmpl));
    const char *sp = v3 ? " " : "";
    ADD_SPECIAL("<s>", 0);
    for (int64_t i = first; i < n; i++) {
        if (m[i].role == FT_ROLE_USER) {
            ADD_SPECIAL("[INST]", 0);
            ADD_TEXT(sp, -1, 0);
            if (i == last_user && first > 0) {
                /* the system messages, joined by "\n\n", open the last user message */
                for (int64_t s = 0; s < first; s++) {
                    ADD_TEXT(m[s].content, -1, 0);
                    ADD_TEXT("\n\n", 2, 0);
                }
            }
            ADD_TEXT(m[i].content, -1, 0);
            ADD_SPECIAL("[/INST]", 0);
        } else {
            const int train = trains(o, m, n, i);
            ADD_TEXT(sp, -1, train);
            ADD_TEXT(m[i].content, -1, train);
            ADD_SPECIAL("</s>", train);
        }
    }
    return FT_OK;
}

/* Mistral Small 3 / 3.1 / 3.2 (chat_template.h: mistral-v7). */
static ft_status render_mistral_v7(const ft_chat_msg *m, int64_t n, const ft_render_opts *o, ft_rendered *r) {
    ADD_SPECIAL("<s>", 0);
    for (int64_t i = 0; i < n; i++) {
        if (m[i].role == FT_ROLE_SYSTEM) {
            ADD_SPECIAL("[SYSTEM_PROMPT]", 0);
            ADD_TEXT(m[i].content, -1, 0);
            ADD_SPECIAL("[/SYSTEM_PROMPT]", 0);
        } else if (m[i].role == FT_ROLE_USER) {
            ADD_SPECIAL("[INST]", 0);
            ADD_TEXT(m[i].content, -1, 0);
            ADD_SPECIAL("[/INST]", 0);
        } else {
            const int train = trains(o, m, n, i);
            ADD_TEXT(m[i].content, -1, train);
            ADD_SPECIAL("</s>", train);
        }
    }
    return FT_OK;
}

/* ---- entry points ---------------------------------------------------------------------------- */

static void rd_train_all(ft_rendered *r) {
    for (int64_t i = 0; i < r->n_segs; i++) r->segs[i].train = 1;
}

ft_status ft_chat_render(const ft_chat_msg *msgs, int64_t n, const ft_render_opts *o, ft_rendered *r) {
    rd_reset(r);
    if (n <= 0) return FT_ERR(FT_E_FORMAT, "empty conversation");
    ft_status st;
    switch (o->tmpl) {
    case FT_TMPL_LLAMA3: st = render_llama3(msgs, n, o, r); break;
    case FT_TMPL_LLAMA31: st = render_llama31(msgs, n, o, r); break;
    case FT_TMPL_QWEN25: st = render_qwen25(msgs, n, o, QWEN25_DEFAULT_SYSTEM, r); break;
    case FT_TMPL_QWEN2: st = render_qwen25(msgs, n, o, QWEN2_DEFAULT_SYSTEM, r); break;
    case FT_TMPL_QWEN3: st = render_qwen3(msgs, n, o, r); break;
    case FT_TMPL_MISTRAL: st = render_mistral(msgs, n, o, r, 0); break;
    case FT_TMPL_MISTRAL_V3: st = render_mistral(msgs, n, o, r, 1); break;
    case FT_TMPL_MISTRAL_V7: st = render_mistral_v7(msgs, n, o, r); break;
    case FT_TMPL_NONE:
    default: return FT_ERR(FT_E_ARG, "chat records need a chat template (none is set)");
    }
    if (st == FT_OK && o->loss == FT_LOSS_ALL) rd_train_all(r);
    return st;
}

ft_status ft_alpaca_prompt(const char *instruction, const char *input, ft_rendered *r) {
    int has_input = input && input[0];
    ADD_TEXT(has_input ? ALPACA_INTRO_INPUT : ALPACA_INTRO, -1, 0);
    ADD_TEXT("### Instruction:\n", -1, 0);
    ADD_TEXT(instruction, -1, 0);
    if (has_input) {
        ADD_TEXT("\n\n### Input:\n", -1, 0);
        ADD_TEXT(input, -1, 0);
    }
    ADD_TEXT("\n\n### Response:", -1, 0); /* Stanford's PROMPT_DICT ends here; the output follows directly */
    return FT_OK;
}

ft_status ft_render_record(const ft_record *rec, const ft_render_opts *o, ft_rendered *r) {
    rd_reset(r);
    if (rec->format == FT_FMT_CHAT) return ft_chat_render(rec->messages, rec->n_messages, o, r);
    if (rec->format != FT_FMT_TEXT && o->tmpl != FT_TMPL_NONE) {
        /* alpaca / prompt-completion through the chat template as one user/assistant exchange */
        char *user = NULL;
        const char *u = rec->prompt;
        if (rec->format == FT_FMT_ALPACA) {
            size_t a = strlen(rec->instruction), b = strlen(rec->input);
            FT_TRY(ft_malloc((void **)&user, a + b + 3, "alpaca user message"));
            memcpy(user, rec->instruction, a);
            if (b) {
                memcpy(user + a, "\n\n", 2);
                memcpy(user + a + 2, rec->input, b + 1);
            } else {
                user[a] = 0;
            }
            u = user;
        }
        ft_chat_msg m[2] = {{FT_ROLE_USER, u, NULL},
                            {FT_ROLE_ASSISTANT, rec->format == FT_FMT_ALPACA ? rec->output : rec->completion, NULL}};
        ft_status st = ft_chat_render(m, 2, o, r);
        free(user);
        return st;
    }
    /* raw: [bos] prompt target [eos] */
    const int all = o->loss == FT_LOSS_ALL || (o->loss == FT_LOSS_AUTO && rec->format == FT_FMT_TEXT);
    if (o->bos_token) ADD_SPECIAL(o->bos_token, all);
    const char *target = rec->text;
    if (rec->format == FT_FMT_ALPACA) {
        FT_TRY(ft_alpaca_prompt(rec->instruction, rec->input, r));
        target = rec->output;
    } else if (rec->format == FT_FMT_PROMPT_COMPLETION) {
        ADD_TEXT(rec->prompt, -1, 0);
        target = rec->completion;
    }
    ADD_TEXT(target, -1, 1);
    if (o->eos_token) ADD_SPECIAL(o->eos_token, 1);
    if (all) rd_train_all(r);
    return FT_OK;
}

/* ---- encoding ---------------------------------------------------------------------------------- */

void ft_encoded_free(ft_encoded *e) {
    free(e->ids);
    free(e->mask);
    memset(e, 0, sizeof *e);
}

static ft_status enc_reserve(ft_encoded *e, int64_t n) {
    if (n <= e->cap) return FT_OK;
    int64_t cap = e->cap ? e->cap : 1024;
    while (cap < n) cap *= 2;
    int32_t *ids = realloc(e->ids, (size_t)cap * sizeof *ids);
    if (ids) e->ids = ids;
    uint8_t *mask = ids ? realloc(e->mask, (size_t)cap) : NULL;
    if (mask) e->mask = mask;
    if (!ids || !mask) return FT_ERR(FT_E_OOM, "out of memory encoding a chat (%lld tokens)", (long long)cap);
    e->cap = cap;
    return FT_OK;
}

/* Encodes the text run segs[a..b) (no specials) and appends ids and mask to e. */
static ft_status enc_run(const ft_tok *tok, const ft_rendered *r, int64_t a, int64_t b, ft_encoded *e,
                         ft_tok_ids *full, ft_tok_ids *pre) {
    const int64_t run_off = r->segs[a].off, run_len = r->segs[b - 1].off + r->segs[b - 1].len - run_off;
    const char *run = r->text + run_off;
    const int at_start = run_off == 0; /* a run after a special token is not the text's start */
    full->n = 0;
    FT_TRY(ft_tok_encode_run(tok, run, run_len, at_start, full));
    FT_TRY(enc_reserve(e, e->n + full->n));
    memcpy(e->ids + e->n, full->ids, (size_t)full->n * sizeof *full->ids);
    uint8_t *mask = e->mask + e->n;
    int64_t pos = 0;
    int cur = r->segs[a].train;
    for (int64_t k = a + 1; k < b; k++) {
        if (r->segs[k].train == cur) continue;
        /* a mask boundary inside the run: where does the prefix's tokenization leave off? */
        pre->n = 0;
        FT_TRY(ft_tok_encode_run(tok, run, r->segs[k].off - run_off, at_start, pre));
        int64_t lcp = 0;
        while (lcp < pre->n && lcp < full->n && pre->ids[lcp] == full->ids[lcp]) lcp++;
        int64_t idx = lcp;
        if (lcp < pre->n && !r->segs[k].train) idx = lcp + 1; /* a straddling token is trainable */
        if (idx > full->n) idx = full->n;
        for (; pos < idx; pos++) mask[pos] = (uint8_t)cur;
        cur = r->segs[k].train;
    }
    for (; pos < full->n; pos++) mask[pos] = (uint8_t)cur;
    e->n += full->n;
    return FT_OK;
}

ft_status ft_rendered_encode(const ft_tok *tok, const ft_rendered *r, ft_encoded *e) {
    e->n = 0;
    ft_tok_ids full = {0}, pre = {0};
    ft_status st = FT_OK;
    int64_t i = 0;
    while (i < r->n_segs && st == FT_OK) {
        const ft_seg *s = &r->segs[i];
        if (s->special) {
            char piece[256];
            if (s->len >= (int64_t)sizeof piece) {
                st = FT_ERR(FT_E_FORMAT, "special token too long (%lld bytes)", (long long)s->len);
                break;
            }
            memcpy(piece, r->text + s->off, (size_t)s->len);
            piece[s->len] = 0;
            int32_t id = ft_tok_token_to_id(tok, piece);
            if (id < 0) {
                st = FT_ERR(FT_E_FORMAT, "%s: the tokenizer has no token \"%s\" that the chat template needs",
                            ft_tok_path(tok), piece);
                break;
            }
            st = enc_reserve(e, e->n + 1);
            if (st != FT_OK) break;
            e->ids[e->n] = id;
            e->mask[e->n] = s->train;
            e->n++;
            i++;
            continue;
        }
        int64_t j = i;
        while (j < r->n_segs && !r->segs[j].special) j++;
        st = enc_run(tok, r, i, j, e, &full, &pre);
        i = j;
    }
    ft_tok_ids_free(&full);
    ft_tok_ids_free(&pre);
    return st;
}
