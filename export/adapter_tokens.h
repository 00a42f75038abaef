/* adapter_tokens.h: the trainable tokens of a PEFT adapter (trainable_token_indices, the
 * token_adapter.trainable_tokens_delta tensors) as export/adapter.c reads, checks and writes them.
 * Private to export/adapter*.c; the fields they fill are documented in adapter.h (struct ft_adapter). */
#ifndef FT_ADAPTER_TOKENS_H
#define FT_ADAPTER_TOKENS_H

#include <cJSON.h>

#include "export/adapter.h"
#include "export/safetensors_write.h"
#include "trainer/safetensors_read.h"

/* adapter_config.json's trainable_token_indices (j: the parsed config; cfgp names it) into a's
 * n_embed_tokens/embed_ids and n_head_tokens/head_ids. Absent or null: none. */
ft_status ft_adapter_tokens_config(ft_adapter *a, const cJSON *j, const char *cfgp);
/* Whether tensor `name` is a trainable_tokens_delta: *head 1 for lm_head's, *vlm 1 for a
 * vision-language text model's name, 0 for a plain one, -1 when the name says neither. */
int ft_adapter_tokens_match(const char *name, int *head, int *vlm);
/* Reads delta tensor t (F32/F16/BF16) into a's rows, checked against the config's ids. */
ft_status ft_adapter_tokens_add(ft_adapter *a, const ft_st_tensor *t, int head, const char *cfgp, const char *stp);
/* After every tensor: ids listed in the config without their tensor (PEFT's tied form aside). */
ft_status ft_adapter_tokens_finish(ft_adapter *a, const char *cfgp, const char *stp);
/* Against the base: ids < vocab_size, rows of hidden_size, the tied form on a tied base only. */
ft_status ft_adapter_tokens_check(const ft_adapter *a, const ft_model_config *cfg, const char *base_dir);
/* Adds the delta tensors under PEFT's names to a PEFT adapter's safetensors writer. */
ft_status ft_adapter_tokens_write(const ft_adapter *a, ft_stw *w);
void ft_adapter_tokens_free(ft_adapter *a);

#endif
