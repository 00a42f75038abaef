/* loader.h: from a Hugging Face checkpoint directory to an ft_model on a backend.
 *
 * Reads config.json (hf_config.h), then streams every tensor from the mmap'd safetensors
 * shards: the seven linear weights of each layer are quantized to NF4 as they are read (or kept
 * at 16/32 bits with quant "none"); embeddings, norms, biases and lm_head keep their width.
 * Each tensor's pages are released after use, so peak resident memory stays near the
 * quantized model plus the largest tensor, never the 16-bit model. */
#ifndef FT_LOADER_H
#define FT_LOADER_H

#include "kernels/backend.h"
#include "trainer/model.h"

typedef enum { FT_QUANT_NONE = 0, FT_QUANT_NF4 } ft_quant;

typedef struct ft_load_opts {
    ft_quant quant;
    ft_model_opts model;
    int gguf_f32;       /* a GGUF file decoded to float32 throughout, quantized linears included (what
                         * `merge --check` reads a merged model back as: its exact values); 0: as stored */
} ft_load_opts;

ft_status ft_quant_parse(const char *s, ft_quant *out);

/* The model's view of a config.json (shared with `ftune plan`, so both size the same model). */
typedef struct ft_model_config ft_model_config;
void ft_model_dims_from_config(const ft_model_config *c, ft_model_dims *d);

/* Loads DIR (config.json + safetensors), or a GGUF model file (ft_model_load_gguf). Errors name the
 * file and the problem. */
ft_status ft_model_load(ft_model **out, ft_backend *be, const char *dir, const ft_load_opts *opts);
/* A GGUF model file (gguf_load.c): its quantized linears kept as stored (ggml block dtypes), 16/32-bit
 * ones as opts->quant says, the rest in BF16. */
ft_status ft_model_load_gguf(ft_model **out, ft_backend *be, const char *path, const ft_load_opts *opts);

/* The tokenizer of a model: DIR/tokenizer.json (+ tokenizer_config.json), or a GGUF model file's
 * tokenizer.ggml.* vocabulary (trainer/gguf_tokenizer.h). */
typedef struct ft_tok ft_tok;
ft_status ft_model_tokenizer(ft_tok **out, const char *path);

/* "cpu", "cuda" or "auto" (cuda when a GPU is present, else cpu). threads <= 0: all cores. */
ft_status ft_backend_open(ft_backend **out, const char *device, int threads);

#endif
