/* test_ops_cuda.c: the op test table of test_ops_cpu.c run against the CUDA backend, plus the
 * real layer shapes of Llama-3-70B, Qwen3-32B and Mistral-Small-24B, with test / grad / perf modes
 * and one summary table. tests/gpu/run.sh runs it on a GPU machine; CTest runs it everywhere.
 *
 * It includes test_ops_cpu.c (with FT_OPS_TABLE_NO_MAIN), so the case table, the op runners (one
 * per op, each able to run on a backend or compute a double reference) and the poisoning of every
 * output (0xFF bytes: NaN in BF16 and F32, so an element an op forgets to write fails) are the very
 * same code the CPU suite runs: a new op cannot get a CUDA kernel without a case here, and
 * check_coverage() below fails when the backend vtable gains an op the table does not map.
 *
 * Without a GPU (CI) it checks what needs none: the NF4 offset formulation of
 * kernels/cuda/nf4_mean.h against the CPU's ft_nf4_absmax_mean, bit for bit, over many sizes; that
 * every vtable op has a case in both tables; and that this executable carries device code for
 * every architecture of the build (FT_CUDA_ARCHS, sm_90 and sm_121 by default). Then it prints
 * SKIP for the device part and passes.
 *
 * With a GPU each case runs on the CUDA backend and on the CPU backend from the same inputs,
 * drawn fresh each run (a random salt, printed; --seed repeats a run) and rounded to BF16 for both.
 * Tolerances on ||cuda - cpu|| / ||cpu||: the case's tol_act for the small table; for the mid
 * and real shapes 1e-2 for BF16 results and 1e-5 for f32 results (rstd, lse, loss sums, sums of squares,
 * AdamW, scale); NF4 codes exact. NaN or Inf fails. GPU memory must return to its level after
 * each case (a second run tells a leak from grow-only scratch).
 *
 * Usage: test_ops_cuda [--mode test|grad|perf|all] [--filter a,b] [--small] [--mid] [--big]
 *                      [--seed S] [--reps R] [--summary FILE]
 *   --small / --mid / --big pick tables (default all three): the shared small table, odd mid-size
 *   shapes (every attention head_dim class, several tiles), the real layer shapes.
 *   test  compare every case with the CPU backend (default)
 *   grad  only the backward cases (GPU gradients against CPU gradients; the finite-difference
 *         checks of the CPU backward ops themselves are test_ops_grad)
 *   perf  time each case's op (no comparison, no CPU run)
 *   all   test, then perf, one row per case */
#define FT_OPS_TABLE_NO_MAIN
#include "test_ops_cpu.c" /* NOLINT: shared op table, see above */

#include <stddef.h>
#include <unistd.h> /* getpid */

#include "kernels/backend_impl.h" /* only for check_coverage: the vtable's op slots */
#include "kernels/cuda/nf4_mean.h"

#ifndef FT_CUDA_ARCHS
#define FT_CUDA_ARCHS ""
#endif

/* ---- mid-size shapes: odd sizes and every attention head_dim class ----------------------------------
 * Several key/query tiles per attention row, D = 32/64/128/256 (each template instance), odd token
 * counts and widths (the scalar paths next to the vector ones), multi-block NF4 double quantization.
 * Cheap enough for the CUDA emulator of tests/gpu/emu as well. */
#define BT 1e-2 /* BF16 results */
static const op_case mid_cases[] = {
    {"m linear nf4 odd N",             OP_LINEAR,      {33, 256, 520},           FT_NF4,  0,                0,   BT},
    {"m linear bf16 +bias +acc",       OP_LINEAR,      {17, 264, 136},           FT_BF16, F_ACC | F_BIAS,   0,   BT},
    {"m linear_bwd_x nf4",             OP_LINEAR_BWD_X,{33, 520, 256},           FT_NF4,  0,                0,   BT},
    {"m linear_bwd_x f16 +acc",        OP_LINEAR_BWD_X,{12, 100, 90},            FT_F16,  F_ACC,            0,   BT},
    {"m lora r16",                     OP_LORA_FWD,    {40, 136, 72, 16},        FT_F32,  0,                0,   BT},
    {"m lora r16",                     OP_LORA_BWD,    {40, 136, 72, 16},        FT_F32,  0,                0,   BT},
    {"m rmsnorm vec8",                 OP_RMSNORM,     {9, 256},                 FT_BF16, 0,                0,   BT},
    {"m rmsnorm scalar",               OP_RMSNORM,     {5, 100},                 FT_F32,  0,                0,   BT},
    {"m rmsnorm_bwd vec8",             OP_RMSNORM_BWD, {9, 256},                 FT_BF16, 0,                0,   BT},
    {"m rmsnorm_bwd scalar f16 w",     OP_RMSNORM_BWD, {6, 90},                  FT_F16,  0,                0,   BT},
    {"m rope llama3",                  OP_ROPE,        {40, 4, 128},             FT_F32,  F_LLAMA3,         0,   BT},
    {"m rope inverse D256",            OP_ROPE,        {7, 3, 256},              FT_F32,  F_INV,            0,   BT},
    {"m attention D128",               OP_ATTN,        {1, 80, 4, 2, 128},       FT_F32,  0,                0,   BT},
    {"m attention D128 packed",        OP_ATTN,        {1, 80, 4, 2, 128},       FT_F32,  F_PACK,           0,   BT},
    {"m attention D64 B2 packed",      OP_ATTN,        {2, 70, 4, 1, 64},        FT_F32,  F_PACK,           0,   BT},
    {"m attention D256",               OP_ATTN,        {1, 40, 2, 2, 256},       FT_F32,  0,                0,   BT},
    {"m attention D32",                OP_ATTN,        {1, 65, 4, 4, 32},        FT_F32,  0,                0,   BT},
    {"m attention D128",               OP_ATTN_BWD,    {1, 80, 4, 2, 128},       FT_F32,  0,                0,   BT},
    {"m attention D128 packed",        OP_ATTN_BWD,    {1, 80, 4, 2, 128},       FT_F32,  F_PACK,           0,   BT},
    {"m attention D64 B2 packed",      OP_ATTN_BWD,    {2, 70, 4, 1, 64},        FT_F32,  F_PACK,           0,   BT},
    {"m attention D256",               OP_ATTN_BWD,    {1, 40, 2, 2, 256},       FT_F32,  0,                0,   BT},
    {"m attention D32",                OP_ATTN_BWD,    {1, 65, 4, 4, 32},        FT_F32,  0,                0,   BT},
    {"m swiglu",                       OP_SWIGLU,      {5000},                   FT_F32,  0,                0,   BT},
    {"m swiglu",                       OP_SWIGLU_BWD,  {5000},                   FT_F32,  0,                0,   BT},
    {"m add",                          OP_ADD,         {3001},                   FT_F32,  0,                0,   BT},
    {"m dropout p=0.25",               OP_DROPOUT,     {4097},                   FT_F32,  250,              0,   BT},
    {"m xent grad 1",                  OP_XENT,        {6, 5000},                FT_F32,  1,                0,   BT},
    {"m xent loss only",               OP_XENT,        {5, 3000},                FT_F32,  0,                0,   BT},
    {"m embed bf16",                   OP_EMBED,       {300, 264, 40},           FT_BF16, 0,                0,   BT},
    {"m embed nf4",                    OP_EMBED,       {100, 130, 20},           FT_NF4,  0,                0,   BT},
    {"m sumsq",                        OP_SUMSQ,       {1000003},                FT_F32,  0,                0,   1e-5},
    {"m scale",                        OP_SCALE,       {70001},                  FT_F32,  0,                0,   1e-5},
    {"m adamw",                        OP_ADAMW,       {70001},                  FT_F32,  0,                0,   1e-5},
    {"m clip_factor",                  OP_CLIP,        {40},                     FT_F32,  0,                0,   0},
    {"m nf4 f32 (17 256-blocks)",      OP_NF4,         {64, 4100},               FT_F32,  0,                0,   0},
    {"m nf4 bf16 odd n",               OP_NF4,         {333, 777},               FT_BF16, 0,                0,   0},
};
enum { NMID = sizeof mid_cases / sizeof mid_cases[0] };

/* ---- real layer shapes ---------------------------------------------------------------------------
 * Llama-3-70B  (L70): C 8192, F 28672, H 64, Hkv 8, D 128, V 128256, llama3 rope
 * Qwen3-32B    (Q32): C 5120, F 25600, H 64, Hkv 8, D 128, V 151936, q/k-norm
 * Mistral-S-24B(M24): C 5120, F 32768, H 32, Hkv 8, D 128, V 131072
 * Token counts stay small (N = 128 for products, 256 for norms, T = 512 for attention) so the CPU
 * reference finishes in seconds; the weights are full size. */
static const op_case big_cases[] = {
    /* name                            op              shape                     wt       flag          tol tol_act */
    {"L70 q_proj",                     OP_LINEAR,      {128, 8192, 8192},        FT_NF4,  0,                0,   BT},
    {"L70 k_proj",                     OP_LINEAR,      {128, 8192, 1024},        FT_NF4,  0,                0,   BT},
    {"L70 gate_proj",                  OP_LINEAR,      {128, 8192, 28672},       FT_NF4,  0,                0,   BT},
    {"L70 down_proj",                  OP_LINEAR,      {128, 28672, 8192},       FT_NF4,  0,                0,   BT},
    {"L70 q_proj bf16 +bias +acc",     OP_LINEAR,      {128, 8192, 8192},        FT_BF16, F_ACC | F_BIAS,   0,   BT},
    {"Q32 q_proj",                     OP_LINEAR,      {128, 5120, 8192},        FT_NF4,  0,                0,   BT},
    {"Q32 k_proj",                     OP_LINEAR,      {128, 5120, 1024},        FT_NF4,  0,                0,   BT},
    {"Q32 o_proj",                     OP_LINEAR,      {128, 8192, 5120},        FT_NF4,  0,                0,   BT},
    {"Q32 gate_proj",                  OP_LINEAR,      {128, 5120, 25600},       FT_NF4,  0,                0,   BT},
    {"Q32 down_proj",                  OP_LINEAR,      {128, 25600, 5120},       FT_NF4,  0,                0,   BT},
    {"M24 q_proj",                     OP_LINEAR,      {128, 5120, 4096},        FT_NF4,  0,                0,   BT},
    {"M24 o_proj",                     OP_LINEAR,      {128, 4096, 5120},        FT_NF4,  0,                0,   BT},
    {"M24 gate_proj",                  OP_LINEAR,      {128, 5120, 32768},       FT_NF4,  0,                0,   BT},
    {"M24 down_proj",                  OP_LINEAR,      {128, 32768, 5120},       FT_NF4,  0,                0,   BT},
    {"L70 q_proj",                     OP_LINEAR_BWD_X,{128, 8192, 8192},        FT_NF4,  0,                0,   BT},
    {"L70 k_proj +acc",                OP_LINEAR_BWD_X,{128, 8192, 1024},        FT_NF4,  F_ACC,            0,   BT},
    {"L70 gate_proj",                  OP_LINEAR_BWD_X,{128, 8192, 28672},       FT_NF4,  0,                0,   BT},
    {"L70 down_proj",                  OP_LINEAR_BWD_X,{128, 28672, 8192},       FT_NF4,  0,                0,   BT},
    {"Q32 o_proj",                     OP_LINEAR_BWD_X,{128, 8192, 5120},        FT_NF4,  0,                0,   BT},
    {"Q32 gate_proj",                  OP_LINEAR_BWD_X,{128, 5120, 25600},       FT_NF4,  0,                0,   BT},
    {"M24 down_proj",                  OP_LINEAR_BWD_X,{128, 32768, 5120},       FT_NF4,  0,                0,   BT},
    {"L70 gate_proj r16",              OP_LORA_FWD,    {128, 8192, 28672, 16},   FT_F32,  0,                0,   BT},
    {"L70 down_proj r16",              OP_LORA_FWD,    {128, 28672, 8192, 16},   FT_F32,  0,                0,   BT},
    {"Q32 q_proj r64",                 OP_LORA_FWD,    {128, 5120, 8192, 64},    FT_F32,  0,                0,   BT},
    {"L70 gate_proj r16",              OP_LORA_BWD,    {128, 8192, 28672, 16},   FT_F32,  0,                0,   BT},
    {"L70 down_proj r16",              OP_LORA_BWD,    {128, 28672, 8192, 16},   FT_F32,  0,                0,   BT},
    {"Q32 q_proj r64",                 OP_LORA_BWD,    {128, 5120, 8192, 64},    FT_F32,  0,                0,   BT},
    {"M24 o_proj r16",                 OP_LORA_BWD,    {128, 4096, 5120, 16},    FT_F32,  0,                0,   BT},
    {"L70 input_layernorm",            OP_RMSNORM,     {256, 8192},              FT_BF16, 0,                0,   BT},
    {"Q32 input_layernorm",            OP_RMSNORM,     {256, 5120},              FT_BF16, 0,                0,   BT},
    {"Q32 q_norm [N*H, D]",            OP_RMSNORM,     {256 * 64, 128},          FT_BF16, 0,                0,   BT},
    {"L70 input_layernorm",            OP_RMSNORM_BWD, {256, 8192},              FT_BF16, 0,                0,   BT},
    {"M24 input_layernorm",            OP_RMSNORM_BWD, {256, 5120},              FT_BF16, 0,                0,   BT},
    {"Q32 k_norm [N*Hkv, D]",          OP_RMSNORM_BWD, {256 * 8, 128},           FT_BF16, 0,                0,   BT},
    {"L70 rope q llama3",              OP_ROPE,        {256, 64, 128},           FT_F32,  F_LLAMA3,         0,   BT},
    {"L70 rope k llama3 inverse",      OP_ROPE,        {256, 8, 128},            FT_F32,  F_LLAMA3 | F_INV, 0,   BT},
    {"M24 rope q",                     OP_ROPE,        {256, 32, 128},           FT_F32,  0,                0,   BT},
    {"L70 attention",                  OP_ATTN,        {1, 512, 64, 8, 128},     FT_F32,  0,                0,   BT},
    {"L70 attention packed",           OP_ATTN,        {1, 512, 64, 8, 128},     FT_F32,  F_PACK,           0,   BT},
    {"Q32 attention B2",               OP_ATTN,        {2, 256, 64, 8, 128},     FT_F32,  0,                0,   BT},
    {"M24 attention packed",           OP_ATTN,        {1, 512, 32, 8, 128},     FT_F32,  F_PACK,           0,   BT},
    {"L70 attention",                  OP_ATTN_BWD,    {1, 512, 64, 8, 128},     FT_F32,  0,                0,   BT},
    {"L70 attention packed",           OP_ATTN_BWD,    {1, 512, 64, 8, 128},     FT_F32,  F_PACK,           0,   BT},
    {"Q32 attention B2",               OP_ATTN_BWD,    {2, 256, 64, 8, 128},     FT_F32,  0,                0,   BT},
    {"M24 attention packed",           OP_ATTN_BWD,    {1, 512, 32, 8, 128},     FT_F32,  F_PACK,           0,   BT},
    {"L70 mlp N=128",                  OP_SWIGLU,      {128 * 28672},            FT_F32,  0,                0,   BT},
    {"L70 mlp N=128",                  OP_SWIGLU_BWD,  {128 * 28672},            FT_F32,  0,                0,   BT},
    {"M24 mlp N=128",                  OP_SWIGLU_BWD,  {128 * 32768},            FT_F32,  0,                0,   BT},
    {"L70 residual N=256",             OP_ADD,         {256 * 8192},             FT_F32,  0,                0,   BT},
    {"L70 lora dropout p=0.1",         OP_DROPOUT,     {128 * 28672},            FT_F32,  100,              0,   BT},
    {"L70 lm_head chunk grad 1",       OP_XENT,        {64, 128256},             FT_F32,  1,                0,   BT},
    {"Q32 lm_head chunk grad 0.25",    OP_XENT,        {64, 151936},             FT_F32,  2,                0,   BT},
    {"M24 lm_head chunk loss only",    OP_XENT,        {64, 131072},             FT_F32,  0,                0,   BT},
    {"L70 embed bf16 (V cut to 4096)", OP_EMBED,       {4096, 8192, 256},        FT_BF16, 0,                0,   BT},
    {"Q32 embed nf4 (V cut to 4096)",  OP_EMBED,       {4096, 5120, 256},        FT_NF4,  0,                0,   BT},
    {"LoRA grads 16M",                 OP_SUMSQ,       {16777217},               FT_F32,  0,                0,   1e-5},
    {"LoRA grads 16M",                 OP_SCALE,       {16777217},               FT_F32,  0,                0,   1e-5},
    {"LoRA params 16M",                OP_ADAMW,       {16777217},               FT_F32,  0,                0,   1e-5},
    {"grad-norm clip factor",          OP_CLIP,        {16},                     FT_F32,  0,                0,   0},
    {"L70 q_proj load",                OP_NF4,         {8192, 8192},             FT_F32,  0,                0,   0},
    {"L70 gate_proj load",             OP_NF4,         {28672, 8192},            FT_BF16, 0,                0,   0},
};
enum { NBIG = sizeof big_cases / sizeof big_cases[0] };

static const char *op_name(int op) {
    static const char *n[] = {"embed", "rmsnorm", "rmsnorm_bwd", "linear", "linear_bwd_x", "lora_fwd", "lora_bwd",
                              "dropout", "rope", "attention", "attention_bwd", "swiglu", "swiglu_bwd", "add", "xent",
                              "sumsq", "scale", "adamw", "nf4", "clip_factor"};
    return op >= 0 && op < (int)(sizeof n / sizeof *n) ? n[op] : "?";
}
static int op_is_bwd(int op) {
    return op == OP_RMSNORM_BWD || op == OP_LINEAR_BWD_X || op == OP_LORA_BWD || op == OP_ATTN_BWD ||
           op == OP_SWIGLU_BWD;
}

/* ---- checks that need no GPU ------------------------------------------------------------------- */

static void check_nf4_mean(void) {
    static const int64_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255,
                                    256, 257, 511, 512, 1000, 4095, 4096, 4097, 65535, 65536, 65537, 100003,
                                    1048576, 1048577, 3670016, 3670017};
    int64_t checked = 0, same = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const int64_t nb = sizes[s];
        float *x = hmalloc(nb);
        for (int rep = 0; rep < 3; rep++) {
            for (int64_t i = 0; i < nb; i++)
                x[i] = ft_uniform(0xab5u + (uint64_t)(nb * 3 + rep), (uint64_t)i) * (rep == 2 ? 1e-3f : 1.7f);
            const float a = ft_nf4_absmax_mean(x, nb), b = ft_nf4m_mean_serial(x, nb);
            checked++;
            same += memcmp(&a, &b, sizeof a) == 0;
        }
        free(x);
    }
    FT_CHECK(same == checked, "nf4 offset: the warp formulation differs from ft_nf4_absmax_mean in %lld of %lld",
             (long long)(checked - same), (long long)checked);
    printf("ok   nf4 offset: warp formulation bit-identical to the CPU mean over %lld arrays (nb 1..3670017)\n",
           (long long)checked);
}

/* Every op slot of the backend vtable, with the op-table id that covers it. */
static const struct { size_t off; int op; const char *name; } vt_ops[] = {
    {offsetof(ft_backend_vtbl, embed), OP_EMBED, "embed"},
    {offsetof(ft_backend_vtbl, rmsnorm), OP_RMSNORM, "rmsnorm"},
    {offsetof(ft_backend_vtbl, rmsnorm_bwd), OP_RMSNORM_BWD, "rmsnorm_bwd"},
    {offsetof(ft_backend_vtbl, linear), OP_LINEAR, "linear"},
    {offsetof(ft_backend_vtbl, linear_bwd_x), OP_LINEAR_BWD_X, "linear_bwd_x"},
    {offsetof(ft_backend_vtbl, lora_fwd), OP_LORA_FWD, "lora_fwd"},
    {offsetof(ft_backend_vtbl, lora_bwd), OP_LORA_BWD, "lora_bwd"},
    {offsetof(ft_backend_vtbl, dropout), OP_DROPOUT, "dropout"},
    {offsetof(ft_backend_vtbl, rope), OP_ROPE, "rope"},
    {offsetof(ft_backend_vtbl, attention), OP_ATTN, "attention"},
    {offsetof(ft_backend_vtbl, attention_bwd), OP_ATTN_BWD, "attention_bwd"},
    {offsetof(ft_backend_vtbl, swiglu), OP_SWIGLU, "swiglu"},
    {offsetof(ft_backend_vtbl, swiglu_bwd), OP_SWIGLU_BWD, "swiglu_bwd"},
    {offsetof(ft_backend_vtbl, add), OP_ADD, "add"},
    {offsetof(ft_backend_vtbl, xent), OP_XENT, "xent"},
    {offsetof(ft_backend_vtbl, sumsq), OP_SUMSQ, "sumsq"},
    {offsetof(ft_backend_vtbl, scale), OP_SCALE, "scale"},
    {offsetof(ft_backend_vtbl, adamw), OP_ADAMW, "adamw"},
    {offsetof(ft_backend_vtbl, nf4_quantize), OP_NF4, "nf4_quantize"},
    {offsetof(ft_backend_vtbl, nf4_dequantize), OP_NF4, "nf4_dequantize"},
    {offsetof(ft_backend_vtbl, clip_factor), OP_CLIP, "clip_factor"},
};

static void check_coverage(void) {
    const size_t nslots = (sizeof(ft_backend_vtbl) - offsetof(ft_backend_vtbl, embed)) / sizeof(void (*)(void));
    const size_t nmapped = sizeof vt_ops / sizeof *vt_ops;
    FT_CHECK(nslots == nmapped,
             "the backend vtable has %zu op slots but the op table maps %zu: add the new op to vt_ops here, an "
             "OP_ id and runner in test_ops_cpu.c, and cases in both tables", nslots, nmapped);
    int missing = 0;
    for (size_t i = 0; i < nmapped; i++) {
        int small = 0, big = 0;
        for (int c = 0; c < NCASES; c++) small += cases[c].op == vt_ops[i].op;
        for (int c = 0; c < NBIG; c++) big += big_cases[c].op == vt_ops[i].op;
        missing += !small || !big;
        FT_CHECK(small > 0 && big > 0, "op %s has %d small and %d real-shape cases: every op needs both",
                 vt_ops[i].name, small, big);
    }
    if (!missing) printf("ok   every one of the %zu vtable ops has small and real-shape cases\n", nmapped);
}

/* The executable must hold device code (SASS) for every architecture of the build. The cubins
 * nvcc embeds are plain ELF files (EM_CUDA = 190) inside the fat binary; their e_flags carry the SM
 * version (bits 8..15 from ELF ABI version 8, CUDA 12.8 on; bits 0..7 before). Scanning our own
 * executable needs no CUDA tool, so CI checks it too. A compressed fat binary hides the ELF
 * headers: then the check is skipped, not failed. */
static void check_archs(void) {
#ifdef FT_HAVE_CUDA
    char *img = NULL;
    int64_t len = 0;
    if (ft_test_read_file("/proc/self/exe", &img, &len) != FT_OK) {
        printf("SKIP device-code check: cannot read /proc/self/exe\n");
        return;
    }
    int have[1024] = {0}, ncubin = 0;
    for (int64_t i = 0; i + 64 <= len; i++) {
        if (memcmp(img + i, "\x7f" "ELF", 4) != 0 || img[i + 4] != 2) continue; /* ELF64 */
        uint16_t mach;
        uint32_t flags;
        memcpy(&mach, img + i + 18, 2);
        memcpy(&flags, img + i + 48, 4);
        if (mach != 190) continue;
        const int sm = (unsigned char)img[i + 8] >= 8 ? (int)((flags >> 8) & 0xff) : (int)(flags & 0xff);
        have[sm & 1023] = 1;
        ncubin++;
    }
    free(img);
    if (ncubin == 0) {
        printf("SKIP device-code check: no uncompressed cubin found in the executable\n");
        return;
    }
    char archs[256];
    snprintf(archs, sizeof archs, "%s", FT_CUDA_ARCHS);
    int found = 0;
    for (char *tok = strtok(archs, "; "); tok; tok = strtok(NULL, "; ")) {
        const int v = atoi(tok); /* "90", "121", "90-real", "90a" all start with the SM number */
        FT_CHECK(v > 0 && v < 1024 && have[v], "no sm_%d device code in this executable (build architectures %s)",
                 v, FT_CUDA_ARCHS);
        found++;
    }
    FT_CHECK(found > 0, "no CUDA architectures recorded for this build");
    printf("ok   sm device code for every build architecture (%s) in the executable (%d cubins)\n", FT_CUDA_ARCHS,
           ncubin);
#else
    printf("SKIP device-code check: built without CUDA\n");
#endif
}

/* ---- the device run ----------------------------------------------------------------------------- */

typedef struct {
    const char *mode, *filter, *summary;
    int table[3], reps; /* tables to run: small, mid, real */
    uint64_t seed;
} opts;

static int matches(const char *filter, const op_case *k) {
    if (!filter || !*filter) return 1;
    char buf[512], full[256];
    snprintf(full, sizeof full, "%s %s", op_name(k->op), k->name);
    snprintf(buf, sizeof buf, "%s", filter);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        if (strstr(full, tok)) return 1;
    return 0;
}

static void shape_str(const op_case *k, char *s, size_t n) {
    static const char *lab[][5] = {
        [OP_EMBED] = {"V", "C", "N"},           [OP_RMSNORM] = {"N", "C"},        [OP_RMSNORM_BWD] = {"N", "C"},
        [OP_LINEAR] = {"N", "in", "out"},       [OP_LINEAR_BWD_X] = {"N", "in", "out"},
        [OP_LORA_FWD] = {"N", "in", "out", "R"}, [OP_LORA_BWD] = {"N", "in", "out", "R"}, [OP_DROPOUT] = {"n"},
        [OP_ROPE] = {"N", "nh", "D"},           [OP_ATTN] = {"B", "T", "H", "Hkv", "D"},
        [OP_ATTN_BWD] = {"B", "T", "H", "Hkv", "D"}, [OP_SWIGLU] = {"n"}, [OP_SWIGLU_BWD] = {"n"}, [OP_ADD] = {"n"},
        [OP_XENT] = {"n", "V"},                 [OP_SUMSQ] = {"n"},               [OP_SCALE] = {"n"},
        [OP_ADAMW] = {"n"},                     [OP_NF4] = {"rows", "cols"},     [OP_CLIP] = {"n"}};
    size_t at = 0;
    s[0] = 0;
    for (int i = 0; i < 5 && lab[k->op][i]; i++)
        at += (size_t)snprintf(s + at, at < n ? n - at : 0, "%s%s%lld", i ? " " : "", lab[k->op][i],
                               (long long)k->s[i]);
    if (k->op == OP_LINEAR || k->op == OP_LINEAR_BWD_X || k->op == OP_EMBED || k->op == OP_NF4)
        snprintf(s + at, at < n ? n - at : 0, " %s", ft_dtype_name(k->wt));
}

/* Results of f32 ops (held to 1e-5 in the real-shape table). */
static int f32_output(int op, const char *name) {
    return op == OP_SUMSQ || op == OP_SCALE || op == OP_ADAMW || op == OP_CLIP || (op == OP_RMSNORM && !strcmp(name, "rstd")) ||
           (op == OP_ATTN && !strcmp(name, "lse")) || (op == OP_XENT && !strcmp(name, "loss_sum,count"));
}

typedef struct {
    double err, tol;      /* worst output: rel_l2 and its tolerance (largest err/tol) */
    char worst[48];
    double ms;            /* perf mode: one call of the op */
    int fails, nonfinite, ran_test, ran_perf;
} row_result;

static void run_compare(ft_backend *gpu, ft_backend *cpu, const op_case *k, int big, uint64_t salt, row_result *r) {
    run_ctx rc = {gpu, 1, {0}, 0, {{0}}, 0, salt, 0, 0};
    run_ctx cc = {cpu, 1, {0}, 0, {{0}}, 0, salt, 0, 0};
    op_out got = {0}, want = {0};
    const int fails0 = ft_test_failures();
    const int64_t before = ft_backend_bytes_in_use(gpu);
    run_case(&rc, k, &got);
    ctx_free(&rc);
    const int64_t after1 = ft_backend_bytes_in_use(gpu);
    if (after1 != before) { /* grown scratch is fine once; a leak grows on every run */
        op_out again = {0};
        run_case(&rc, k, &again);
        ctx_free(&rc);
        out_free(&again);
        FT_CHECK(ft_backend_bytes_in_use(gpu) == after1, "%s %s: GPU memory grows by %lld bytes per run (leak)",
                 op_name(k->op), k->name, (long long)(ft_backend_bytes_in_use(gpu) - after1));
    }
    run_case(&cc, k, &want);
    ctx_free(&cc);
    r->ran_test = 1;
    double worst = -1; /* largest rel_l2 / tol so far (a non-finite output counts as infinite) */
    for (int j = 0; j < got.n && j < want.n; j++) {
        double tol = got.tol_act[j] >= 0 ? got.tol_act[j] : k->tol_act;
        if (big && f32_output(k->op, got.name[j])) tol = 1e-5;
        if (k->op == OP_NF4 && got.tol_act[j] < 0) tol = 0; /* codes and the host dequantization: exact */
        char what[200];
        snprintf(what, sizeof what, "%s %s: %s", op_name(k->op), k->name, got.name[j]);
        FT_CHECK(got.len[j] == want.len[j], "%s: length %lld vs %lld", what, (long long)got.len[j],
                 (long long)want.len[j]);
        const ft_cmp cmp = ft_compare_f32(got.v[j], want.v[j], got.len[j]);
        FT_CHECK_CLOSE(got.v[j], want.v[j], got.len[j], tol, what);
        r->nonfinite += cmp.n_nonfinite > 0;
        const double ratio = cmp.n_nonfinite ? INFINITY : tol > 0 ? cmp.rel_l2 / tol : (cmp.rel_l2 > 0 ? INFINITY : 0);
        if (ratio > worst) {
            worst = ratio;
            r->err = cmp.n_nonfinite ? NAN : cmp.rel_l2;
            r->tol = tol;
            snprintf(r->worst, sizeof r->worst, "%s", got.name[j]);
        }
    }
    FT_CHECK(got.n == want.n && got.n > 0, "%s %s: %d outputs vs %d", op_name(k->op), k->name, got.n, want.n);
    r->fails += ft_test_failures() - fails0;
    out_free(&got), out_free(&want);
}

static void run_perf(ft_backend *gpu, const op_case *k, uint64_t salt, int reps, row_result *r) {
    run_ctx rc = {gpu, 1, {0}, 0, {{0}}, 0, salt, reps, 0};
    op_out got = {0};
    const int fails0 = ft_test_failures();
    run_case(&rc, k, &got);
    ctx_free(&rc);
    out_free(&got);
    r->ms = rc.op_seconds * 1e3;
    r->ran_perf = 1;
    r->fails += ft_test_failures() - fails0;
}

/* The work of one call of a case's op, for the rate column: floating-point operations of the
 * products (causal attention counts the visible half; its backward 2.5x the forward, as usual)
 * or, for memory-bound ops, the fewest bytes the op must move (each input read once, each output
 * written once; BF16 activations). */
static void case_work(const op_case *k, double *flops, double *bytes) {
    double s0 = (double)k->s[0], s1 = (double)k->s[1], s2 = (double)k->s[2], s3 = (double)k->s[3];
    double s4 = (double)k->s[4];
    const double wb = k->wt == FT_NF4 ? 0.5 + 1.0 / 64 : (double)ft_dtype_nbytes(k->wt, 1);
    *flops = 0, *bytes = 0;
    switch (k->op) {
    case OP_EMBED: *bytes = s2 * s1 * (2 + wb); break;
    case OP_RMSNORM: *bytes = s0 * s1 * 4 + s0 * 4; break;
    case OP_RMSNORM_BWD: *bytes = s0 * s1 * 6 + s0 * 4; break;
    case OP_LINEAR: case OP_LINEAR_BWD_X: *flops = 2 * s0 * s1 * s2; break;
    case OP_LORA_FWD: *flops = 2 * s0 * s3 * (s1 + s2); break;
    case OP_LORA_BWD: *flops = 4 * s0 * s3 * (s1 + s2); break;
    case OP_DROPOUT: case OP_ADD: *bytes = s0 * (k->op == OP_ADD ? 6 : 4); break;
    case OP_SWIGLU: *bytes = s0 * 6; break;
    case OP_SWIGLU_BWD: *bytes = s0 * 10; break;
    case OP_ROPE: *bytes = s0 * s1 * s2 * 4; break;
    case OP_ATTN: *flops = 4 * s0 * s2 * s4 * (s1 * (s1 + 1) / 2); break;
    case OP_ATTN_BWD: *flops = 2.5 * 4 * s0 * s2 * s4 * (s1 * (s1 + 1) / 2); break;
    case OP_XENT: *bytes = s0 * s1 * (k->flag ? 4 : 2); break;
    case OP_SUMSQ: *bytes = s0 * 4; break;
    case OP_SCALE: *bytes = s0 * 8; break;
    case OP_ADAMW: *bytes = s0 * 28; break;
    case OP_NF4: *bytes = s0 * s1 * ((double)ft_dtype_nbytes(k->wt, 1) + 0.5); break;
    case OP_CLIP: *bytes = s0 * 8; break;
    }
}

static void print_row(FILE *f, const char *table, const op_case *k, const row_result *r, int tsv) {
    char shape[96], err[32] = "-", tol[32] = "-", ms[32] = "-";
    shape_str(k, shape, sizeof shape);
    if (r->ran_test) {
        if (r->err != r->err)
            snprintf(err, sizeof err, "NaN");
        else
            snprintf(err, sizeof err, "%.2e", r->err);
        snprintf(tol, sizeof tol, "%.0e", r->tol);
    }
    char rate[32] = "-";
    if (r->ran_perf) {
        double fl, by;
        case_work(k, &fl, &by);
        snprintf(ms, sizeof ms, "%.3f", r->ms);
        if (r->ms > 0 && fl > 0) snprintf(rate, sizeof rate, "%.1f TF/s", fl / (r->ms * 1e-3) / 1e12);
        else if (r->ms > 0 && by > 0) snprintf(rate, sizeof rate, "%.0f GB/s", by / (r->ms * 1e-3) / 1e9);
    }
    const char *st = r->fails ? (r->nonfinite ? "FAIL(NaN)" : "FAIL") : "ok";
    const int bwd = op_is_bwd(k->op);
    if (tsv)
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", table, op_name(k->op), k->name, shape,
                bwd ? "-" : err, bwd ? err : "-", tol, r->ran_test ? r->worst : "-", ms, rate, st);
    else
        fprintf(f, "%-5s %-13s %-30s %-34s %9s %9s %6s %9s %11s  %s\n", table, op_name(k->op), k->name, shape,
                bwd ? "-" : err, bwd ? err : "-", tol, ms, rate, st);
}

static void usage(void) {
    printf("usage: test_ops_cuda [--mode test|grad|perf|all] [--filter a,b] [--small] [--mid] [--big] [--seed S] "
           "[--reps R] [--summary FILE]\n");
}

int main(int argc, char **argv) {
    opts o = {"test", NULL, NULL, {0, 0, 0}, 50, 0};
    int seeded = 0, picked = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--mode") && v) o.mode = v, i++;
        else if (!strcmp(a, "--filter") && v) o.filter = v, i++;
        else if (!strcmp(a, "--summary") && v) o.summary = v, i++;
        else if (!strcmp(a, "--seed") && v) o.seed = strtoull(v, NULL, 0), seeded = 1, i++;
        else if (!strcmp(a, "--reps") && v) o.reps = atoi(v), i++;
        else if (!strcmp(a, "--small")) o.table[0] = 1, picked = 1;
        else if (!strcmp(a, "--mid")) o.table[1] = 1, picked = 1;
        else if (!strcmp(a, "--big")) o.table[2] = 1, picked = 1;
        else {
            usage();
            return 2;
        }
    }
    if (!picked) o.table[0] = o.table[1] = o.table[2] = 1;
    const int do_test = strcmp(o.mode, "perf") != 0, do_perf = !strcmp(o.mode, "perf") || !strcmp(o.mode, "all");
    const int only_bwd = !strcmp(o.mode, "grad");
    if (strcmp(o.mode, "test") && strcmp(o.mode, "grad") && strcmp(o.mode, "perf") && strcmp(o.mode, "all")) {
        usage();
        return 2;
    }

    check_nf4_mean();
    check_coverage();
    check_archs();

    ft_backend *gpu = NULL, *cpu = NULL;
    if (ft_backend_cuda_create(&gpu, 0) != FT_OK || !gpu) {
        printf("SKIP cuda op table: %s\n", ft_error_msg());
        return ft_test_finish();
    }
    FT_CHECK_OK(ft_backend_cpu_create(&cpu, 0));
    if (!cpu) return ft_test_finish();
    if (!seeded) o.seed = ft_mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    printf("== cuda vs cpu, mode %s, inputs salted with seed 0x%016llx (repeat with --seed 0x%llx)\n", o.mode,
           (unsigned long long)o.seed, (unsigned long long)o.seed);
    test_memory(gpu);

    FILE *sum = o.summary ? fopen(o.summary, "w") : NULL;
    if (o.summary) FT_CHECK(sum != NULL, "cannot write %s", o.summary);
    if (sum) fprintf(sum, "table\top\tcase\tshape\tfwd_err\tbwd_err\ttol\tworst_output\tms\trate\tstatus\n");
    char *table_txt = NULL;
    size_t table_len = 0;
    FILE *tab = open_memstream(&table_txt, &table_len);
    int nrows = 0, nfail = 0;
    static const char *tname[3] = {"small", "mid", "real"};
    for (int t = 0; t < 3; t++) {
        if (!o.table[t]) continue;
        const op_case *list = t == 0 ? cases : t == 1 ? mid_cases : big_cases;
        const int n = t == 0 ? NCASES : t == 1 ? NMID : NBIG;
        for (int i = 0; i < n; i++) {
            const op_case *k = &list[i];
            if (!matches(o.filter, k) || (only_bwd && !op_is_bwd(k->op))) continue;
            row_result r;
            memset(&r, 0, sizeof r);
            const uint64_t salt = ft_mix64(o.seed + (uint64_t)(t * 1000 + i));
            printf("-- %s %s [%s]\n", op_name(k->op), k->name, tname[t]);
            fflush(stdout);
            if (do_test) run_compare(gpu, cpu, k, t > 0, salt, &r);
            if (do_perf) run_perf(gpu, k, salt, o.reps, &r);
            print_row(tab, tname[t], k, &r, 0);
            if (sum) print_row(sum, tname[t], k, &r, 1);
            nrows++;
            nfail += r.fails > 0;
        }
    }
    fclose(tab);
    printf("\n%-5s %-13s %-30s %-34s %9s %9s %6s %9s %11s  %s\n", "table", "op", "case", "shape", "fwd err",
           "bwd err", "tol", "ms", "rate", "status");
    fputs(table_txt ? table_txt : "", stdout);
    printf("%d cases, %d failed\n", nrows, nfail);
    free(table_txt);
    if (sum) fclose(sum);
    ft_backend_free(cpu);
    ft_backend_free(gpu);
    return ft_test_finish();
}
