/* adapter.h: a LoRA adapter in host memory (ours or any PEFT adapter) and its conversions:
 * llama.cpp LoRA GGUF, PEFT directory, and the scaled product merged into base weights.
 *
 * Sources (ft_adapter_load): a PEFT directory (adapter_config.json + adapter_model.safetensors),
 * a training run directory or checkpoint holding one (see ft_adapter_resolve). Supported: plain
 * LoRA and rsLoRA on the seven linear modules of the decoder layers (q/k/v/o/gate/up/down), per
 * module ranks (rank_pattern) and alphas (alpha_pattern). Refused with FT_E_UNSUPPORTED, naming
 * the feature: DoRA, lora_bias, fan_in_fan_out, embedding or lm_head LoRA, modules_to_save.
 * Refused with FT_E_FORMAT, naming the file: adapter_config.json keys of another type than peft
 * reads (r a positive integer, lora_alpha/lora_dropout numbers, flags true/false, target_modules a
 * list or a string), tensors of a module outside a target_modules list, of another rank than r
 * when there is no rank_pattern, of rank 0, or holding NaN/Inf.
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
} ft_adapter_mod;

typedef struct ft_adapter {
    char dir[4096];        /* directory holding adapter_config.json */
    char base[4096];       /* base_model_name_or_path ("" when absent) */
    double alpha;          /* lora_alpha */
    int64_t r;             /* r of adapter_config.json */
    double dropout;
    int rslora;
    char *rank_pattern;    /* JSON text of rank_pattern / alpha_pattern ("{}" when absent) */
    char *alpha_pattern;
    int64_t n;
    ft_adapter_mod *m;     /* sorted by (layer, lin) */
    int vlm;               /* modules under model.language_model.layers. (a vision-language base, arch.h) */
} ft_adapter;

/* Finds the PEFT directory of `path`: itself when it holds adapter_config.json, else (a run
 * directory, trainer/run.h) final/ or adapter/. FT_E_FORMAT naming what was looked for when none
 * does (a run's checkpoints/step-N.ckpt files are turned into adapters by trainer/cmd_export.c). */
ft_status ft_adapter_resolve(const char *path, char *out, size_t cap);
ft_status ft_adapter_load(ft_adapter *a, const char *path);
/* The same from memory: config_json is adapter_config.json's text and ts[0, n) the LoRA tensors
 * (trainer/safetensors_read.h descriptors with data in host memory, e.g. ft_lora_peft_tensors),
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
/* Checks every module against the base: layer < L and A/B shapes equal the base's [out, in].
 * FT_E_FORMAT naming the tensor and both shapes. */
ft_status ft_adapter_check(const ft_adapter *a, const ft_model_config *cfg, const char *base_dir);
/* The module of (layer, lin) or NULL. */
const ft_adapter_mod *ft_adapter_find(const ft_adapter *a, int64_t layer, ft_linear lin);

/* llama.cpp LoRA GGUF (type F32, F16, BF16 or Q8_0; Q8_0 tensors whose ne[0] is not a multiple of
 * 32 are written F16, as convert_lora_to_gguf.py does). */
ft_status ft_adapter_write_gguf(const ft_adapter *a, const ft_model_config *cfg, const char *path, ft_ggml_type type);
/* PEFT directory (created if missing): adapter_model.safetensors (F32, {"format":"pt"}) +
 * adapter_config.json. base_name is written as base_model_name_or_path (NULL: keep the adapter's). */
ft_status ft_adapter_write_peft(const ft_adapter *a, const char *dir, const char *base_name);

/* Rows [row0, row0+nrows) of scale * B A for module m, ADDED to dst[nrows, in]. */
void ft_adapter_add_delta(const ft_adapter_mod *m, int64_t row0, int64_t nrows, float *dst);

/* Source row of output row `row` of a llama-arch GGUF q/k tensor with heads of D rows
 * (formats.md 3.4): new[h*D + 2i + j] = old[h*D + j*D/2 + i]. */
static inline int64_t ft_gguf_permuted_row(int64_t row, int64_t D) {
    int64_t h = row / D, rem = row % D;
    return h * D + (rem % 2) * (D / 2) + rem / 2;
}

#endif
