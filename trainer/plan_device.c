/* plan_device.c: the devices `ftune plan` plans for (plan.h ft_plan_device).
 *
 * Device figures (docs/recipes.md "Devices"): peak is the dense BF16 GEMM rate cuBLAS reaches
 * (H100/H200 ~790 TFLOP/s measured of 989 nominal; GB10 ~62), memory what a run may use (H100
 * 80 GB: ~78 GiB after the CUDA context; H200 141 GB: ~139 GiB; GB10: 119.7 GiB visible to CUDA
 * of 128 GB unified, less ~8 GiB for the OS, the data pipeline and page cache). The time model's
 * rates (GEMM efficiency, attention rate, bandwidth efficiency) are predictions until `ftune bench`
 * measures them (see pl_devices); the time model itself is plan_time.c. */
#include "trainer/plan.h"

#include <string.h>
#include <unistd.h>

#include "trainer/plan_impl.h"

/* ---- devices ------------------------------------------------------------------------------- */

/* Time-model rates. h100: measured 2026-11-24 (docs/perf.md, `tests/gpu/run.sh bench ablate`: the
 * 70B, Qwen3-32B and Mistral-Small-24B shapes at seq 4096, with and without kept layers, phase
 * milliseconds over the FLOPs or bytes plan_time.c counts). h200 and gb10 are not measured yet:
 * their rates are the H100's, scaled where said, and are predictions until a bench on them
 * replaces them. */
static const ft_plan_device pl_devices[] = {
    {.name = "h100", .desc = "NVIDIA H100 80GB", .backend = FT_BACKEND_CUDA, .mem_gib = 78.0, .peak_tflops = 790.0,
     .mem_gbps = 3350.0,
     .gemm_eff = 0.92,       /* measured: the GEMM phase at 0.90-0.94 of the 8192^3 rate (784-791 TFLOP/s) in
                              * training, the lower with cuDNN's attention (a cooler step clocks lower?) */
     .attn_tflops = 133.0,   /* measured: mma.sync attention (attention_mma.cu), 127-139, forward + recompute +
                              * backward */
     .attn_cudnn_tflops = 365.0, /* measured: cuDNN 9.14's fused attention, 338-390 */
     .bw_eff = 0.82,         /* measured 2026-11-23: AdamW streams 2746 GB/s */
     .elem_eff = 0.71,       /* measured: 2,310-2,530 GB/s of the counted bytes (norms, RoPE, SwiGLU, adds) */
     .lora_eff = 0.40,       /* measured: 1,290-1,610 GB/s of the bytes counted, the main stream's waits at the
                              * first use of a prefetched weight included */
     .dequant_hidden = 0.975, /* measured: 1.2-2.3 ms a step left on the main stream, 2-3% of the dequantization */
     .reserve_gib = 1.65,    /* cudaMemGetInfo's 79.65 GiB total, less the CUDA context and the pool's slack */
     .note = "~78 GiB usable of 80 GB; cuBLAS BF16 ~790 TFLOP/s measured (989 nominal); 3.35 TB/s",
     .rates = "measured on an H100 80GB HBM3, 2026-11-24 (docs/perf.md)"},
    {.name = "h200", .desc = "NVIDIA H200 141GB", .backend = FT_BACKEND_CUDA, .mem_gib = 139.0, .peak_tflops = 790.0,
     .mem_gbps = 4800.0,
     .gemm_eff = 0.92, .attn_tflops = 133.0, .attn_cudnn_tflops = 365.0, /* prediction: the H100's (same SMs and clocks) */
     .bw_eff = 0.82, .elem_eff = 0.71, .lora_eff = 0.40, /* prediction: the H100's shares of its bandwidth */
     .dequant_hidden = 0.975,                             /* prediction: the H100's */
     .reserve_gib = 1.4,  /* of the 140.4 GiB cudaMemGetInfo reports */
     .note = "~139 GiB usable of 141 GB; ~790 TFLOP/s BF16 as the H100 (989 nominal); 4.8 TB/s",
     .rates = "predicted: the H100's (same SMs and clocks)"},
    {.name = "gb10", .desc = "NVIDIA GB10 (DGX Spark)", .backend = FT_BACKEND_CUDA, .mem_gib = 112.0,
     .peak_tflops = 62.0, .mem_gbps = 273.0,
     .gemm_eff = 0.92,     /* prediction: the H100's share of the 8192^3 rate */
     .attn_tflops = 10.4,  /* prediction: the H100's 133 scaled by the GEMM peaks, 62 / 790 (no cuDNN rate: the
                            * backend keeps its own attention off Hopper) */
     .bw_eff = 0.73, .elem_eff = 0.64, .lora_eff = 0.36, /* prediction: the H100's shares x 0.9 (LPDDR5X shared with the CPU) */
     .dequant_hidden = 0.0, /* prediction: none hidden; the prefetch competes for the same 273 GB/s */
     .reserve_gib = 7.7,  /* 119.7 GiB visible to CUDA, ~8 GiB kept for the OS and the data pipeline */
     .unified = 1,        /* LPDDR5X shared with the CPU: training.host_boundaries moves nothing off it */
     .note = "128 GB unified, 119.7 GiB visible to CUDA, ~8 GiB kept for the OS and data pipeline; ~62 TFLOP/s BF16; "
             "273 GB/s",
     .rates = "predicted: the H100's scaled (attention by the GEMM peaks, bandwidth shares x 0.9, no dequantization "
              "hidden)"},
};

/* What a CUDA device's name contains for each profile (GH200's Hopper plans as an H200). */
static const char *const pl_device_match[][2] = {{"GB10", "gb10"}, {"H200", "h200"}, {"H100", "h100"}};

const char *ft_plan_device_list(void) { return "cpu, h100, h200, gb10"; }

ft_status ft_plan_device_get(const char *name, ft_plan_device *out) {
    for (size_t i = 0; i < sizeof pl_devices / sizeof *pl_devices; i++) {
        if (strcmp(pl_devices[i].name, name) == 0) {
            *out = pl_devices[i];
            return FT_OK;
        }
    }
    if (strcmp(name, "cpu") == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE), ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        if (ncpu < 1) ncpu = 1;
        const double peak = 0.05 * (double)ncpu;
        *out = (ft_plan_device){
            .name = "cpu", .desc = "this machine's CPU (reference backend)", .backend = FT_BACKEND_CPU,
            .mem_gib = pages > 0 && psize > 0 ? (double)pages * (double)psize / PL_GIB : 0.0, .peak_tflops = peak,
            .mem_gbps = 0.0, /* the reference kernels are compute-bound at the shapes that take time */
            .gemm_eff = 0.5, /* estimate: OpenBLAS sgemm at half the f32 FMA peak */
            .attn_tflops = 0.5 * peak, .bw_eff = 0.0,
            .note = "physical RAM; ~50 GFLOP/s f32 per core (AVX2 FMA): holds for GEMM-bound models, tiny ones run "
                    "~10x slower"};
        return FT_OK;
    }
    return FT_ERR(FT_E_ARG, "unknown device '%s' (expected %s)", name, ft_plan_device_list());
}

ft_status ft_plan_device_detect(ft_backend *be, ft_plan_device *out) {
    if (ft_backend_kind_of(be) != FT_BACKEND_CUDA) return ft_plan_device_get("cpu", out);
    const char *gpu = ft_backend_device_name(be), *profile = NULL;
    for (size_t i = 0; i < sizeof pl_device_match / sizeof *pl_device_match && !profile; i++)
        if (strstr(gpu, pl_device_match[i][0])) profile = pl_device_match[i][1];
    FT_TRY(ft_plan_device_get(profile ? profile : "h100", out));
    if (!profile) { /* rates unknown: the H100's, which the report says */
        out->note = "a GPU without a profile: the h100 figures; --tflops to set a flat rate";
        out->attn_cudnn_tflops = 0.0; /* the backend takes cuDNN's attention on Hopper only */
    }
    int64_t free_b = 0, total_b = 0;
    FT_TRY(ft_backend_mem_info(be, &free_b, &total_b));
    const double total = (double)total_b / PL_GIB;
    out->mem_gib = profile ? total - out->reserve_gib : 0.98 * total;
    if (out->mem_gib <= 0) out->mem_gib = 0.98 * total;
    snprintf(out->desc, sizeof out->desc, "%s", gpu);
    return FT_OK;
}

