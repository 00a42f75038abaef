/* cmd_bench.c: `ftune bench` (trainer/bench.h), three ways.
 *
 *   ftune bench --shape llama-3-70b --seq 4096 --micro-batch 1 [--peak] [--steps 10] ...
 *       trains a random model of a real shape and reports tokens/s, F x tokens/s against the
 *       measured GEMM peak, peak memory against `ftune plan`, and time per phase;
 *   ftune bench --load DIR [--compare-cpu]
 *       times loading a checkpoint on the device against reading its files, and checks its NF4
 *       weights against the CPU loader's;
 *   ftune bench --write-checkpoint DIR --shape S [--layers N] [--shards K]
 *       writes a random bf16 checkpoint of a shape to load.
 * --check turns the issue's acceptance bounds into the exit status: finite, falling loss and
 * peak memory within 10% of the plan (exit 1 otherwise, with the reason). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ggml_quants.h"
#include "trainer/bench.h"
#include "trainer/cli.h"
#include "trainer/commands.h"
#include "trainer/model.h"

static const ft_opt ft_bench_cli[] = {
    {"shape", FT_OPT_STR, "NAME", "llama-3-8b",
     "llama-3-70b, llama-3-8b, qwen3-32b, qwen3-14b, mistral-small-24b, tiny or tiny-d128"},
    {"layers", FT_OPT_INT, "N", "0", "keep the first N layers of the shape (0: all; the tiny shapes: any N)"},
    {"vocab", FT_OPT_INT, "V", "0", "vocabulary size override (0: the shape's)"},
    {"seq", FT_OPT_STR, "T|max", "4096", "tokens per sequence; max: the longest the plan fits in free memory"},
    {"doc-len", FT_OPT_INT, "N", "0", "pack each row with documents of N tokens (attention within each, as packed "
                                       "recipes train); 0: one document a row"},
    {"micro-batch", FT_OPT_INT, "B", "1", "sequences per micro-batch"},
    {"grad-accum", FT_OPT_INT, "K", "1", "micro-batches per optimizer step"},
    {"steps", FT_OPT_INT, "N", "10", "optimizer steps (the first is a warm-up, left out of tokens/s)"},
    {"lora-r", FT_OPT_INT, "R", "16", "LoRA rank"},
    {"dropout", FT_OPT_FLOAT, "P", "0", "LoRA dropout (the recipes use 0.05; the PEFT comparison runs 0)"},
    {"lora-targets", FT_OPT_STR, "LIST", "all", "LoRA target modules"},
    {"dora", FT_OPT_FLAG, NULL, NULL, "DoRA: magnitudes and the backward's second frozen product (with --dropout: PEFT's frozen products over the dropped input too)"},
    {"quant", FT_OPT_STR, "nf4|none|q4_k|...", "nf4", "storage of the frozen linear weights: NF4, 16-bit, or a ggml block type as a GGUF base keeps them (q4_0, q5_0, q8_0, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)"},
    {"lr", FT_OPT_FLOAT, "X", "1e-3", "learning rate (constant)"},
    {"no-recompute", FT_OPT_FLAG, NULL, NULL, "keep every layer's activations instead of recomputing"},
    {"host-boundaries", FT_OPT_FLAG, NULL, NULL, "keep the layer boundaries in pinned host memory (long context)"},
    {"keep-attention", FT_OPT_FLAG, NULL, NULL,
     "keep each layer's attention output instead of recomputing attention (training.keep_attention)"},
    {"keep-layers", FT_OPT_STR, "N|max", "0",
     "keep the last N layers' activations instead of recomputing them (training.keep_layers); max: as many as "
     "the plan fits"},
    {"mlp-chunk", FT_OPT_INT, "N", "0",
     "run each layer's MLP over N tokens at a time (training.mlp_chunk; 0: all); with --seq max the longest context "
     "then fits"},
    {"boundary-every", FT_OPT_INT, "N", "0",
     "keep every Nth layer's input only, the others recomputed per segment (training.boundary_every; 0: all)"},
    {"peak", FT_OPT_FLAG, NULL, NULL, "measure the BF16 GEMM rate in the same run and report F x tokens/s against it"},
    {"peak-n", FT_OPT_INT, "N", "0", "GEMM size for --peak (0: 8192 on CUDA, 1024 on CPU)"},
    {"seed", FT_OPT_INT, "S", "1", "seed of the random model, data and LoRA"},
    {"device", FT_OPT_STR, "auto|cpu|cuda", "auto", "compute backend"},
    {"threads", FT_OPT_INT, "N", "0", "CPU threads (0: all cores)"},
    {"json", FT_OPT_STR, "FILE", NULL, "also write the result as JSON"},
    {"check", FT_OPT_FLAG, NULL, NULL,
     "fail unless the loss is finite and falling and peak memory (accounted, and on CUDA as the device reports it) is "
     "within 10% of the plan"},
    {"load", FT_OPT_STR, "DIR", NULL, "time loading the checkpoint DIR instead of training"},
    {"compare-cpu", FT_OPT_FLAG, NULL, NULL, "with --load: compare every weight with the CPU loader's"},
    {"write-checkpoint", FT_OPT_STR, "DIR", NULL, "write a random bf16 checkpoint of --shape (--layers, --vocab) to DIR"},
    {"shards", FT_OPT_INT, "K", "1", "with --write-checkpoint: number of safetensors files"},
};

static ft_status ft_bench_check(const ft_bench_result *r) {
    if (!r->loss_finite) return FT_ERR(FT_E_INTERNAL, "bench --check: a loss or gradient norm is not finite");
    if (r->nsteps > 1 && !r->loss_fell)
        return FT_ERR(FT_E_INTERNAL, "bench --check: the loss did not fall (%.5f -> %.5f)", r->steps[0].loss,
                      r->steps[r->nsteps - 1].loss);
    if (!(fabs(r->mem_ratio - 1.0) <= 0.10))
        return FT_ERR(FT_E_INTERNAL, "bench --check: peak memory %lld bytes is %.1f%% off the plan's %lld",
                      (long long)r->mem_peak, 100.0 * (r->mem_ratio - 1.0), (long long)r->mem_plan);
    /* the same against what the device says the run took: the accounting above and the plan share
     * their size functions, cudaMemGetInfo does not */
    const double dev_ratio = r->mem_plan_train > 0 ? (double)r->dev_delta / (double)r->mem_plan_train : 1.0;
    if (r->dev_delta > 0 && !(fabs(dev_ratio - 1.0) <= 0.10))
        return FT_ERR(FT_E_INTERNAL, "bench --check: the device reports %lld bytes taken by the run after its steps, "
                      "%.1f%% off the plan's %lld for a training step", (long long)r->dev_delta, 100.0 * (dev_ratio - 1.0),
                      (long long)r->mem_plan_train);
    return FT_OK;
}

ft_status ft_cmd_bench(int argc, char **argv) {
    ft_cli cli = {.command = "bench",
                  .summary = "Training throughput, memory and time per phase on a random model of a real shape; "
                             "or checkpoint loading speed.",
                  .opts = ft_bench_cli, .nopts = sizeof ft_bench_cli / sizeof *ft_bench_cli};
    ft_status st = ft_cli_parse(&cli, argc, argv);
    ft_bench_result res;
    memset(&res, 0, sizeof res);
    if (st != FT_OK) goto done;
    if (cli.help) {
        ft_cli_usage(&cli);
        goto done;
    }
    if (cli.npos > 0) {
        st = FT_ERR(FT_E_ARG, "bench: unexpected argument '%s' (see 'ftune bench --help')", cli.pos[0]);
        goto done;
    }
    ft_bench_opts o;
    memset(&o, 0, sizeof o);
    int64_t threads = 0, seed = 1, shards = 1;
    const char *seq_s, *json, *load, *wckpt, *kl_s;
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "shape", &o.shape), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "layers", &o.layers), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "vocab", &o.vocab), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "seq", &seq_s), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "doc-len", &o.doc_len), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "keep-layers", &kl_s), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "micro-batch", &o.micro_batch), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "grad-accum", &o.grad_accum), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "steps", &o.steps), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "lora-r", &o.lora_r), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "dropout", &o.lora_dropout), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "lora-targets", &o.targets), done);
    o.dora = ft_cli_flag(&cli, "dora");
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "quant", &o.quant), done);
    FT_CHECK_GOTO(st, ft_cli_float(&cli, "lr", &o.lr), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "peak-n", &o.peak_n), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "mlp-chunk", &o.mlp_chunk), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "boundary-every", &o.boundary_every), done);
    if (o.mlp_chunk < 0 || o.boundary_every < 0 || o.boundary_every > FT_MODEL_MAX_SEGMENT) {
        st = FT_ERR(FT_E_ARG, "bench: --mlp-chunk %lld (need >= 0), --boundary-every %lld (need 0..%d)",
                    (long long)o.mlp_chunk, (long long)o.boundary_every, FT_MODEL_MAX_SEGMENT);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "seed", &seed), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "device", &o.device), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "threads", &threads), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "json", &json), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "load", &load), done);
    FT_CHECK_GOTO(st, ft_cli_str(&cli, "write-checkpoint", &wckpt), done);
    FT_CHECK_GOTO(st, ft_cli_int(&cli, "shards", &shards), done);
    o.threads = (int)threads, o.seed = (uint64_t)seed, o.out = stdout;
    o.recompute = !ft_cli_flag(&cli, "no-recompute");
    o.host_boundaries = ft_cli_flag(&cli, "host-boundaries");
    o.keep_attention = ft_cli_flag(&cli, "keep-attention");
    o.peak = ft_cli_flag(&cli, "peak");
    ft_ggml_type gq;
    ft_dtype dq;
    if (strcmp(o.quant, "nf4") != 0 && strcmp(o.quant, "none") != 0 &&
        !(ft_ggml_type_from_name(o.quant, &gq) && ft_dtype_from_ggml((int)gq, &dq) && ft_dtype_is_ggml(dq) &&
          (ft_ggml_can_encode((int)gq) || dq == FT_IQ4_NL || dq == FT_IQ4_XS))) { /* bench.c draws IQ4 blocks */
        st = FT_ERR(FT_E_ARG, "bench: --quant %s (expected nf4, none, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, "
                    "iq4_nl or iq4_xs)", o.quant);
        goto done;
    }
    if (wckpt) {
        const ft_bench_shape *s = ft_bench_shape_find(o.shape);
        if (!s) {
            st = FT_ERR(FT_E_ARG, "bench: unknown shape '%s' (expected %s)", o.shape, ft_bench_shape_list());
            goto done;
        }
        if (shards < 1 || shards > 9999) {
            st = FT_ERR(FT_E_ARG, "bench: --shards %lld out of 1..9999", (long long)shards);
            goto done;
        }
        FT_CHECK_GOTO(st, ft_bench_write_checkpoint(s, o.layers, o.vocab, (int)shards, wckpt, o.seed), done);
        printf("wrote a random bf16 %s checkpoint (%lld layers) in %lld shards to %s\n", s->name,
               (long long)(o.layers > 0 ? o.layers : s->L), (long long)shards, wckpt);
        goto done;
    }
    if (load) {
        ft_bench_load_opts lo = {.dir = load, .device = o.device, .threads = o.threads,
                                 .compare_cpu = ft_cli_flag(&cli, "compare-cpu"), .out = stdout};
        ft_bench_load_result lr;
        st = ft_bench_load(&lo, &lr);
        goto done;
    }
    if (strcmp(kl_s, "max") == 0) {
        o.keep_layers = -1;
    } else {
        FT_CHECK_GOTO(st, ft_parse_int(kl_s, &o.keep_layers), done);
        if (o.keep_layers < 0) {
            st = FT_ERR(FT_E_ARG, "bench: --keep-layers %lld (need >= 0, or max)", (long long)o.keep_layers);
            goto done;
        }
    }
    if (strcmp(seq_s, "max") == 0) {
        o.seq = 0;
    } else {
        FT_CHECK_GOTO(st, ft_parse_int(seq_s, &o.seq), done);
        if (o.seq < 2) {
            st = FT_ERR(FT_E_ARG, "bench: --seq %lld (need >= 2, or max)", (long long)o.seq);
            goto done;
        }
    }
    if (o.doc_len < 0) {
        st = FT_ERR(FT_E_ARG, "bench: --doc-len %lld (need >= 0)", (long long)o.doc_len);
        goto done;
    }
    FT_CHECK_GOTO(st, ft_bench_run(&o, &res), done);
    if (json) FT_CHECK_GOTO(st, ft_bench_write_json(&res, json), done);
    if (ft_cli_flag(&cli, "check")) st = ft_bench_check(&res);
done:
    ft_bench_result_free(&res);
    ft_cli_free(&cli);
    return st;
}
