/* merge.h: a base model (plus, optionally, a LoRA adapter merged into it) as a complete llama.cpp
 * model GGUF or as a merged Hugging Face checkpoint. The base is a Hugging Face checkpoint directory
 * or a llama.cpp GGUF model file.
 *
 * Hugging Face base: streamed tensor by tensor from its mmap'd safetensors; each output tensor's rows
 * are produced on demand: base rows in float32 (by default the checkpoint's own 16/32-bit values;
 * with merge_into_nf4 the NF4 round trip the adapter was trained against, bitsandbytes-exact), plus
 * scale * B A rows of the adapter module (DoRA: each row then times mag / its norm, from those very
 * base rows: ft_adapter_apply_rows), then (llama-arch GGUF only) the q/k row permutation, then
 * encoded to the tensor's type. Pages of consumed base tensors are dropped, so peak memory stays
 * near one chunk of rows (one tensor in float32 with merge_into_nf4).
 *
 * GGUF types (formats.md 3, 4): F32, F16, BF16, Q8_0, Q4_0, the Q4_K_M and Q5_K_M mixes and Q6_K;
 * norms, biases and 1-D tensors stay F32; the per-tensor choices and fallbacks are llama.cpp's
 * llama_tensor_get_type for that ftype (ft_merge_tensor_type). Metadata: architecture hparams from
 * config.json, the tokenizer (export/gguf_vocab.h), general.file_type, rope_freqs.weight for llama3
 * rope scaling.
 *
 * Trainable tokens (struct ft_adapter's embed/head rows, export/adapter_tokens_out.c): the rows of
 * their ids in the embedding (token_embd) and a separate lm_head (output) are the adapter's, as PEFT's
 * merge writes them, in every output; a tied model's lm_head is its embedding (a checkpoint that stores
 * lm_head anyway gets the embedding's rows there too). Under FT_MERGE_BASE a GGUF base's token_embd /
 * output keeps its type and every other row's bytes, only the replaced rows re-encoded, where ftune
 * encodes that type; otherwise (Q2_K, Q3_K, the IQ4 types) the whole tensor becomes Q8_0 (F16 for
 * rows that are not whole 32-blocks): its other rows are not merged weights, and Q8_0 keeps them within
 * its rounding, where a 4-bit re-encoding would move every row.
 *
 * GGUF base (merge_gguf.c; the adapter was trained on the base's own blocks, trainer/gguf_load.c):
 * the output has the base's metadata, every key copied with its type (tokenizer and chat template
 * included; general.alignment aside: the writer aligns to 32), and the base's tensors in the base's
 * order. Under FT_MERGE_BASE a tensor without an adapter module is copied byte for byte in its own
 * type; a tensor with one is decoded, gets scale * B A (GGUF row r of a llama-arch q/k weight takes
 * HF row ft_gguf_permuted_row(r, D)) and is encoded to its own type when ftune encodes it, else to
 * ft_merge_base_type's (the encodable type with the fewest bits per weight not below its own:
 * Q2_K, Q3_K, IQ4_XS -> Q4_K; IQ4_NL -> Q4_0; Q4_1 and Q5_1 are encoded, so they keep their type);
 * general.file_type stays the base's. This is llama.cpp's llama-export-lora, which copies untouched
 * tensors and the metadata alike, except that it writes every merged tensor as F16 (F32 kept F32)
 * and sets general.file_type to MOSTLY_F16 whatever the base: FT_MERGE_BASE_F16 writes that (the
 * merge without re-quantization loss, at F16's size for every merged tensor; file_type kept). Under an explicit type every tensor
 * gets ft_merge_tensor_type's type and general.file_type that type's; a tensor without a module
 * whose type is already the one chosen is copied too (re-encoding decoded blocks to their own type
 * can only add error), every other is decoded (+ delta) and encoded. Safetensors output from a GGUF
 * base and merge_into_nf4 are refused. Peak memory stays one chunk of rows. */
#ifndef FT_MERGE_H
#define FT_MERGE_H

#include "export/adapter.h"
#include "kernels/ggml_quants.h"
#include "export/gguf_vocab.h"
#include "kernels/status.h"
#include "trainer/hf_config.h"

/* Output kinds: a ggml type for the "mostly" type, or the Q4_K_M / Q5_K_M mix, or safetensors, or "as the
 * base": a GGUF base's own tensor types (above), for a Hugging Face base its own 16/32-bit type
 * (config.json torch_dtype: bfloat16 -> BF16, float32 -> F32, otherwise F16); or "base-f16": a GGUF
 * base's tensors as they are with the merged ones F16 (F32 kept F32), llama-export-lora's output
 * (f16 for a Hugging Face base). */
typedef enum ft_merge_kind {
    FT_MERGE_F32 = 0,
    FT_MERGE_F16,
    FT_MERGE_BF16,
    FT_MERGE_Q8_0,
    FT_MERGE_Q4_0,
    FT_MERGE_Q4_K_M,
    FT_MERGE_Q5_K_M,
    FT_MERGE_Q6_K, /* llama.cpp's MOSTLY_Q6_K: every quantized tensor Q6_K (Q8_0 / F16 fallbacks) */
    FT_MERGE_SAFETENSORS,
    FT_MERGE_BASE,
    FT_MERGE_BASE_F16,
} ft_merge_kind;

/* "f16", "q4_k_m", "safetensors", "base", ... Returns 1 when known. */
int ft_merge_kind_parse(const char *s, ft_merge_kind *out);
const char *ft_merge_kind_name(ft_merge_kind k);

typedef struct ft_merge_opts {
    const char *base_dir;       /* HF checkpoint (config.json, safetensors, tokenizer), or a GGUF model file */
    const ft_adapter *adapter;  /* NULL: the base alone */
    const char *out;            /* .gguf path, or a directory for FT_MERGE_SAFETENSORS */
    ft_merge_kind kind;
    int merge_into_nf4;         /* base linears as their NF4 round trip */
    const char *name;           /* general.name (NULL: the base directory's name; a GGUF base's own) */
} ft_merge_opts;

/* Runs the merge. vinfo (may be NULL) receives the tokenizer summary of a GGUF output. */
ft_status ft_merge(const ft_merge_opts *o, ft_vocab_info *vinfo);

/* The bytes the tensors of c's merged GGUF under kind take (each padded to the file's alignment), and
 * their count (count may be NULL): the file less its header (metadata and vocabulary), from config.json
 * alone. `ftune plan` counts the disk an export.merged run needs with it. */
ft_status ft_merge_gguf_tensor_bytes(const ft_model_config *c, ft_merge_kind kind, int64_t *bytes, int64_t *count);
/* The same for the base at `base` (a checkpoint directory: as above; a GGUF model file: its own tensor
 * table, each tensor in the type the merge gives it, every linear counted as merged, i.e. the most the
 * output can take: lora.targets all). `ftune plan` should call this one (it knows model.path). */
ft_status ft_merge_output_tensor_bytes(const char *base, const ft_model_config *c, ft_merge_kind kind, int64_t *bytes,
                                       int64_t *count);

/* The concrete kind of FT_MERGE_BASE for a Hugging Face base of config c (its torch_dtype's type);
 * any other kind as it is. */
ft_merge_kind ft_merge_kind_resolve(ft_merge_kind kind, const ft_model_config *c);

/* The type a merged tensor of a GGUF base stored as `type` is written in under FT_MERGE_BASE (ne0: its
 * row length): its own when ftune encodes it, else the encodable type with the fewest bits per weight
 * not below its own whose block divides ne0 (ties: the one with its block size). */
ft_ggml_type ft_merge_base_type(int type, int64_t ne0);

/* The GGUF type llama.cpp's quantizer gives a tensor under `kind` (formats.md 4.5).
 * name: GGUF name; n_dims, ne0: its shape; i_attn_v/n_attn_v: index/count of attn_v tensors in
 * file order; layer/n_layer: its layer (ffn_down); tied: the model has no output.weight; is_70b: llama.cpp
 * types the model LLM_TYPE_70B (80 layers: llama with GQA, qwen2), which moves Q4_K attn_v to Q5_K
 * (Q4_K_M only: the rule lifts Q3_K/Q4_K, and no other kind has them). */
ft_ggml_type ft_merge_tensor_type(ft_merge_kind kind, const char *name, int n_dims, int64_t ne0, int64_t i_attn_v,
                                  int64_t n_attn_v, int64_t layer, int64_t n_layer, int tied, int is_70b);

/* ---- shared by merge.c and merge_gguf.c ---- */

/* llama_ftype of an explicit kind (general.file_type). */
uint32_t ft_merge_file_type(ft_merge_kind kind);
/* ft_merge_tensor_type for tensor `name` of c (llama.cpp's model size from c; i_attn_v: the attn_v
 * tensors before it in file order). */
ft_ggml_type ft_merge_role_type(const ft_model_config *c, ft_merge_kind kind, const char *name, int nd, int64_t ne0,
                                int64_t i_attn_v, int64_t layer, int tied);
/* The merge of a GGUF base file (merge_gguf.c; ft_merge calls it when o->base_dir is one). */
ft_status ft_merge_from_gguf(const ft_merge_opts *o, ft_vocab_info *vinfo);

#endif
