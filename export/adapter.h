/* adapter.h: a LoRA adapter in host memory (ours or any PEFT adapter) and its conversions:
 * llama.cpp LoRA GGUF, PEFT directory, and the scaled product merged into base weights.
 *
 * Sources (ft_adapter_load): a PEFT directory (adapter_config.json + adapter_model.safetensors),
 * a training run directory or checkpoint holding one (see ft_adapter_resolve). Supported: plain
 * LoRA and rsLoRA on the seven linear modules of the decoder layers (q/k/v/o/gate/up/down), per
 * module ranks (rank_pattern) and alphas (alpha_pattern), trainable tokens of the embedding and
 * lm_head (trainable_token_indices, export/adapter_tokens.c), DoRA (use_dora: every module's
 * lora_magnitude_vector, export/adapter_dora.c). Refused with FT_E_UNSUPPORTED, naming the feature:
 * lora_bias, fan_in_fan_out, embedding or lm_head LoRA, modules_to_save, trainable tokens of another
 * module; a DoRA adapter as a llama.cpp adapter (llama.cpp has no per-row magnitude: `ftune merge`).
 * Refused with FT_E_FORMAT, naming the file: adapter_config.json keys of another type than peft
 * reads (r a positive integer, lora_alpha/lora_dropout numbers, flags true/false, target_modules a
 * list or a string, token ids integers >= 0 listed once), tensors of a module outside a
 * target_modules list, of another rank than r when there is no rank_pattern, of rank 0, or holding
 * NaN/Inf, trainable-token rows without their ids in the config or of another shape than [ids, C],
 * ids without their rows; DoRA magnitudes without use_dora, a module without one under use_dora, one
 * of another length than its lora_B's rows.
 *
 * Each module keeps its effective PEFT scale s (alpha/r or alpha/sqrt(r)); the GGUF export writes
 * one adapter.lora.alpha = s*r of the first module and multiplies lora_b of any module whose s*r
 * differs by s*r/alpha (formats.md 2.4), so llama.cpp's alpha/r reproduces every module exactly.
 * For llama-arch GGUFs (Llama, Mistral) the rows of q/k lora_b are permuted like the base weights
 * (formats.md 3.4); the PEFT export never permutes. */
#ifndef FT_ADAPTER_H
#define FT_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ggml_quants.h"
#include "kernels/status.h"
#include "trainer/arch.h"
#include "trainer/hf_config.h"

struct ft_st_tensor; /* trainer/safetensors_read.h */

typedef struct ft_adapter_mod {
    int64_t layer;
    ft_linear lin;
    int64_t r, in, out;
    double scale;   /* effective PEFT scaling of this module */
    float *A;       /* [r, in] */
    float *B;       /* [out, r] */
    float *mag;     /* DoRA: [out] lora_magnitude_vector (PEFT's magnitude per output row); NULL: plain LoRA */
} ft_adapter_mod;

/* Trainable tokens an adapter may list (trainer/lora.h FT_LORA_MAX_TOKENS: what ftune trains). */
#define FT_ADAPTER_MAX_TOKENS 1024

typedef struct ft_adapter {
    char dir[4096];        /* directory holding adapter_config.json */
    char base[4096];       /* base_model_name_or_path ("" when absent) */
    double alpha;          /* lora_alpha */
    int64_t r;             /* r of adapter_config.json */
    double dropout;
    int rslora;
    int dora;              /* use_dora: every module has its mag (DoRA, export/adapter_dora.c) */
    char *rank_pattern;    /* JSON text of rank_pattern / alpha_pattern ("{}" when absent) */
    char *alpha_pattern;
    int64_t n;
    ft_adapter_mod *m;     /* sorted by (layer, lin) */
    int vlm;               /* modules under model.language_model.layers. (a vision-language base, arch.h) */
    /* Trainable tokens (PEFT trainable_token_indices; trainer/lora.h ft_lora_tokens): whole rows that
     * replace the base's (PEFT's trainable_tokens_delta holds values, not differences). Ids in the
     * file's order (PEFT keeps the order listed; rows follow it), distinct within a list, < the base's
     * vocab_size once ft_adapter_check passed; rows [n, tokens_C] f32, tokens_C = hidden_size. n 0: none.
     * embed: rows of the embedding (embed_tokens). On a tied base (tie_word_embeddings) with
     *   n_head_tokens 0 they are lm_head's rows too: lm_head is the embedding (PEFT ties the two).
     * head: rows of lm_head alone. Untied base: its own lm_head. Tied base (PEFT given another
     *   lm_head list than the embedding's trains the two independently): lm_head's rows over the
     *   shared matrix, which the embedding then does not see; applying it unties lm_head.
     * An untied base with n_head_tokens 0 (PEFT's list form) keeps its lm_head. tokens_tied: the
     * config listed lm_head with the embedding's very list and no lm_head rows were saved (PEFT's
     * form for a tied base, read as n_head_tokens 0; ft_adapter_check refuses it on an untied base). */
    int64_t n_embed_tokens, n_head_tokens, tokens_C;
    int32_t *embed_ids, *head_ids;
    float *embed_rows, *head_rows;
    int tokens_tied;
} ft_adapter;

/* Finds the PEFT directory of `path`: itself when it holds adapter_config.json, else (a run
 * directory, trainer/run.h) final/ or adapter/. FT_E_FORMAT naming what was looked for when none
 * does (a run's checkpoints/step-N.ckpt files are turned into adapters by trainer/cmd_export.c). */
ft_status ft_adapter_resolve(const char *path, char *out, size_t cap);
ft_status ft_adapter_load(ft_adapter *a, const char *path);
/* The same from memory: config_json is adapter_config.json's text and ts[0, n) the LoRA tensors and
 * trainable-token rows (trainer/safetensors_read.h descriptors with data in host memory, e.g. ft_lora_peft_tensors),
 * read and checked exactly as ft_adapter_load reads the two files, and copied. `src` becomes a->dir
 * and names the source in messages. `ftune export CHECKPOINT` builds its adapter this way: no
 * PEFT directory is written anywhere. */
ft_status ft_adapter_load_tensors(ft_adapter *a, const char *src, const char *config_json,
                                  const struct ft_st_tensor *ts, int64_t n);
void ft_adapter_free(ft_adapter *a);

/* The base model's config: from `base_dir` when given, else from the adapter's
 * base_model_name_or_path when that is a directory with config.json (as given, or relative to the
 * adapter directory). base_out receives the directory used. FT_E_ARG when none is found. */
ft_status ft_adapter_base_config(const ft_adapter *a, const char *base_dir, ft_model_config *cfg, char *base_out,
                                 size_t cap);
/* Checks every module against the base: layer < L and A/B shapes equal the base's [out, in] (a DoRA
 * magnitude has lora_B's out rows, ft_adapter_dora_read); trainable tokens: ids < vocab_size, rows of
 * hidden_size, the tied form on a tied base only. FT_E_FORMAT naming the tensor and both shapes. */
ft_status ft_adapter_check(const ft_adapter *a, const ft_model_config *cfg, const char *base_dir);
/* The module of (layer, lin) or NULL. */
const ft_adapter_mod *ft_adapter_find(const ft_adapter *a, int64_t layer, ft_linear lin);

/* llama.cpp LoRA GGUF (type F32, F16, BF16 or Q8_0; Q8_0 tensors whose ne[0] is not a multiple of
 * 32 are written F16, as convert_lora_to_gguf.py does). A DoRA adapter is refused (FT_E_UNSUPPORTED,
 * nothing written: ft_adapter_dora_gguf_refuse). */
ft_status ft_adapter_write_gguf(const ft_adapter *a, const ft_model_config *cfg, const char *path, ft_ggml_type type);
/* PEFT directory (created if missing): adapter_model.safetensors (F32, {"format":"pt"}) +
 * adapter_config.json. base_name is written as base_model_name_or_path (NULL: keep the adapter's).
 * DoRA: each module's lora_magnitude_vector after its pair, "use_dora": true. */
ft_status ft_adapter_write_peft(const ft_adapter *a, const char *dir, const char *base_name);

/* Adds PEFT's trainable_token_indices to adapter_config.json's object j (a struct cJSON *):
 * nothing when both lists are empty; a list (the embedding's ids) when n_head is 0, as PEFT reads
 * it (on a tied base it then covers lm_head too); else {"embed_tokens": [...], "lm_head": [...]}. */
struct cJSON;
void ft_adapter_tokens_json(struct cJSON *j, const int32_t *embed, int64_t n_embed, const int32_t *head,
                            int64_t n_head);

/* Rows [row0, row0+nrows) of scale * B A for module m, ADDED to dst[nrows, in]. */
void ft_adapter_add_delta(const ft_adapter_mod *m, int64_t row0, int64_t nrows, float *dst);
/* Module m applied to whole rows of the base weight, as a merge writes them (export/adapter_dora.c):
 * dst[nrows, in] holds the base's rows in float32 (exactly the weights the merge adds to: the
 * checkpoint's, their NF4 round trip, a GGUF base's decoded blocks) and receives W + scale B A; under
 * DoRA each row o then times mag[o] / ||W[o,:] + scale (B A)[o,:]||_2 (PEFT's merge; the norm in
 * double over the very float32 row written). perm_d > 0: dst row r is HF row
 * ft_gguf_permuted_row(row0 + r, perm_d) (a llama-arch GGUF's q/k), whose lora_B row and magnitude it
 * takes. *scratch (*cap floats) is grown as needed; the caller frees it. */
ft_status ft_adapter_apply_rows(const ft_adapter_mod *m, int64_t row0, int64_t nrows, int64_t perm_d, float **scratch,
                                int64_t *cap, float *dst);

/* Source row of output row `row` of a llama-arch GGUF q/k tensor with heads of D rows
 * (formats.md 3.4): new[h*D + 2i + j] = old[h*D + j*D/2 + i]. */
static inline int64_t ft_gguf_permuted_row(int64_t row, int64_t D) {
    int64_t h = row / D, rem = row % D;
    return h * D + (rem % 2) * (D / 2) + rem / 2;
}

/* ---- DoRA (export/adapter_dora.c) ---- */

/* Whether PEFT key `name` is a DoRA magnitude: "<prefix><module>.lora_magnitude_vector", as PEFT
 * saves it (LoraModel._get_adapter_state_dict strips the DoraLinearLayer's ".weight"), or with that
 * ".weight" (which PEFT's loader also takes); *suffix_len: the suffix's length. */
int ft_adapter_dora_match(const char *name, size_t *suffix_len);
/* Reads magnitude tensor t (named nm in file stp) into module m: 1-D F32/F16/BF16 of m's out rows
 * (when lora_B was read; else it sets out), finite, once. FT_E_FORMAT naming file and tensor. */
ft_status ft_adapter_dora_read(ft_adapter_mod *m, const struct ft_st_tensor *t, const char *nm, const char *stp);
/* After all tensors: under use_dora every module has its magnitude. FT_E_FORMAT naming the file and
 * the first module without one. */
ft_status ft_adapter_dora_finish(const ft_adapter *a, const char *cfgp, const char *stp);
/* FT_E_UNSUPPORTED for a DoRA adapter where a llama.cpp adapter (or an Ollama Modelfile naming one)
 * would be written, pointing at `ftune merge`; FT_OK otherwise. */
ft_status ft_adapter_dora_gguf_refuse(const ft_adapter *a);

/* ---- trainable tokens where they leave ftune (export/adapter_tokens_out.c) ---- */

/* Rows that replace a base tensor's: n ids (distinct) and their rows [n, C] f32. n 0: none. */
typedef struct ft_token_rows {
    int64_t n, C;
    const int32_t *ids;
    const float *rows;
} ft_token_rows;

/* The rows of a's trainable tokens that the base's embedding (head 0) or lm_head (head 1) takes; a tied
 * base's lm_head (when a checkpoint stores one) is its embedding and takes the embedding's rows. */
ft_token_rows ft_adapter_token_rows(const ft_adapter *a, int head, int tied);
/* a's trainable tokens against the base of cfg (named `base` in messages): no lm_head rows for a tied
 * base, rows of hidden_size values, ids in the vocabulary. FT_E_FORMAT. */
ft_status ft_adapter_token_rows_check(const ft_adapter *a, const ft_model_config *cfg, const char *base);
/* r against base tensor `tensor` of [nrows, cols]: C == cols, ids < nrows. FT_E_FORMAT naming both. */
ft_status ft_token_rows_fit(const ft_token_rows *r, const char *base, const char *tensor, int64_t nrows, int64_t cols);
/* dst[nrows, C] holds rows [row0, row0 + nrows) of the tensor: the rows of r's ids among them are
 * replaced by r's (PEFT's merge: index_copy into the weight). */
void ft_token_rows_apply(const ft_token_rows *r, int64_t row0, int64_t nrows, float *dst);
/* ft_adapter_write_gguf's last step: adds a's trainable tokens to the llama.cpp adapter w as rank-k
 * LoRA pairs of token_embd / output (new rows minus the rows of the adapter's base_model_name_or_path,
 * divided by llama.cpp's alpha / k), then finishes w (which is freed, also on failure). FT_E_UNSUPPORTED
 * for a tied model (llama.cpp would apply the embedding's pair to the output matmul). alpha: the file's
 * adapter.lora.alpha. */
struct ft_ggufw;
ft_status ft_adapter_gguf_finish_tokens(const ft_adapter *a, const ft_model_config *cfg, struct ft_ggufw *w, double alpha,
                                        ft_ggml_type type);

#endif
