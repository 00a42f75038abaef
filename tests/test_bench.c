/* test_bench.c: `ftune bench` (trainer/bench.h) and the pieces it measures with, on the CPU backend.
 *   - the tiny shape trains: tokens/s > 0, finite and falling loss, the phases add up to the step
 *     time, peak backend memory equals the plan's prediction (CPU: to the byte, 10% allowed);
 *   - host-kept boundaries give bit-identical losses and gradient norms, and hold the planned
 *     pinned bytes; rows packed with --doc-len train, and the plan counts their attention's S;
 *   - the shapes table: every real shape parses as a config.json would, and the plan of the 70B
 *     shape at seq 4096 gives peers.md's F (~441 GFLOP/token) and fits an H100 in NF4;
 *   - ft_op_clip_factor equals the host formula of optim/adamw.c bit for bit (NaN and clip <= 0
 *     included); the phase timers attribute and force phases;
 *   - an out-of-memory failure names the allocation, the plan's figure and a knob; a backend memory
 *     limit (model.memory_gib) refuses past it as a full device would, and the plan made on the
 *     backend (ft_plan_for_backend, as `ftune train` makes it) plans for it;
 *   - the CLI: bench --check --json, --write-checkpoint with shards, --load --compare-cpu. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/harness.h"
#include "trainer/bench.h"
#include "trainer/plan.h"
#include "trainer/recipe.h"

static ft_bench_opts tiny_opts(void) {
    ft_bench_opts o;
    memset(&o, 0, sizeof o);
    o.shape = "tiny", o.device = "cpu", o.threads = 2, o.seq = 32, o.micro_batch = 2, o.grad_accum = 1;
    o.steps = 6, o.lora_r = 8, o.targets = "all", o.quant = "nf4", o.lr = 1e-3, o.recompute = 1, o.seed = 3;
    return o;
}

static void check_tiny(void) {
    ft_bench_opts o = tiny_opts();
    ft_bench_result r, h;
    FT_CHECK_OK(ft_bench_run(&o, &r));
    if (!r.steps) return;
    FT_CHECK(r.nsteps == 6 && r.tokens_per_step == 64, "steps %lld, tokens per step %lld", (long long)r.nsteps,
             (long long)r.tokens_per_step);
    FT_CHECK(r.tokens_per_s > 0 && isfinite(r.tokens_per_s), "tokens/s %g", r.tokens_per_s);
    FT_CHECK(r.loss_finite, "loss not finite");
    FT_CHECK(r.loss_fell && r.steps[5].loss < r.steps[0].loss - 0.05, "loss %g -> %g", r.steps[0].loss, r.steps[5].loss);
    for (int64_t s = 1; s < r.nsteps; s++)
        FT_CHECK(r.steps[s].loss < r.steps[s - 1].loss, "loss rose at step %lld: %g -> %g", (long long)s + 1,
                 r.steps[s - 1].loss, r.steps[s].loss);
    /* the phases cover the step: their sum is the step's time (the region timed is a hair longer) */
    for (int64_t s = 0; s < r.nsteps; s++) {
        double sum = 0;
        for (int p = 0; p < FT_PHASE_COUNT; p++) sum += r.steps[s].phase_ms[p];
        const double step_ms = 1e3 * r.steps[s].seconds;
        FT_CHECK(sum >= 0.95 * step_ms && sum <= 1.10 * step_ms + 2.0, "step %lld: phases sum to %.3f ms, step %.3f ms",
                 (long long)s + 1, sum, step_ms);
        FT_CHECK(r.steps[s].phase_ms[FT_PHASE_GEMM] > 0 && r.steps[s].phase_ms[FT_PHASE_ATTENTION] > 0 &&
                 r.steps[s].phase_ms[FT_PHASE_OPTIMIZER] > 0 && r.steps[s].phase_ms[FT_PHASE_XENT] > 0,
                 "step %lld: a phase has no time", (long long)s + 1);
        FT_CHECK(r.steps[s].phase_ms[FT_PHASE_DEQUANT] == 0, "CPU reports no separate dequant time");
    }
    FT_CHECK(fabs(r.mem_ratio - 1.0) <= 0.10, "peak %lld vs plan %lld (%.2f%%)", (long long)r.mem_peak,
             (long long)r.mem_plan, 100 * (r.mem_ratio - 1));
    FT_CHECK(r.mem_peak == r.mem_plan, "CPU: peak %lld should equal the plan %lld to the byte", (long long)r.mem_peak,
             (long long)r.mem_plan);
    FT_CHECK(r.flops_per_token > 0 && r.achieved_tflops > 0, "F %g, achieved %g", r.flops_per_token, r.achieved_tflops);
    printf("ok   tiny: %.0f tokens/s, loss %.4f -> %.4f, peak %lld bytes = plan\n", r.tokens_per_s, r.steps[0].loss,
           r.steps[5].loss, (long long)r.mem_peak);

    /* host-kept boundaries: the same numbers, the planned pinned bytes */
    o.host_boundaries = 1;
    o.steps = 3;
    FT_CHECK_OK(ft_bench_run(&o, &h));
    if (h.steps) {
        for (int64_t s = 0; s < h.nsteps; s++)
            FT_CHECK(memcmp(&h.steps[s].loss, &r.steps[s].loss, sizeof(double)) == 0 &&
                         memcmp(&h.steps[s].grad_norm, &r.steps[s].grad_norm, sizeof(double)) == 0,
                     "host boundaries step %lld: loss %.9g vs %.9g, norm %.9g vs %.9g", (long long)s + 1,
                     h.steps[s].loss, r.steps[s].loss, h.steps[s].grad_norm, r.steps[s].grad_norm);
        FT_CHECK(h.host_plan > 0 && h.host_peak == h.host_plan, "pinned boundaries %lld, plan %lld",
                 (long long)h.host_peak, (long long)h.host_plan);
        FT_CHECK(h.mem_peak == h.mem_plan && h.mem_peak < r.mem_peak + h.host_plan,
                 "host boundaries: peak %lld, plan %lld", (long long)h.mem_peak, (long long)h.mem_plan);
        printf("ok   host-kept boundaries: bit-identical losses, %lld bytes pinned as planned\n", (long long)h.host_peak);
    }
    ft_bench_result_free(&h);

    /* --layers: one layer of the tiny width */
    o.host_boundaries = 0, o.layers = 1, o.steps = 2;
    FT_CHECK_OK(ft_bench_run(&o, &h));
    FT_CHECK(h.layers == 1 && h.loss_finite, "layers %lld", (long long)h.layers);
    ft_bench_result_free(&h);
    /* the tiny shapes may be deeper than their 2 layers (a released model's shape may not); the CPU
     * backend has no weight cache: no dequantization counts */
    o.layers = 5, o.steps = 1;
    FT_CHECK_OK(ft_bench_run(&o, &h));
    FT_CHECK(h.layers == 5 && h.loss_finite, "tiny with 5 layers: %lld", (long long)h.layers);
    FT_CHECK(h.deq.prefetched == 0 && h.deq.on_compute == 0 && h.deq.reused == 0, "CPU dequantization counts");
    ft_bench_result_free(&h);
    /* --doc-len: rows of 32 packed with documents of 10, 10, 10 and 2 tokens: the plan counts the
     * attention of S = (3 x 10^2 + 2^2) / 32 = 9.5 tokens instead of 32 (F's other parts unchanged), and
     * the run trains */
    ft_bench_opts pk = tiny_opts();
    pk.doc_len = 10, pk.steps = 3;
    FT_CHECK_OK(ft_bench_run(&pk, &h));
    const ft_bench_shape *ts = ft_bench_shape_find("tiny");
    if (h.steps && ts) {
        const double dA = 4.5 * 2.0 * (double)(ts->L * ts->H * ts->D) * (32.0 - 9.5);
        FT_CHECK(h.doc_len == 10 && h.attn_len == 9.5, "doc_len %lld, S %g", (long long)h.doc_len, h.attn_len);
        FT_CHECK(!(fabs(r.flops_per_token - h.flops_per_token - dA) > 1e-9 * dA), "F %g, packed %g: %g less, expected %g",
                 r.flops_per_token, h.flops_per_token, r.flops_per_token - h.flops_per_token, dA);
        FT_CHECK(h.loss_finite && h.loss_fell && h.mem_peak == h.mem_plan, "packed: loss %g -> %g, peak %lld, plan %lld",
                 h.steps[0].loss, h.steps[2].loss, (long long)h.mem_peak, (long long)h.mem_plan);
    }
    ft_bench_result_free(&h);
    /* --dora: the run trains, its peak memory is the plan's to the byte (the magnitudes and their state,
     * the backward's scratch of one module's output), and F grows by exactly DoRA's work, counted here
     * from the shape (tiny: C 128, F 384, H 4 / Hkv 2 x 32, 2 layers, no bias, no q/k-norm): a second
     * frozen product and LoRA B product, 2 out (in + r) a token, for q, k (rotated in place), o and
     * down (added into the residual), none for v, gate and up, whose outputs the backward holds; and
     * every module's weight norm, 2 r in out per micro-batch of N = 64 tokens */
    ft_bench_opts dr = tiny_opts();
    dr.dora = 1, dr.steps = 3;
    FT_CHECK_OK(ft_bench_run(&dr, &h));
    if (h.steps) {
        const double R = 8, N = 64, io[7][2] = {{128, 128}, {128, 64}, {128, 64}, {128, 128}, {128, 384}, {128, 384},
                                                 {384, 128}}; /* {in, out}: q k v o gate up down */
        double dF = 0;
        for (int m = 0; m < 7; m++) {
            const int second = m == 0 || m == 1 || m == 3 || m == 6;
            dF += 2.0 * io[m][1] * ((second ? io[m][0] + R : 0.0) + R * io[m][0] / N);
        }
        dF *= 2; /* layers */
        const double got = h.flops_per_token - r.flops_per_token;
        FT_CHECK(!(fabs(got - dF) > 1e-9 * dF), "DoRA F %g, LoRA %g: %g more, expected %g", h.flops_per_token,
                 r.flops_per_token, got, dF);
        FT_CHECK(h.loss_finite && h.loss_fell && h.mem_peak == h.mem_plan && h.mem_peak > r.mem_peak,
                 "DoRA: loss %g -> %g, peak %lld, plan %lld (LoRA's %lld)", h.steps[0].loss, h.steps[2].loss,
                 (long long)h.mem_peak, (long long)h.mem_plan, (long long)r.mem_peak);
        printf("ok   --dora: F +%.0f FLOP/token as counted, peak %lld bytes = plan (LoRA's %lld)\n", got,
               (long long)h.mem_peak, (long long)r.mem_peak);
    }
    ft_bench_result_free(&h);
    ft_bench_opts big = o;
    big.shape = "llama-3-8b", big.layers = 33;
    FT_CHECK(ft_bench_run(&big, &h) == FT_E_ARG, "llama-3-8b with 33 layers should be refused");
    ft_bench_result_free(&h);
    ft_bench_result_free(&r);
}

static void check_shapes(void) {
    const char *names[] = {"llama-3-70b", "llama-3-8b", "qwen3-32b", "qwen3-14b", "mistral-small-24b", "tiny", "tiny-d128"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const ft_bench_shape *s = ft_bench_shape_find(names[i]);
        FT_CHECK(s != NULL, "shape %s", names[i]);
        if (!s) continue;
        ft_model_config cfg;
        FT_CHECK_OK(ft_bench_config(s, 0, 0, &cfg));
        FT_CHECK(cfg.hidden_size == s->C && cfg.num_hidden_layers == s->L && cfg.head_dim == s->D &&
                     cfg.vocab_size == s->V && cfg.qk_norm == (strcmp(s->arch, "Qwen3ForCausalLM") == 0) &&
                     cfg.sliding_window == 0 && !cfg.tie_word_embeddings,
                 "%s: config", s->name);
        FT_CHECK(cfg.rope.type == (s->llama3_rope ? FT_ROPE_LLAMA3 : FT_ROPE_DEFAULT), "%s: rope", s->name);
    }
    FT_CHECK(ft_bench_shape_find("llama-2-7b") == NULL, "unknown shape");

    /* the 70B plan at seq 4096: F and memory (peers.md 3.3: 428.6 GFLOP at 2K, 464.9 at 8K) */
    ft_model_config cfg;
    FT_CHECK_OK(ft_bench_config(ft_bench_shape_find("llama-3-70b"), 0, 0, &cfg));
    const char *sets[] = {"model.path=/x", "model.quant=nf4", "model.device=cuda", "lora.r=16", "lora.targets=all",
                          "training.micro_batch=1", "training.grad_accum=1", "training.steps=10", "data.seq_len=4096"};
    ft_recipe rec;
    memset(&rec, 0, sizeof rec);
    FT_CHECK_OK(ft_recipe_defaults(&rec, sets, (int)(sizeof sets / sizeof *sets)));
    ft_plan *p = calloc(1, sizeof *p);
    ft_plan_opts po = {.device = "h100"};
    FT_CHECK_OK(ft_plan_make_cfg(p, &cfg, &rec, &po));
    FT_CHECK(fabs(p->flops_per_token / 1e9 - 440.8) < 4.0, "70B F at 4096: %.1f GFLOP", p->flops_per_token / 1e9);
    FT_CHECK(p->fits && p->total_bytes < (int64_t)(60.0 * 1073741824.0), "70B NF4 seq 4096 plans %.1f GiB",
             (double)p->total_bytes / 1073741824.0);
    /* the longest context: more with the boundaries on the host */
    int64_t t_dev = ft_plan_max_seq(p, 256, 1 << 20);
    ft_plan *q = calloc(1, sizeof *q);
    po.host_boundaries = 1;
    FT_CHECK_OK(ft_plan_make_cfg(q, &cfg, &rec, &po));
    int64_t t_host = ft_plan_max_seq(q, 256, 1 << 20);
    FT_CHECK(t_dev >= 4096 && t_host > t_dev, "70B longest context: %lld on the device, %lld with host boundaries",
             (long long)t_dev, (long long)t_host);
    FT_CHECK(q->pinned_bytes == 79LL * 4096 * 8192 * 2, "70B pinned boundaries %lld", (long long)q->pinned_bytes);
    printf("ok   70B plan: F %.1f GFLOP/token at 4096, %.1f GiB; longest context %lld (host boundaries: %lld)\n",
           p->flops_per_token / 1e9, (double)p->total_bytes / 1073741824.0, (long long)t_dev, (long long)t_host);

    /* the out-of-memory explanation names the plan's figure and a knob */
    char buf[1024];
    ft_plan_oom_explain(p, "activations", 1 << 30, buf, sizeof buf);
    FT_CHECK(strstr(buf, "ftune plan predicted") && strstr(buf, "activations") &&
                 (strstr(buf, "micro_batch") || strstr(buf, "seq_len") || strstr(buf, "host")),
             "explanation: %s", buf);
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 1));
    ft_backend_set_oom_explain(be, ft_plan_oom_explain, p);
    void *x = NULL;
    ft_status st = ft_backend_alloc(be, &x, (int64_t)1 << 60, "activations");
    FT_CHECK(st == FT_E_OOM && strstr(ft_error_msg(), "for activations") && strstr(ft_error_msg(), "ftune plan predicted"),
             "OOM message: %s", ft_error_msg());
    printf("ok   out of memory: %s\n", ft_error_msg());
    ft_backend_free(be);
    free(q);
    free(p);
    ft_recipe_free(&rec);
}

/* The backend's memory limit (recipe model.memory_gib) and the plan `ftune train` and bench make on
 * their backend (ft_plan_for_backend): past the limit an allocation fails as on a full device, with
 * the plan's explanation, and mem_info reports the limit. */
static void check_memory_limit(void) {
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 1));
    const int64_t mib = 1 << 20;
    ft_backend_set_memory_limit(be, 2 * mib);
    FT_CHECK(ft_backend_memory_limit(be) == 2 * mib, "limit %lld", (long long)ft_backend_memory_limit(be));
    void *a = NULL, *b = NULL, *c = NULL;
    FT_CHECK_OK(ft_backend_alloc(be, &a, mib, "first"));
    int64_t fr = 0, tot = 0;
    FT_CHECK_OK(ft_backend_mem_info(be, &fr, &tot));
    FT_CHECK(tot == 2 * mib && fr == mib, "mem_info under a limit: free %lld, total %lld", (long long)fr, (long long)tot);
    ft_status st = ft_backend_alloc(be, &b, mib + 1, "activations");
    FT_CHECK(st == FT_E_OOM && !b && strstr(ft_error_msg(), "for activations") &&
                 strstr(ft_error_msg(), "memory limit of 2.0 MiB"),
             "past the limit: %s", ft_error_msg());
    st = ft_backend_alloc_paged(be, &b, mib + 1, "optimizer state");
    FT_CHECK(st == FT_E_OOM && !b, "paged past the limit: %s", ft_error_msg());
    FT_CHECK(ft_backend_bytes_in_use(be) == mib, "a refused allocation is not accounted");
    FT_CHECK_OK(ft_backend_alloc(be, &b, mib, "up to the limit"));
    ft_backend_release(be, a);
    ft_backend_release(be, b);
    ft_backend_set_memory_limit(be, 0);
    FT_CHECK_OK(ft_backend_alloc(be, &c, 3 * mib, "no limit"));
    ft_backend_release(be, c);

    /* the plan on the backend: the tiny shape's run (~49 MiB) under model.memory_gib 16 MiB */
    ft_model_config cfg;
    FT_CHECK_OK(ft_bench_config(ft_bench_shape_find("tiny"), 0, 0, &cfg));
    const char *sets[] = {"model.path=/x", "model.device=cpu", "lora.r=8", "training.micro_batch=8", "training.steps=1",
                          "data.seq_len=256", "model.memory_gib=0.015625"};
    ft_recipe rec;
    memset(&rec, 0, sizeof rec);
    FT_CHECK_OK(ft_recipe_defaults(&rec, sets, (int)(sizeof sets / sizeof *sets)));
    ft_plan *p = calloc(1, sizeof *p);
    ft_backend_set_memory_limit(be, 16 * mib);
    FT_CHECK_OK(ft_plan_for_backend(p, &cfg, &rec, be, NULL));
    FT_CHECK(p->device_bytes == 16 * mib && p->mem_source && strcmp(p->mem_source, "model.memory_gib") == 0 && !p->fits,
             "plan under model.memory_gib: device %lld, source %s, fits %d, total %lld", (long long)p->device_bytes,
             p->mem_source ? p->mem_source : "(none)", p->fits, (long long)p->total_bytes);
    st = ft_backend_alloc(be, &a, p->total_bytes, "activations");
    const char *msg = ft_error_msg();
    FT_CHECK(st == FT_E_OOM && strstr(msg, "ftune plan predicted") && strstr(msg, "more than the cpu device's 16.0 MiB") &&
                 strstr(msg, "training.micro_batch") && strstr(msg, "raise model.memory_gib"),
             "explanation under model.memory_gib: %s", msg);
    printf("ok   memory limit: %s\n", msg);
    /* without the key: the memory free now, and the hook installed all the same */
    ft_backend_set_memory_limit(be, 0);
    ft_recipe_free(&rec);
    FT_CHECK_OK(ft_recipe_defaults(&rec, sets, (int)(sizeof sets / sizeof *sets) - 1));
    FT_CHECK_OK(ft_plan_for_backend(p, &cfg, &rec, be, NULL));
    FT_CHECK(p->fits && p->mem_source && strstr(p->mem_source, "free"), "plan on free memory: fits %d, source %s", p->fits,
             p->mem_source ? p->mem_source : "(none)");
    st = ft_backend_alloc(be, &a, (int64_t)1 << 60, "LoRA weights");
    FT_CHECK(st == FT_E_OOM && strstr(ft_error_msg(), "ftune plan predicted") && strstr(ft_error_msg(), "10% less"),
             "explanation of a plan that fitted: %s", ft_error_msg());
    ft_backend_set_oom_explain(be, NULL, NULL);
    ft_backend_free(be);
    ft_recipe_free(&rec);
    free(p);
}

static void check_clip_and_phases(void) {
    ft_backend *be = NULL;
    FT_CHECK_OK(ft_backend_cpu_create(&be, 1));
    float *sc = NULL, *ss = NULL;
    FT_CHECK_OK(ft_backend_alloc(be, (void **)&sc, 4 * FT_ADAMW_NSCALARS, "scalars"));
    FT_CHECK_OK(ft_backend_alloc(be, (void **)&ss, 4, "sumsq"));
    const float sums[] = {0.0f, 1e-12f, 0.3f, 1.0f, 7.5f, 1e6f, NAN, INFINITY};
    const double clips[] = {0.0, -1.0, 0.3, 1.0, 2.5};
    for (size_t i = 0; i < sizeof sums / sizeof *sums; i++)
        for (size_t j = 0; j < sizeof clips / sizeof *clips; j++) {
            *ss = sums[i];
            FT_CHECK_OK(ft_op_clip_factor(be, sc, ss, clips[j]));
            double g = 1.0, norm = sqrt((double)sums[i]);
            if (clips[j] > 0) {
                double c = clips[j] / (norm + 1e-6);
                if (c < 1.0) g = c;
            }
            float want = (float)g;
            FT_CHECK(memcmp(&sc[FT_ADAMW_GSCALE], &want, 4) == 0, "clip factor of sumsq %g, clip %g: %.9g, want %.9g",
                     sums[i], clips[j], sc[FT_ADAMW_GSCALE], want);
        }
    /* phases: ops attributed, a forced phase wins, the sum is the region */
    double ms[FT_PHASE_COUNT] = {0};
    FT_CHECK_OK(ft_backend_timing_start(be));
    FT_CHECK_OK(ft_op_sumsq(be, ss, sc, FT_ADAMW_NSCALARS));
    ft_backend_phase_begin(be, FT_PHASE_XENT);
    FT_CHECK_OK(ft_op_scale(be, sc, FT_ADAMW_NSCALARS, 1.0f));
    ft_backend_phase_end(be);
    FT_CHECK_OK(ft_backend_timing_stop(be, ms));
    FT_CHECK(ms[FT_PHASE_OPTIMIZER] > 0 && ms[FT_PHASE_XENT] > 0 && ms[FT_PHASE_GEMM] == 0, "phases %g %g %g",
             ms[FT_PHASE_OPTIMIZER], ms[FT_PHASE_XENT], ms[FT_PHASE_GEMM]);
    FT_CHECK(ft_backend_timing_stop(be, ms) == FT_E_INTERNAL, "stop without start");
    FT_CHECK(strcmp(ft_phase_name(FT_PHASE_DEQUANT), "dequant") == 0, "phase names");
    /* paged and host memory on the CPU backend: plain memory, accounted */
    void *pg = NULL, *hm = NULL;
    int64_t before = ft_backend_bytes_in_use(be);
    FT_CHECK_OK(ft_backend_alloc_paged(be, &pg, 1000, "paged"));
    FT_CHECK_OK(ft_backend_alloc_host(be, &hm, 500, "host"));
    FT_CHECK(ft_backend_bytes_in_use(be) == before + 1000 && ft_backend_host_bytes(be) == 500 &&
                 ft_backend_bytes_paged(be) == 0, "accounting");
    int64_t t = -1;
    memset(pg, 7, 500);
    FT_CHECK_OK(ft_backend_copy_async(be, hm, pg, 500, &t));
    FT_CHECK_OK(ft_backend_copy_wait(be, t));
    FT_CHECK(((unsigned char *)hm)[499] == 7, "async copy");
    FT_CHECK_OK(ft_backend_prefetch(be, pg, 1000));
    ft_backend_release_host(be, hm);
    ft_backend_release(be, pg);
    FT_CHECK(ft_backend_bytes_in_use(be) == before && ft_backend_host_bytes(be) == 0, "released");
    ft_backend_release(be, sc);
    ft_backend_release(be, ss);
    ft_backend_free(be);
}

static void check_cli(void) {
    char cmd[8192], *out = NULL, path[4200];
    const char *tmp = ft_test_tmpdir();
    snprintf(path, sizeof path, "%s/bench.json", tmp);
    snprintf(cmd, sizeof cmd, "%s bench --device cpu --threads 2 --shape tiny --seq 16 --micro-batch 2 --steps 3 --check --json %s",
             ft_test_binary(), path);
    int rc = ft_test_run(cmd, &out);
    FT_CHECK(rc == 0 && out && strstr(out, "tokens/s") && strstr(out, "peak memory") && strstr(out, "falling"),
             "bench --check: rc %d\n%s", rc, out ? out : "");
    free(out);
    char *js = NULL;
    FT_CHECK_OK(ft_test_read_file(path, &js, NULL));
    FT_CHECK(js && strstr(js, "\"tokens_per_s\"") && strstr(js, "\"phase_ms\"") && strstr(js, "\"loss_fell\":\ttrue"),
             "json: %s", js ? js : "");
    free(js);
    snprintf(cmd, sizeof cmd, "%s bench --device cpu --shape nosuch", ft_test_binary());
    rc = ft_test_run(cmd, &out);
    FT_CHECK(rc == 2 && out && strstr(out, "unknown shape"), "unknown shape: rc %d %s", rc, out ? out : "");
    free(out);
    /* a sharded random checkpoint, loaded and compared (CPU against CPU here; cuda on a GPU) */
    snprintf(path, sizeof path, "%s/ckpt", tmp);
    snprintf(cmd, sizeof cmd, "%s bench --write-checkpoint %s --shape tiny --vocab 320 --shards 3", ft_test_binary(), path);
    rc = ft_test_run(cmd, &out);
    FT_CHECK(rc == 0, "write-checkpoint: rc %d %s", rc, out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "%s bench --load %s --device cpu --threads 2 --compare-cpu", ft_test_binary(), path);
    rc = ft_test_run(cmd, &out);
    FT_CHECK(rc == 0 && out && strstr(out, "differ (NF4 codes, constants and offsets identical)") &&
                 strstr(out, "second read"),
             "load: rc %d %s", rc, out ? out : "");
    free(out);
}

int main(void) {
    check_clip_and_phases();
    check_memory_limit();
    check_shapes();
    check_tiny();
    check_cli();
    return ft_test_finish();
}
