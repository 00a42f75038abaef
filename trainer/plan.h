/* plan.h: `ftune plan`: the memory and time a recipe's run needs, computed from config.json
 * alone (and a tokenized dataset's index when there is one), before any weight is read.
 *
 * Every byte figure comes from the size functions the allocators use (ft_weight_nbytes,
 * ft_lora_param_count, ft_adamw_state_bytes, ft_model_act_bytes), evaluated with the dtypes the
 * chosen backend would use: on the CPU backend activations are f32 and frozen weights keep the
 * checkpoint's dtype (config.json torch_dtype) unless quantized; on CUDA activations and 16-bit
 * weights are bf16. So on the CPU backend the plan's backend total equals what
 * ft_backend_bytes_peak measures for the same run (tests/test_plan.c holds it within 10%).
 *
 * FLOPs per token (docs: peers.md section 3, frozen base, LoRA, full recomputation):
 *   F = 6 N_blocks + 4 N_head + 4.5 A_fwd + 8 r sum(in + out)   (recompute on)
 *   F = 4 N_blocks + 4 N_head + 3.5 A_fwd + 6 r sum(in + out)   (recompute off)
 * with N_blocks the decoder linears' parameters, N_head = V*C, A_fwd = 2 L H D S (causal; S = T,
 * or for packed rows the mean length of the document a token sits in: plan_data.c).
 *
 * Time (plan.c "time"), per micro-batch of N = micro_batch x seq_len tokens, as the parts of a step
 * `ftune bench` times (its phase table): GEMMs (N (6 N_blocks + 4 N_head + LoRA) FLOPs at the
 * device's GEMM efficiency x peak, less the down_proj product the recompute skips: w_gemm),
 * attention (N x 4.5 A_fwd, 3.5 with kept attention, at the device's attention rate), NF4
 * dequantization (NF4 read + bf16 write of every linear, 2 passes with the weight cache), the
 * elementwise ops and the LoRA products (bytes read and written, from the model's shapes, over the
 * forward, recompute and backward passes) and cross-entropy (the logits) at the device's bandwidth x
 * efficiency; plus, once per optimizer step, AdamW's traffic. The parts are added as if none
 * overlapped, so the estimate errs slow. `--tflops` replaces all of it with a flat rate. */
#ifndef FT_PLAN_H
#define FT_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/backend.h"
#include "trainer/hf_config.h"
#include "trainer/model.h"
#include "trainer/recipe.h"

/* cuBLAS(Lt) workspace the CUDA backend reserves (NVIDIA's recommendation for Hopper). */
#define FT_PLAN_CUBLAS_WORKSPACE ((int64_t)32 << 20)
/* What else a CUDA backend holds from its creation (kernels/cuda/backend_cuda.cu ft_cuda_init):
 * the NF4 level and dynamic-map tables (272 f32), the 64 KiB quantization lookup table and the
 * error word. */
#define FT_PLAN_CUDA_TABLES ((int64_t)(272 * 4 + 65536 + 4))

typedef struct ft_plan_device {
    const char *name;       /* "h100" */
    char desc[128];         /* "NVIDIA H100 80GB", or the name of the GPU found (ft_plan_device_detect) */
    ft_backend_kind backend;
    double mem_gib;         /* memory a run may use, GiB */
    double peak_tflops;     /* dense BF16 GEMM rate measured with cuBLAS (CPU: f32 estimate) */
    double mem_gbps;        /* memory bandwidth, GB/s (0: memory traffic not modelled) */
    /* The time model's rates: what `ftune bench --peak` measured on the device (its phase table,
     * docs/perf.md), or, for a device not measured yet, a prediction said to be one. */
    double gemm_eff;        /* share of peak_tflops the model's GEMMs reach at their shapes */
    double attn_tflops;     /* attention forward + backward, FLOPs of 3.5 or 4.5 A_fwd per second / 1e12 */
    double attn_cudnn_tflops; /* the same through cuDNN's fused attention, which the CUDA backend runs for plain
                             * (unpacked) rows on this device when its workspace fits (0: never here) */
    double bw_eff;          /* share of mem_gbps streaming kernels (dequantization, cross-entropy, AdamW) reach */
    double elem_eff;        /* share of mem_gbps at which the elementwise kernels move the bytes plan_time.c counts */
    double lora_eff;        /* the same for the LoRA products' traffic */
    double dequant_hidden;  /* share of the NF4 dequantization the weight cache's prefetch hides behind the GEMMs */
    double reserve_gib;     /* of the total memory the GPU reports, what a run cannot have (CUDA context;
                             * on unified memory also the OS and the data pipeline) */
    int unified;            /* 1: the GPU's memory is the host's (GB10): pinned host memory is no more room */
    const char *note;       /* where the figures come from */
    const char *rates;      /* whether the time model's rates were measured on this device or predicted */
} ft_plan_device;

/* Figures for "cpu" (this machine), "h100", "h200" or "gb10"; FT_E_ARG for other names. */
ft_status ft_plan_device_get(const char *name, ft_plan_device *out);
/* "cpu, h100, h200, gb10". */
const char *ft_plan_device_list(void);
/* The profile of the device behind be: CPU -> "cpu"; a GPU whose name (ft_backend_device_name)
 * contains H100, H200 or GB10 -> that profile, with desc the GPU's name and mem_gib its total
 * memory less the profile's reserve; another GPU -> the h100 figures, said so in note. */
ft_status ft_plan_device_detect(ft_backend *be, ft_plan_device *out);

typedef enum {
    FT_PLAN_LINEARS = 0, /* frozen linear weights: NF4 codes + quantization constants, or 16-bit */
    FT_PLAN_EMBED,       /* embed_tokens + lm_head (16/32-bit) */
    FT_PLAN_SMALL,       /* norms, biases, RoPE frequencies */
    FT_PLAN_LORA,        /* LoRA A/B, f32 */
    FT_PLAN_GRADS,       /* LoRA gradients, f32 */
    FT_PLAN_OPTIM,       /* AdamW m and v, f32 */
    FT_PLAN_BOUNDARIES,  /* activation checkpoints: (L+1) layer inputs [N,C] */
    FT_PLAN_LAYER,       /* one layer's forward working set (recompute), or all L of them */
    FT_PLAN_BACKWARD,    /* backward scratch of one layer */
    FT_PLAN_LOGITS,      /* one logits chunk and the head's scratch */
    FT_PLAN_WORKSPACE,   /* CUDA: the backend's scratch slots (bf16 dequant of the largest linear,
                          * LoRA casts, attention, reductions; each rounded as ft_cuda_scratch_bytes)
                          * + cuBLAS workspace + tables; CPU: host-heap scratch of the reference
                          * kernels (weight tile, attention), outside backend memory */
    FT_PLAN_NLINES
} ft_plan_line_id;

typedef struct ft_plan_line {
    const char *name;
    char detail[96];
    int64_t bytes;
} ft_plan_line;

/* The parts of a training step's time (plan.c "time"), in `ftune bench`'s phase order. */
typedef enum {
    FT_PLAN_T_GEMM = 0,   /* base, lm_head and LoRA products' FLOPs */
    FT_PLAN_T_ATTENTION,
    FT_PLAN_T_DEQUANT,    /* NF4 -> bf16 of the frozen linears (GPU, NF4 only) */
    FT_PLAN_T_ELEMENTWISE,/* norms, RoPE, SwiGLU, copies, residual adds: their memory traffic */
    FT_PLAN_T_LORA,       /* the LoRA products' memory traffic (activations, dropout, master weights) */
    FT_PLAN_T_XENT,       /* cross-entropy's passes over the logits */
    FT_PLAN_T_OPTIM,      /* AdamW and the gradient norm: once per optimizer step */
    FT_PLAN_NTIMES
} ft_plan_time_id;

typedef struct ft_plan_time {
    const char *name;
    char detail[112];
    double s;             /* seconds per micro-batch (FT_PLAN_T_OPTIM: per optimizer step); 0: not modelled */
} ft_plan_time;

/* The MLP slice `ftune plan` offers (training.mlp_chunk) for contexts that do not fit otherwise: long
 * enough that the slice's products still run at the GEMMs' full rate. */
#define FT_PLAN_MLP_CHUNK 4096
/* The training.boundary_every the plan offers for L layers: about sqrt(L), which makes the kept
 * inputs (L / K) and the segment's slots (K - 1) fewest: 9 for 80 layers, 18 boundaries instead of 81;
 * 0 where it would keep no fewer (under 5 layers). */
static inline int64_t ft_plan_segment(int64_t L) {
    if (L < 5) return 0;
    int64_t k = 2;
    while ((k + 1) * (k + 1) <= L && k < 64) k++;
    k = (k + 1) * (k + 1) - L < L - k * k ? k + 1 : k; /* the nearer square */
    return k < 64 ? k : 64;                            /* FT_MODEL_MAX_SEGMENT */
}

typedef struct ft_plan_opts {
    const char *device;     /* NULL: dev when given, else "cpu" when model.device is cpu, else "h100" */
    const ft_plan_device *dev; /* figures of a device found on this machine (ft_plan_device_detect),
                                * used when device is NULL */
    double tflops;          /* a flat sustained TFLOP/s for the whole step; <= 0: the time model */
    double memory_gib;      /* device memory override, GiB; <= 0: the recipe's model.memory_gib, else the
                             * device's figure */
    int host_boundaries;    /* 1: boundaries in host memory whatever training.host_boundaries says
                             * (`--host-boundaries`); 0: as the recipe says */
    int keep_attention;     /* 1: attention outputs kept whatever training.keep_attention says
                             * (`--keep-attention`); 0: as the recipe says */
    double attn_len;        /* > 0: S of the attention's FLOPs, the mean length of the document a token sits
                             * in (`ftune bench --doc-len`); 0: T, or the dataset index's for packed rows */
    const char *linear_type; /* a ggml block type ("q4_k") for every frozen linear, as a GGUF base keeps
                              * them (`ftune bench --quant q4_k`); NULL: model.quant's */
} ft_plan_opts;

typedef struct ft_plan {
    char config_path[4096];
    ft_model_config cfg;
    ft_model_dims dims;
    ft_plan_device dev;
    ft_dtype linear_dtype, other_dtype, act_dtype;
    int64_t gguf_linear_bytes; /* > 0: a GGUF base (config_path is the .gguf): its linears' bytes as
                                * stored, whose types llama-quantize mixes; linear_dtype the commonest */

    /* the run */
    int64_t B, T, K, R;       /* micro_batch, seq_len, grad_accum, lora.r */
    int64_t n_tokens;         /* lora.trainable_tokens given as ids or strings (`auto`'s are found at load) */
    unsigned targets;         /* LoRA module mask */
    int recompute;
    int host_boundaries;      /* with recompute: boundaries in pinned host memory (asked for without
                               * recompute, it is 0 and a warning says it is ignored) */
    int keep_attention;       /* with recompute: every layer's attention output kept (0 without) */
    int64_t keep_layers;      /* with recompute: the last layers kept, not recomputed (0 without) */
    int keep_layers_max;      /* 1: training.keep_layers was max, and keep_layers is what fits in 96% of the
                               * device (as the offers below count) */
    int64_t mlp_chunk;        /* with recompute: training.mlp_chunk, the MLP's slice of tokens (0: all, and without) */
    int64_t boundary_every;   /* training.boundary_every as the model takes it (ft_model_boundary_every; 1: every
                               * layer's input kept) */
    double seg_forward;       /* boundary_every > 1: the share of the layers the backward runs forward again */
    int lora_dropout;         /* 1: lora.dropout > 0 (its scratch and traffic) */
    int dora;                 /* 1: lora.dora (its magnitudes, its backward scratch, its second frozen product) */
    int packed;               /* data.packing is not none: rows may hold several documents, whose attention
                               * runs ftune's own kernels (kernels/cuda/attention_cudnn.cu) */
    int attn_cudnn;           /* 1: the attention runs through cuDNN (plain rows, a device with attn_cudnn_tflops,
                               * its workspace within a sixteenth of the device) */
    int64_t attn_workspace;   /* its workspace and lse copy, bytes (0 without): counted in the workspace line
                               * and given to the backend (ft_backend_attn_workspace) by ft_plan_for_backend */
    int64_t threads;          /* CPU threads (host scratch) */
    int64_t lora_params;
    double attn_len;          /* S in A_fwd = 2 L H D S: T, or for packed rows the mean over tokens of the length
                               * of the document a token sits in, from the dataset index (plan_data.c) */
    char attn_len_from[160];  /* where attn_len came from, for the report */
    int64_t data_tokens, data_examples; /* the newest cached dataset index's totals (0 without one) */
    int64_t data_bytes;       /* its training shards' bytes on disk (0 without one) */
    char data_index[4608];    /* its path ("" without one) */

    /* memory */
    ft_plan_line line[FT_PLAN_NLINES];
    int64_t train_bytes;      /* sum of the lines: a training step's peak */
    int64_t load_bytes;       /* backend peak while loading: weights + one linear staged for quantization */
    int64_t host_bytes;       /* part of train_bytes outside backend memory (CPU workspace) */
    int64_t pinned_bytes;     /* host-kept layer boundaries (not in any total above) */
    int64_t backend_bytes;    /* max(train - host, load): what ft_backend_bytes_peak measures */
    int64_t total_bytes;      /* max(train, load) */
    int64_t keep_total_bytes; /* total_bytes with training.keep_attention, when the run fits on a GPU with
                               * recompute and without it (0 otherwise): the plan offers it if it fits */
    /* On a GPU with recompute, what the memory left over buys (plan.c pl_offer_kept): kept, the most
     * layers training.keep_layers could keep at the recipe's micro-batch when more than it keeps
     * (kept.kept 0 otherwise); kept_mb, a smaller micro-batch with the grad_accum that keeps the
     * tokens per step and the most layers that fit then, when the time model finds it faster still
     * (kept_mb.B 0 otherwise). Either may come with training.keep_attention (attn) where the recipe
     * does not keep attention: a recomputed layer's kept attention output costs a tenth of a kept
     * layer's memory and saves about a third of its recompute time, so fewer kept layers and the
     * rest's attention can beat more kept layers. */
    struct ft_plan_offer {
        int64_t B, K, kept;   /* micro_batch, grad_accum, training.keep_layers */
        int attn;             /* with training.keep_attention: true */
        int64_t bytes;        /* total_bytes with them */
        double tokens_per_s;  /* the time model's */
    } kept, kept_mb;
    int64_t max_seq, max_seq_host; /* on a GPU with recompute: the longest data.seq_len (a multiple of 256)
                                    * that fits at this micro-batch, with the layer boundaries on the
                                    * device and in host memory (training.host_boundaries); 0 otherwise */
    int64_t max_seq_mlp;      /* the same with host boundaries (not on unified memory, where they are no more
                               * room: max_seq_host 0) and the MLP in slices of FT_PLAN_MLP_CHUNK tokens, when
                               * the recipe does not slice it already (0 otherwise) */
    int64_t seg_offer;        /* the training.boundary_every the plan offers: ft_plan_segment of the layers */
    int64_t max_seq_seg;      /* the longest data.seq_len with the boundaries on the device, the input of one layer
                               * in seg_offer kept and the MLP in slices (as max_seq_mlp, when the recipe does
                               * neither already; 0 otherwise) */
    int64_t device_bytes;
    const char *mem_source;   /* where device_bytes came from when not the device's figure:
                               * "--memory-gb", "model.memory_gib", "free when the run started",
                               * "the GPU found, less ..."; or NULL */
    int fits;
    char advice[512];         /* "reduce training.micro_batch to 2 ..." when it does not fit */

    /* compute */
    int64_t n_blocks, n_head; /* parameters of the decoder linears, of lm_head */
    double f_base, f_head, f_attn, f_lora, flops_per_token; /* F as defined above */
    double f_dora;            /* lora.dora: its backward's second frozen product and LoRA B product for each
                               * targeted module whose output it does not hold (2 (in + R) out a token;
                               * model.h ft_dora_output_kept), and the weight norms (2 R in out per module and
                               * optimizer step, spread over the step's tokens); in F */
    double flops_full;        /* F with full recomputation (6 N_blocks + 4 N_head + 4.5 A_fwd + 8 r sum(in + out)),
                               * whatever the run recomputes: the one yardstick of tokens/s across settings */
    double w_gemm, w_attn;    /* FLOPs per token the step runs in GEMMs (base, head, LoRA) and attention:
                               * less than F's parts with recompute (no `down` product in it) and kept attention */
    ft_plan_time time[FT_PLAN_NTIMES]; /* the parts (all 0 with --tflops) */
    int flat;                 /* 1: --tflops gave the rate of the whole step */
    double micro_s;           /* seconds per micro-batch: the parts' sum, or N F / --tflops */
    double tflops;            /* sustained rate: --tflops, or F x tokens/s of the parts' sum */
    int64_t tokens_per_step;  /* micro_batch x grad_accum x seq_len */
    int64_t steps;            /* 0: unknown (epochs without a dataset index) */
    char steps_from[4800];
    int64_t total_tokens;
    double tokens_per_s, step_s, hours; /* step_s = grad_accum x micro_s + the optimizer's part; hours: the
                                         * training steps and the evaluations */
    /* evaluations (plan_time.c): every eval.every_steps and at the end, each a forward over the
     * validation rows (eval.max_batches micro-batches at most) and greedy decoding of eval.prompts */
    double valid_rows;        /* validation rows (the dataset index's valid split; 0: unknown) */
    int64_t n_evals;          /* evaluations in the run (at most: eval.patience may end it sooner) */
    int64_t eval_tokens;      /* validation tokens forwarded per evaluation (-1: unknown) */
    double eval_valid_s, eval_gen_s; /* seconds per evaluation: the validation forward, the samples */
    double eval_s;            /* all evaluations' seconds, in hours */
    /* training.max_hours (plan_time.c): the steps a job trains before the limit stops it, by the mean
     * time a step (the evaluations spread over the steps; loading not counted), and the jobs the run
     * then takes; both 0 without a limit or a step count */
    int64_t job_steps, jobs;
    int job_short;            /* the limit is shorter than a step and a checkpoint: no job trains (0, 0) */

    /* disk: what the run writes under output_dir (plan_data.c), against what its filesystem has free */
    int64_t disk_ckpt;        /* one checkpoint, at most: LoRA parameters and AdamW's m and v in f32 */
    int64_t disk_ckpts;       /* checkpoints on disk at once: checkpoint.keep + 1 (the next is written before the
                               * oldest goes) */
    int64_t disk_adapter;     /* the final adapter: PEFT safetensors, and the GGUF one with export.formats gguf;
                                 best/'s PEFT adapter with eval.keep_best and validation data */
    int64_t disk_merged;      /* the merged GGUF of export.merged (0 without): its tensors to the byte, its
                               * header (metadata, vocabulary) about */
    int64_t disk_total;       /* those, and the tokenized training data when cached */
    int64_t disk_free;        /* free there to the run (statvfs f_bavail), -1 if unknown */
    char disk_dir[4096];      /* where disk_free was asked: output_dir or its nearest existing parent */
} ft_plan;

/* Plans the recipe's run: reads model.config (or model.path/config.json) and, for an epochs-based
 * recipe, a dataset index (see ft_plan_make's notes in plan.c). */
ft_status ft_plan_make(ft_plan *p, const ft_recipe *r, const ft_plan_opts *opts);
/* The same from an already-loaded config. */
ft_status ft_plan_make_cfg(ft_plan *p, const ft_model_config *cfg, const ft_recipe *r, const ft_plan_opts *opts);
/* The plan of r's run on the backend it runs on (`ftune train`, `ftune bench`): the backend's
 * dtypes and device profile (ft_plan_device_detect), its memory as it is now (98% of free
 * + in use, the rest left to the allocator; model.memory_gib when set), from cfg (NULL: the
 * recipe's config.json as ft_plan_make reads it). Then installs ft_plan_oom_explain over p on be,
 * so an allocation that runs out of memory says what the plan predicted and which knob to turn:
 * p must stay valid while be allocates, or be removed with ft_backend_set_oom_explain(be, NULL,
 * NULL). more (may be NULL): its attn_len and linear_type (ft_plan_opts); the rest is set here. */
ft_status ft_plan_for_backend(ft_plan *p, const ft_model_config *cfg, const ft_recipe *r, ft_backend *be,
                              const ft_plan_opts *more);
/* "55.9 GiB" (>= 1 GiB) or "13.2 MiB": how the report states a total. */
void ft_plan_format_bytes(int64_t bytes, char *buf, size_t cap);
/* The aligned report (stdout of `ftune plan`). */
void ft_plan_print(const ft_plan *p, const ft_recipe *r, FILE *f);
/* The plan as one JSON object (`ftune plan --json`, trainer/plan_json.c): the report's figures in
 * bytes and seconds, null where unknown; *out malloc'd. */
ft_status ft_plan_json(const ft_plan *p, const ft_recipe *r, char **out);
/* The device profiles as the markdown table of docs/recipes.md ("Devices"), from pl_devices itself,
 * so the page cannot drift from the figures the plan uses (`ftune plan --devices`; test_plan). */
void ft_plan_devices_doc(void *file);

/* The longest sequence (a multiple of `multiple`, at most max_T) with which the planned run (its
 * micro-batch, rank, recompute and host_boundaries) fits p->device_bytes; 0 if none. p's lines are
 * left as they were. */
/* cuDNN's fused attention backward's workspace (deterministic) for B rows of T tokens, H query heads
 * of head_dim D, in bytes, as the plan counts it (plan.c pl_attn_cudnn_bytes). */
int64_t ft_plan_cudnn_sdpa_workspace(int64_t B, int64_t T, int64_t H, int64_t D);
int64_t ft_plan_max_seq(ft_plan *p, int64_t multiple, int64_t max_T);

/* An ft_oom_explain_fn (kernels/backend.h) over a const ft_plan *: what the plan predicted for the
 * allocation `what` names and for the whole run, and which knob gets the run under the device's
 * memory (the plan's own advice) or, when the plan fitted, under 90% of its total. */
void ft_plan_oom_explain(void *plan, const char *what, int64_t bytes, char *buf, size_t cap);

#endif
