/* plan_time.c: `ftune plan`'s time model (plan.h "Time"): a training step's parts, each at the rate
 * that bounds it on the device, from the plan's shapes (plan.c fills those first). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "trainer/plan.h"
#include "trainer/plan_impl.h"

/* ---- time ----------------------------------------------------------------------------------------
 * A micro-batch's parts, each at the rate that bounds it on the device (ft_plan_device's rates),
 * added up as if nothing overlapped: the GPU does overlap some (the weight cache's prefetch hides
 * dequantization behind GEMMs; docs/perf.md), so the sum errs slow. Bytes moved are counted from the
 * ops trainer/model.c runs, per token, so the parts that grow with the model's width (SwiGLU's
 * [N, intermediate] tensors, the LoRA inputs) and those that do not (dequantization: once per
 * weight per pass whatever the batch) scale as they do in a run. */

/* Elements of the activation dtype that one layer's non-GEMM ops read and write per token. */
typedef struct pl_traffic {
    double fwd, bwd; /* all forward passes (the forward, and the recompute), the backward pass */
} pl_traffic;

/* ft_layer_forward / ft_layer_backward (trainer/model.c), averaged over the layers: a share rec of
 * them recomputed, the rest kept (training.keep_layers) or, without recompute, saved whole; the
 * accumulating o and down products add into the residual in their GEMM epilogue, which the GEMM
 * time covers. */
static pl_traffic pl_elementwise_elems(const ft_model_dims *d, int recompute, double rec) {
    const double C = (double)d->C, F = (double)d->F, qk = (double)((d->H + d->Hkv) * d->D);
    /* a pass: 2 RMSNorms (read x, write the normalized copy), RoPE on q and k in place, Qwen3's q/k
     * norms, SwiGLU (read gate and up, write their product) */
    const double pass = 2 * 2 * C + 2 * qk + (d->qk_norm ? 2 * qk : 0) + 3 * F;
    pl_traffic t;
    /* residual copies (read C, write C): x -> x2 and x2 -> out without recompute and in a kept
     * layer; with it the forward builds x2 in out and the recompute, which writes no output, copies
     * x -> x2 only. A kept layer's backward recomputes the two norms' outputs and SwiGLU's. */
    const double kept = pass + 2 * (2 * C) + 2 * 2 * C + 3 * F;
    t.fwd = !recompute ? pass + 2 * (2 * C) : rec * (2 * pass + 2 * (2 * C)) + (1 - rec) * kept;
    /* SwiGLU backward (read ds, gate, up; write dgate, dup), 2 RMSNorm backwards adding into the
     * residual gradient (read dy, x and the residual gradient, write it), RoPE in place, the q/k
     * norms' backward (read dy and x, write dx) */
    t.bwd = 5 * F + 2 * 4 * C + 2 * qk + (d->qk_norm ? 3 * qk : 0);
    return t;
}

/* Which modules' outputs already hold a sum when ft_layer_forward / ft_layer_backward (trainer/model.c)
 * call ft_proj / ft_proj_bwd for them (their accumulate argument): o and down add into the residual;
 * up, k and v add into the input gradient gate, q wrote. */
static const unsigned pl_fwd_acc = (1u << FT_MOD_O) | (1u << FT_MOD_DOWN);
static const unsigned pl_bwd_acc = (1u << FT_MOD_UP) | (1u << FT_MOD_K) | (1u << FT_MOD_V);

/* The LoRA products of the targeted modules (ft_proj, ft_proj_bwd): rank-r products are bound by
 * reading their [N, in] input and writing their [N, out] output, not by their FLOPs. The LoRA
 * product runs before the frozen GEMM and writes the output, which the GEMM then adds to in its
 * epilogue (covered by the GEMM time): so the LoRA product reads the output only where the module
 * accumulates. The recompute reuses the forward's A-products t (kept per layer): it runs only the B
 * products, writing the output, and nothing for `down`, whose output it does not compute.
 * Dropout: for ranks 8/16/32 and 64/128 the CUDA kernels draw the mask inside the products
 * (kernels/cuda/lora.cu, lora_mma.cu), so the traffic is the same as without it, plus their f32
 * partial sums (t: 4 bytes x R per FT_LORA_KCHUNK input columns, written and read, per token, an
 * upper bound for ranks 64/128, whose chunks widen until the grid has ~4 blocks an SM; dA:
 * FT_LORA_NSPLIT x R x in per micro-batch); other ranks write dropout(x) out and read it back,
 * and mask the input gradient in a pass of its own. In elements of e bytes, per token. */
typedef struct pl_lora_traffic {
    double fwd, rec, bwd; /* the forward, the recompute, the backward */
    int unfused;          /* modules whose dropout is drawn into memory (rank or width not fused) */
} pl_lora_traffic;
static pl_lora_traffic pl_lora_elems(const ft_model_dims *d, unsigned targets, int dropout, int64_t R, double N,
                                     double e) {
    ft_lora_shapes s = ft_model_lora_shapes(d);
    pl_lora_traffic t = {0, 0, 0, 0};
    for (int m = 0; m < FT_MOD_COUNT; m++) {
        if (!(targets & (1u << m))) continue;
        const double in = (double)s.in[m], out = (double)s.out[m];
        const int fwd_acc = (pl_fwd_acc >> m) & 1, bwd_acc = (pl_bwd_acc >> m) & 1;
        const int fused = dropout && ft_cuda_lora_fused(R, s.in[m]), unfused = dropout && !fused;
        t.unfused += unfused;
        /* read the input; write the output (read it too where it accumulates); unfused dropout
         * writes a copy and the product reads that */
        t.fwd += in + (fwd_acc ? 2 : 1) * out + (unfused ? 2 * in : 0);
        if (fused) t.fwd += 8.0 * (double)R * ceil(in / FT_LORA_KCHUNK) / e;
        if (m != FT_MOD_DOWN) t.rec += (fwd_acc ? 2 : 1) * out;
        /* read dy twice (dB, then dt) and the input; unfused dropout draws the input again */
        t.bwd += 2 * out + in + (unfused ? 2 * in : 0);
        if (fused) t.bwd += 8.0 * FT_LORA_NSPLIT * (double)R * in / N / e;
        if (!unfused) /* the input gradient goes into dx: written, and read where dx accumulates */
            t.bwd += (bwd_acc ? 2 : 1) * in;
        else if (!bwd_acc) /* written into dx, masked there in place (read, write) */
            t.bwd += 3 * in;
        else /* written into a scratch, masked in place, dx += scratch (read two, write one) */
            t.bwd += in + 2 * in + 3 * in;
    }
    return t;
}

static void pl_part(ft_plan *p, ft_plan_time_id id, const char *name, double s, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void pl_part(ft_plan *p, ft_plan_time_id id, const char *name, double s, const char *fmt, ...) {
    ft_plan_time *t = &p->time[id];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->detail, sizeof t->detail, fmt, ap);
    va_end(ap);
    t->name = name, t->s = s;
}

/* Fills p->time for a micro-batch of N tokens. */
static void pl_parts(ft_plan *p, const ft_recipe *r) {
    const ft_model_dims *d = &p->dims;
    const ft_plan_device *v = &p->dev;
    const double N = (double)(p->B * p->T), e = (double)ft_dtype_nbytes(p->act_dtype, 1);
    const double bw = v->mem_gbps * v->bw_eff * 1e9; /* bytes/s; 0: traffic not modelled */
    /* the elementwise and LoRA kernels' own measured rates over the bytes counted below */
    const double bw_el = v->elem_eff > 0 ? v->mem_gbps * v->elem_eff * 1e9 : bw;
    const double bw_lo = v->lora_eff > 0 ? v->mem_gbps * v->lora_eff * 1e9 : bw;
    /* the share of the layers the backward recomputes (the rest: training.keep_layers) */
    const double rec = ft_plan_recomputed(p);
    const double fwd_passes = 1.0 + rec; /* forward, and the recompute */
    char b1[32], b2[32];

    pl_part(p, FT_PLAN_T_GEMM, "GEMMs", N * p->w_gemm / (v->gemm_eff * v->peak_tflops * 1e12),
            "%s/token at %.0f%% of %.3g TFLOP/s", ft_plan_si(p->w_gemm, "FLOP", b1, sizeof b1), 100 * v->gemm_eff,
            v->peak_tflops);
    const double at = p->attn_cudnn ? v->attn_cudnn_tflops : v->attn_tflops; /* cuDNN's for plain rows */
    pl_part(p, FT_PLAN_T_ATTENTION, "attention", N * p->w_attn / (at * 1e12), "%s/token at %.3g TFLOP/s (forward + "
            "backward%s)", ft_plan_si(p->w_attn, "FLOP", b1, sizeof b1), at, p->attn_cudnn ? ", cuDNN" : "");
    if (!(bw > 0)) {
        for (int i = FT_PLAN_T_DEQUANT; i < FT_PLAN_NTIMES; i++) pl_part(p, (ft_plan_time_id)i, "", 0, "%s", "");
        return;
    }
    /* the forward and the recompute dequantize every linear (read the codes and constants, write
     * bf16); the backward reuses the recompute's copies from the weight cache (kernels/cuda/wcache.cu).
     * Without recompute the forward and the backward dequantize; so does a kept layer's backward. */
    if (p->linear_dtype == FT_NF4 || ft_dtype_is_ggml(p->linear_dtype)) { /* a GGUF base's blocks: the same passes */
        const double codes = (double)p->line[FT_PLAN_LINEARS].bytes, bf16 = 2.0 * (double)p->n_blocks;
        /* the weight cache's prefetch dequantizes the next weights on a second stream while the
         * GEMMs run: only the part it does not hide is on the step's path. A kept layer's weights
         * dequantize during the backward of the layer after it, each as its place in the ring
         * frees (ft_bwd_next): hidden the same way. */
        const double shown = (2.0 + p->seg_forward) * (1.0 - v->dequant_hidden); /* and boundary_every's */
        pl_part(p, FT_PLAN_T_DEQUANT, p->linear_dtype == FT_NF4 ? "NF4 dequantization" : "dequantization",
                (codes + bf16) / bw * shown, "%.3g passes x (%s %s read + %s BF16 written), %.0f%% hidden by the prefetch",
                2.0 + p->seg_forward, ft_plan_si(codes, "B", b1, sizeof b1), ft_dtype_name(p->linear_dtype),
                ft_plan_si(bf16, "B", b2, sizeof b2), 100 * v->dequant_hidden);
    } else {
        pl_part(p, FT_PLAN_T_DEQUANT, "", 0, "%s", "");
    }
    pl_traffic el = pl_elementwise_elems(d, p->recompute, rec);
    const double el_layer = ((1.0 + p->seg_forward) * el.fwd + el.bwd) * e; /* boundary_every: a forward more */
    const double el_final = 5.0 * (double)d->C * e; /* final norm */
    pl_part(p, FT_PLAN_T_ELEMENTWISE, "elementwise", N * ((double)d->L * el_layer + el_final) / bw_el,
            "%.2f MB/token/layer over %.3g passes: norms, RoPE, SwiGLU, adds", el_layer / 1e6,
            fwd_passes + p->seg_forward + 1);
    pl_lora_traffic lo = pl_lora_elems(d, p->targets, r->lora.dropout > 0, p->R, N, e);
    const double lo_layer = ((1.0 + p->seg_forward) * lo.fwd + rec * lo.rec + lo.bwd) * e; /* and the segments' */
    /* every pass casts the f32 masters to bf16 (read 4 B, write 2, the product reads 2); the
     * backward reads and writes the f32 gradients */
    const double lo_weights = (double)p->lora_params * (8.0 * (fwd_passes + p->seg_forward + 1) + 8.0);
    pl_part(p, FT_PLAN_T_LORA, "LoRA products", (N * (double)d->L * lo_layer + lo_weights) / bw_lo,
            "%.2f MB/token/layer (inputs, outputs%s", lo_layer / 1e6,
            !(r->lora.dropout > 0) ? "; FLOPs in GEMMs)"
            : lo.unfused           ? ", dropout copies: fused at r 8/16/32/64/128 only)"
                                   : "), dropout drawn in the products");
    /* each logits chunk: read twice (max and sum, then the gradient), the gradient written over it */
    pl_part(p, FT_PLAN_T_XENT, "cross-entropy", N * 3.0 * (double)d->V * e / bw,
            "%lld-wide logits: 2 reads + 1 write per token", (long long)d->V);
    /* gradient norm (read g), AdamW (read p, g, m, v; write p, m, v), gradients zeroed: f32 */
    pl_part(p, FT_PLAN_T_OPTIM, "optimizer", (double)p->lora_params * 36.0 / bw,
            "per step: AdamW over %s params, 36 B each", ft_plan_si((double)p->lora_params, "", b1, sizeof b1));
}

void ft_plan_time_model(ft_plan *p, const ft_recipe *r, double tflops) {
    const double N = (double)(p->B * p->T);
    double opt_s = 0;
    p->flat = tflops > 0;
    if (p->flat) {
        p->micro_s = N * p->flops_per_token / (tflops * 1e12);
    } else {
        pl_parts(p, r);
        p->micro_s = 0;
        for (int i = 0; i < FT_PLAN_NTIMES; i++)
            if (i != FT_PLAN_T_OPTIM) p->micro_s += p->time[i].s;
        opt_s = p->time[FT_PLAN_T_OPTIM].s;
    }
    p->step_s = p->micro_s * (double)p->K + opt_s;
    p->tokens_per_s = (double)p->tokens_per_step / p->step_s;
    p->tflops = p->flat ? tflops : p->flops_per_token * p->tokens_per_s / 1e12;
}

/* ---- evaluations --------------------------------------------------------------------------------
 * ft_run_eval (trainer/run_eval.c): a forward over the validation rows, micro-batch by micro-batch
 * (at most eval.max_batches), then each prompt of eval.prompts decoded greedily for up to
 * eval.max_new_tokens: the prompt as one forward, then one forward per new token over that token
 * alone (the KV cache, ft_model_decode), logits at the last position only. A validation micro-batch
 * costs its GEMMs and attention at the step's rates and one dequantization pass, hidden as in
 * training; a decoding forward is bound by the weights it reads on a GPU (dequantization, not
 * hidden: the GEMMs are too short, and the BF16 copies read by the GEMMs), or by its FLOPs on the
 * CPU (the attention over the cache is a few MFLOP a token: left out). With a flat rate (--tflops: the sustained
 * rate of a whole step) every evaluation FLOP runs at that rate too, the decoding no faster than
 * its weight reads on a GPU. */
void ft_plan_eval_time(ft_plan *p, const ft_recipe *r) {
    const ft_model_dims *d = &p->dims;
    const ft_plan_device *v = &p->dev;
    const int has_valid = r->data.n_valid > 0 || r->data.val_fraction > 0;
    p->n_evals = 0, p->eval_tokens = 0, p->eval_valid_s = p->eval_gen_s = p->eval_s = 0;
    if (p->steps <= 0 || (!has_valid && r->eval.n_prompts == 0)) return;
    const int64_t every = r->eval.every_steps;
    p->n_evals = every > 0 ? p->steps / every + (p->steps % every != 0) : 1; /* and always at the end */
    p->n_evals += r->eval.at_start != 0;                                     /* and one at step 0 */
    /* the step's rates: the flat one, or the GEMMs' and the attention's (cuDNN's where the step's is) */
    const double gemm = p->flat ? p->tflops * 1e12 : v->gemm_eff * v->peak_tflops * 1e12;
    const double attn = p->flat ? gemm : (p->attn_cudnn ? v->attn_cudnn_tflops : v->attn_tflops) * 1e12;
    const double bw = v->mem_gbps * v->bw_eff * 1e9;
    const double fwd = 2.0 * (double)(p->n_blocks + p->n_head), a_fwd = 2.0 * (double)d->L * (double)(d->H * d->D);
    const int nf4 = (p->linear_dtype == FT_NF4 || ft_dtype_is_ggml(p->linear_dtype)) && bw > 0;
    const double codes = (double)p->line[FT_PLAN_LINEARS].bytes, bf16 = 2.0 * (double)p->n_blocks;
    if (has_valid) {
        double batches = p->valid_rows > 0 ? ceil(p->valid_rows / (double)p->B) : 0;
        if (r->eval.max_batches > 0 && (batches == 0 || batches > (double)r->eval.max_batches))
            batches = (double)r->eval.max_batches; /* at most that many, whatever the split holds */
        if (batches > 0) {
            const double N = (double)(p->B * p->T);
            p->eval_tokens = (int64_t)(batches * N);
            const double mb = N * fwd / gemm + N * a_fwd * p->attn_len / attn +
                              (nf4 && !p->flat ? (codes + bf16) / bw * (1.0 - v->dequant_hidden) : 0.0);
            p->eval_valid_s = batches * mb;
        } else {
            p->eval_tokens = -1; /* no index of the validation split yet, and no eval.max_batches */
        }
    }
    /* a decoding forward reads every weight once: the prompt's, through dequantization (not hidden:
     * the GEMMs are too short) and the BF16 copies the GEMMs read; a new token's, at most
     * FT_LINEAR_FEW_ROWS rows, the NF4 codes directly (kernels/cuda/gemv.cu); and lm_head */
    const double w_prompt = bw > 0 ? ((nf4 ? codes + 2.0 * bf16 : bf16) + 2.0 * (double)p->n_head) / bw : 0.0;
    const double w_token = bw > 0 ? ((nf4 ? codes : bf16) + 2.0 * (double)p->n_head) / bw : 0.0;
    for (int i = 0; i < r->eval.n_prompts; i++) {
        /* the prompt's tokens, about: 4 bytes a token, and a chat template's wrapping */
        const double P = (double)strlen(r->eval.prompts[i]) / 4.0 + 16.0, G = (double)r->eval.max_new_tokens;
        /* the prompt as one forward, then G - 1 forwards of one token each (the KV cache) */
        const double prompt = (P * 2.0 * (double)p->n_blocks + 2.0 * (double)p->n_head) / gemm;
        const double token = (2.0 * (double)p->n_blocks + 2.0 * (double)p->n_head) / gemm;
        p->eval_gen_s += fmax(prompt, w_prompt) + (G - 1.0) * fmax(token, w_token);
    }
    p->eval_s = (double)p->n_evals * (p->eval_valid_s + p->eval_gen_s);
}

/* The run stops (trainer/run_limit.c) before a step that would end past the limit with the
 * checkpoint it writes then: that checkpoint at 200 MB/s, as the run assumes before it has timed
 * one. Loading the weights counts against a job's limit too, but the plan has no figure for it. */
void ft_plan_jobs(ft_plan *p, const ft_recipe *r) {
    p->job_steps = p->jobs = 0;
    const double limit = r->training.max_hours * 3600.0;
    if (!(limit > 0) || p->steps <= 0 || !(p->hours > 0)) return;
    const double per = p->hours * 3600.0 / (double)p->steps, ckpt = (double)p->disk_ckpt / 200e6;
    const double k = floor((limit - ckpt) / per);
    /* shorter than a step and a checkpoint: a job trains nothing (run_limit.c stops it before its first
     * step, exit 2): 0 and 0, and job_short says why */
    p->job_short = k < 1;
    p->job_steps = k < 1 ? 0 : k >= (double)p->steps ? p->steps : (int64_t)k;
    p->jobs = p->job_steps > 0 ? (p->steps + p->job_steps - 1) / p->job_steps : 0;
}
