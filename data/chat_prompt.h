/* chat_prompt.h: a prompt for generation, as training's samples and `ftune generate --chat` build
 * it: one user turn rendered by the chat template with the assistant header after it (what
 * apply_chat_template(add_generation_prompt=True) returns), or without a template the text itself
 * after BOS when the tokenizer adds one; and the id that ends an assistant turn. */
#ifndef FT_CHAT_PROMPT_H
#define FT_CHAT_PROMPT_H

#include <stdint.h>

#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "kernels/status.h"

/* *ids (malloc'd) [*n]: the prompt through o->tmpl (o's other fields as for training; its
 * add_generation_prompt is set here), or raw when o->tmpl is FT_TMPL_NONE. */
ft_status ft_chat_prompt_ids(const ft_tok *tok, const ft_render_opts *o, const char *prompt, int32_t **ids,
                             int64_t *n);
/* The token that ends an assistant turn of template t: <|eot_id|> (llama3, llama3.1), <|im_end|>
 * (qwen2.5, qwen3); -1 for the others, whose turns end with EOS. */
int32_t ft_chat_turn_end_id(const ft_tok *tok, ft_chat_template t);

#endif
