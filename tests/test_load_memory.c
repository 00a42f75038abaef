/* test_load_memory.c: streaming NF4 load never holds the 16-bit model. Writes a synthetic
 * multi-shard bf16 Llama checkpoint of about 1 GB, then loads it with NF4 in a forked child and
 * checks the child's peak RSS stays under (resident model size) + (largest tensor) + 200 MB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export/safetensors_write.h"
#include "kernels/mem.h"
#include "kernels/rng.h"
#include "tests/harness.h"
#include "trainer/loader.h"

enum { C = 2048, F = 5632, L = 8, V = 32000, H = 16 };

/* Deterministic pseudo-random bf16 values ~ U(-0.05, 0.05). */
static ft_status ft_fill_bf16(void *user, void *dst, int64_t offset, int64_t nbytes) {
    uint64_t seed = (uint64_t)(uintptr_t)user;
    uint16_t *p = dst;
    for (int64_t i = 0; i < nbytes / 2; i++) {
        float x = (ft_uniform(seed, (uint64_t)(offset / 2 + i)) - 0.5f) * 0.1f;
        p[i] = ft_f32_to_bf16(x);
    }
    return FT_OK;
}

static int64_t g_seed = 1;
static void ft_add(ft_stw *w, const char *name, int ndim, int64_t a, int64_t b, FILE *index, const char *shard,
                   int *first) {
    int64_t shape[2] = {a, b};
    FT_CHECK_OK(ft_stw_add_fill(w, name, FT_ST_BF16, ndim, shape, ft_fill_bf16, (void *)(uintptr_t)(g_seed++)));
    fprintf(index, "%s\n    \"%s\": \"%s\"", *first ? "" : ",", name, shard);
    *first = 0;
}

int main(void) {
    const char *dir = ft_test_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *cf = fopen(path, "w");
    fprintf(cf, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d, \"intermediate_size\": %d,"
                " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"
                " \"vocab_size\": %d, \"rms_norm_eps\": 1e-5, \"rope_theta\": 500000.0, \"hidden_act\": \"silu\","
                " \"max_position_embeddings\": 4096, \"tie_word_embeddings\": false}\n",
            C, F, L, H, H, V);
    fclose(cf);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *index = fopen(path, "w");
    fprintf(index, "{\"metadata\": {}, \"weight_map\": {");
    int first = 1, nshards = L / 2 + 1;
    int64_t total_bytes = 0;
    for (int s = 0; s < nshards; s++) {
        char shard[64];
        snprintf(shard, sizeof shard, "model-%05d-of-%05d.safetensors", s + 1, nshards);
        snprintf(path, sizeof path, "%s/%s", dir, shard);
        ft_stw *w = NULL;
        FT_CHECK_OK(ft_stw_open(&w, path));
        if (s == 0) {
            ft_add(w, "model.embed_tokens.weight", 2, V, C, index, shard, &first);
        } else if (s == nshards - 1) {
            ft_add(w, "lm_head.weight", 2, V, C, index, shard, &first);
            ft_add(w, "model.norm.weight", 1, C, 0, index, shard, &first);
        }
        for (int l = 2 * s; s < nshards - 1 && l < 2 * s + 2 && l < L; l++) { /* two layers a shard */
            static const char *lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
            int64_t out[] = {C, C, C, C, F, F, C}, in[] = {C, C, C, C, C, C, F};
            char name[128];
            for (int k = 0; k < 7; k++) {
                snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin[k]);
                ft_add(w, name, 2, out[k], in[k], index, shard, &first);
            }
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
            ft_add(w, name, 1, C, 0, index, shard, &first);
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            ft_add(w, name, 1, C, 0, index, shard, &first);
        }
        FT_CHECK_OK(ft_stw_finish(w));
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        total_bytes += ftell(f);
        fclose(f);
    }
    fprintf(index, "\n}}\n");
    fclose(index);
    printf("wrote %d shards, %.1f MB of bf16\n", nshards, total_bytes / 1e6);

    int64_t lin_params = (int64_t)L * (4LL * C * C + 3LL * C * F);
    int64_t resident = 0; /* NF4 linears + bf16 norms, embeddings and lm_head */
    for (int l = 0; l < L; l++) {
        resident += 4 * ft_nf4_nbytes((int64_t)C * C) + 3 * ft_nf4_nbytes((int64_t)C * F);
        resident += 2LL * C * 2;
    }
    resident += 2LL * V * C * 2 + C * 2;
    int64_t largest = (int64_t)V * C * 2;
    int64_t budget = resident + largest + 200LL * 1024 * 1024;

    int pipefd[2];
    FT_CHECK(pipe(pipefd) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        ft_backend *be = NULL;
        ft_model *m = NULL;
        ft_load_opts lo = {.quant = FT_QUANT_NF4};
        int64_t res[3] = {-1, -1, -1};
        if (ft_backend_cpu_create(&be, 0) == FT_OK && ft_model_load(&m, be, dir, &lo) == FT_OK) {
            res[0] = ft_peak_rss_bytes();
            res[1] = ft_backend_bytes_in_use(be);
        } else {
            fprintf(stdout, "load failed: %s\n", ft_error_msg());
        }
        if (write(pipefd[1], res, sizeof res) != sizeof res) _exit(3);
        _exit(0);
    }
    close(pipefd[1]);
    int64_t res[3] = {-1, -1, -1};
    FT_CHECK(read(pipefd[0], res, sizeof res) == sizeof res, "child reported nothing");
    int status;
    waitpid(pid, &status, 0);
    printf("checkpoint %.1f MB bf16, %lld linear params; resident model %.1f MB (allocator says %.1f MB), largest "
           "tensor %.1f MB\n",
           total_bytes / 1e6, (long long)lin_params, resident / 1e6, res[1] / 1e6, largest / 1e6);
    printf("peak RSS while loading with NF4: %.1f MB, budget %.1f MB (resident + largest + 200 MB)\n", res[0] / 1e6,
           budget / 1e6);
    FT_CHECK(res[0] > 0 && res[0] <= budget, "peak RSS %.1f MB exceeds %.1f MB", res[0] / 1e6, budget / 1e6);
    FT_CHECK(res[1] > 0 && res[1] <= resident * 11 / 10 + (16 << 20), "backend holds %.1f MB, expected about %.1f MB",
             res[1] / 1e6, resident / 1e6);
    return ft_test_finish();
}
