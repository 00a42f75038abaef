/* bench.c: see bench.h. The plan (trainer/plan.h) is made first, from the same config, recipe
 * values and backend the run uses: it gives F per token, the memory prediction the run is checked
 * against, the longest sequence for --seq max, and the out-of-memory explanation installed on the
 * backend (ft_plan_for_backend, as `ftune train` does). The model is then created and filled at random
 * (ft_weight_init_random), LoRA and AdamW are created as a training run does, and every step is
 * trainer/train.h's ft_train_step between ft_backend_timing_start and _stop. */
#include "trainer/bench.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/fileio.h"
#include "kernels/log.h"
#include "kernels/mem.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "optim/adamw.h"
#include "trainer/loader.h"
#include "trainer/plan.h"
#include "trainer/recipe.h"
#include "trainer/train.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

/* config.json values of the released models (docs: shared/docs/peers.md section 3.1) */
static const ft_bench_shape ft_shapes[] = {
    {"llama-3-70b", "LlamaForCausalLM", 8192, 28672, 80, 64, 8, 128, 128256, 500000.0, 1, 1e-5},
    {"llama-3-8b", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128, 128256, 500000.0, 1, 1e-5},
    {"qwen3-32b", "Qwen3ForCausalLM", 5120, 25600, 64, 64, 8, 128, 151936, 1000000.0, 0, 1e-6},
    {"qwen3-14b", "Qwen3ForCausalLM", 5120, 17408, 40, 40, 8, 128, 151936, 1000000.0, 0, 1e-6},
    {"mistral-small-24b", "MistralForCausalLM", 5120, 32768, 40, 32, 8, 128, 131072, 100000000.0, 0, 1e-5},
    {"tiny", "LlamaForCausalLM", 128, 384, 2, 4, 2, 32, 512, 10000.0, 0, 1e-5},
    /* head_dim 128 and q/k-norm at a tiny width: the tensor-core attention inside a training step,
     * small enough to compare the CUDA and CPU backends step by step (tests/gpu/run.sh e2e) */
    {"tiny-d128", "Qwen3ForCausalLM", 256, 512, 2, 4, 2, 128, 512, 1000000.0, 0, 1e-6},
};

const ft_bench_shape *ft_bench_shape_find(const char *name) {
    for (size_t i = 0; i < sizeof ft_shapes / sizeof *ft_shapes; i++)
        if (strcmp(ft_shapes[i].name, name) == 0) return &ft_shapes[i];
    return NULL;
}

const char *ft_bench_shape_list(void) {
    return "llama-3-70b, llama-3-8b, qwen3-32b, qwen3-14b, mistral-small-24b, tiny, tiny-d128";
}

void ft_bench_config_json(const ft_bench_shape *s, int64_t layers, int64_t vocab, char *json, size_t cap) {
    char extra[512] = "";
    int64_t L = layers > 0 ? layers : s->L, V = vocab > 0 ? vocab : s->V;
    if (s->llama3_rope)
        snprintf(extra, sizeof extra, "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                                      "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}, ");
    if (strcmp(s->arch, "MistralForCausalLM") == 0) snprintf(extra, sizeof extra, "\"sliding_window\": null, ");
    snprintf(json, cap,
             "{\"architectures\": [\"%s\"], \"hidden_size\": %lld, \"intermediate_size\": %lld, "
             "\"num_hidden_layers\": %lld, \"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, "
             "\"head_dim\": %lld, \"vocab_size\": %lld, \"rms_norm_eps\": %g, \"rope_theta\": %.1f, %s"
             "\"max_position_embeddings\": 131072, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, "
             "\"torch_dtype\": \"bfloat16\"}",
             s->arch, (long long)s->C, (long long)s->F, (long long)L, (long long)s->H, (long long)s->Hkv,
             (long long)s->D, (long long)V, s->eps, s->theta, extra);
}

ft_status ft_bench_config(const ft_bench_shape *s, int64_t layers, int64_t vocab, ft_model_config *cfg) {
    char json[2048], name[96];
    ft_bench_config_json(s, layers, vocab, json, sizeof json);
    snprintf(name, sizeof name, "bench shape %s", s->name);
    return ft_cfg_parse(cfg, json, (int64_t)strlen(json), name);
}

static double ft_bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the random model -------------------------------------------------------------------------- */

/* An IQ4_NL / IQ4_XS linear, which ftune decodes but cannot encode (ft_weight_init_random refuses it):
 * random blocks, every level index and IQ4_XS sub-block scale drawn uniformly, with the fp16 d that
 * gives the values a standard deviation of about 0.02 (the levels' rms is 67.4; a uniform 6-bit scale
 * less 32 has rms 18.5). Blocks are drawn 8 bytes at a time and uploaded as a GGUF file's are. */
static ft_status ft_bench_iq4(ft_backend *be, ft_weight *w, uint64_t seed) {
    const int64_t nbytes = ft_dtype_nbytes(w->dtype, ft_weight_numel(w)), bb = ft_dtype_block_bytes(w->dtype);
    const uint16_t d = ft_f32_to_f16(w->dtype == FT_IQ4_XS ? 0.02f / (67.4f * 18.5f) : 0.02f / 67.4f);
    uint8_t *b = NULL;
    FT_TRY(ft_malloc((void **)&b, (size_t)(nbytes > 0 ? nbytes : 1), "random IQ4 blocks"));
    for (int64_t i = 0; i < nbytes; i += 8) {
        const uint64_t r = ft_mix64(seed ^ ft_mix64((uint64_t)i));
        memcpy(b + i, &r, (size_t)(nbytes - i < 8 ? nbytes - i : 8));
    }
    for (int64_t i = 0; i < nbytes; i += bb) memcpy(b + i, &d, 2);
    const ft_status st = ft_weight_set(be, w, b, w->dtype);
    ft_free(b);
    return st;
}

/* Every frozen weight at random: linears, embeddings and lm_head uniform with standard deviation
 * 0.02 (transformers' initializer_range), norms 1. Each tensor its own seed. */
static ft_status ft_bench_init(ft_backend *be, ft_model *m, uint64_t seed) {
    ft_model_weights *w = ft_model_get_weights(m);
    const ft_model_dims *d = ft_model_get_dims(m);
    const float s = 0.02f * 1.7320508f; /* half-width of a uniform of std 0.02 */
    uint64_t k = 0;
#define FT_INIT(wt, mean, scale) \
    do { if ((wt)->rows) FT_TRY(ft_weight_init_random(be, (wt), ft_mix64(seed ^ ft_mix64(++k)), (mean), (scale))); } while (0)
    FT_INIT(&w->embed, 0.0f, s);
    FT_INIT(&w->final_norm, 1.0f, 0.0f);
    if (!d->tied) FT_INIT(&w->lm_head, 0.0f, s);
    for (int64_t l = 0; l < d->L; l++) {
        ft_layer_weights *lw = &w->layers[l];
        FT_INIT(&lw->attn_norm, 1.0f, 0.0f);
        FT_INIT(&lw->ffn_norm, 1.0f, 0.0f);
        for (int mod = 0; mod < FT_MOD_COUNT; mod++) {
            ft_weight *lin = &lw->lin[mod];
            if (lin->rows && (lin->dtype == FT_IQ4_NL || lin->dtype == FT_IQ4_XS))
                FT_TRY(ft_bench_iq4(be, lin, ft_mix64(seed ^ ft_mix64(++k))));
            else
                FT_INIT(lin, 0.0f, s);
        }
        FT_INIT(&lw->q_bias, 0.0f, s);
        FT_INIT(&lw->k_bias, 0.0f, s);
        FT_INIT(&lw->v_bias, 0.0f, s);
        FT_INIT(&lw->o_bias, 0.0f, s);
        FT_INIT(&lw->q_norm, 1.0f, 0.0f);
        FT_INIT(&lw->k_norm, 1.0f, 0.0f);
    }
#undef FT_INIT
    return ft_backend_sync(be); /* ends the streaming session: the weights are complete */
}

/* ---- data: the same random micro-batches every step --------------------------------------------- */

typedef struct ft_bench_data {
    int64_t B, T, V;
    int64_t doc_len;          /* > 0: rows packed with documents of this many tokens (the last one shorter) */
    uint64_t seed;
    int32_t *tokens, *labels; /* [B*T] of the micro-batch last made */
    int32_t *pos, *doc_start; /* [B*T] with doc_len (the same every step), else NULL */
} ft_bench_data;

static ft_status ft_bench_get(void *user, int64_t k, ft_batch *out) {
    ft_bench_data *D = user;
    const int64_t N = D->B * D->T;
    for (int64_t i = 0; i < N; i++)
        D->tokens[i] = (int32_t)(ft_mix64(D->seed ^ ft_mix64((uint64_t)(k * N + i))) % (uint64_t)D->V);
    for (int64_t i = 0; i < N; i++) {
        /* as the packer labels: within a document only (its last token has none) */
        const int64_t t = i % D->T, next = D->doc_len > 0 ? (t / D->doc_len + 1) * D->doc_len : D->T;
        const int64_t end = next < D->T ? next : D->T;
        D->labels[i] = t + 1 < end ? D->tokens[i + 1] : -100;
        if (D->doc_len > 0) D->doc_start[i] = (int32_t)(t / D->doc_len * D->doc_len), D->pos[i] = (int32_t)(t % D->doc_len);
    }
    memset(out, 0, sizeof *out);
    out->B = D->B, out->T = D->T, out->tokens = D->tokens, out->labels = D->labels;
    out->pos = D->pos, out->doc_start = D->doc_start;
    return FT_OK;
}

/* S of the attention's FLOPs (plan.h) for rows of T tokens in documents of doc_len: sum(l^2) / T. */
static double ft_bench_attn_len(int64_t T, int64_t doc_len) {
    if (doc_len <= 0 || doc_len >= T) return 0.0; /* the plan's own: T */
    const double q = (double)(T / doc_len), r = (double)(T % doc_len), l = (double)doc_len;
    return (q * l * l + r * r) / (double)T;
}

/* ---- peak GEMM ----------------------------------------------------------------------------------- */

/* y[n,n] = x[n,n] W[n,n]^T through ft_op_linear with a weight the backend multiplies in place (BF16
 * on CUDA: one cuBLASLt call; F32 on CPU: one sgemm), reps times after two warm-ups. */
static ft_status ft_bench_peak(ft_backend *be, int64_t n, int64_t reps, double *tflops) {
    const ft_dtype act = ft_backend_act_dtype(be), wt = ft_backend_kind_of(be) == FT_BACKEND_CUDA ? FT_BF16 : FT_F32;
    ft_weight W, X;
    void *y = NULL;
    memset(&W, 0, sizeof W);
    memset(&X, 0, sizeof X);
    ft_status st;
    FT_CHECK_GOTO(st, ft_weight_alloc(be, &W, wt, n, n, "peak GEMM weight"), done);
    FT_CHECK_GOTO(st, ft_weight_alloc(be, &X, act, n, n, "peak GEMM input"), done);
    FT_CHECK_GOTO(st, ft_backend_alloc(be, &y, ft_dtype_nbytes(act, n * n), "peak GEMM output"), done);
    FT_CHECK_GOTO(st, ft_weight_init_random(be, &W, 11, 0.0f, 1.0f), done); /* random, never zeros */
    FT_CHECK_GOTO(st, ft_weight_init_random(be, &X, 12, 0.0f, 1.0f), done);
    for (int i = 0; i < 2; i++) FT_CHECK_GOTO(st, ft_op_linear(be, y, X.data, &W, NULL, n, 0), done);
    FT_CHECK_GOTO(st, ft_backend_sync(be), done);
    double t0 = ft_bench_now();
    for (int64_t i = 0; i < reps; i++) FT_CHECK_GOTO(st, ft_op_linear(be, y, X.data, &W, NULL, n, 0), done);
    FT_CHECK_GOTO(st, ft_backend_sync(be), done);
    double dt = ft_bench_now() - t0;
    *tflops = 2.0 * (double)n * (double)n * (double)n * (double)reps / dt / 1e12;
done:
    ft_backend_release(be, y);
    ft_weight_release(be, &X);
    ft_weight_release(be, &W);
    return st;
}

/* ---- the run --------------------------------------------------------------------------------------- */

static void ft_bench_plan_sets(const ft_bench_opts *o, const char *device, int64_t T, char (*buf)[96], const char **sets,
                               int *n) {
    int k = 0;
    snprintf(buf[k], 96, "model.path=/nonexistent/ftune-bench"), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "model.quant=%s", strcmp(o->quant, "none") == 0 ? "none" : "nf4"), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "model.device=%s", device), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "model.threads=%d", o->threads), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "lora.r=%lld", (long long)o->lora_r), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "lora.dropout=%g", o->lora_dropout), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "lora.dora=%s", o->dora ? "true" : "false"), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "lora.targets=%s", o->targets), sets[k] = buf[k], k++;
    /* random rows, one document each; or packed with --doc-len (the plan then counts their attention
     * and no cuDNN workspace: the backend runs packed rows through its own kernels) */
    snprintf(buf[k], 96, "data.packing=%s", o->doc_len > 0 && o->doc_len < T ? "bfd" : "none"), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.micro_batch=%lld", (long long)o->micro_batch), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.grad_accum=%lld", (long long)o->grad_accum), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.steps=%lld", (long long)o->steps), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.recompute=%s", o->recompute ? "true" : "false"), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.host_boundaries=%s", o->host_boundaries ? "true" : "false"), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.keep_attention=%s", o->keep_attention ? "true" : "false"), sets[k] = buf[k], k++;
    if (o->keep_layers < 0) snprintf(buf[k], 96, "training.keep_layers=max");
    else snprintf(buf[k], 96, "training.keep_layers=%lld", (long long)o->keep_layers);
    sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.mlp_chunk=%lld", (long long)o->mlp_chunk), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "training.boundary_every=%lld", (long long)o->boundary_every), sets[k] = buf[k], k++;
    snprintf(buf[k], 96, "data.seq_len=%lld", (long long)T), sets[k] = buf[k], k++;
    *n = k;
}

/* The plan of the bench's run at sequence length T on be, the same way `ftune train` plans its run
 * (ft_plan_for_backend), which also installs the out-of-memory explanation. */
static ft_status ft_bench_make_plan(const ft_bench_opts *o, const ft_model_config *cfg, ft_backend *be, int64_t T,
                                    ft_plan *p) {
    char buf[24][96];
    const char *sets[24];
    int n = 0;
    ft_recipe rec;
    memset(&rec, 0, sizeof rec);
    ft_bench_plan_sets(o, ft_backend_kind_of(be) == FT_BACKEND_CUDA ? "cuda" : "cpu", T, buf, sets, &n);
    FT_TRY(ft_recipe_defaults(&rec, sets, n));
    memset(p, 0, sizeof *p);
    snprintf(p->config_path, sizeof p->config_path, "(bench shape %s)", o->shape);
    const int ggml = strcmp(o->quant, "nf4") != 0 && strcmp(o->quant, "none") != 0; /* a GGUF base's block type */
    ft_plan_opts more = {.attn_len = ft_bench_attn_len(T, o->doc_len), .linear_type = ggml ? o->quant : NULL};
    ft_status st = ft_plan_for_backend(p, cfg, &rec, be, &more);
    ft_recipe_free(&rec);
    return st;
}

/* The plan's time parts as the bench's phases, per optimizer step of K micro-batches. The plan
 * counts the LoRA products' FLOPs in its GEMM part (0.4% of them at rank 16) and their traffic
 * in its LoRA part; the bench times the LoRA products, dropout included, as "lora". */
static void ft_bench_plan_times(const ft_plan *p, int64_t K, ft_bench_result *r) {
    static const ft_phase of[FT_PLAN_NTIMES] = {
        [FT_PLAN_T_GEMM] = FT_PHASE_GEMM,           [FT_PLAN_T_ATTENTION] = FT_PHASE_ATTENTION,
        [FT_PLAN_T_DEQUANT] = FT_PHASE_DEQUANT,     [FT_PLAN_T_ELEMENTWISE] = FT_PHASE_ELEMENTWISE,
        [FT_PLAN_T_LORA] = FT_PHASE_LORA,           [FT_PLAN_T_XENT] = FT_PHASE_XENT,
        [FT_PLAN_T_OPTIM] = FT_PHASE_OPTIMIZER};
    memset(r->plan_phase_ms, 0, sizeof r->plan_phase_ms);
    for (int i = 0; i < FT_PLAN_NTIMES; i++)
        r->plan_phase_ms[of[i]] += 1e3 * p->time[i].s * (i == FT_PLAN_T_OPTIM ? 1.0 : (double)K);
    r->plan_tokens_per_s = p->tokens_per_s;
    snprintf(r->plan_device, sizeof r->plan_device, "%s", p->dev.name);
}

static void ft_bench_say(const ft_bench_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ft_bench_say(const ft_bench_opts *o, const char *fmt, ...) {
    if (!o->out) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->out, fmt, ap);
    va_end(ap);
    fflush(o->out);
}

void ft_bench_result_free(ft_bench_result *r) {
    free(r->steps);
    r->steps = NULL;
}

ft_status ft_bench_run(const ft_bench_opts *o, ft_bench_result *r) {
    memset(r, 0, sizeof *r);
    const ft_bench_shape *shape = ft_bench_shape_find(o->shape);
    if (!shape) return FT_ERR(FT_E_ARG, "bench: unknown shape '%s' (expected %s)", o->shape, ft_bench_shape_list());
    if (o->micro_batch < 1 || o->grad_accum < 1 || o->steps < 1 || o->lora_r < 1 || (o->seq != 0 && o->seq < 2))
        return FT_ERR(FT_E_ARG, "bench: need --micro-batch, --grad-accum, --steps, --lora-r >= 1 and --seq >= 2");
    if (!(o->lora_dropout >= 0.0 && o->lora_dropout < 1.0))
        return FT_ERR(FT_E_ARG, "bench: --dropout %g out of [0, 1)", o->lora_dropout);
    /* a released model's shape keeps at most its layers; the tiny shapes (no model of their own) may
     * have any number, e.g. enough for the weight cache's order across kept layers to show */
    const int tiny = strncmp(shape->name, "tiny", 4) == 0;
    if (o->layers < 0 || (!tiny && o->layers > shape->L))
        return FT_ERR(FT_E_ARG, "bench: --layers %lld: %s has %lld layers", (long long)o->layers, shape->name,
                      (long long)shape->L);
    if (o->keep_layers > (o->layers > 0 ? o->layers : shape->L))
        return FT_ERR(FT_E_ARG, "bench: --keep-layers %lld: the run has %lld layers", (long long)o->keep_layers,
                      (long long)(o->layers > 0 ? o->layers : shape->L));
    ft_model_config cfg;
    FT_TRY(ft_bench_config(shape, o->layers, o->vocab, &cfg));

    ft_backend *be = NULL;
    ft_plan *plan = NULL;
    ft_model *m = NULL;
    ft_lora *lora = NULL;
    ft_adamw *opt = NULL;
    ft_bench_data data = {0};
    ft_status st;
    FT_CHECK_GOTO(st, ft_backend_open(&be, o->device, o->threads), done);
    const int cuda = ft_backend_kind_of(be) == FT_BACKEND_CUDA;
    int64_t dev_free = 0, dev_total = 0;
    FT_CHECK_GOTO(st, ft_backend_mem_info(be, &dev_free, &dev_total), done);
    /* the device in use before the run: the context, not what the backend allocated when it opened
     * (cuBLAS workspace, tables), which the plan counts */
    const int64_t dev_used_open = dev_total - dev_free - ft_backend_bytes_in_use(be);
    plan = calloc(1, sizeof *plan);
    if (!plan) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto done;
    }
    int64_t T = o->seq;
    if (T == 0) { /* the longest sequence that fits */
        FT_CHECK_GOTO(st, ft_bench_make_plan(o, &cfg, be, 256, plan), done);
        T = ft_plan_max_seq(plan, 256, 1 << 20);
        if (plan->host_boundaries && plan->dims.L > 1) { /* and the pinned boundaries in half the RAM */
            const long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
            const double per_token = (double)(plan->dims.L - 1) * (double)plan->dims.C *
                                     (double)ft_dtype_nbytes(plan->act_dtype, 1) * (double)o->micro_batch;
            const int64_t t_ram = (int64_t)(0.5 * (double)pages * (double)psize / per_token) / 256 * 256;
            if (pages > 0 && psize > 0 && t_ram < T) T = t_ram;
        }
        if (T < 256) {
            char have[48];
            ft_plan_format_bytes(plan->device_bytes, have, sizeof have);
            st = FT_ERR(FT_E_OOM, "bench: not even --seq 256 fits in %s: %s", have, plan->advice);
            goto done;
        }
    }
    FT_CHECK_GOTO(st, ft_bench_make_plan(o, &cfg, be, T, plan), done);
    r->keep_layers = plan->keep_layers; /* --keep-layers max: what the plan found room for */
    r->mlp_chunk = plan->mlp_chunk;
    r->boundary_every = plan->boundary_every;
    snprintf(r->shape, sizeof r->shape, "%s", shape->name);
    snprintf(r->linear_dtype, sizeof r->linear_dtype, "%s", ft_dtype_name(plan->linear_dtype));
    r->layers = plan->dims.L, r->T = T, r->B = o->micro_batch, r->K = o->grad_accum;
    r->doc_len = o->doc_len > 0 && o->doc_len < T ? o->doc_len : 0, r->attn_len = plan->attn_len;
    r->lora_r = o->lora_r, r->lora_dropout = o->lora_dropout, r->dora = o->dora;
    r->tokens_per_step = r->B * r->K * T;
    char b1[48], b2[48];
    ft_plan_format_bytes(plan->backend_bytes, b1, sizeof b1);
    ft_plan_format_bytes(dev_total, b2, sizeof b2);
    ft_bench_say(o, "bench %s: %lld %s %lld layers, C %lld, F %lld, H %lld/%lld x %lld, V %lld, %s linears, LoRA r %lld on "
                    "%s%s, dropout %g\n", shape->name, (long long)plan->dims.L, plan->dims.L <= shape->L ? "of" : "instead of",
                 (long long)shape->L, (long long)plan->dims.C,
                 (long long)plan->dims.F, (long long)plan->dims.H, (long long)plan->dims.Hkv, (long long)plan->dims.D,
                 (long long)plan->dims.V, ft_dtype_name(plan->linear_dtype), (long long)o->lora_r, o->targets,
                 o->dora ? " (DoRA)" : "", o->lora_dropout);
    ft_bench_say(o, "  seq %lld%s x micro-batch %lld x grad-accum %lld = %lld tokens per step, recompute %s%s, %lld steps, "
                    "device %s (%s total)\n", (long long)T, o->seq == 0 ? " (longest that fits)" : "",
                 (long long)o->micro_batch, (long long)o->grad_accum, (long long)r->tokens_per_step,
                 o->recompute ? "on" : "off",
                 plan->host_boundaries ? ", boundaries in host memory"
                 : plan->keep_attention ? ", attention outputs kept" : "",
                 (long long)o->steps, ft_backend_name(be), b2);
    if (r->doc_len > 0)
        ft_bench_say(o, "  rows packed with %lld-token documents: attention within each (S = %.0f; on CUDA ftune's kernels)\n",
                     (long long)r->doc_len, plan->attn_len);
    if (plan->keep_layers > 0)
        ft_bench_say(o, "  %lld of %lld layers kept, not recomputed (training.keep_layers%s)\n",
                     (long long)plan->keep_layers, (long long)plan->dims.L, o->keep_layers < 0 ? ", max" : "");
    if (plan->mlp_chunk > 0)
        ft_bench_say(o, "  the MLP over %lld tokens at a time (training.mlp_chunk)\n",
                     (long long)ft_model_mlp_rows(&(ft_model_opts){.recompute = 1, .mlp_chunk = plan->mlp_chunk},
                                                  o->micro_batch * T));
    if (plan->boundary_every > 1)
        ft_bench_say(o, "  the input of one layer in %lld kept, the others recomputed per segment (training.boundary_every)\n",
                     (long long)plan->boundary_every);
    ft_bench_say(o, "  plan: %s of backend memory, F %.4g GFLOP per token\n", b1, plan->flops_per_token / 1e9);

    /* the model, at random, directly in its storage dtype */
    double t0 = ft_bench_now();
    ft_model_opts mo = {.recompute = o->recompute, .host_boundaries = o->host_boundaries,
                        .keep_attention = o->keep_attention, .keep_layers = plan->keep_layers,
                        .mlp_chunk = plan->mlp_chunk, .boundary_every = plan->boundary_every};
    FT_CHECK_GOTO(st, ft_model_create(&m, be, &plan->dims, plan->linear_dtype, plan->other_dtype, &mo), done);
    FT_CHECK_GOTO(st, ft_bench_init(be, m, o->seed), done);
    r->init_s = ft_bench_now() - t0;
    ft_bench_say(o, "  random model made on %s in %.2f s (%.2f GiB of weights)\n", ft_backend_name(be), r->init_s,
                 (double)ft_backend_bytes_in_use(be) / GIB);

    ft_lora_cfg lc = {.r = o->lora_r, .alpha = 2.0 * (double)o->lora_r, .dropout = o->lora_dropout, .seed = o->seed,
                      .dora = o->dora};
    FT_CHECK_GOTO(st, ft_lora_parse_targets(o->targets, &lc.targets), done);
    ft_lora_shapes shapes = ft_model_lora_shapes(&plan->dims);
    FT_CHECK_GOTO(st, ft_lora_create(&lora, be, &lc, &shapes, plan->dims.L), done);
    ft_model_set_lora(m, lora);
    ft_adamw_cfg ac = {0.9, 0.999, 1e-8, 0.0, 1.0};
    FT_CHECK_GOTO(st, ft_adamw_create(&opt, be, lora->n_params, &ac), done);
    ft_schedule sched = {.type = FT_SCHED_CONSTANT, .lr = o->lr, .total = o->steps};
    ft_step_ctx ctx = {.m = m, .lora = lora, .opt = opt, .sched = &sched, .grad_accum = o->grad_accum,
                       .seed = o->seed};
    data.B = o->micro_batch, data.T = T, data.V = plan->dims.V, data.seed = o->seed ^ 0xda7aull;
    data.doc_len = o->doc_len > 0 && o->doc_len < T ? o->doc_len : 0;
    FT_CHECK_GOTO(st, ft_malloc((void **)&data.tokens, (size_t)(data.B * T) * 4, "bench tokens"), done);
    FT_CHECK_GOTO(st, ft_malloc((void **)&data.labels, (size_t)(data.B * T) * 4, "bench labels"), done);
    if (data.doc_len > 0) {
        FT_CHECK_GOTO(st, ft_malloc((void **)&data.pos, (size_t)(data.B * T) * 4, "bench positions"), done);
        FT_CHECK_GOTO(st, ft_malloc((void **)&data.doc_start, (size_t)(data.B * T) * 4, "bench doc_start"), done);
    }
    r->steps = calloc((size_t)o->steps, sizeof *r->steps);
    if (!r->steps) {
        st = FT_ERR(FT_E_OOM, "out of memory");
        goto done;
    }

    ft_bench_say(o, "  step        loss   grad_norm      time  tokens/s\n");
    for (int64_t s = 0; s < o->steps; s++) {
        ft_bench_step *bs = &r->steps[s];
        ft_step_info info;
        ft_backend_dequant_counts(be, &r->deq); /* restarts the counts */
        FT_CHECK_GOTO(st, ft_backend_timing_start(be), done);
        FT_CHECK_GOTO(st, ft_train_step(&ctx, s, ft_bench_get, &data, NULL, NULL, &info), done);
        FT_CHECK_GOTO(st, ft_backend_timing_stop(be, bs->phase_ms), done);
        ft_backend_dequant_counts(be, &r->deq); /* this step's */
        bs->loss = info.loss, bs->grad_norm = info.grad_norm, bs->seconds = info.seconds;
        r->nsteps = s + 1;
        ft_bench_say(o, "  %4lld  %10.5f  %10.4f  %7.3f s  %8.1f%s\n", (long long)s + 1, bs->loss, bs->grad_norm,
                     bs->seconds, (double)r->tokens_per_step / bs->seconds, s == 0 && o->steps > 1 ? "  (warm-up)" : "");
    }
    ft_bench_plan_times(plan, o->grad_accum, r);
    r->mem_peak = ft_backend_bytes_peak(be);
    r->mem_plan = plan->backend_bytes;
    r->mem_ratio = r->mem_plan > 0 ? (double)r->mem_peak / (double)r->mem_plan : 0.0;
    r->host_peak = ft_backend_host_bytes_peak(be);
    r->host_plan = plan->pinned_bytes;
    r->paged = ft_backend_bytes_paged(be);
    FT_CHECK_GOTO(st, ft_backend_mem_info(be, &dev_free, &dev_total), done);
    r->dev_delta = cuda ? (dev_total - dev_free) - dev_used_open : 0;
    r->mem_plan_train = plan->train_bytes - plan->host_bytes;
    r->dev_used = dev_total - dev_free, r->dev_total = dev_total;

    /* steady state: every step after the first */
    const int64_t first = r->nsteps > 1 ? 1 : 0, nt = r->nsteps - first;
    double secs = 0;
    for (int64_t s = first; s < r->nsteps; s++) {
        secs += r->steps[s].seconds;
        for (int p = 0; p < FT_PHASE_COUNT; p++) r->phase_ms[p] += r->steps[s].phase_ms[p] / (double)nt;
    }
    r->step_s = secs / (double)nt;
    r->tokens_per_s = (double)(r->tokens_per_step * nt) / secs;
    r->flops_per_token = plan->flops_per_token;
    r->flops_full = plan->flops_full;
    r->achieved_tflops = r->flops_per_token * r->tokens_per_s / 1e12;
    r->loss_finite = 1;
    for (int64_t s = 0; s < r->nsteps; s++) r->loss_finite &= isfinite(r->steps[s].loss) && isfinite(r->steps[s].grad_norm);
    r->loss_fell = r->nsteps > 1 && r->steps[r->nsteps - 1].loss < r->steps[0].loss;

    /* the GEMM peak last, with the model freed (it would not fit beside a 70B model) */
    ft_model_set_lora(m, NULL);
    ft_adamw_free(opt, be), opt = NULL;
    ft_lora_free(lora, be), lora = NULL;
    ft_model_free(m), m = NULL;
    if (o->peak) {
        int64_t n = o->peak_n > 0 ? o->peak_n : cuda ? 8192 : 1024, reps = o->peak_reps > 0 ? o->peak_reps : cuda ? 10 : 3;
        FT_CHECK_GOTO(st, ft_bench_peak(be, n, reps, &r->peak_tflops), done);
        r->mfu = r->achieved_tflops / r->peak_tflops;
        r->mfu_full = r->flops_full * r->tokens_per_s / 1e12 / r->peak_tflops;
        ft_bench_say(o, "  GEMM peak: %lld^3 %s products, %lld reps: %.1f TFLOP/s\n", (long long)n,
                     cuda ? "bf16" : "f32", (long long)reps, r->peak_tflops);
    }

    /* the report */
    ft_bench_say(o, "\nresult (steps %lld-%lld)\n", (long long)first + 1, (long long)r->nsteps);
    ft_bench_say(o, "  tokens/s               %.1f (ftune plan predicts %.1f on %s)\n", r->tokens_per_s,
                 r->plan_tokens_per_s, r->plan_device);
    const double fu = r->flops_per_token >= 1e9 ? 1e9 : 1e6;
    const char *fn = fu == 1e9 ? "GFLOP" : "MFLOP";
    ft_bench_say(o, "  F per token            %.3f %s (ftune plan: %.3f base + %.3f head + %.3f attention + %.3f LoRA",
                 r->flops_per_token / fu, fn, plan->f_base / fu, plan->f_head / fu, plan->f_attn / fu, plan->f_lora / fu);
    if (plan->dora) ft_bench_say(o, " + %.3f DoRA", plan->f_dora / fu);
    ft_bench_say(o, ")\n");
    ft_bench_say(o, "  F x tokens/s           %.2f TFLOP/s", r->achieved_tflops);
    if (r->peak_tflops > 0) ft_bench_say(o, " = %.1f%% of the measured GEMM peak %.1f TFLOP/s", 100.0 * r->mfu, r->peak_tflops);
    ft_bench_say(o, "\n");
    if (r->flops_full != r->flops_per_token) { /* kept layers or no recompute: the full-recompute yardstick too */
        ft_bench_say(o, "  F with full recompute  %.3f %s x tokens/s = %.2f TFLOP/s", r->flops_full / fu, fn,
                     r->flops_full * r->tokens_per_s / 1e12);
        if (r->peak_tflops > 0) ft_bench_say(o, " = %.1f%% of the peak", 100.0 * r->mfu_full);
        ft_bench_say(o, "\n");
    }
    ft_plan_format_bytes(r->mem_peak, b1, sizeof b1);
    ft_plan_format_bytes(r->mem_plan, b2, sizeof b2);
    ft_bench_say(o, "  peak memory            %s accounted, plan %s (%+.1f%%)", b1, b2, 100.0 * (r->mem_ratio - 1.0));
    if (cuda) {
        ft_plan_format_bytes(r->dev_used, b1, sizeof b1);
        ft_plan_format_bytes(r->dev_total, b2, sizeof b2);
        ft_bench_say(o, "; device in use %s of %s (pool and CUDA context included)", b1, b2);
        ft_plan_format_bytes(r->dev_delta, b1, sizeof b1);
        ft_plan_format_bytes(r->mem_plan_train, b2, sizeof b2);
        ft_bench_say(o, "; taken by the run after its steps %s, the plan's training step %s (%+.1f%%)", b1, b2,
                     r->mem_plan_train > 0 ? 100.0 * ((double)r->dev_delta / (double)r->mem_plan_train - 1.0) : 0.0);
    }
    ft_bench_say(o, "\n");
    if (r->host_plan > 0) {
        ft_plan_format_bytes(r->host_peak, b1, sizeof b1);
        ft_plan_format_bytes(r->host_plan, b2, sizeof b2);
        ft_bench_say(o, "  host-kept boundaries   %s pinned, plan %s\n", b1, b2);
    }
    if (r->paged > 0) {
        ft_plan_format_bytes(r->paged, b1, sizeof b1);
        ft_bench_say(o, "  paged (managed)        %s: LoRA weights and optimizer state\n", b1);
    }
    double sum = 0;
    for (int p = 0; p < FT_PHASE_COUNT; p++) sum += r->phase_ms[p];
    ft_bench_say(o, "  time per step          %.1f ms; by phase (%s):\n", 1e3 * r->step_s,
                 cuda ? "CUDA events, dequant timed apart from gemm" : "host clock, dequant inside gemm");
    double psum = 0;
    for (int p = 0; p < FT_PHASE_COUNT; p++) psum += r->plan_phase_ms[p];
    for (int p = 0; p < FT_PHASE_COUNT; p++) {
        ft_bench_say(o, "    %-12s %10.1f ms  %5.1f%%", ft_phase_name((ft_phase)p), r->phase_ms[p],
                     sum > 0 ? 100.0 * r->phase_ms[p] / sum : 0.0);
        if (r->plan_phase_ms[p] > 0) ft_bench_say(o, "   plan %10.1f ms", r->plan_phase_ms[p]);
        ft_bench_say(o, "\n");
    }
    ft_bench_say(o, "    %-12s %10.1f ms          plan %10.1f ms\n", "sum", sum, psum);
    const ft_dequant_counts *q = &r->deq;
    if (q->prefetched + q->on_compute + q->reused > 0)
        ft_bench_say(o, "  weight cache           last step: %lld prefetched (%lld waited for, nothing to hide behind), "
                     "%lld dequantized on the compute stream, %lld reused\n", (long long)q->prefetched,
                     (long long)q->waited, (long long)q->on_compute, (long long)q->reused);
    ft_bench_say(o, "  loss                   %.5f -> %.5f (%s, %s)\n", r->steps[0].loss, r->steps[r->nsteps - 1].loss,
                 r->loss_finite ? "finite" : "NOT FINITE", r->loss_fell ? "falling" : "not falling");
    st = FT_OK;
done:
    if (m) ft_model_set_lora(m, NULL);
    if (be) ft_backend_set_oom_explain(be, NULL, NULL);
    ft_adamw_free(opt, be);
    ft_lora_free(lora, be);
    ft_model_free(m);
    ft_backend_free(be);
    free(data.tokens);
    free(data.labels);
    free(data.pos);
    free(data.doc_start);
    free(plan);
    if (st != FT_OK) ft_bench_result_free(r);
    return st;
}

ft_status ft_bench_write_json(const ft_bench_result *r, const char *path) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return FT_ERR(FT_E_OOM, "out of memory");
    cJSON_AddStringToObject(j, "shape", r->shape);
    cJSON_AddStringToObject(j, "linear_dtype", r->linear_dtype);
    cJSON_AddNumberToObject(j, "layers", (double)r->layers);
    cJSON_AddNumberToObject(j, "keep_layers", (double)r->keep_layers);
    cJSON_AddNumberToObject(j, "mlp_chunk", (double)r->mlp_chunk);
    cJSON_AddNumberToObject(j, "boundary_every", (double)r->boundary_every);
    cJSON_AddNumberToObject(j, "seq", (double)r->T);
    cJSON_AddNumberToObject(j, "doc_len", (double)r->doc_len);
    cJSON_AddNumberToObject(j, "attn_len", r->attn_len);
    cJSON_AddNumberToObject(j, "micro_batch", (double)r->B);
    cJSON_AddNumberToObject(j, "grad_accum", (double)r->K);
    cJSON_AddNumberToObject(j, "lora_r", (double)r->lora_r);
    cJSON_AddNumberToObject(j, "lora_dropout", r->lora_dropout);
    cJSON_AddBoolToObject(j, "dora", r->dora);
    cJSON_AddNumberToObject(j, "tokens_per_step", (double)r->tokens_per_step);
    cJSON_AddNumberToObject(j, "init_s", r->init_s);
    cJSON_AddNumberToObject(j, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(j, "step_s", r->step_s);
    cJSON_AddNumberToObject(j, "flops_per_token", r->flops_per_token);
    cJSON_AddNumberToObject(j, "achieved_tflops", r->achieved_tflops);
    cJSON_AddNumberToObject(j, "peak_tflops", r->peak_tflops);
    cJSON_AddNumberToObject(j, "mfu", r->mfu);
    cJSON_AddNumberToObject(j, "flops_full", r->flops_full);
    cJSON_AddNumberToObject(j, "mfu_full", r->mfu_full);
    cJSON_AddNumberToObject(j, "mem_peak", (double)r->mem_peak);
    cJSON_AddNumberToObject(j, "mem_plan", (double)r->mem_plan);
    cJSON_AddNumberToObject(j, "mem_ratio", r->mem_ratio);
    cJSON_AddNumberToObject(j, "host_peak", (double)r->host_peak);
    cJSON_AddNumberToObject(j, "host_plan", (double)r->host_plan);
    cJSON_AddNumberToObject(j, "paged", (double)r->paged);
    cJSON_AddNumberToObject(j, "dev_used", (double)r->dev_used);
    cJSON_AddNumberToObject(j, "dev_delta", (double)r->dev_delta);
    cJSON_AddNumberToObject(j, "mem_plan_train", (double)r->mem_plan_train);
    cJSON_AddNumberToObject(j, "dev_total", (double)r->dev_total);
    cJSON_AddBoolToObject(j, "loss_finite", r->loss_finite);
    cJSON_AddBoolToObject(j, "loss_fell", r->loss_fell);
    cJSON *dq = cJSON_AddObjectToObject(j, "dequant");
    cJSON_AddNumberToObject(dq, "prefetched", (double)r->deq.prefetched);
    cJSON_AddNumberToObject(dq, "waited", (double)r->deq.waited);
    cJSON_AddNumberToObject(dq, "on_compute", (double)r->deq.on_compute);
    cJSON_AddNumberToObject(dq, "reused", (double)r->deq.reused);
    cJSON *ph = cJSON_AddObjectToObject(j, "phase_ms");
    for (int p = 0; p < FT_PHASE_COUNT; p++) cJSON_AddNumberToObject(ph, ft_phase_name((ft_phase)p), r->phase_ms[p]);
    cJSON *pp = cJSON_AddObjectToObject(j, "plan_phase_ms");
    for (int p = 0; p < FT_PHASE_COUNT; p++) cJSON_AddNumberToObject(pp, ft_phase_name((ft_phase)p), r->plan_phase_ms[p]);
    cJSON_AddNumberToObject(j, "plan_tokens_per_s", r->plan_tokens_per_s);
    cJSON_AddStringToObject(j, "plan_device", r->plan_device);
    cJSON *steps = cJSON_AddArrayToObject(j, "steps");
    for (int64_t s = 0; s < r->nsteps; s++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "loss", r->steps[s].loss);
        cJSON_AddNumberToObject(e, "grad_norm", r->steps[s].grad_norm);
        cJSON_AddNumberToObject(e, "seconds", r->steps[s].seconds);
        cJSON_AddItemToArray(steps, e);
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return FT_ERR(FT_E_OOM, "out of memory");
    ft_afile af;
    ft_status st = ft_afile_open(&af, path);
    if (st == FT_OK) {
        st = ft_afile_write(&af, txt, (int64_t)strlen(txt));
        if (st == FT_OK) st = ft_afile_commit(&af);
        else ft_afile_abort(&af);
    }
    free(txt);
    return st;
}
