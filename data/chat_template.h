/* chat_template.h: native (no Jinja) prompt formats that reproduce, token for token, what
 * transformers' apply_chat_template(tokenize=True) makes with the models' own templates, plus the
 * raw formats (text, Stanford Alpaca, prompt-completion), with an exact per-token loss mask.
 *
 * Rendering produces the prompt string as a list of segments: text pieces and special tokens
 * (their literal text, e.g. "<|eot_id|>"), each tagged trainable or not. Templates (the Jinja
 * files they follow are in the shared assets, chat-templates/):
 *   llama3      Meta-Llama-3-8B-Instruct: <|begin_of_text|> then per message
 *               <|start_header_id|>ROLE<|end_header_id|>\n\n CONTENT|trim <|eot_id|>; this template
 *               ALWAYS ends with the assistant header (it has no add_generation_prompt switch)
 *   llama3.1    Llama-3.1/3.3-Instruct (and 3.2 with a fixed date): a system header always
 *               opens with "Cutting Knowledge Date: December 2023\nToday Date: DATE\n\n" followed
 *               by the (trimmed) system message; DATE = date_string or "26 Jul 2024"
 *   qwen2.5     ChatML with the default system prompt "You are Qwen, created by Alibaba Cloud. You
 *               are a helpful assistant." when the first message is not a system message
 *   qwen3       ChatML, no default system; assistant turns after the last user query render
 *               "<think>\nREASONING\n</think>\n\n" + content (always for the final message, even
 *               with empty reasoning); earlier turns lose their <think> block; reasoning comes
 *               from reasoning_content or from a <think>...</think> inside the content
 *   mistral     Mistral tekken (Nemo/Small: "[INST]user[/INST]assistant</s>", no spaces)
 *   mistral-v3  Mistral v3 SentencePiece convention ("[INST] user[/INST] assistant</s>"), as
 *               mistral-common renders it (text_v3 goldens)
 *   mistral-v7  Mistral Small 3 / 3.1 / 3.2 (V7-Tekken): each system message where it stands as
 *               "[SYSTEM_PROMPT]system[/SYSTEM_PROMPT]", "[INST]user[/INST]", "assistant</s>", no
 *               role order required, as the models' own template. That template also puts a
 *               default system prompt with today's date before a conversation that has none;
 *               ftune does not (a training set would change with the day it is tokenized on), as
 *               llama.cpp's built-in mistral-v7-tekken does not: state a system message in the data
 *               to train with one
 * For mistral and mistral-v3 leading system messages are joined with "\n\n" and prepended (with
 * "\n\n") to the LAST user message, as mistral-common does; the Nemo Jinja does the same only when
 * that user message ends the conversation and otherwise drops the system prompt, which would
 * silently lose it in training data, so ftune follows mistral-common. Roles must then alternate
 * user/assistant.
 *
 * Loss masks: FT_LOSS_ASSISTANT trains each assistant turn's content and its end token
 * (<|eot_id|>, <|im_end|>, </s>); for Qwen3 the think block of the turn is included; the header
 * before and the "\n" after <|im_end|> are not. For alpaca/prompt-completion it trains the output
 * and EOS. FT_LOSS_LAST trains only the final assistant turn. FT_LOSS_ALL trains every token.
 * FT_LOSS_AUTO is assistant for chat/alpaca/prompt-completion and all for text.
 *
 * Encoding: each run of text between special tokens is encoded on its own, which is what HF does
 * (added tokens split the string before normalization and pre-tokenization), so ids equal
 * tokenizer(rendered_text) for byte-level BPE tokenizers (Llama 3, Qwen, Mistral tekken); checked
 * against transformers goldens in tests/test_chat_template.c. Tokenizers whose special tokens
 * strip neighbouring spaces (lstrip/rstrip) or that prepend a space per string (Metaspace) are
 * not covered by that guarantee. Where a trainable boundary falls inside a run (after "\n\n" of
 * a Llama header, after "assistant\n" in ChatML, after "### Response:\n"), the boundary token is
 * found by encoding the run's prefix; a token straddling the boundary is trainable, as in
 * transformers' assistant mask (any token overlapping the generated span). */
#ifndef FT_CHAT_TEMPLATE_H
#define FT_CHAT_TEMPLATE_H

#include <stdint.h>

#include "data/jsonl.h"
#include "data/tokenizer.h"
#include "kernels/status.h"

typedef enum ft_chat_template {
    FT_TMPL_NONE = 0,   /* raw formats only (a chat record is refused) */
    FT_TMPL_LLAMA3,
    FT_TMPL_LLAMA31,
    FT_TMPL_QWEN25,
    FT_TMPL_QWEN3,
    FT_TMPL_MISTRAL,
    FT_TMPL_MISTRAL_V3,
    FT_TMPL_MISTRAL_V7,
    FT_TMPL_QWEN2,      /* Qwen2 and Qwen1.5: Qwen2.5's ChatML with another default system prompt */
} ft_chat_template;

typedef enum ft_loss_mode { FT_LOSS_AUTO = 0, FT_LOSS_ASSISTANT, FT_LOSS_LAST, FT_LOSS_ALL } ft_loss_mode;

typedef struct ft_render_opts {
    ft_chat_template tmpl;       /* chat template; FT_TMPL_NONE renders alpaca/prompt-completion raw */
    ft_loss_mode loss;
    int add_generation_prompt;   /* end with the assistant header (prompts for eval/generation) */
    const char *date_string;     /* llama3.1 "Today Date"; NULL = "26 Jul 2024" */
    /* Raw formats (text, and alpaca/prompt-completion without a template): special token
     * strings put before/after the example; NULL = none. ft_render_opts_from_tok fills them. */
    const char *bos_token;
    const char *eos_token;
} ft_render_opts;

typedef struct ft_seg {
    int64_t off, len;  /* bytes of ft_rendered.text */
    uint8_t special;   /* the bytes are one special token's content */
    uint8_t train;     /* tokens of this segment are training targets */
} ft_seg;

typedef struct ft_rendered {
    char *text;        /* NUL-terminated; the exact string HF's apply_chat_template(tokenize=False) returns */
    int64_t len, cap;
    ft_seg *segs;
    int64_t n_segs, cap_segs;
} ft_rendered;

typedef struct ft_encoded {
    int32_t *ids;      /* [n] token ids */
    uint8_t *mask;     /* [n] 1: training target (pack.h convention) */
    int64_t n, cap;
} ft_encoded;

/* "llama3, llama3.1, qwen2.5, qwen3, mistral, mistral-v3, mistral-v7": the names, for messages. */
const char *ft_chat_template_list(void);
/* "llama3", "llama3.1" ("llama3.2"/"llama3.3" map to it), "qwen2.5" ("qwen2"), "qwen3",
 * "mistral", "mistral-v3", "mistral-v7", "none". */
ft_status ft_chat_template_parse(const char *name, ft_chat_template *out);
const char *ft_chat_template_name(ft_chat_template t);
/* Recognizes one of the templates above in a Jinja chat_template string (tokenizer_config.json);
 * FT_E_UNSUPPORTED when none matches. */
ft_status ft_chat_template_detect(const char *jinja, ft_chat_template *out);
ft_status ft_loss_mode_parse(const char *name, ft_loss_mode *out);

/* Sets bos_token (only when the tokenizer adds BOS, as tokenizer(text) would) and eos_token
 * from the tokenizer. The strings belong to tok. */
void ft_render_opts_from_tok(ft_render_opts *o, const ft_tok *tok);

void ft_rendered_free(ft_rendered *r);
/* Renders a conversation (r is reset first; zero-initialize it before the first use). Fails
 * with FT_E_FORMAT on a conversation the template cannot express (message and reason named). */
ft_status ft_chat_render(const ft_chat_msg *msgs, int64_t n, const ft_render_opts *o, ft_rendered *r);
/* Renders any record: chat through the template; alpaca and prompt-completion through the
 * template as a user/assistant pair when one is set, else raw (Alpaca prompt text for alpaca);
 * text raw. */
ft_status ft_render_record(const ft_record *rec, const ft_render_opts *o, ft_rendered *r);

/* Encodes a rendering (e is reset first; zero-initialize it before the first use). A special
 * segment must be a single token of tok (FT_E_FORMAT naming it otherwise). */
ft_status ft_rendered_encode(const ft_tok *tok, const ft_rendered *r, ft_encoded *e);
void ft_encoded_free(ft_encoded *e);

/* The Stanford Alpaca prompt (without the response), into r as one untrained text segment. */
ft_status ft_alpaca_prompt(const char *instruction, const char *input, ft_rendered *r);

#endif
