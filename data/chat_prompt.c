/* chat_prompt.c: see chat_prompt.h. */
#include "data/chat_prompt.h"

#include <stdlib.h>

ft_status ft_chat_prompt_ids(const ft_tok *tok, const ft_render_opts *o, const char *prompt, int32_t **ids,
                             int64_t *n) {
    *ids = NULL, *n = 0;
    if (o->tmpl == FT_TMPL_NONE) {
        ft_tok_ids v = {0};
        const int32_t bos = ft_tok_bos_id(tok);
        ft_status st = FT_OK;
        if (bos >= 0 && ft_tok_adds_bos(tok)) st = ft_tok_ids_push(&v, bos);
        if (st == FT_OK) st = ft_tok_encode_append(tok, prompt, -1, 0, &v);
        if (st != FT_OK) {
            ft_tok_ids_free(&v);
            return st;
        }
        *ids = v.ids, *n = v.n;
        return FT_OK;
    }
    ft_rendered rd = {0};
    ft_encoded enc = {0};
    ft_render_opts ro = *o;
    ro.add_generation_prompt = 1;
    ft_chat_msg msg = {FT_ROLE_USER, prompt, NULL};
    ft_status st = ft_chat_render(&msg, 1, &ro, &rd);
    if (st == FT_OK) st = ft_rendered_encode(tok, &rd, &enc);
    if (st == FT_OK) *ids = enc.ids, *n = enc.n, enc.ids = NULL;
    ft_rendered_free(&rd);
    ft_encoded_free(&enc);
    return st;
}

int32_t ft_chat_turn_end_id(const ft_tok *tok, ft_chat_template t) {
    if (t == FT_TMPL_LLAMA3 || t == FT_TMPL_LLAMA31) return ft_tok_token_to_id(tok, "<|eot_id|>");
    if (t == FT_TMPL_QWEN2 || t == FT_TMPL_QWEN25 || t == FT_TMPL_QWEN3) return ft_tok_token_to_id(tok, "<|im_end|>");
    return -1;
}
