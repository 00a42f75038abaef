/* plan.c: see plan.h. One function (pl_memory) evaluates the allocators' size functions for a
 * given micro-batch, sequence length, rank, recompute flag and linear dtype; the report and the
 * "which knob gets it under" search both call it, so the advice is computed, not guessed.
 *
 * The devices' figures are plan_device.c's; the time model is plan_time.c.
 *
 * The tokenized dataset's index, when a run has cached one, gives an epochs-based recipe its step
 * count and packed rows their attention's length (plan_data.c). */
#include "trainer/plan.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export/export_util.h"
#include "kernels/ggml_quants.h"
#include "kernels/fileio.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "optim/adamw.h"
#include "trainer/gguf_config.h"
#include "trainer/loader.h"
#include "trainer/plan_impl.h"


/* ---- shapes ---------------------------------------------------------------------------------- */

/* The checkpoint's float dtype as config.json states it (bf16 when absent). */
static ft_dtype pl_ckpt_dtype(const ft_model_config *c) {
    if (strcmp(c->torch_dtype, "float32") == 0) return FT_F32;
    if (strcmp(c->torch_dtype, "float16") == 0) return FT_F16;
    return FT_BF16;
}

static int64_t pl_max(int64_t a, int64_t b) { return a > b ? a : b; }

const char *ft_plan_si(double v, const char *unit, char *buf, size_t cap) {
    if (v >= 1e12) snprintf(buf, cap, "%.1f T%s", v / 1e12, unit);
    else if (v >= 1e9) snprintf(buf, cap, "%.2f %s%s", v / 1e9, unit[0] ? "G" : "B", unit); /* 70.55 B params */
    else if (v >= 1e6) snprintf(buf, cap, "%.2f M%s", v / 1e6, unit);
    else if (v >= 1e3) snprintf(buf, cap, "%.2f K%s", v / 1e3, unit);
    else snprintf(buf, cap, "%.0f%s%s", v, unit[0] ? " " : "", unit);
    return buf;
}

/* ---- memory ---------------------------------------------------------------------------------- */

typedef struct pl_in {
    int64_t B, T, R;
    int recompute, host;
    ft_dtype lin;
    int keep; /* with recompute: attention outputs kept (training.keep_attention) */
    int drop; /* lora.dropout > 0 */
    int64_t kl; /* with recompute: layers kept, not recomputed (training.keep_layers) */
    int64_t mc; /* with recompute: the MLP's slice of tokens (training.mlp_chunk; 0: all) */
    int64_t be; /* with recompute: every be-th layer's input kept (training.boundary_every; 0/1: all) */
} pl_in;

/* The run p plans, as pl_memory takes it. */
static pl_in pl_current(const ft_plan *p) {
    return (pl_in){.B = p->B, .T = p->T, .R = p->R, .recompute = p->recompute, .host = p->host_boundaries,
                   .lin = p->linear_dtype, .keep = p->keep_attention, .drop = p->lora_dropout, .kl = p->keep_layers,
                   .mc = p->mlp_chunk, .be = p->boundary_every};
}

static void pl_set(ft_plan_line *l, const char *name, int64_t bytes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pl_set(ft_plan_line *l, const char *name, int64_t bytes, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->detail, sizeof l->detail, fmt, ap);
    va_end(ap);
    l->name = name, l->bytes = bytes;
}

/* The bytes cuDNN's attention takes for the run `in` (kernels/cuda/attention_cudnn.cu), 0 where the
 * backend would not run it: packed rows, a device without its rate, head_dim not a multiple of 8 up
 * to 128, or past the backend's cap (ft_attn_workspace_cap, a sixteenth of the device). The deterministic
 * backward's workspace is B H (2 T^2 + (4 D + 4) T) bytes: dP in BF16, dq's f32 accumulator and a
 * softmax statistic; that is what cuDNN 9.14 reported on the H100 for every shape tried
 * (tests/fixtures/cudnn/sdpa_workspace.tsv, test_plan). Then lse's packed [B, H, T] f32 copy. */
static int64_t pl_attn_cudnn_bytes(const ft_plan *p, const pl_in *in) {
    const ft_model_dims *d = &p->dims;
    if (p->packed || !(p->dev.attn_cudnn_tflops > 0) || d->D % 8 || d->D > 128) return 0;
    const int64_t ws = ft_plan_cudnn_sdpa_workspace(in->B, in->T, d->H, d->D);
    const int64_t bytes = (ws + 255) / 256 * 256 + 4 * in->B * in->T * d->H;
    return bytes <= ft_attn_workspace_cap((int64_t)(p->dev.mem_gib * PL_GIB)) ? bytes : 0;
}

int64_t ft_plan_cudnn_sdpa_workspace(int64_t B, int64_t T, int64_t H, int64_t D) {
    return B * H * (2 * T * T + (4 * D + 4) * T);
}

/* A GGUF base's frozen linears as ft_model_load_gguf stores them (ft_gguf_linear_dtypes), everything
 * else in BF16 on every backend. */
static ft_status pl_gguf_linears(ft_plan *p, const ft_recipe *r) {
    ft_gguf *g = NULL;
    ft_dtype *types = NULL;
    const ft_model_dims *d = &p->dims;
    FT_TRY(ft_gguf_open(&g, p->config_path));
    ft_status st = ft_malloc((void **)&types, (size_t)(d->L * FT_MOD_COUNT) * sizeof *types, "linear types");
    if (st == FT_OK) st = ft_gguf_linear_dtypes(g, p->config_path, d->L, strcmp(r->model.quant, "nf4") == 0, types);
    if (st == FT_OK) {
        ft_lora_shapes s = ft_model_lora_shapes(d);
        int64_t count[FT_DTYPE_COUNT] = {0}, bytes = 0;
        for (int64_t i = 0; i < d->L * FT_MOD_COUNT; i++) {
            const int m = (int)(i % FT_MOD_COUNT);
            bytes += ft_weight_nbytes(types[i], s.out[m], s.in[m]);
            count[types[i]]++;
        }
        ft_dtype most = types[0];
        for (int t = 0; t < FT_DTYPE_COUNT; t++)
            if (count[t] > count[most]) most = (ft_dtype)t;
        p->linear_dtype = most, p->gguf_linear_bytes = bytes, p->other_dtype = FT_BF16;
    }
    ft_free(types);
    ft_gguf_close(g);
    return st;
}

/* Fills p->line and the totals for the run `in`. threads: CPU threads (for host scratch). */
static void pl_memory(ft_plan *p, const pl_in *in, int64_t threads) {
    const ft_model_dims *d = &p->dims;
    const ft_dtype o = p->other_dtype;
    const int cuda = p->dev.backend == FT_BACKEND_CUDA;
    ft_lora_shapes s = ft_model_lora_shapes(d);
    int64_t lin = 0, max_lin = 0, max_in = 0, hd = d->H * d->D, kvd = d->Hkv * d->D;
    for (int m = 0; m < FT_MOD_COUNT; m++) {
        lin += ft_weight_nbytes(in->lin, s.out[m], s.in[m]);
        max_lin = pl_max(max_lin, s.out[m] * s.in[m]);
        max_in = pl_max(max_in, s.in[m]);
    }
    lin *= d->L;
    if (p->gguf_linear_bytes > 0) lin = p->gguf_linear_bytes;
    double bits = 8.0 * (double)lin / (double)(p->n_blocks > 0 ? p->n_blocks : 1);
    char num[48];
    pl_set(&p->line[FT_PLAN_LINEARS], "frozen linear weights", lin, "%s%s, %.3f bits/param, %s params",
           ft_dtype_name(in->lin), p->gguf_linear_bytes > 0 ? " mostly (GGUF, as stored)" : "", bits, ft_plan_si((double)p->n_blocks, "", num, sizeof num));

    int64_t emb = ft_weight_nbytes(o, d->V, d->C) * (d->tied ? 1 : 2);
    pl_set(&p->line[FT_PLAN_EMBED], "embeddings + lm_head", emb, "%s, %s%lld x %lld", ft_dtype_name(o),
           d->tied ? "tied, " : "2 x ", (long long)d->V, (long long)d->C);

    int64_t per_layer = 2 * ft_weight_nbytes(o, 1, d->C);
    if (d->qkv_bias) per_layer += ft_weight_nbytes(o, 1, hd) + 2 * ft_weight_nbytes(o, 1, kvd);
    if (d->o_bias) per_layer += ft_weight_nbytes(o, 1, d->C);
    if (d->qk_norm) per_layer += 2 * ft_weight_nbytes(o, 1, d->D);
    int64_t small = d->L * per_layer + ft_weight_nbytes(o, 1, d->C) + d->D / 2 * 4 + ft_model_fixed_bytes();
    pl_set(&p->line[FT_PLAN_SMALL], "norms, biases, RoPE", small, "%s (and the loss slots)", ft_dtype_name(o));

    ft_lora_cfg lc = {.r = in->R, .targets = p->targets, .n_tokens = p->n_tokens, .tied = d->tied, .dora = p->dora};
    int64_t n = ft_lora_param_count(&lc, &s, d->L);
    p->lora_params = n;
    int64_t n_wn = 0; /* DoRA: a weight norm per magnitude (lora.h ft_lora.wn) */
    for (int m = 0; p->dora && m < FT_MOD_COUNT; m++)
        if (p->targets & (1u << m)) n_wn += s.out[m] * d->L;
    pl_set(&p->line[FT_PLAN_LORA], "LoRA weights", (n + n_wn) * 4, "F32, %s params%s%s",
           ft_plan_si((double)n, "", num, sizeof num), n_wn ? " (and DoRA's weight norms)" : "", cuda ? ", paged" : "");
    pl_set(&p->line[FT_PLAN_GRADS], "LoRA gradients", n * 4, "F32");
    pl_set(&p->line[FT_PLAN_OPTIM], "optimizer state", ft_adamw_state_bytes(n) + ft_adamw_scalar_bytes(),
           "AdamW m + v, F32%s", cuda ? ", paged (managed memory)" : "");

    ft_model_opts mo = {.recompute = in->recompute, .host_boundaries = in->host, .keep_attention = in->keep,
                        .keep_layers = in->recompute ? in->kl : 0, .mlp_chunk = in->recompute ? in->mc : 0,
                        .dora = p->dora ? 1 + p->lora_dropout : 0, .boundary_every = in->be};
    ft_act_bytes a = ft_model_act_bytes_opts(d, in->B, in->T, in->R, &mo, p->act_dtype);
    int64_t N = in->B * in->T;
    const char *an = ft_dtype_name(p->act_dtype);
    p->pinned_bytes = a.boundaries_host;
    if (a.boundaries_host > 0 || (in->recompute && in->host))
        pl_set(&p->line[FT_PLAN_BOUNDARIES], "activation checkpoints", a.boundaries,
               "2 x %lld tokens x %lld, %s (the rest on host)", (long long)N, (long long)d->C, an);
    else
        pl_set(&p->line[FT_PLAN_BOUNDARIES], "activation checkpoints", a.boundaries, "%lld x %lld tokens x %lld, %s%s",
               (long long)(a.boundaries / (N * d->C * ft_dtype_nbytes(p->act_dtype, 1))), (long long)N,
               (long long)d->C, an, ft_model_boundary_every(&mo, d->L) > 1 ? " (every few layers')" : "");
    char kept[64] = "";
    if (a.layers_kept > 0) snprintf(kept, sizeof kept, " + %lld kept layers", (long long)mo.keep_layers);
    pl_set(&p->line[FT_PLAN_LAYER], in->recompute ? "layer recompute working set" : "saved layer activations",
           a.layer_working + a.layers_kept + a.attention_kept + a.lora_kept, "%s%s%s%s, %s",
           in->recompute ? "one layer" : "every layer (training.recompute off)", kept,
           a.lora_kept > 0 ? " + LoRA x.A^T of all layers" : "",
           a.attention_kept > 0 ? " + kept attention outputs" : "", an); /* within detail[96] */
    char slices[64] = "";
    const int64_t Nm = ft_model_mlp_rows(&mo, N);
    if (Nm < N) snprintf(slices, sizeof slices, ", the MLP %lld tokens at a time", (long long)Nm);
    pl_set(&p->line[FT_PLAN_BACKWARD], "backward scratch", a.backward, "one layer%s, %s", slices, an);
    int64_t chunk = (64LL << 20) / (d->V > 0 ? d->V : 1);
    if (chunk < 16) chunk = 16;
    if (chunk > N) chunk = N;
    /* + 256: the activation block is allocated with room to align its start */
    pl_set(&p->line[FT_PLAN_LOGITS], "logits chunk", a.logits + 256, "%lld rows x %lld, %s + final norm",
           (long long)chunk, (long long)d->V, an);

    int64_t ws, ws_load = 0;
    if (cuda) {
        /* kernels/cuda (cuda_impl.h): one grow-only scratch slot per use, each its largest request
         * rounded up as ft_cuda_scratch_bytes (kernels/backend.h): FT_SCR_WEIGHT a bf16 copy of the
         * largest non-bf16 linear (dequantized NF4), FT_SCR_LORA_A/B/DT bf16 A [R,in], B [out,R],
         * dt [N,R], FT_SCR_REDUCE xent's 16 bytes per logits row (or sumsq's partials),
         * FT_SCR_ATTN attention-backward Dl [N,H] f32; with LoRA dropout FT_SCR_LORA_PART the fused
         * products' f32 partials, or for the modules they do not serve (ft_cuda_lora_fused) the
         * [N, in] BF16 dropout(x) and input-gradient slots; plus the cuBLASLt workspace and the tables.
         * Loading (and bench's initialization) streams weights through FT_LOAD_SLOTS device chunks
         * and the largest NF4 tensor's absmax: ft_backend_cuda_load_bytes. Quantized linears: the
         * model gives the backend a cache of one layer's dequantized linears instead of the
         * FT_SCR_WEIGHT slot (ft_model_weight_cache_bytes, kernels/cuda/wcache.cu). */
        const int64_t wcache = ft_model_weight_cache_bytes(d, in->lin);
        int64_t max_out = 0;
        for (int m = 0; m < FT_MOD_COUNT; m++) max_out = pl_max(max_out, s.out[m]);
        int64_t chunk_rows = (64LL << 20) / (d->V > 0 ? d->V : 1);
        if (chunk_rows < 16) chunk_rows = 16;
        if (chunk_rows > N) chunk_rows = N;
        int64_t part = 0, unfused_in = 0, unfused_acc_in = 0; /* the input gradient's slot: where it adds up */
        for (int m = 0; in->drop && m < FT_MOD_COUNT; m++) {
            if (!(p->targets & (1u << m))) continue;
            if (ft_cuda_lora_fused(in->R, s.in[m])) {
                part = pl_max(part, ft_cuda_lora_part_bytes(N, s.in[m], in->R));
            } else {
                unfused_in = pl_max(unfused_in, s.in[m]);
                if (m == FT_MOD_UP || m == FT_MOD_K || m == FT_MOD_V) unfused_acc_in = pl_max(unfused_acc_in, s.in[m]);
            }
        }
        const int64_t slot[] = {in->lin == FT_BF16 || wcache ? 0 : 2 * max_lin, 2 * in->R * max_in, 2 * max_out * in->R,
                                2 * N * in->R, pl_max(16 * chunk_rows, 8 * 1024), 4 * N * d->H, part,
                                2 * N * unfused_in, 2 * N * unfused_acc_in};
        ws = FT_PLAN_CUBLAS_WORKSPACE + FT_PLAN_CUDA_TABLES + (wcache ? ft_cuda_scratch_bytes(wcache) : 0);
        for (size_t i = 0; i < sizeof slot / sizeof *slot; i++) ws += slot[i] > 0 ? ft_cuda_scratch_bytes(slot[i]) : 0;
        p->attn_workspace = pl_attn_cudnn_bytes(p, in);
        p->attn_cudnn = p->attn_workspace > 0;
        if (p->attn_cudnn) ws += ft_cuda_scratch_bytes(p->attn_workspace); /* the FT_SCR_CUDNN slot */
        ws_load = FT_PLAN_CUBLAS_WORKSPACE + FT_PLAN_CUDA_TABLES +
                  ft_backend_cuda_load_bytes(in->lin == FT_NF4 ? max_lin : 0);
        char att[64] = "";
        if (p->attn_cudnn) snprintf(att, sizeof att, ", cuDNN attention %.0f MiB", (double)p->attn_workspace / (1 << 20));
        pl_set(&p->line[FT_PLAN_WORKSPACE], "workspace", ws, "bf16 dequant of %s, cuBLAS %d MiB%s",
               wcache ? "one layer's linears (reused)" : "the largest linear", (int)(FT_PLAN_CUBLAS_WORKSPACE >> 20), att);
    } else {
        p->attn_workspace = 0, p->attn_cudnn = 0;
        /* kernels/cpu: a 256-row f32 weight tile, attention scores/accumulators per thread, LoRA dt
         * (with dropout also the f32 dropout(x) and masked input gradient [N, in]) */
        int64_t tile = 256 * pl_max(max_in, d->C) * 4;
        int64_t att = pl_max(threads * (in->T + d->D) * 8, N * d->H * 8 + threads * 2 * d->D * 8);
        ws = pl_max(pl_max(tile, att), N * in->R * 4 + (in->drop ? 2 * N * max_in * 4 : 0));
        pl_set(&p->line[FT_PLAN_WORKSPACE], "workspace", ws, "host heap: weight tile, attention scratch");
    }

    p->train_bytes = 0;
    for (int i = 0; i < FT_PLAN_NLINES; i++) p->train_bytes += p->line[i].bytes;
    if (p->dev.unified) p->train_bytes += p->pinned_bytes; /* host boundaries in the same memory */
    p->host_bytes = cuda ? 0 : ws;
    /* CPU: ft_weight_set uploads a whole linear before quantizing it; CUDA streams it (ws_load) */
    int64_t src_es = ft_dtype_nbytes(pl_ckpt_dtype(&p->cfg), 1);
    p->load_bytes = lin + emb + small + ws_load + (!cuda && in->lin == FT_NF4 ? max_lin * src_es : 0);
    p->backend_bytes = pl_max(p->train_bytes - p->host_bytes, p->load_bytes);
    p->total_bytes = pl_max(p->train_bytes, p->load_bytes);
}

typedef enum { PL_KNOB_B, PL_KNOB_T, PL_KNOB_R, PL_KNOB_KL } pl_knob;

/* Largest value of one knob, a multiple of `unit` in [lo, hi] units, with which the run fits (0 if
 * none); memory grows with each knob, so a binary search. Leaves p's lines at the last try. */
static int64_t pl_largest(ft_plan *p, pl_in in, pl_knob k, int64_t lo, int64_t hi, int64_t unit, int64_t threads) {
    int64_t best = 0;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (k == PL_KNOB_B) in.B = mid * unit;
        else if (k == PL_KNOB_T) in.T = mid * unit;
        else if (k == PL_KNOB_KL) in.kl = mid * unit;
        else in.R = mid * unit;
        pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes) best = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    return best * unit;
}

/* Which knob gets the run under the device's memory: fewer kept layers, recompute, micro_batch,
 * seq_len, quant, then rank. */
static void pl_advise(ft_plan *p, const pl_in *cur, int64_t threads) {
    char *a = p->advice;
    size_t cap = sizeof p->advice, n = 0;
    pl_in in;
    a[0] = 0;
#define PL_ADD(...) (n += (size_t)snprintf(a + n, n < cap ? cap - n : 0, __VA_ARGS__))
    if (cur->recompute && cur->kl > 0) { /* the kept layers first: the same run, only slower */
        in = *cur, in.kl = 0;
        pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes)
            PL_ADD("reduce training.keep_layers to %lld",
                   (long long)(cur->kl > 1 ? pl_largest(p, *cur, PL_KNOB_KL, 1, cur->kl - 1, 1, threads) : 0));
    }
    if (!cur->recompute) {
        in = *cur, in.recompute = 1;
        pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes) PL_ADD("set training.recompute: true");
    }
    /* (a discrete GPU only: on the CPU backend and unified memory host memory is the same RAM) */
    const int host_room = p->dev.backend == FT_BACKEND_CUDA && !p->dev.unified;
    if (cur->recompute && !cur->host && host_room) {
        in = *cur, in.host = 1;
        pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes) {
            char pinned[48];
            ft_plan_format_bytes(p->pinned_bytes, pinned, sizeof pinned);
            PL_ADD("%sset training.host_boundaries: true (layer boundaries in host memory, %s pinned)", n ? ", or " : "",
                   pinned);
        }
    }
    /* the MLP in slices: the same FLOPs, so before anything that trains on less per step */
    if (cur->recompute && (cur->mc == 0 || cur->mc > FT_PLAN_MLP_CHUNK) && cur->B * cur->T > FT_PLAN_MLP_CHUNK) {
        in = *cur, in.mc = FT_PLAN_MLP_CHUNK;
        pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes)
            PL_ADD("%sset training.mlp_chunk: %d (the MLP over %d tokens at a time)", n ? ", or " : "",
                   FT_PLAN_MLP_CHUNK, FT_PLAN_MLP_CHUNK);
        else if (!cur->host && host_room) {
            in.host = 1;
            pl_memory(p, &in, threads);
            if (p->total_bytes <= p->device_bytes)
                PL_ADD("%sset training.mlp_chunk: %d and training.host_boundaries: true", n ? ", or " : "",
                       FT_PLAN_MLP_CHUNK);
        }
    }
    /* two-level recomputation (training.boundary_every): the boundaries stay on the device, fewer */
    const int64_t K = ft_plan_segment(p->dims.L);
    if (cur->recompute && !cur->host && cur->be <= 1 && K > 1) {
        in = *cur, in.be = K;
        pl_memory(p, &in, threads);
        int mlp = 0;
        if (p->total_bytes > p->device_bytes && (cur->mc == 0 || cur->mc > FT_PLAN_MLP_CHUNK) &&
            cur->B * cur->T > FT_PLAN_MLP_CHUNK)
            in.mc = FT_PLAN_MLP_CHUNK, mlp = 1, pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes)
            PL_ADD("%sset training.boundary_every: %lld%s (the input of one layer in %lld kept, the rest recomputed: "
                   "one more forward of most layers)", n ? ", or " : "", (long long)K,
                   mlp ? " and training.mlp_chunk: 4096" : "", (long long)K);
    }
    int64_t b = cur->B > 1 ? pl_largest(p, *cur, PL_KNOB_B, 1, cur->B - 1, 1, threads) : 0;
    if (b > 0) {
        int64_t k = (cur->B * p->K + b - 1) / b;
        PL_ADD("%sreduce training.micro_batch to %lld (training.grad_accum %lld keeps %lld tokens per step)",
               n ? ", or " : "", (long long)b, (long long)k, (long long)(b * k * cur->T));
    }
    int64_t t = cur->T > 16 ? pl_largest(p, *cur, PL_KNOB_T, 16, cur->T - 1, 1, threads) : 0;
    if (t >= 128) t -= t % 64;
    if (t >= 16) PL_ADD("%sreduce data.seq_len to %lld", n ? ", or " : "", (long long)t);
    if (cur->lin != FT_NF4) {
        in = *cur, in.lin = FT_NF4;
        pl_memory(p, &in, threads);
        if (p->total_bytes <= p->device_bytes) PL_ADD("%sset model.quant: nf4", n ? ", or " : "");
    }
    int64_t r = !n && cur->R > 1 ? pl_largest(p, *cur, PL_KNOB_R, 1, cur->R - 1, 1, threads) : 0;
    if (r > 0) PL_ADD("reduce lora.r to %lld", (long long)r);
    if (!n) {
        in = *cur, in.B = 1, in.T = 16, in.R = 1, in.recompute = 1, in.kl = 0;
        pl_memory(p, &in, threads);
        char least[48];
        ft_plan_format_bytes(p->total_bytes, least, sizeof least);
        if (p->total_bytes > p->device_bytes) {
            PL_ADD("even micro_batch 1, seq_len 16, r 1 needs %s: use a device with more memory", least);
        } else { /* no one knob is enough, several together are: micro_batch 1 and seq_len, then r */
            in = *cur, in.B = 1, in.recompute = 1, in.kl = 0;
            int64_t t1 = pl_largest(p, in, PL_KNOB_T, 16, cur->T, 1, threads), r1 = cur->R;
            if (t1 >= 128) t1 -= t1 % 64;
            if (t1 < 16) in.T = t1 = 16, r1 = pl_largest(p, in, PL_KNOB_R, 1, cur->R, 1, threads);
            PL_ADD("no one setting is enough; together:");
            const char *sep = " ";
            if (cur->B > 1) PL_ADD("%straining.micro_batch 1", sep), sep = ", ";
            PL_ADD("%sdata.seq_len %lld", sep, (long long)t1), sep = ", ";
            if (r1 < cur->R) PL_ADD("%slora.r %lld", sep, (long long)r1);
            if (cur->kl > 0) PL_ADD("%straining.keep_layers 0", sep);
            if (!cur->recompute) PL_ADD("%straining.recompute: true", sep);
        }
    }
#undef PL_ADD
    pl_memory(p, cur, threads); /* restore the report's lines */
}

/* FLOPs per token: F (plan.h) for the run's recomputation, every layer's but the kept ones', and
 * what the step runs (w_gemm, w_attn): the recompute stops before `down`'s frozen product and its
 * LoRA B product (the layer's output is the next boundary, kept), runs no LoRA A-product (their t
 * are kept from the forward), and with kept attention it skips the attention forward
 * (trainer/model.c ft_layer_forward). lora_io: the targeted modules' in + out widths of a layer. */
static void pl_flops(ft_plan *p, int64_t lora_io) {
    const ft_model_dims *d = &p->dims;
    const ft_lora_shapes s = ft_model_lora_shapes(d);
    const int64_t rl = p->recompute ? d->L - p->keep_layers : 0; /* layers recomputed */
    const double rec = ft_plan_recomputed(p);
    const double A = 2.0 * (double)d->L * (double)(d->H * d->D) * p->attn_len; /* A_fwd: S = T, less packed */
    const double lora = (double)p->R * (double)lora_io * (double)d->L;
    const double seg = p->seg_forward; /* training.boundary_every: a second forward of that share */
    p->f_base = (4.0 + 2.0 * rec + 2.0 * seg) * (double)p->n_blocks;
    p->f_head = 4.0 * (double)p->n_head;
    p->f_attn = (3.5 + rec + seg) * A; /* the recompute's attention forward */
    p->f_lora = (6.0 + 2.0 * rec + 2.0 * seg) * lora;
    p->f_dora = 0;
    /* model_dora.c: without dropout the backward's zd (frozen and B products) where the output is not
     * kept; with LoRA dropout xd W^T in the forward, the recompute (down_proj has none there) and the
     * segments' second forward (training.boundary_every), zd, and (g - 1) dy W in the backward; and the
     * weight norms once a step */
    for (int m = 0; p->dora && m < FT_MOD_COUNT; m++)
        if (p->targets & (1u << m)) {
            const double in = (double)s.in[m], R = (double)p->R;
            const double extra = p->lora_dropout ? in * (3.0 + (m == FT_MOD_DOWN ? 0.0 : rec) + seg) + R
                                 : ft_dora_output_kept(d, (ft_module)m) ? 0.0
                                                                        : in + R;
            p->f_dora += (double)d->L * 2.0 * (double)s.out[m] * (extra + R * in / (double)(p->B * p->T * p->K));
        }
    p->flops_per_token = p->f_base + p->f_head + p->f_attn + p->f_lora + p->f_dora;
    p->flops_full = 6.0 * (double)p->n_blocks + p->f_head + 4.5 * A + 8.0 * lora + p->f_dora;
    p->w_gemm = p->f_base + p->f_head + p->f_lora + p->f_dora - 2.0 * (double)(d->C * d->F * rl);
    for (int m = 0; m < FT_MOD_COUNT; m++)
        if (p->targets & (1u << m))
            p->w_gemm -= 2.0 * (double)(p->R * rl) * (double)(s.in[m] + (m == FT_MOD_DOWN ? s.out[m] : 0));
    p->w_attn = (3.5 + (p->keep_attention ? 0.0 : rec) + seg) * A;
}

/* The most layers the run `in` keeps (training.keep_layers) within 96% of the device, the 4% left
 * for what the plan does not see (the allocator's rounding, a fragmented free list, a display);
 * 0 if none fits. Leaves p's lines at the last try. */
static int64_t pl_most_kept(ft_plan *p, pl_in in) {
    const int64_t dev = p->device_bytes;
    p->device_bytes = (int64_t)(0.96 * (double)dev);
    const int64_t most = pl_largest(p, in, PL_KNOB_KL, 1, p->dims.L, 1, p->threads);
    p->device_bytes = dev;
    return most;
}

/* The run p with micro-batch B (grad_accum K: the same tokens per step), the attention outputs kept
 * or not (attn), and as many layers kept as pl_most_kept finds room for: its offer, kept 0 when none
 * fits or it is p's own run. q: scratch for the plan of that run. */
static struct ft_plan_offer pl_kept_at(ft_plan *p, ft_plan *q, const ft_recipe *r, int64_t lora_io, int64_t B,
                                       int64_t K, int attn) {
    struct ft_plan_offer o = {B, K, 0, attn, 0, 0.0};
    pl_in in = pl_current(p);
    in.B = B, in.keep = attn;
    const int64_t most = pl_most_kept(p, in);
    if (most == 0 || (B == p->B && attn == p->keep_attention && most <= p->keep_layers)) return o;
    *q = *p;
    q->B = B, q->K = K, q->keep_layers = in.kl = most, q->keep_attention = attn;
    pl_memory(q, &in, q->threads);
    pl_flops(q, lora_io);
    ft_plan_time_model(q, r, 0);
    o.kept = most, o.bytes = q->total_bytes, o.tokens_per_s = q->tokens_per_s;
    return o;
}

/* pl_kept_at as the recipe keeps attention and, where it does not, with it kept too: the faster by
 * more than 1% (attention kept is one more setting to explain), else the recipe's. */
static struct ft_plan_offer pl_kept_best(ft_plan *p, ft_plan *q, const ft_recipe *r, int64_t lora_io, int64_t B,
                                         int64_t K) {
    struct ft_plan_offer o = pl_kept_at(p, q, r, lora_io, B, K, p->keep_attention);
    if (p->keep_attention) return o;
    struct ft_plan_offer a = pl_kept_at(p, q, r, lora_io, B, K, 1);
    const double base = o.kept > 0 ? o.tokens_per_s : p->tokens_per_s;
    return a.kept > 0 && a.tokens_per_s > 1.01 * base ? a : o;
}

/* With recompute on a GPU: what the memory the run leaves over buys in kept layers, at the recipe's
 * micro-batch and, if faster, at a smaller one (plan.h kept, kept_mb). At 4096 tokens a micro-batch
 * of 1 keeps the GEMMs as busy as more, so memory goes further as kept layers than as rows. */
static void pl_offer_kept(ft_plan *p, const ft_recipe *r, int64_t lora_io) {
    ft_plan *q = malloc(sizeof *q);
    if (!q) return; /* no offer: the plan itself stands */
    p->kept = pl_kept_best(p, q, r, lora_io, p->B, p->K);
    double best = p->kept.kept > 0 ? p->kept.tokens_per_s : p->tokens_per_s;
    for (int64_t b = 1; b < p->B; b++) {
        if ((p->B * p->K) % b != 0) continue;
        struct ft_plan_offer o = pl_kept_best(p, q, r, lora_io, b, p->B * p->K / b);
        if (o.kept > 0 && o.tokens_per_s > 1.02 * best) p->kept_mb = o, best = o.tokens_per_s;
    }
    free(q);
    pl_in in = pl_current(p);
    pl_memory(p, &in, p->threads); /* restore the report's lines */
}

/* ---- the plan ---------------------------------------------------------------------------------- */

ft_status ft_plan_make_cfg(ft_plan *p, const ft_model_config *cfg, const ft_recipe *r, const ft_plan_opts *opts) {
    ft_plan_opts o = opts ? *opts : (ft_plan_opts){0};
    char keep_path[sizeof p->config_path];
    snprintf(keep_path, sizeof keep_path, "%s", p->config_path);
    memset(p, 0, sizeof *p);
    snprintf(p->config_path, sizeof p->config_path, "%s", keep_path);
    p->cfg = *cfg;
    ft_model_dims_from_config(cfg, &p->dims);
    if (!o.device && o.dev) {
        p->dev = *o.dev;
        p->mem_source = "the GPU found, less its reserve";
    } else {
        const char *dev = o.device ? o.device : strcmp(r->model.device, "cpu") == 0 ? "cpu" : "h100";
        FT_TRY(ft_plan_device_get(dev, &p->dev));
    }
    if (o.memory_gib > 0) p->dev.mem_gib = o.memory_gib, p->mem_source = "--memory-gb";
    else if (r->model.memory_gib > 0) p->dev.mem_gib = r->model.memory_gib, p->mem_source = "model.memory_gib";
    p->device_bytes = (int64_t)(p->dev.mem_gib * PL_GIB);
    const int cuda = p->dev.backend == FT_BACKEND_CUDA;
    p->act_dtype = cuda ? FT_BF16 : FT_F32;
    p->other_dtype = cuda ? FT_BF16 : pl_ckpt_dtype(cfg);
    p->linear_dtype = strcmp(r->model.quant, "nf4") == 0 ? FT_NF4 : p->other_dtype;
    if (ft_is_gguf_file(p->config_path)) FT_TRY(pl_gguf_linears(p, r));
    if (o.linear_type) {
        ft_ggml_type gt;
        ft_dtype dt;
        if (!ft_ggml_type_from_name(o.linear_type, &gt) || !ft_dtype_from_ggml((int)gt, &dt) || !ft_dtype_is_ggml(dt))
            return FT_ERR(FT_E_ARG, "unknown ggml block type '%s' for the frozen linears", o.linear_type);
        p->linear_dtype = dt, p->other_dtype = FT_BF16; /* as a GGUF base loads */
    }
    FT_TRY(ft_lora_parse_targets(r->lora.targets, &p->targets));
    p->B = r->training.micro_batch, p->T = r->data.seq_len, p->K = r->training.grad_accum, p->R = r->lora.r;
    for (int i = 0; i < r->lora.n_tokens; i++) p->n_tokens += strcmp(r->lora.tokens[i], "auto") != 0;
    p->lora_dropout = r->lora.dropout > 0;
    p->dora = r->lora.dora;
    p->packed = strcmp(r->data.packing, "none") != 0;
    p->recompute = r->training.recompute;
    const int host = o.host_boundaries || r->training.host_boundaries;
    p->host_boundaries = host && p->recompute;
    p->keep_attention = (o.keep_attention || r->training.keep_attention) && p->recompute; /* as model.c */
    p->keep_layers = p->recompute ? r->training.keep_layers : 0;
    p->mlp_chunk = p->recompute ? r->training.mlp_chunk : 0;
    {   /* the segments of training.boundary_every: all but the last run their K - 1 first layers again */
        const ft_model_opts bo = {.recompute = p->recompute, .host_boundaries = p->host_boundaries,
                                  .boundary_every = r->training.boundary_every};
        const int64_t K = ft_model_boundary_every(&bo, p->dims.L), nseg = (p->dims.L + K - 1) / K;
        p->boundary_every = K;
        p->seg_forward = p->dims.L > 0 ? (double)((nseg - 1) * (K - 1)) / (double)p->dims.L : 0.0;
    }
    if (r->training.boundary_every > 1 && !p->recompute) /* model.c ignores it too */
        ft_warn("training.boundary_every ignored: layer inputs are kept (every one or a few) only with "
                "training.recompute: true (without it every layer keeps its whole activations)");
    if (r->training.mlp_chunk > 0 && !p->recompute) /* model.c ignores it too */
        ft_warn("training.mlp_chunk ignored: the MLP runs in slices only with training.recompute: true (without it "
                "every layer keeps its whole MLP activations)");
    if (p->keep_layers > p->dims.L)
        return FT_ERR(FT_E_ARG, "%s: training.keep_layers: %lld, but %s has %lld layers",
                      r->source[0] ? r->source : "recipe", (long long)p->keep_layers, p->config_path, (long long)p->dims.L);
    if (host && !p->recompute) /* model.c ignores it too: without recompute there are no boundaries to move */
        ft_warn("training.host_boundaries ignored: layer boundaries go to host memory only with training.recompute: "
                "true (without it every layer's activations stay on the device)");
    if (p->host_boundaries && p->dev.unified) /* the run does as asked; the plan says what it buys */
        ft_warn("training.host_boundaries on %s: its GPU memory is the host's, so the layer boundaries in pinned host "
                "memory take the same room (counted in the total); training.mlp_chunk is what lengthens the context "
                "here", p->dev.name);

    const ft_model_dims *d = &p->dims;
    ft_lora_shapes s = ft_model_lora_shapes(d);
    int64_t per_layer = 0, lora_io = 0;
    for (int m = 0; m < FT_MOD_COUNT; m++) {
        per_layer += s.out[m] * s.in[m];
        if (p->targets & (1u << m)) lora_io += s.in[m] + s.out[m];
    }
    p->n_blocks = per_layer * d->L;
    p->n_head = d->V * d->C;

    int64_t threads = r->model.threads > 0 ? r->model.threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    p->threads = threads;
    pl_in in = pl_current(p);
    if (p->keep_layers < 0) { /* training.keep_layers: max, as the offers count them */
        p->keep_layers_max = 1;
        in.kl = p->keep_layers = pl_most_kept(p, in);
    }
    pl_memory(p, &in, threads);
    p->fits = p->total_bytes <= p->device_bytes;
    if (!p->fits) pl_advise(p, &in, threads);
    if (p->fits && cuda && p->recompute && !p->keep_attention) { /* would keeping attention fit too? */
        pl_in k = in;
        k.keep = 1;
        pl_memory(p, &k, threads);
        p->keep_total_bytes = p->total_bytes;
        pl_memory(p, &in, threads); /* restore the report's lines */
    }
    if (cuda && p->recompute) { /* how long a context, with the boundaries on the device and on the host */
        pl_in h = in;
        h.host = 0;
        p->max_seq = pl_largest(p, h, PL_KNOB_T, 1, ((int64_t)1 << 20) / 256, 256, threads);
        h.host = !p->dev.unified; /* unified memory: host boundaries are no more room */
        p->max_seq_host = h.host ? pl_largest(p, h, PL_KNOB_T, 1, ((int64_t)1 << 20) / 256, 256, threads) : 0;
        if (in.mc == 0 || in.mc > FT_PLAN_MLP_CHUNK) { /* and with the MLP in slices (training.mlp_chunk) */
            h.mc = FT_PLAN_MLP_CHUNK;
            p->max_seq_mlp = pl_largest(p, h, PL_KNOB_T, 1, ((int64_t)1 << 20) / 256, 256, threads);
        }
        p->seg_offer = ft_plan_segment(d->L);
        if (p->seg_offer > 1 && p->boundary_every <= 1) { /* two-level: the boundaries on the device, fewer */
            h.host = 0, h.be = p->seg_offer;
            if (h.mc == 0 || h.mc > FT_PLAN_MLP_CHUNK) h.mc = FT_PLAN_MLP_CHUNK;
            p->max_seq_seg = pl_largest(p, h, PL_KNOB_T, 1, ((int64_t)1 << 20) / 256, 256, threads);
        }
        pl_memory(p, &in, threads); /* restore the report's lines */
    }

    ft_plan_data(p, r, o.attn_len);
    pl_flops(p, lora_io);
    p->tokens_per_step = p->B * p->K * p->T;
    ft_plan_time_model(p, r, o.tflops);
    if (p->fits && cuda && p->recompute && !p->flat) pl_offer_kept(p, r, lora_io);
    ft_plan_steps(p, r);
    ft_plan_disk(p, r);
    p->total_tokens = p->steps * p->tokens_per_step;
    ft_plan_eval_time(p, r);
    p->hours = ((double)p->total_tokens / p->tokens_per_s + p->eval_s) / 3600.0;
    ft_plan_jobs(p, r);
    return FT_OK;
}

ft_status ft_plan_make(ft_plan *p, const ft_recipe *r, const ft_plan_opts *opts) {
    ft_model_config cfg;
    if (r->model.config[0]) snprintf(p->config_path, sizeof p->config_path, "%s", r->model.config);
    else if (r->model.path[0] && ft_is_gguf_path(r->model.path)) snprintf(p->config_path, sizeof p->config_path, "%s", r->model.path);
    else if (r->model.path[0] && ft_is_file(r->model.path))
        return FT_ERR(FT_E_ARG, "%s: model.path: '%s' is neither a directory nor a GGUF file", r->source, r->model.path);
    else if (r->model.path[0]) snprintf(p->config_path, sizeof p->config_path, "%s/config.json", r->model.path);
    else return FT_ERR(FT_E_ARG, "%s: model.path: required (or model.config for planning)", r->source);
    FT_TRY(ft_cfg_load(&cfg, p->config_path));
    /* the family's own class names a vision-language checkpoint's text model too: a recipe for
     * MistralForCausalLM takes Mistral Small 3.1/3.2 (Mistral3ForConditionalGeneration) as it is */
    /* and a GGUF file names only llama.cpp's architecture, "llama" for Mistral too: a recipe for
     * MistralForCausalLM takes a Mistral GGUF */
    ft_arch want;
    const int gguf_same = ft_is_gguf_file(p->config_path) &&
                          (ft_arch_from_hf(r->model.arch, &want) || ft_arch_from_model_type(r->model.arch, &want)) &&
                          strcmp(ft_arch_get(want)->gguf_arch, ft_arch_get(cfg.arch)->gguf_arch) == 0;
    if (r->model.arch[0] && strcmp(r->model.arch, cfg.architecture) != 0 && strcmp(r->model.arch, cfg.model_type) != 0 &&
        !(cfg.vlm && strcmp(r->model.arch, ft_arch_get(cfg.arch)->hf_architecture) == 0) && !gguf_same)
        return FT_ERR(FT_E_ARG, "%s: model.arch: recipe expects %s, %s is %s", r->source, r->model.arch,
                      p->config_path, cfg.architecture);
    return ft_plan_make_cfg(p, &cfg, r, opts);
}

ft_status ft_plan_for_backend(ft_plan *p, const ft_model_config *cfg, const ft_recipe *r, ft_backend *be,
                              const ft_plan_opts *more) {
    int64_t dev_free = 0, dev_total = 0;
    FT_TRY(ft_backend_mem_info(be, &dev_free, &dev_total));
    ft_plan_device dev;
    FT_TRY(ft_plan_device_detect(be, &dev));
    ft_plan_opts po = {.dev = &dev, .attn_len = more ? more->attn_len : 0, .linear_type = more ? more->linear_type : NULL};
    /* the memory the run may have: free now plus what the backend already holds, less 2% for the
     * allocator's rounding and fragmentation; model.memory_gib, when set, is the backend's limit
     * itself and ft_plan_make_cfg takes it from the recipe */
    const int own = !(r->model.memory_gib > 0);
    if (own) po.memory_gib = 0.98 * (double)(dev_free + ft_backend_bytes_in_use(be)) / PL_GIB;
    ft_backend_set_oom_explain(be, NULL, NULL); /* p is remade: no explanation from a half-made plan */
    FT_TRY(cfg ? ft_plan_make_cfg(p, cfg, r, &po) : ft_plan_make(p, r, &po));
    if (own) p->mem_source = "free when the run started";
    FT_TRY(ft_backend_attn_workspace(be, p->attn_workspace)); /* what the plan counted for cuDNN's attention */
    ft_backend_set_oom_explain(be, ft_plan_oom_explain, p);
    return FT_OK;
}

/* ---- longest context, out-of-memory explanations ------------------------------------------------ */


int64_t ft_plan_max_seq(ft_plan *p, int64_t multiple, int64_t max_T) {
    if (multiple < 1) multiple = 1;
    pl_in in = pl_current(p);
    const int64_t found = pl_largest(p, in, PL_KNOB_T, 1, max_T / multiple, multiple, p->threads);
    pl_memory(p, &in, p->threads); /* restore the report's lines */
    return found;
}

/* The plan line an allocation named `what` belongs to (trainer/model.c, lora.c, optim/adamw.c names). */
static int pl_line_of(const char *what) {
    if (strcmp(what, "activations") == 0) return -2; /* four lines */
    if (strncmp(what, "optimizer", 9) == 0) return FT_PLAN_OPTIM;
    if (strcmp(what, "LoRA weights") == 0) return FT_PLAN_LORA;
    if (strcmp(what, "LoRA gradients") == 0) return FT_PLAN_GRADS;
    if (strncmp(what, "layer boundaries", 16) == 0) return -3;
    if (strstr(what, "_proj")) return FT_PLAN_LINEARS;
    if (strcmp(what, "embed_tokens") == 0 || strcmp(what, "lm_head") == 0) return FT_PLAN_EMBED;
    if (strstr(what, "norm") || strstr(what, "bias") || strstr(what, "rope") || strstr(what, "loss"))
        return FT_PLAN_SMALL;
    return FT_PLAN_WORKSPACE;
}

void ft_plan_oom_explain(void *plan, const char *what, int64_t bytes, char *buf, size_t cap) {
    const ft_plan *p = plan;
    char part[48], total[48], dev[48];
    int line = pl_line_of(what);
    int64_t predicted;
    const char *label;
    if (line == -2) {
        predicted = p->line[FT_PLAN_BOUNDARIES].bytes + p->line[FT_PLAN_LAYER].bytes + p->line[FT_PLAN_BACKWARD].bytes +
                    p->line[FT_PLAN_LOGITS].bytes;
        label = "activations";
    } else if (line == -3) {
        predicted = p->pinned_bytes;
        label = "host-kept boundaries";
    } else {
        predicted = p->line[line].bytes;
        label = p->line[line].name;
    }
    (void)bytes;
    ft_plan_format_bytes(predicted, part, sizeof part);
    ft_plan_format_bytes(p->total_bytes, total, sizeof total);
    ft_plan_format_bytes(p->device_bytes, dev, sizeof dev);
    const char *src = p->mem_source ? p->mem_source : "";
    const char *raise = p->mem_source && strcmp(p->mem_source, "model.memory_gib") == 0 ? ", or raise model.memory_gib" : "";
    if (!p->fits) { /* the plan said so already: its advice is the knob that gets under the device */
        snprintf(buf, cap, "ftune plan predicted %s for %s and %s in all, more than the %s device's %s%s%s%s: %s%s",
                 part, label, total, p->dev.name, dev, src[0] ? " (" : "", src, src[0] ? ")" : "", p->advice, raise);
        return;
    }
    /* the plan fitted (the device holds less than it had, or the plan is off): the knob that gets
     * the run under 90% of its planned total */
    ft_plan *q = malloc(sizeof *q);
    char advice[sizeof p->advice] = "";
    if (q) {
        *q = *p;
        q->device_bytes = (int64_t)(0.9 * (double)p->total_bytes);
        pl_in in = pl_current(q);
        pl_advise(q, &in, q->threads);
        snprintf(advice, sizeof advice, "%s", q->advice);
        free(q);
    }
    snprintf(buf, cap, "ftune plan predicted %s for %s and %s in all (%s device: %s%s%s); to need 10%% less: %s%s",
             part, label, total, p->dev.name, dev, src[0] ? ", " : "", src,
             advice[0] ? advice : "use a device with more memory", raise);
}
