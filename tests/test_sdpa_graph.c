/* test_sdpa_graph: cuDNN accepts ftune's fused-attention graphs (kernels/cuda/sdpa_graph.cu) for the
 * H100, checked on a machine without a GPU.
 *
 * cuDNN >= 9.8 plans for a device it is given as a description (a DEVICEPROP descriptor) instead of
 * a handle. For every real layer shape of the models ftune targets (Llama-3-70B, Qwen3-32B,
 * Mistral-Small-24B at seq 4096 and 512), the stories260K demo's and the tiny test models', plain
 * and with packed documents (cuDNN's ragged layout, one sequence per document), this
 * builds the forward and the deterministic backward graph and asks cuDNN's heuristics for engines:
 * what they return has passed cuDNN's own support checks for that graph on sm_90 (the same checks
 * a GPU run makes before compiling). The control: the same graphs on an sm_70 description (no
 * fused flash attention there) get none, so a graph cuDNN did not recognise would fail here, not on
 * the next GPU. Compiling the plan needs a CUDA driver (cuDNN loads the kernel it compiled): on the
 * GPU, tests/gpu/run.sh runs the op itself against the CPU backend (FT_CUDA_ATTN=cudnn).
 *
 * The device description tests/gpu/h100-deviceprop.json holds the fields cuDNN 9.19's parser asks
 * for, with an H100 SXM's values (132 SMs, 227 KiB shared memory per block, 50 MiB L2, sm 9.0);
 * on a GPU this test prints the real device's description (tests/gpu/run.sh keeps it in ops.log) to
 * replace it.
 * cuDNN's heuristics need libcuda.so.1 to be loadable: without a driver the toolkit's stub (every
 * call fails; enough for heuristics, whose support checks make none) is loaded first.
 *
 * With a GPU (tests/gpu/run.sh), the device part also: describes the real device (written to
 * $FT_CUDNN_DEVPROP_OUT when set, to replace the fixture), finalizes a plan for every case on it,
 * and runs the 70B-layer backward twice on the same inputs: dq, dk and dv must be bit-identical
 * (exact resume depends on it). The values themselves are checked against the CPU backend by
 * test_ops_cuda under FT_CUDA_ATTN=cudnn. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#ifdef FT_HAVE_CUDA
#include "kernels/cuda/sdpa_graph.h"
#ifndef FT_NO_CUDNN
#include <cuda_runtime_api.h>
#include <cudnn.h>
#endif

typedef struct shape_case {
    const char *name;
    int64_t B, T, H, Hkv, D;
    int64_t docs; /* > 0: packed documents in this many sequence slots (cuDNN's ragged layout) */
} shape_case;

static const shape_case k_cases[] = {
    {"llama-3-70b seq 4096", 1, 4096, 64, 8, 128, 0},
    {"llama-3-70b seq 512 mb 2", 2, 512, 64, 8, 128, 0},
    {"qwen3-32b seq 4096", 1, 4096, 64, 8, 128, 0},
    {"mistral-small-24b seq 4096", 1, 4096, 32, 8, 128, 0},
    {"mistral-small-24b seq 512", 1, 512, 32, 8, 128, 0},
    {"llama-3-8b seq 2048 mb 4", 4, 2048, 32, 8, 128, 0},
    {"stories260K (head_dim 8)", 8, 256, 8, 4, 8, 0},
    {"tiny-d64", 2, 128, 4, 2, 64, 0},
    {"mha, odd length", 1, 100, 4, 4, 64, 0},
    {"llama-3-70b seq 4096, packed (64 slots)", 1, 4096, 64, 8, 128, 64},
    {"qwen3-32b seq 4096 mb 2, packed (16 slots)", 2, 4096, 64, 8, 128, 16},
    {"stories260K micro-batch 8, packed (32 slots)", 8, 128, 8, 4, 8, 32},
};

static int load_libcuda(void) {
    if (dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL)) return 1;
#ifdef FT_CUDA_STUB
    if (dlopen(FT_CUDA_STUB, RTLD_NOW | RTLD_GLOBAL)) return 2; /* soname libcuda.so.1: cuDNN finds it */
#endif
    return 0;
}

/* Replaces `from` by `to` (the same length) in json; 0 when absent. */
static int patch(char *json, const char *from, const char *to) {
    char *p = strstr(json, from);
    if (!p || strlen(from) != strlen(to)) return 0;
    memcpy(p, to, strlen(to));
    return 1;
}

/* The device's memory from its description (totalGlobalMem), 0 when absent. */
static int64_t device_bytes(const char *json) {
    const char *p = strstr(json, "\"totalGlobalMem\":");
    return p ? strtoll(p + strlen("\"totalGlobalMem\":"), NULL, 10) : 0;
}

/* want_engines: 1 every case has engines, 2 the plain (unpacked) cases have (GB10: cuDNN's ragged
 * engines need sm_90 instructions, so packed rows fall back there), 0 none has (the control).
 * With engines, the smallest workspace they ask for is held against ft_sdpa_workspace_cap (what the
 * op entry accepts): the plain cases must fit; packed ones past it are reported (they fall back, the
 * deterministic backward's dP workspace growing with slots * T^2). */
static void check_device(const char *json, int want_engines, const char *what) {
    const int64_t cap = ft_sdpa_workspace_cap(device_bytes(json));
    void *dp = NULL;
    FT_CHECK_OK(ft_sdpa_devprop_from_json(json, &dp));
    if (!dp) return;
    char back[4096];
    FT_CHECK_OK(ft_sdpa_devprop_json(dp, back, sizeof back));
    FT_CHECK(strstr(back, "\"multiProcessorCount\"") && strstr(back, "\"deviceVer\""),
             "%s: the description round-trips (%.120s...)", what, back);
    for (size_t i = 0; i < sizeof k_cases / sizeof *k_cases; i++) {
        const shape_case *c = &k_cases[i];
        const ft_sdpa_shape s = {c->B, c->T, c->H, c->Hkv, c->D, 1.0f / 8.0f, c->docs};
        if (want_engines == 2 && c->docs) continue;
        for (int kind = FT_SDPA_FWD; kind <= FT_SDPA_BWD; kind++) {
            int64_t viable = -1, ws = -1;
            ft_status st = ft_sdpa_graph_check(&s, kind, 1, dp, &viable, &ws);
            const char *k = kind == FT_SDPA_FWD ? "forward" : "backward (deterministic)";
            if (want_engines)
                FT_CHECK(st == FT_OK && viable >= 1, "%s: %s %s: %lld engine configs (%s)", what, c->name, k,
                         (long long)viable, st == FT_OK ? "ok" : ft_error_msg());
            else
                FT_CHECK(st == FT_E_UNSUPPORTED && viable == 0, "%s: %s %s is refused (%lld engine configs)", what,
                         c->name, k, (long long)viable);
            if (want_engines && st == FT_OK && !c->docs)
                FT_CHECK(ws >= 0 && ws <= cap, "%s: %s %s: workspace %.2f GiB within the op's %.2f GiB", what, c->name,
                         k, (double)ws / (1 << 30), (double)cap / (1 << 30));
            if (want_engines && st == FT_OK)
                printf("ok   %s: %s %s, %lld engine configs, workspace %.2f GiB%s\n", what, c->name, k,
                       (long long)viable, (double)ws / (1 << 30), ws > cap ? " (past the cap: ours run it)" : "");
        }
    }
    ft_sdpa_devprop_free(dp);
}
#endif

#if defined(FT_HAVE_CUDA) && !defined(FT_NO_CUDNN)
/* n BF16 values of a fixed pseudo-random sequence in [-1, 1), as bits. */
static void fill_bf16(uint16_t *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        float f = (float)((seed >> 40) & 0xffffff) / 8388608.0f - 1.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        x[i] = (uint16_t)(u >> 16);
    }
}

/* The backward twice on the same inputs (and the forward twice): bitwise equal outputs. */
static void check_deterministic(cudnnHandle_t h, void *dp) {
    const ft_sdpa_shape s = {1, 512, 64, 8, 128, 0.08838834764831845f, 0};
    const int64_t nq = s.B * s.T * s.H * s.D, nk = s.B * s.T * s.Hkv * s.D, nl = s.B * s.T * s.H;
    ft_sdpa_graph *fwd = NULL, *bwd = NULL;
    FT_CHECK_OK(ft_sdpa_graph_build(&s, FT_SDPA_FWD, 1, dp, &fwd));
    FT_CHECK_OK(ft_sdpa_graph_build(&s, FT_SDPA_BWD, 1, dp, &bwd));
    if (!fwd || !bwd) goto out;
    uint16_t *hq = malloc(2 * nq), *hk = malloc(2 * nk), *hv = malloc(2 * nk), *hdo = malloc(2 * nq);
    uint16_t *r1 = malloc(2 * (2 * nq + 2 * nk)), *r2 = malloc(2 * (2 * nq + 2 * nk));
    float *hl = malloc(4 * nl), *hl2 = malloc(4 * nl); /* lse moved between the graphs' layouts */
    void *d = NULL;
    const int64_t ws = ft_sdpa_graph_workspace(fwd) > ft_sdpa_graph_workspace(bwd) ? ft_sdpa_graph_workspace(fwd)
                                                                                    : ft_sdpa_graph_workspace(bwd);
    /* q k v dout | out dq dk dv | lse | workspace */
    const int64_t bytes = 2 * (nq + 2 * nk + nq) + 2 * (nq + nq + 2 * nk) + 4 * nl + ws + 256;
    FT_CHECK(hq && hk && hv && hdo && r1 && r2 && hl && hl2 && cudaMalloc(&d, (size_t)bytes) == cudaSuccess,
             "memory for the determinism check (%lld bytes)", (long long)bytes);
    if (d && hq && hk && hv && hdo && r1 && r2 && hl && hl2) {
        char *p = (char *)d;
        ft_sdpa_ptrs pt;
        memset(&pt, 0, sizeof pt);
        pt.q = p, p += 2 * nq;
        pt.k = p, p += 2 * nk;
        pt.v = p, p += 2 * nk;
        pt.dout = p, p += 2 * nq;
        pt.out = p, p += 2 * nq;
        pt.dq = p, p += 2 * nq;
        pt.dk = p, p += 2 * nk;
        pt.dv = p, p += 2 * nk;
        pt.lse = (float *)p, p += 4 * nl;
        pt.workspace = ws ? (void *)(((uintptr_t)p + 255) / 256 * 256) : NULL;
        fill_bf16(hq, nq, 1), fill_bf16(hk, nk, 2), fill_bf16(hv, nk, 3), fill_bf16(hdo, nq, 4);
        cudaMemcpy((void *)pt.q, hq, 2 * nq, cudaMemcpyHostToDevice);
        cudaMemcpy((void *)pt.k, hk, 2 * nk, cudaMemcpyHostToDevice);
        cudaMemcpy((void *)pt.v, hv, 2 * nk, cudaMemcpyHostToDevice);
        cudaMemcpy((void *)pt.dout, hdo, 2 * nq, cudaMemcpyHostToDevice);
        for (int rep = 0; rep < 2; rep++) {
            FT_CHECK_OK(ft_sdpa_graph_run(fwd, h, &pt));
            if (ft_sdpa_graph_lse_bht(fwd) != ft_sdpa_graph_lse_bht(bwd)) { /* [T, H] <-> [H, T] (B = 1) */
                const int to_bht = ft_sdpa_graph_lse_bht(bwd);
                cudaMemcpy(hl, pt.lse, 4 * nl, cudaMemcpyDeviceToHost);
                for (int64_t t = 0; t < s.T; t++)
                    for (int64_t hh = 0; hh < s.H; hh++)
                        hl2[to_bht ? hh * s.T + t : t * s.H + hh] = hl[to_bht ? t * s.H + hh : hh * s.T + t];
                cudaMemcpy(pt.lse, hl2, 4 * nl, cudaMemcpyHostToDevice);
            }
            FT_CHECK_OK(ft_sdpa_graph_run(bwd, h, &pt));
            FT_CHECK(cudaDeviceSynchronize() == cudaSuccess, "run %d: %s", rep, cudaGetErrorString(cudaGetLastError()));
            cudaMemcpy(rep ? r2 : r1, pt.out, 2 * (2 * nq + 2 * nk), cudaMemcpyDeviceToHost); /* out dq dk dv */
        }
        int64_t differ = 0, nonfinite = 0;
        for (int64_t i = 0; i < 2 * nq + 2 * nk; i++) {
            differ += r1[i] != r2[i];
            nonfinite += (r1[i] & 0x7f80) == 0x7f80;
        }
        FT_CHECK(differ == 0 && nonfinite == 0,
                 "B1 T512 H64/8 D128: out, dq, dk, dv bit-identical over two runs (%lld differ, %lld non-finite)",
                 (long long)differ, (long long)nonfinite);
    }
    if (d) cudaFree(d);
    free(hq), free(hk), free(hv), free(hdo), free(r1), free(r2), free(hl), free(hl2);
out:
    ft_sdpa_graph_free(fwd);
    ft_sdpa_graph_free(bwd);
}

/* On a GPU: the real device's description, full plans, determinism. */
static void device_part(void) {
    cudnnHandle_t h = NULL;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) {
        printf("no GPU: the device part (plans, determinism) runs under tests/gpu/run.sh\n");
        return;
    }
    void *dp = NULL;
    FT_CHECK_OK(ft_sdpa_devprop_from_handle(h, &dp));
    if (dp) {
        char json[4096];
        FT_CHECK_OK(ft_sdpa_devprop_json(dp, json, sizeof json));
        printf("device description: %s\n", json);
        const char *path = getenv("FT_CUDNN_DEVPROP_OUT");
        FILE *f = path ? fopen(path, "w") : NULL;
        if (f) fprintf(f, "%s\n", json), fclose(f);
        for (size_t i = 0; i < sizeof k_cases / sizeof *k_cases; i++) {
            const shape_case *c = &k_cases[i];
            const ft_sdpa_shape s = {c->B, c->T, c->H, c->Hkv, c->D, 1.0f / 8.0f, c->docs};
            for (int kind = FT_SDPA_FWD; kind <= FT_SDPA_BWD; kind++) {
                ft_sdpa_graph *g = NULL;
                ft_status st = ft_sdpa_graph_build(&s, kind, 1, dp, &g);
                FT_CHECK(st == FT_OK, "device plan: %s %s: %s", c->name, kind ? "backward" : "forward",
                         st == FT_OK ? "ok" : ft_error_msg());
                if (g)
                    printf("ok   device plan: %s %s: %s, workspace %.1f MiB\n", c->name, kind ? "backward" : "forward",
                           ft_sdpa_graph_desc(g), (double)ft_sdpa_graph_workspace(g) / (1 << 20));
                ft_sdpa_graph_free(g);
            }
        }
        check_deterministic(h, dp);
        ft_sdpa_devprop_free(dp);
    }
    cudnnDestroy(h);
}
#endif

int main(void) {
#ifndef FT_HAVE_CUDA
    printf("SKIP: built without CUDA\n");
    return 77;
#else
    char *json = NULL;
    int64_t len = 0;
    FT_CHECK_OK(ft_test_read_file(FT_SOURCE_DIR "/tests/gpu/h100-deviceprop.json", &json, &len));
    if (!json) return ft_test_finish();
    void *probe = NULL;
    if (ft_sdpa_devprop_from_json(json, &probe) != FT_OK) { /* a build without cuDNN: stubs only */
        printf("SKIP: %s\n", ft_error_msg());
        free(json);
        return 77;
    }
    ft_sdpa_devprop_free(probe);
    const int lib = load_libcuda();
    if (!lib) {
        printf("SKIP: neither libcuda.so.1 nor the toolkit's stub loads; cuDNN's heuristics need one\n");
        free(json);
        return 77;
    }
    printf("libcuda: %s\n", lib == 1 ? "the driver's" : "the toolkit's stub");
#ifndef FT_NO_CUDNN
    if (lib == 1) device_part();
#endif
    check_device(json, 1, "sm_90 (H100)");
    /* GB10 (DGX Spark): sm 12.1, 48 SMs, 99 KiB of shared memory per block (same-length edits) */
    char *gb10 = strdup(json);
    if (gb10) {
        FT_CHECK(patch(gb10, "\"multiProcessorCount\": 132", "\"multiProcessorCount\":  48") &&
                     patch(gb10, "\"maxSharedMemoryPerBlockOptin\": 232448", "\"maxSharedMemoryPerBlockOptin\": 101376") &&
                     patch(gb10, "\"deviceVer\": 900", "\"deviceVer\":1210"),
                 "the description names multiProcessorCount, the opt-in shared memory and deviceVer");
        check_device(gb10, 2, "sm_121 (GB10)");
        free(gb10);
    }
    FT_CHECK(patch(json, "\"deviceVer\": 900", "\"deviceVer\": 700"), "the description names deviceVer 900");
    check_device(json, 0, "sm_70 (control: Volta, no fused flash attention in cuDNN)");
    free(json);
    return ft_test_finish();
#endif
}
