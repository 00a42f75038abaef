/* untrained.h: tokens a base checkpoint never trained, among those a run's template puts before
 * the model or asks it to produce.
 *
 * Base (not instruct) checkpoints can ship the rows of their chat-template tokens as they were
 * initialized: Llama 3's base models have <|start_header_id|>, <|end_header_id|> and <|eot_id|> at
 * zero in embed_tokens and lm_head, and Llama 3.1's lm_head rows of such tokens repeat one another.
 * LoRA on the linear layers leaves both matrices frozen, so an adapter cannot teach the model to
 * read such a header, nor to emit such an end of turn: exported, it never stops (the most filed
 * complaint about exported fine-tunes, ../shared/docs/peers.md). The run says so before it trains.
 *
 * The rule is Unsloth's fix_untrained_tokens (eps 1e-16): a row whose largest element is at most
 * 1e-16 is untrained; an lm_head row of a token with an untrained embedding is untrained too when
 * another such token's lm_head row equals it (to 3 decimals), the Llama 3.1 case. Unsloth then
 * overwrites the rows with the mean of the trained ones; ftune keeps the base as it is (the
 * adapter is applied to the unchanged base in llama.cpp), so it warns instead, and with
 * lora.trainable_tokens (auto: exactly these tokens) trains the rows as part of the adapter. */
#ifndef FT_UNTRAINED_H
#define FT_UNTRAINED_H

#include <stdint.h>

#include "kernels/backend.h"
#include "trainer/model.h"

enum { FT_UNTRAINED_EMBED = 1, FT_UNTRAINED_LM_HEAD = 2 };

/* flags[id] (malloc'd, V bytes): FT_UNTRAINED_EMBED / FT_UNTRAINED_LM_HEAD for every token id of
 * the model's vocabulary. Reads both matrices once, in chunks of rows (16/32-bit weights). */
ft_status ft_untrained_scan(ft_backend *be, const ft_model_weights *w, uint8_t **flags);

typedef struct ft_dataset ft_dataset;

/* Warns (one line per kind) about the untrained tokens among the ids of a prompt as the run's
 * template frames it (read by the model: their embeddings) and the ids that end an answer (its
 * end of turn and EOS: their lm_head rows), naming the tokens (from the tokenizer in tok_dir) and
 * the model directory; the adapter's trainable tokens (trained[n_trained], sorted) are not named.
 * *n_flagged: how many tokens were named (a test reads it). */
ft_status ft_untrained_check(ft_backend *be, ft_model *m, const ft_dataset *ds, const char *model_path,
                             const char *tok_dir, const int32_t *trained, int64_t n_trained, int64_t *n_flagged);
/* The ids ft_untrained_check would name with nothing trained, ascending, malloc'd (ft_free):
 * what lora.trainable_tokens: auto trains. */
ft_status ft_untrained_ids(ft_backend *be, ft_model *m, const ft_dataset *ds, int32_t **ids, int64_t *n);
/* lora.trainable_tokens' items[n] to ascending distinct ids (malloc'd, ft_free): each a decimal id,
 * a token string (the tokenizer in tok_dir: its added tokens, then its vocabulary), or `auto`
 * (ft_untrained_ids; needs ds). An id outside the vocabulary or an unknown string is an error, named
 * after `what` (the key or option the list came from). */
ft_status ft_trainable_tokens_pick(char *const *items, int n, const char *what, ft_backend *be, ft_model *m,
                                   const ft_dataset *ds, const char *tok_dir, int32_t **ids, int64_t *k);

#endif
