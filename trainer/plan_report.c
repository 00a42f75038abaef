/* plan_report.c: `ftune plan`'s report (ft_plan_print): the plan's memory lines, what fits and what
 * else would (the offers plan.c computed), FLOPs, the time model's parts and the run's duration. */
#include <stdio.h>
#include <string.h>

#include "trainer/plan.h"
#include "trainer/plan_impl.h"

void ft_plan_format_bytes(int64_t bytes, char *buf, size_t cap) {
    if (bytes >= (int64_t)1 << 30) snprintf(buf, cap, "%.1f GiB", (double)bytes / PL_GIB);
    else snprintf(buf, cap, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
}

static const char *pl_duration(double s, char *buf, size_t cap) {
    if (s >= 3600) snprintf(buf, cap, "%.1f h", s / 3600);
    else if (s >= 60) snprintf(buf, cap, "%.1f min", s / 60);
    else snprintf(buf, cap, "%.2f s", s);
    return buf;
}

/* "12.3 s", "123 ms", "12.3 ms", "0.123 ms": a part of a step, with 3 or 4 digits. */
static const char *pl_ms(double s, char *buf, size_t cap) {
    const double ms = 1e3 * s;
    if (s >= 10) snprintf(buf, cap, "%.1f s", s);
    else if (s >= 1) snprintf(buf, cap, "%.2f s", s);
    else snprintf(buf, cap, ms >= 100 ? "%.0f ms" : ms >= 10 ? "%.1f ms" : ms >= 1 ? "%.2f ms" : "%.3f ms", ms);
    return buf;
}

/* The time per micro-batch and its parts with their shares of the optimizer step, then the rate. */
static void pl_print_time(const ft_plan *p, FILE *f) {
    char b1[48], b2[48];
    const long long n = (long long)(p->B * p->T);
    if (p->flat) {
        fprintf(f, "  %-28s %s for %lld tokens\n", "time per micro-batch", pl_ms(p->micro_s, b1, sizeof b1), n);
        fprintf(f, "  %-28s %.3g TFLOP/s (--tflops: the whole step at this rate, no breakdown)\n", "sustained rate",
                p->tflops);
        return;
    }
    fprintf(f, "  %-28s %s for %lld tokens: the parts below added up (rates measured on the device where it has been)\n",
            "time per micro-batch", pl_ms(p->micro_s, b1, sizeof b1), n);
    for (int i = 0; i < FT_PLAN_NTIMES; i++) {
        const ft_plan_time *t = &p->time[i];
        if (!(t->s > 0)) continue; /* not modelled on this device, or nothing to do (no NF4) */
        const double of_step = i == FT_PLAN_T_OPTIM ? t->s : t->s * (double)p->K;
        snprintf(b2, sizeof b2, "%.1f%%", 100.0 * of_step / p->step_s);
        fprintf(f, "    %-26s %10s %6s  %s\n", t->name, pl_ms(t->s, b1, sizeof b1), b2, t->detail);
    }
    if (p->dev.mem_gbps > 0)
        fprintf(f, "    (the parts after attention move bytes at %.0f GB/s, %.0f%% of %.0f; elementwise at %.0f, "
                   "LoRA at %.0f)\n",
                p->dev.mem_gbps * p->dev.bw_eff, 100.0 * p->dev.bw_eff, p->dev.mem_gbps,
                p->dev.mem_gbps * (p->dev.elem_eff > 0 ? p->dev.elem_eff : p->dev.bw_eff),
                p->dev.mem_gbps * (p->dev.lora_eff > 0 ? p->dev.lora_eff : p->dev.bw_eff));
    else
        fprintf(f, "    (memory traffic not modelled on this device)\n");
    fprintf(f, "  %-28s %.3g TFLOP/s, %.0f%% of peak (the parts' sum; --tflops X sets a flat rate)\n",
            "sustained rate", p->tflops, 100.0 * p->tflops / p->dev.peak_tflops);
}

/* What the run writes under output_dir against what its filesystem has free. */
static void pl_print_disk(const ft_plan *p, const ft_recipe *r, FILE *f) {
    char b1[48], b2[48];
    if (p->disk_free >= 0) ft_plan_format_bytes(p->disk_free, b1, sizeof b1);
    fprintf(f, "\ndisk (%s: %s)\n", p->disk_dir[0] ? p->disk_dir : r->output_dir,
            p->disk_free >= 0 ? strcat(b1, " free") : "free space unknown");
    ft_plan_format_bytes(p->disk_ckpt, b2, sizeof b2);
    fprintf(f, "  %-28s %lld x %s at most (checkpoint.keep %lld, and the next one before the oldest goes)\n",
            "checkpoints", (long long)p->disk_ckpts, b2, (long long)r->checkpoint.keep);
    ft_plan_format_bytes(p->disk_adapter, b2, sizeof b2);
    const int best = r->eval.keep_best && (r->data.n_valid > 0 || r->data.val_fraction > 0);
    fprintf(f, "  %-28s %s (PEFT%s, f32%s)\n", best ? "final and best adapters" : "final adapter", b2,
            r->exports.formats && strstr(r->exports.formats, "gguf") ? " and llama.cpp GGUF" : "",
            best ? "; best/: the lowest validation loss's, PEFT" : "");
    if (p->disk_merged > 0) {
        ft_plan_format_bytes(p->disk_merged, b2, sizeof b2);
        fprintf(f, "  %-28s %s (export.merged: %s GGUF)\n", "merged model", b2, r->exports.merged);
    }
    if (p->data_bytes > 0) {
        ft_plan_format_bytes(p->data_bytes, b2, sizeof b2);
        fprintf(f, "  %-28s %s (already written: %s)\n", "tokenized data", b2, p->data_index);
    }
    ft_plan_format_bytes(p->disk_total, b2, sizeof b2);
    if (p->disk_free < 0)
        fprintf(f, "  %-28s %s\n", "total", b2);
    else if (p->disk_total <= p->disk_free)
        fprintf(f, "  %-28s %s: fits\n", "total", b2);
    else
        fprintf(f, "  %-28s %s: does NOT fit in the %s free; the run stops before loading the model (free space, "
                   "lower checkpoint.keep or change export.merged)\n", "total", b2, b1);
}

void ft_plan_print(const ft_plan *p, const ft_recipe *r, FILE *f) {
    const ft_model_dims *d = &p->dims;
    const int gib = p->total_bytes >= (int64_t)1 << 30;
    const double unit = gib ? PL_GIB : 1024.0 * 1024.0;
    char b1[48];
    ft_param_counts pc;
    if (ft_cfg_param_counts(&p->cfg, &pc) != FT_OK) memset(&pc, 0, sizeof pc);
    fprintf(f, "ftune plan: %s\n", r->source[0] ? r->source : "(recipe from flags)");
    fprintf(f, "model      %s: %lld layers, hidden %lld, intermediate %lld, heads %lld/%lld x %lld, vocab %lld%s\n",
            p->cfg.architecture, (long long)d->L, (long long)d->C, (long long)d->F, (long long)d->H, (long long)d->Hkv,
            (long long)d->D, (long long)d->V, d->tied ? " (tied)" : "");
    fprintf(f, "           %s parameters, from %s\n", ft_plan_si((double)pc.total, "", b1, sizeof b1), p->config_path);
    int tt_auto = 0;
    for (int i = 0; i < r->lora.n_tokens; i++) tt_auto |= strcmp(r->lora.tokens[i], "auto") == 0;
    fprintf(f, "lora       r %lld on %s%s: %s trainable parameters", (long long)p->R, r->lora.targets,
            p->dora ? " (DoRA: and a magnitude per output row)" : "", ft_plan_si((double)p->lora_params, "", b1, sizeof b1));
    const char *rows = d->tied ? "embedding" : "embedding and lm_head";
    if (p->n_tokens)
        fprintf(f, ", with the %s rows of %lld token%s%s", rows, (long long)p->n_tokens, p->n_tokens == 1 ? "" : "s",
                tt_auto ? " and auto's (found at load)" : "");
    else if (tt_auto)
        fprintf(f, ", with the %s rows of the template's untrained tokens (auto: found at load)", rows);
    fprintf(f, "\n");
    fprintf(f, "run        micro_batch %lld x grad_accum %lld x seq_len %lld = %lld tokens per step\n", (long long)p->B,
            (long long)p->K, (long long)p->T, (long long)p->tokens_per_step);
    fprintf(f, "           recompute %s%s\n", p->recompute ? "on" : "off",
            p->host_boundaries ? ", layer boundaries in host memory (training.host_boundaries)" : "");
    char dev[48];
    ft_plan_format_bytes(p->device_bytes, dev, sizeof dev);
    fprintf(f, "device     %s: %s, %s%s%s%s, %.3g TFLOP/s peak %s\n", p->dev.name, p->dev.desc, dev,
            p->mem_source ? " (" : "", p->mem_source ? p->mem_source : "", p->mem_source ? ")" : "",
            p->dev.peak_tflops, p->dev.backend == FT_BACKEND_CUDA ? "BF16" : "F32");
    fprintf(f, "           (%s)\n", p->dev.note);
    fprintf(f, "\nmemory (%s backend: frozen weights %s + %s, activations %s)\n",
            p->dev.backend == FT_BACKEND_CUDA ? "cuda" : "cpu", ft_dtype_name(p->linear_dtype),
            ft_dtype_name(p->other_dtype), ft_dtype_name(p->act_dtype));
    for (int i = 0; i < FT_PLAN_NLINES; i++)
        fprintf(f, "  %-28s %-50s %9.2f %s\n", p->line[i].name, p->line[i].detail, (double)p->line[i].bytes / unit,
                gib ? "GiB" : "MiB");
    fprintf(f, "  %-79s ---------\n", "");
    fprintf(f, "  %-28s %-50s %9.2f %s\n", "total",
            p->load_bytes > p->train_bytes ? "peak while loading" : "peak of a training step",
            (double)p->total_bytes / unit, gib ? "GiB" : "MiB");
    ft_plan_format_bytes(p->load_bytes, b1, sizeof b1);
    fprintf(f, "  (while loading: %s, the weights and %s)\n", b1,
            p->dev.backend == FT_BACKEND_CUDA ? "the streaming chunks" : "one linear staged for quantization");
    if (p->pinned_bytes > 0) /* the host's share, in the same unit, beside (not in) the device total */
        fprintf(f, "  %-28s %-50s %9.2f %s\n", "host memory",
                p->dev.unified                     ? "layer boundaries, pinned; unified: in the total"
                : p->dev.backend == FT_BACKEND_CUDA ? "layer boundaries, pinned; not in the total"
                                                    : "layer boundaries; not in the total",
                (double)p->pinned_bytes / unit, gib ? "GiB" : "MiB");
    ft_plan_format_bytes(p->total_bytes, b1, sizeof b1);
    if (p->fits) fprintf(f, "  fits (%s of %s)\n", b1, dev);
    else fprintf(f, "  does not fit (%s of %s): %s\n", b1, dev, p->advice);
    if (p->keep_total_bytes > 0 && p->keep_total_bytes <= p->device_bytes && !p->flat && p->keep_layers < d->L) {
        /* the recompute's attention forward is rec of the 3.5 + rec A_fwd the attention part counts */
        const double rec = ft_plan_recomputed(p);
        const double saved = p->time[FT_PLAN_T_ATTENTION].s * (double)p->K * rec / (3.5 + rec);
        ft_plan_format_bytes(p->keep_total_bytes, b1, sizeof b1);
        fprintf(f, "  training.keep_attention: true also fits (%s of %s) and skips the attention in the recompute: "
                   "~%.0f%% faster by the time model below\n",
                b1, dev, 100.0 * saved / (p->step_s - saved));
    }
    if (p->kept.kept > 0) {
        ft_plan_format_bytes(p->kept.bytes, b1, sizeof b1);
        fprintf(f, "  training.keep_layers: %lld of %lld layers fit kept%s (%s of %s), not recomputed: %.0f tokens/s, "
                   "~%.0f%% faster by the time model below\n",
                (long long)p->kept.kept, (long long)d->L,
                p->kept.attn && !p->keep_attention ? " with training.keep_attention: true" : "", b1, dev,
                p->kept.tokens_per_s,
                100.0 * (p->kept.tokens_per_s / p->tokens_per_s - 1.0));
    }
    if (p->kept_mb.B > 0) {
        ft_plan_format_bytes(p->kept_mb.bytes, b1, sizeof b1);
        fprintf(f, "  training.micro_batch: %lld with training.grad_accum: %lld (the same tokens per step) keeps %lld "
                   "of %lld layers%s (%s of %s): %.0f tokens/s, ~%.0f%% faster by the time model below\n",
                (long long)p->kept_mb.B, (long long)p->kept_mb.K, (long long)p->kept_mb.kept, (long long)d->L,
                p->kept_mb.attn && !p->keep_attention ? " with training.keep_attention: true" : "", b1, dev,
                p->kept_mb.tokens_per_s, 100.0 * (p->kept_mb.tokens_per_s / p->tokens_per_s - 1.0));
    }

    if (p->max_seq > 0) { /* the longest context, and which knobs reach further */
        char more[512] = "";
        size_t o = 0;
#define PL_MORE(...) o += (size_t)snprintf(more + o, o < sizeof more ? sizeof more - o : 0, __VA_ARGS__)
        if (p->max_seq_host > 0) PL_MORE("%lld with training.host_boundaries: true", (long long)p->max_seq_host);
        if (p->max_seq_mlp > 0)
            PL_MORE("%s%lld with %straining.mlp_chunk: %d", o ? ", " : "", (long long)p->max_seq_mlp,
                    p->max_seq_host > 0 ? "it and " : "", FT_PLAN_MLP_CHUNK);
        if (p->max_seq_seg > 0)
            PL_MORE("%s%lld with training.boundary_every: %lld%s", o ? "; " : "", (long long)p->max_seq_seg,
                    (long long)p->seg_offer, p->mlp_chunk > 0 && p->mlp_chunk <= FT_PLAN_MLP_CHUNK ? "" : " and the MLP sliced");
#undef PL_MORE
        fprintf(f, "  longest data.seq_len that fits at micro_batch %lld: %lld tokens%s%s%s\n", (long long)p->B,
                (long long)p->max_seq, o ? " (" : "", more, o ? ")" : "");
    }

    fprintf(f, "\ncompute\n");
    double fs = p->flops_per_token >= 1e9 ? 1e9 : p->flops_per_token >= 1e6 ? 1e6 : 1e3;
    const char *fu = fs == 1e9 ? "GFLOP" : fs == 1e6 ? "MFLOP" : "KFLOP";
    const double rec = ft_plan_recomputed(p);
    fprintf(f, "  %-28s %.1f %s = %.1f (%.3g N_blocks) + %.1f (4 N_head) + %.1f (%.3g A_fwd) + %.1f (LoRA)",
            "FLOPs per token", p->flops_per_token / fs, fu, p->f_base / fs, 4.0 + 2.0 * (rec + p->seg_forward),
            p->f_head / fs, p->f_attn / fs, 3.5 + rec + p->seg_forward, p->f_lora / fs);
    if (p->dora) fprintf(f, " + %.1f (DoRA)", p->f_dora / fs);
    fprintf(f, "\n");
    if (p->packed || p->attn_len != (double)p->T) /* A_fwd's S: what a token attends to, on average x 2 */
        fprintf(f, "  %-28s S = %.0f of seq_len %lld: %s\n", "attention's length", p->attn_len, (long long)p->T,
                p->attn_len_from);
    if (p->boundary_every > 1)
        fprintf(f, "  %-28s the input of one layer in %lld kept: %.0f%% of the layers run forward once more "
                   "(training.boundary_every)\n", "", (long long)p->boundary_every, 100.0 * p->seg_forward);
    if (p->keep_layers > 0)
        fprintf(f, "  %-28s %lld of %lld layers kept, not recomputed (training.keep_layers%s)\n", "",
                (long long)p->keep_layers, (long long)d->L, p->keep_layers_max ? ": max" : "");
    if (p->recompute && rec > 0)
        fprintf(f, "  %-28s %.1f %s: the recompute skips down_proj's frozen product%s\n", "of which the step runs",
                (p->w_gemm + p->w_attn) / fs, fu, p->keep_attention ? " and the kept attention" : "");
    pl_print_time(p, f);
    fprintf(f, "  %-28s %.0f\n", "tokens/s", p->tokens_per_s);
    fprintf(f, "  %-28s %s\n", "time per optimizer step", pl_duration(p->step_s, b1, sizeof b1));
    if (p->steps > 0) {
        fprintf(f, "  %-28s %lld (%s)\n", "steps", (long long)p->steps, p->steps_from);
        fprintf(f, "  %-28s %s\n", "total tokens", ft_plan_si((double)p->total_tokens, "", b1, sizeof b1));
        if (p->n_evals > 0) {
            char b2[48], b3[48], b4[48];
            if (!(r->data.n_valid > 0 || r->data.val_fraction > 0))
                snprintf(b4, sizeof b4, "no validation data");
            else if (p->eval_tokens >= 0)
                snprintf(b4, sizeof b4, "%s validation tokens", ft_plan_si((double)p->eval_tokens, "", b3, sizeof b3));
            else
                snprintf(b4, sizeof b4, "validation rows unknown until `ftune data`");
            fprintf(f, "  %-28s %lld x (%s: %s; %d prompt%s x %lld tokens decoded: %s) = %s\n", "evaluations",
                    (long long)p->n_evals, b4, pl_duration(p->eval_valid_s, b1, sizeof b1), r->eval.n_prompts,
                    r->eval.n_prompts == 1 ? "" : "s", (long long)r->eval.max_new_tokens,
                    pl_duration(p->eval_gen_s, b2, sizeof b2), pl_duration(p->eval_s, b3, sizeof b3));
        }
        fprintf(f, "  %-28s %s%s\n", "estimated time", pl_duration(p->hours * 3600.0, b1, sizeof b1),
                p->n_evals > 0 ? " (the steps and the evaluations)" : "");
        if (r->training.max_hours > 0) {
            if (p->job_short)
                fprintf(f, "  %-28s training.max_hours %g: shorter than a step and its checkpoint: a job would train "
                           "nothing (it stops before its first step, exit 2); raise it\n", "time limit",
                        r->training.max_hours);
            else if (p->jobs == 1)
                fprintf(f, "  %-28s training.max_hours %g: the run fits in one job\n", "time limit", r->training.max_hours);
            else if (p->jobs > 1)
                fprintf(f, "  %-28s training.max_hours %g: a job trains about %lld of the %lld steps (loading not "
                           "counted), then checkpoints and exits 75: %lld jobs of `ftune train RECIPE --resume auto`\n",
                        "time limit", r->training.max_hours, (long long)p->job_steps, (long long)p->steps,
                        (long long)p->jobs);
        }
    } else {
        fprintf(f, "  %-28s %s\n", "steps", p->steps_from);
        fprintf(f, "  %-28s %s per million tokens\n", "estimated time",
                pl_duration(1e6 / p->tokens_per_s, b1, sizeof b1));
    }
    pl_print_disk(p, r, f);
}

void ft_plan_devices_doc(void *file) {
    FILE *f = file;
    static const char *const names[] = {"h100", "h200", "gb10"};
    fprintf(f, "| `--device` | memory a run may use | peak rate | bandwidth | GEMM efficiency | attention: ours / cuDNN "
               "| streaming / elementwise / LoRA efficiency | dequantization hidden | rates | notes |\n"
               "|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        ft_plan_device d;
        if (ft_plan_device_get(names[i], &d) != FT_OK) continue;
        char cudnn[32] = "n/a";
        if (d.attn_cudnn_tflops > 0) snprintf(cudnn, sizeof cudnn, "%.0f", d.attn_cudnn_tflops);
        fprintf(f, "| `%s` | %.1f GiB | %.0f TFLOP/s BF16 | %.3g TB/s | %.0f%% | %.3g / %s TFLOP/s | %.0f%% / %.0f%% / %.0f%% "
                   "| %.1f%% | %s | %s: %s |\n",
                d.name, d.mem_gib, d.peak_tflops, d.mem_gbps / 1000.0, 100.0 * d.gemm_eff, d.attn_tflops, cudnn,
                100.0 * d.bw_eff, 100.0 * d.elem_eff, 100.0 * d.lora_eff, 100.0 * d.dequant_hidden, d.rates ? d.rates : "", d.desc, d.note);
    }
    fprintf(f, "| `cpu` | physical RAM | 50 GFLOP/s f32 per core | n/a | 50%% | 50%% of peak / n/a | n/a | n/a "
               "| estimated | this machine's CPU (the reference backend): holds for GEMM-bound models; tiny ones (the demo) run "
               "~10x slower |\n");
}
