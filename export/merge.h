/* merge.h: a Hugging Face base checkpoint (plus, optionally, a LoRA adapter merged into it) as a
 * complete llama.cpp model GGUF or as a merged Hugging Face checkpoint.
 *
 * The base is streamed tensor by tensor from its mmap'd safetensors; each output tensor's rows are
 * produced on demand: base rows in float32 (by default the checkpoint's own 16/32-bit values; with
 * merge_into_nf4 the NF4 round trip the adapter was trained against, bitsandbytes-exact), plus
 * scale * B A rows of the adapter module, then (llama-arch GGUF only) the q/k row permutation, then
 * encoded to the tensor's type. Pages of consumed base tensors are dropped, so peak memory stays
 * near one chunk of rows (one tensor in float32 with merge_into_nf4).
 *
 * GGUF types (formats.md 3, 4): F32, F16, BF16, Q8_0, Q4_0 and the Q4_K_M mix; norms, biases and
 * 1-D tensors stay F32; the per-tensor choices and fallbacks are llama.cpp's llama_tensor_get_type
 * for that ftype (ft_merge_tensor_type). Metadata: architecture hparams from config.json, the
 * tokenizer (export/gguf_vocab.h), general.file_type, rope_freqs.weight for llama3 rope scaling. */
#ifndef FT_MERGE_H
#define FT_MERGE_H

#include "export/adapter.h"
#include "kernels/ggml_quants.h"
#include "export/gguf_vocab.h"
#include "kernels/status.h"
#include "trainer/hf_config.h"

/* Output kinds: a ggml type for the "mostly" type, or the Q4_K_M mix, or safetensors. */
typedef enum ft_merge_kind {
    FT_MERGE_F32 = 0,
    FT_MERGE_F16,
    FT_MERGE_BF16,
    FT_MERGE_Q8_0,
    FT_MERGE_Q4_0,
    FT_MERGE_Q4_K_M,
    FT_MERGE_SAFETENSORS,
} ft_merge_kind;

/* "f16", "q4_k_m", "safetensors", ... Returns 1 when known. */
int ft_merge_kind_parse(const char *s, ft_merge_kind *out);
const char *ft_merge_kind_name(ft_merge_kind k);

typedef struct ft_merge_opts {
    const char *base_dir;       /* HF checkpoint: config.json, safetensors, tokenizer */
    const ft_adapter *adapter;  /* NULL: the base alone */
    const char *out;            /* .gguf path, or a directory for FT_MERGE_SAFETENSORS */
    ft_merge_kind kind;
    int merge_into_nf4;         /* base linears as their NF4 round trip */
    const char *name;           /* general.name (NULL: the base directory's name) */
} ft_merge_opts;

/* Runs the merge. vinfo (may be NULL) receives the tokenizer summary of a GGUF output. */
ft_status ft_merge(const ft_merge_opts *o, ft_vocab_info *vinfo);

/* The bytes the tensors of c's merged GGUF under kind take (each padded to the file's alignment), and
 * their count (count may be NULL): the file less its header (metadata and vocabulary), from config.json
 * alone. `ftune plan` counts the disk an export.merged run needs with it. */
ft_status ft_merge_gguf_tensor_bytes(const ft_model_config *c, ft_merge_kind kind, int64_t *bytes, int64_t *count);

/* The GGUF type llama.cpp's quantizer gives a tensor under `kind` (formats.md 4.5).
 * name: GGUF name; n_dims, ne0: its shape; i_attn_v/n_attn_v: index/count of attn_v tensors in
 * file order; layer/n_layer: its layer (ffn_down); tied: the model has no output.weight; is_70b: llama.cpp
 * types the model LLM_TYPE_70B (80 layers: llama with GQA, qwen2), which moves Q4_K attn_v to Q5_K. */
ft_ggml_type ft_merge_tensor_type(ft_merge_kind kind, const char *name, int n_dims, int64_t ne0, int64_t i_attn_v,
                                  int64_t n_attn_v, int64_t layer, int64_t n_layer, int tied, int is_70b);

#endif
