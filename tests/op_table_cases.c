/* op_table_cases.c: every op test case, one row each (a row whose op is OP_<op>_AND_BWD is the
 * forward case and the backward case of the same shape): the one table of tests/op_table.h.
 *
 * Rows are grouped by op (a backward op after its forward op); within an op, by tier:
 *   small  tiny shapes, checked against the double reference (tol) by test_ops_cpu, and against the
 *          CPU backend (tol_act) for a backend with BF16 activations;
 *   mid    odd sizes and every attention head_dim class: several key/query tiles per attention row,
 *          D = 32/64/128/256 (each template instance), odd token counts and widths (the scalar paths
 *          next to the vector ones), multi-block NF4 double quantization. Cheap enough for the CUDA
 *          emulator of tests/gpu/emu as well;
 *   real   the real layer shapes of Llama-3-70B (L70: C 8192, F 28672, H 64, Hkv 8, D 128, V 128256,
 *          llama3 rope), Qwen3-32B (Q32: C 5120, F 25600, H 64, Hkv 8, D 128, V 151936, q/k-norm) and
 *          Mistral-Small-24B (M24: C 5120, F 32768, H 32, Hkv 8, D 128, V 131072). Token counts stay
 *          small (N = 128 for products, 256 for norms, T = 512 for attention) so the CPU reference
 *          finishes in seconds; the weights are full size.
 * The mid and real tiers run only against the CPU backend (test_ops_cuda): their tol is 0 (unused),
 * tol_act is 1e-2 for BF16 results (BT) and f32 results are held to 1e-5 whatever the row says
 * (ot_ops[].f32); the shape letters of s[] are ot_ops[op].dims (tests/op_table.c). */
#include "tests/op_table.h"

#define BT 1e-2 /* BF16 results in the mid and real tiers */

const ot_case ot_rows[] = {
    /* op                tier      name                              shape                   wt       flag             tol   tol_act */
    {OP_EMBED,           OT_SMALL, "embed f32",                      {50, 24, 17},           FT_F32,  0,               0,    8e-3},
    {OP_EMBED,           OT_SMALL, "embed bf16",                     {50, 24, 17},           FT_BF16, 0,               0,    0},
    {OP_EMBED,           OT_SMALL, "embed f16",                      {50, 24, 17},           FT_F16,  0,               0,    8e-3},
    {OP_EMBED,           OT_SMALL, "embed nf4",                      {37, 40, 9},            FT_NF4,  0,               1e-7, 8e-3},
    /* a GGUF base's token_embd in ggml blocks (Q6_K / Q4_K in a Q4_K_M file): rows gathered and decoded */
    {OP_EMBED,           OT_SMALL, "embed q6_k",                     {37, 256, 9},           FT_Q6_K, 0,               1e-7, 8e-3},
    {OP_EMBED,           OT_SMALL, "embed q4_0",                     {41, 96, 9},            FT_Q4_0, 0,               1e-7, 8e-3},
    {OP_EMBED,           OT_SMALL, "embed q3_k",                     {23, 512, 9},           FT_Q3_K, 0,               1e-7, 8e-3},
    /* the IQ types that need no importance matrix: non-linear 4-bit levels, 32-blocks and 256-blocks */
    {OP_EMBED,           OT_SMALL, "embed iq4_nl",                   {31, 64, 9},            FT_IQ4_NL, 0,               1e-7, 8e-3},
    {OP_EMBED,           OT_SMALL, "embed iq4_xs",                   {29, 256, 9},           FT_IQ4_XS, 0,               1e-7, 8e-3},
    {OP_EMBED,           OT_MID,   "m embed bf16",                   {300, 264, 40},         FT_BF16, 0,               0,    BT},
    {OP_EMBED,           OT_MID,   "m embed nf4",                    {100, 130, 20},         FT_NF4,  0,               0,    BT},
    {OP_EMBED,           OT_REAL,  "L70 embed bf16 (V cut to 4096)", {4096, 8192, 256},      FT_BF16, 0,               0,    BT},
    {OP_EMBED,           OT_REAL,  "Q32 embed nf4 (V cut to 4096)",  {4096, 5120, 256},      FT_NF4,  0,               0,    BT},

    {OP_RMSNORM,         OT_SMALL, "rmsnorm bf16 w",                 {7, 96},                FT_BF16, 0,               1e-6, 1e-2},
    {OP_RMSNORM,         OT_SMALL, "rmsnorm qk-norm [N*H, D]",       {20, 16},               FT_F32,  0,               1e-6, 1e-2},
    {OP_RMSNORM,         OT_MID,   "m rmsnorm vec8",                 {9, 256},               FT_BF16, 0,               0,    BT},
    {OP_RMSNORM,         OT_MID,   "m rmsnorm scalar",               {5, 100},               FT_F32,  0,               0,    BT},
    {OP_RMSNORM_AND_BWD, OT_REAL,  "L70 input_layernorm",            {256, 8192},            FT_BF16, 0,               0,    BT},
    {OP_RMSNORM,         OT_REAL,  "Q32 input_layernorm",            {256, 5120},            FT_BF16, 0,               0,    BT},
    {OP_RMSNORM,         OT_REAL,  "Q32 q_norm [N*H, D]",            {256 * 64, 128},        FT_BF16, 0,               0,    BT},
    {OP_RMSNORM_BWD,     OT_SMALL, "rmsnorm_bwd",                    {7, 96},                FT_BF16, 0,               1e-6, 2e-2},
    {OP_RMSNORM_BWD,     OT_MID,   "m rmsnorm_bwd vec8",             {9, 256},               FT_BF16, 0,               0,    BT},
    {OP_RMSNORM_BWD,     OT_SMALL, "rmsnorm_bwd +acc",               {7, 96},                FT_BF16, F_ACC,           1e-6, 2e-2},
    {OP_RMSNORM_BWD,     OT_MID,   "m rmsnorm_bwd vec8 +acc",        {9, 256},               FT_BF16, F_ACC,           0,    BT},
    {OP_RMSNORM_BWD,     OT_MID,   "m rmsnorm_bwd scalar +acc",      {6, 90},                FT_F32,  F_ACC,           0,    BT},
    {OP_RMSNORM_BWD,     OT_MID,   "m rmsnorm_bwd vec8 f32 w +acc",  {9, 256},               FT_F32,  F_ACC,           0,    BT},
    {OP_RMSNORM_BWD,     OT_MID,   "m rmsnorm_bwd scalar f16 w",     {6, 90},                FT_F16,  0,               0,    BT},
    {OP_RMSNORM_BWD,     OT_REAL,  "M24 input_layernorm +acc",       {256, 5120},            FT_BF16, F_ACC,           0,    BT},
    {OP_RMSNORM_BWD,     OT_REAL,  "Q32 k_norm [N*Hkv, D]",          {256 * 8, 128},         FT_BF16, 0,               0,    BT},

    {OP_LINEAR,          OT_SMALL, "linear f32",                     {9, 70, 300},           FT_F32,  0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear f32 +bias +acc",          {9, 70, 300},           FT_F32,  F_ACC | F_BIAS,  1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear bf16",                    {9, 70, 300},           FT_BF16, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear f16 +bias",               {5, 64, 33},            FT_F16,  F_BIAS,          1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear nf4",                     {9, 70, 300},           FT_NF4,  0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear nf4 +bias +acc",          {3, 130, 257},          FT_NF4,  F_ACC | F_BIAS,  1e-6, 1e-2},
    /* NF4 over at most 8 rows (a decoding step): the codes read directly (CUDA gemv.cu); in a multiple
     * of 8 (eight weights a load) or not (one at a time, blocks across rows) */
    {OP_LINEAR,          OT_SMALL, "linear nf4 1 row",               {1, 72, 40},            FT_NF4,  0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear nf4 8 rows +acc",         {8, 64, 33},            FT_NF4,  F_ACC,           1e-6, 1e-2},
    /* ggml block weights (a GGUF base; tests/op_table_ggml.c): every type, in a multiple of its block
     * (32; 256 for the K-quants), over 1, 8 and 33 rows and with bias and accumulation */
    {OP_LINEAR,          OT_SMALL, "linear q4_0",                    {9, 96, 40},            FT_Q4_0, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q4_1 8 rows +bias",       {8, 64, 33},            FT_Q4_1, F_BIAS,          1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q5_0 1 row",              {1, 160, 20},           FT_Q5_0, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q5_1 33 rows +acc",       {33, 64, 17},           FT_Q5_1, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q8_0 +bias +acc",         {5, 128, 24},           FT_Q8_0, F_ACC | F_BIAS,  1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q2_k",                    {9, 256, 24},           FT_Q2_K, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q3_k 8 rows +bias",       {8, 256, 20},           FT_Q3_K, F_BIAS,          1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q4_k 1 row",              {1, 512, 40},           FT_Q4_K, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q4_k 33 rows +bias +acc", {33, 256, 33},          FT_Q4_K, F_ACC | F_BIAS,  1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q5_k",                    {9, 256, 30},           FT_Q5_K, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q6_k 8 rows +acc",        {8, 512, 24},           FT_Q6_K, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear q6_k 1 row +bias",        {1, 256, 17},           FT_Q6_K, F_BIAS,          1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear iq4_nl 8 rows +bias",     {8, 96, 24},            FT_IQ4_NL, F_BIAS,          1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear iq4_nl 33 rows +acc",     {33, 64, 20},           FT_IQ4_NL, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear iq4_xs 1 row",            {1, 512, 24},           FT_IQ4_XS, 0,               1e-6, 1e-2},
    {OP_LINEAR,          OT_SMALL, "linear iq4_xs +bias +acc",       {9, 256, 30},           FT_IQ4_XS, F_ACC | F_BIAS,  1e-6, 1e-2},
    {OP_LINEAR,          OT_MID,   "m linear nf4 1 row",             {1, 512, 300},          FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_MID,   "m linear nf4 8 rows +bias +acc", {8, 264, 136},          FT_NF4,  F_ACC | F_BIAS,  0,    BT},
    {OP_LINEAR,          OT_MID,   "m linear nf4 5 rows odd in",     {5, 100, 70},           FT_NF4,  F_BIAS,          0,    BT},
    {OP_LINEAR,          OT_MID,   "m linear nf4 odd N",             {33, 256, 520},         FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_MID,   "m linear bf16 +bias +acc",       {17, 264, 136},         FT_BF16, F_ACC | F_BIAS,  0,    BT},
    {OP_LINEAR,          OT_MID,   "m linear iq4_xs 8 rows +acc",    {8, 512, 136},          FT_IQ4_XS, F_ACC,           0,    BT},
    {OP_LINEAR,          OT_MID,   "m linear iq4_nl +bias",          {17, 160, 72},          FT_IQ4_NL, F_BIAS,          0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "L70 q_proj",                     {128, 8192, 8192},      FT_NF4,  0,               0,    BT},
    /* a Q4_K_M GGUF base: Q4_K attention, Q6_K down_proj */
    {OP_LINEAR_AND_BWD,  OT_REAL,  "L70 q_proj q4_k",                {128, 8192, 8192},      FT_Q4_K, 0,               0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "L70 down_proj q6_k",             {128, 28672, 8192},     FT_Q6_K, 0,               0,    BT},
    /* an IQ4_XS GGUF base (the common 4-bit choice for large models): through the GEMM and the gemv */
    {OP_LINEAR_AND_BWD,  OT_REAL,  "L70 q_proj iq4_xs",              {128, 8192, 8192},      FT_IQ4_XS, 0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "L70 down_proj iq4_xs 1 row",     {1, 28672, 8192},       FT_IQ4_XS, 0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "L70 k_proj",                     {128, 8192, 1024},      FT_NF4,  0,               0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "L70 gate_proj",                  {128, 8192, 28672},     FT_NF4,  0,               0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "L70 down_proj",                  {128, 28672, 8192},     FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "L70 q_proj 1 row",               {1, 8192, 8192},        FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "L70 down_proj 1 row +acc",       {1, 28672, 8192},       FT_NF4,  F_ACC,           0,    BT},
    {OP_LINEAR,          OT_REAL,  "Q32 gate_proj 4 rows",           {4, 5120, 25600},       FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "L70 q_proj bf16 +bias +acc",     {128, 8192, 8192},      FT_BF16, F_ACC | F_BIAS,  0,    BT},
    {OP_LINEAR,          OT_REAL,  "Q32 q_proj",                     {128, 5120, 8192},      FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "Q32 k_proj",                     {128, 5120, 1024},      FT_NF4,  0,               0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "Q32 o_proj",                     {128, 8192, 5120},      FT_NF4,  0,               0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "Q32 gate_proj",                  {128, 5120, 25600},     FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "Q32 down_proj",                  {128, 25600, 5120},     FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "M24 q_proj",                     {128, 5120, 4096},      FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "M24 o_proj",                     {128, 4096, 5120},      FT_NF4,  0,               0,    BT},
    {OP_LINEAR,          OT_REAL,  "M24 gate_proj",                  {128, 5120, 32768},     FT_NF4,  0,               0,    BT},
    {OP_LINEAR_AND_BWD,  OT_REAL,  "M24 down_proj",                  {128, 32768, 5120},     FT_NF4,  0,               0,    BT},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x f32",               {9, 70, 300},           FT_F32,  0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x bf16 +acc",         {9, 70, 300},           FT_BF16, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x nf4",               {9, 70, 600},           FT_NF4,  0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q4_0 +acc",         {9, 64, 40},            FT_Q4_0, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q4_1",              {8, 96, 30},            FT_Q4_1, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q5_0 1 row",        {1, 64, 33},            FT_Q5_0, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q5_1 +acc",         {33, 128, 20},          FT_Q5_1, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q8_0",              {9, 160, 24},           FT_Q8_0, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q2_k +acc",         {8, 256, 24},           FT_Q2_K, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q3_k",              {33, 256, 20},          FT_Q3_K, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q4_k 1 row +acc",   {1, 512, 24},           FT_Q4_K, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q5_k",              {9, 256, 33},           FT_Q5_K, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x q6_k",              {8, 256, 40},           FT_Q6_K, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x iq4_nl",            {9, 64, 40},            FT_IQ4_NL, 0,               1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_SMALL, "linear_bwd_x iq4_xs +acc",       {8, 256, 24},           FT_IQ4_XS, F_ACC,           1e-6, 1e-2},
    {OP_LINEAR_BWD_X,    OT_MID,   "m linear_bwd_x nf4",             {33, 520, 256},         FT_NF4,  0,               0,    BT},
    {OP_LINEAR_BWD_X,    OT_MID,   "m linear_bwd_x f16 +acc",        {12, 100, 90},          FT_F16,  F_ACC,           0,    BT},
    {OP_LINEAR_BWD_X,    OT_REAL,  "L70 k_proj +acc",                {128, 8192, 1024},      FT_NF4,  F_ACC,           0,    BT},

    /* F_ACC: y / dx += (the model's o and down forward, up/k/v backward), else they are overwritten
     * (the frozen linear then accumulates on top: trainer/model.c ft_proj) */
    {OP_LORA_FWD,        OT_SMALL, "lora_fwd",                       {11, 40, 33, 8},        FT_F32,  0,               1e-6, 1e-2},
    {OP_LORA_FWD,        OT_SMALL, "lora_fwd +acc",                  {11, 40, 33, 8},        FT_F32,  F_ACC,           1e-6, 1e-2},
    {OP_LORA_FWD,        OT_SMALL, "lora_fwd t only",                {11, 40, 33, 8},        FT_F32,  F_TONLY,         1e-6, 1e-2},
    {OP_LORA_FWD,        OT_SMALL, "lora_fwd t, then y from t +acc", {11, 40, 33, 8},        FT_F32,  F_TGIVEN | F_ACC, 1e-6, 1e-2},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r16",                     {40, 136, 72, 16},      FT_F32,  0,               0,    BT},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r8 odd +acc",             {37, 96, 130, 8},       FT_F32,  F_ACC,           0,    BT},
    {OP_LORA_AND_BWD,    OT_REAL,  "L70 gate_proj r16",              {128, 8192, 28672, 16}, FT_F32,  0,               0,    BT},
    {OP_LORA_AND_BWD,    OT_REAL,  "L70 down_proj r16",              {128, 28672, 8192, 16}, FT_F32,  0,               0,    BT},
    {OP_LORA_FWD,        OT_REAL,  "L70 o_proj r16 +acc",            {128, 8192, 8192, 16},  FT_F32,  F_ACC,           0,    BT},
    {OP_LORA_AND_BWD,    OT_REAL,  "Q32 q_proj r64",                 {128, 5120, 8192, 64},  FT_F32,  0,               0,    BT},
    {OP_LORA_BWD,        OT_SMALL, "lora_bwd",                       {11, 40, 33, 8},        FT_F32,  0,               1e-6, 2e-2},
    {OP_LORA_BWD,        OT_SMALL, "lora_bwd +acc",                  {11, 40, 33, 8},        FT_F32,  F_ACC,           1e-6, 2e-2},
    {OP_LORA_BWD,        OT_REAL,  "M24 o_proj r16",                 {128, 4096, 5120, 16},  FT_F32,  0,               0,    BT},
    {OP_LORA_BWD,        OT_REAL,  "L70 k_proj r16 +acc",            {128, 8192, 1024, 16},  FT_F32,  F_ACC,           0,    BT},
    /* F_DROP: dropout 0.1 on the input, drawn inside the ops (CUDA fuses it into its products for
     * R 8, 16, 32 on the CUDA cores and 64, 128 on the tensor cores, rows of a multiple of 8 elements;
     * other ranks and odd widths take the unfused path) */
    {OP_LORA_FWD,        OT_SMALL, "lora_fwd drop",                  {11, 40, 33, 8},        FT_F32,  F_DROP,          1e-6, 1e-2},
    {OP_LORA_BWD,        OT_SMALL, "lora_bwd drop",                  {11, 40, 33, 8},        FT_F32,  F_DROP,          1e-6, 2e-2},
    {OP_LORA_BWD,        OT_SMALL, "lora_bwd drop +acc",             {11, 40, 33, 8},        FT_F32,  F_DROP | F_ACC,  1e-6, 2e-2},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r16 drop",                {40, 136, 72, 16},      FT_F32,  F_DROP,          0,    BT},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r32 drop +acc",           {37, 1064, 72, 32},     FT_F32,  F_DROP | F_ACC,  0,    BT},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r8 drop odd width",       {37, 98, 130, 8},       FT_F32,  F_DROP,          0,    BT},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r12 drop +acc",           {33, 96, 40, 12},       FT_F32,  F_DROP | F_ACC,  0,    BT},
    {OP_LORA_FWD,        OT_MID,   "m lora_fwd r16 drop t only",     {70, 520, 72, 16},      FT_F32,  F_DROP | F_TONLY, 0,   BT},
    /* tensor cores: partial row and column tiles, two t chunks (in 1064), N not a multiple of 8 */
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r64 drop",                {70, 200, 72, 64},      FT_F32,  F_DROP,          0,    BT},
    {OP_LORA_AND_BWD,    OT_MID,   "m lora r128 drop +acc",          {37, 136, 40, 128},     FT_F32,  F_DROP | F_ACC,  0,    BT},
    {OP_LORA_FWD,        OT_MID,   "m lora_fwd r64 drop t only",     {130, 1064, 72, 64},    FT_F32,  F_DROP | F_TONLY, 0,   BT},
    {OP_LORA_AND_BWD,    OT_REAL,  "L70 gate_proj r16 drop",         {128, 8192, 28672, 16}, FT_F32,  F_DROP,          0,    BT},
    {OP_LORA_BWD,        OT_REAL,  "L70 down_proj r16 drop +acc",    {128, 28672, 8192, 16}, FT_F32,  F_DROP | F_ACC,  0,    BT},
    {OP_LORA_AND_BWD,    OT_REAL,  "Q32 q_proj r64 drop",            {128, 5120, 8192, 64},  FT_F32,  F_DROP,          0,    BT},
    {OP_LORA_BWD,        OT_REAL,  "L70 down_proj r128 drop +acc",   {128, 28672, 8192, 128}, FT_F32, F_DROP | F_ACC,  0,    BT},

    {OP_DROPOUT,         OT_SMALL, "dropout p=0.1",                  {1000},                 FT_F32,  100,             1e-7, 8e-3},
    {OP_DROPOUT,         OT_SMALL, "dropout p=0.1 in place",         {1001},                 FT_F32,  100 | (F_INPLACE << 16), 1e-7, 8e-3},
    {OP_DROPOUT,         OT_SMALL, "dropout p=0",                    {999},                  FT_F32,  0,               0,    8e-3},
    {OP_DROPOUT,         OT_MID,   "m dropout p=0.25",               {4097},                 FT_F32,  250,             0,    BT},
    {OP_DROPOUT,         OT_MID,   "m dropout p=0.25 vec8",          {4096},                 FT_F32,  250,             0,    BT},
    {OP_DROPOUT,         OT_MID,   "m dropout p=0.25 in place vec8", {4096},                 FT_F32,  250 | (F_INPLACE << 16), 0, BT},
    {OP_DROPOUT,         OT_REAL,  "L70 lora dropout p=0.1",         {128 * 28672},          FT_F32,  100,             0,    BT},

    {OP_ROPE,            OT_SMALL, "rope default",                   {6, 3, 16},             FT_F32,  0,               1e-6, 1e-2},
    {OP_ROPE,            OT_SMALL, "rope llama3 inverse",            {6, 2, 64},             FT_F32,  F_INV | F_LLAMA3, 1e-6, 1e-2},
    {OP_ROPE,            OT_MID,   "m rope llama3",                  {40, 4, 128},           FT_F32,  F_LLAMA3,        0,    BT},
    {OP_ROPE,            OT_MID,   "m rope inverse D256",            {7, 3, 256},            FT_F32,  F_INV,           0,    BT},
    {OP_ROPE,            OT_REAL,  "L70 rope q llama3",              {256, 64, 128},         FT_F32,  F_LLAMA3,        0,    BT},
    {OP_ROPE,            OT_REAL,  "L70 rope k llama3 inverse",      {256, 8, 128},          FT_F32,  F_LLAMA3 | F_INV, 0,    BT},
    {OP_ROPE,            OT_REAL,  "M24 rope q",                     {256, 32, 128},         FT_F32,  0,               0,    BT},

    {OP_ATTN,            OT_SMALL, "attention gqa 2:1",              {2, 9, 4, 2, 8},        FT_F32,  0,               1e-6, 2e-2},
    {OP_ATTN,            OT_SMALL, "attention gqa 4:1 packed",       {2, 13, 8, 2, 6},       FT_F32,  F_PACK,          1e-6, 2e-2},
    {OP_ATTN,            OT_SMALL, "attention mha packed",           {1, 17, 3, 3, 16},      FT_F32,  F_PACK,          1e-6, 2e-2},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention D128",               {1, 80, 4, 2, 128},     FT_F32,  0,               0,    BT},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention D128 packed",        {1, 80, 4, 2, 128},     FT_F32,  F_PACK,          0,    BT},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention D64 B2 packed",      {2, 70, 4, 1, 64},      FT_F32,  F_PACK,          0,    BT},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention D256",               {1, 40, 2, 2, 256},     FT_F32,  0,               0,    BT},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention D32",                {1, 65, 4, 4, 32},      FT_F32,  0,               0,    BT},
    /* the tensor-core path (D 64/128, 64x64 tiles): partial and whole tiles, GQA 4:1 and 8:1,
     * documents crossing tile edges */
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention tc D128 T200 B2 4:1 packed", {2, 200, 8, 2, 128}, FT_F32, F_PACK,         0,    BT},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention tc D64 T130 B2 8:1", {2, 130, 8, 1, 64},     FT_F32,  0,               0,    BT},
    {OP_ATTN_AND_BWD,    OT_MID,   "m attention tc D128 T128",       {1, 128, 2, 2, 128},    FT_F32,  0,               0,    BT},
    {OP_ATTN_AND_BWD,    OT_REAL,  "L70 attention",                  {1, 512, 64, 8, 128},   FT_F32,  0,               0,    BT},
    {OP_ATTN_AND_BWD,    OT_REAL,  "L70 attention packed",           {1, 512, 64, 8, 128},   FT_F32,  F_PACK,          0,    BT},
    {OP_ATTN_AND_BWD,    OT_REAL,  "Q32 attention B2",               {2, 256, 64, 8, 128},   FT_F32,  0,               0,    BT},
    {OP_ATTN_AND_BWD,    OT_REAL,  "M24 attention packed",           {1, 512, 32, 8, 128},   FT_F32,  F_PACK,          0,    BT},
    {OP_ATTN_BWD,        OT_SMALL, "attention_bwd gqa 2:1",          {2, 9, 4, 2, 8},        FT_F32,  0,               1e-6, 3e-2},
    {OP_ATTN_BWD,        OT_SMALL, "attention_bwd gqa 4:1 packed",   {2, 13, 8, 2, 6},       FT_F32,  F_PACK,          1e-6, 3e-2},

    /* the cached decoding (s = Tq, Tk, H, Hkv, D): one new query, several, and Tq = Tk (the causal row);
     * keys past one tile (64) and the tile edge; head_dim classes; the real shapes at a long context */
    {OP_ATTN_KV,         OT_SMALL, "attention_kv 1 query gqa 2:1",   {1, 9, 4, 2, 8},        FT_F32,  0,               1e-6, 2e-2},
    {OP_ATTN_KV,         OT_SMALL, "attention_kv 3 queries 4:1",     {3, 13, 8, 2, 6},       FT_F32,  0,               1e-6, 2e-2},
    {OP_ATTN_KV,         OT_SMALL, "attention_kv Tq = Tk mha",       {5, 5, 3, 3, 16},       FT_F32,  0,               1e-6, 2e-2},
    {OP_ATTN_KV,         OT_MID,   "m attention_kv D128 Tk 300",     {1, 300, 4, 2, 128},    FT_F32,  0,               0,    BT},
    {OP_ATTN_KV,         OT_MID,   "m attention_kv D64 Tk 128 8:1",  {2, 128, 8, 1, 64},     FT_F32,  0,               0,    BT},
    {OP_ATTN_KV,         OT_MID,   "m attention_kv D256 Tk 65",      {1, 65, 2, 2, 256},     FT_F32,  0,               0,    BT},
    {OP_ATTN_KV,         OT_MID,   "m attention_kv D32 Tk 64",       {3, 64, 4, 4, 32},      FT_F32,  0,               0,    BT},
    {OP_ATTN_KV,         OT_REAL,  "L70 attention_kv Tk 4096",       {1, 4096, 64, 8, 128},  FT_F32,  0,               0,    BT},
    {OP_ATTN_KV,         OT_REAL,  "M24 attention_kv Tk 1000",       {1, 1000, 32, 8, 128},  FT_F32,  0,               0,    BT},
    {OP_SWIGLU,          OT_SMALL, "swiglu",                         {1000},                 FT_F32,  0,               1e-6, 1e-2},
    {OP_SWIGLU_AND_BWD,  OT_MID,   "m swiglu vec8",                  {5000},                 FT_F32,  0,               0,    BT},
    {OP_SWIGLU_AND_BWD,  OT_MID,   "m swiglu scalar",                {4999},                 FT_F32,  0,               0,    BT},
    {OP_SWIGLU_AND_BWD,  OT_REAL,  "L70 mlp N=128",                  {128 * 28672},          FT_F32,  0,               0,    BT},
    {OP_SWIGLU_BWD,      OT_SMALL, "swiglu_bwd",                     {1000},                 FT_F32,  0,               1e-6, 2e-2},
    {OP_SWIGLU_BWD,      OT_REAL,  "M24 mlp N=128",                  {128 * 32768},          FT_F32,  0,               0,    BT},

    {OP_ADD,             OT_SMALL, "add",                            {777},                  FT_F32,  0,               1e-7, 8e-3},
    {OP_ADD,             OT_MID,   "m add scalar",                   {3001},                 FT_F32,  0,               0,    BT},
    {OP_ADD,             OT_MID,   "m add vec8",                     {3000},                 FT_F32,  0,               0,    BT},
    {OP_ADD,             OT_REAL,  "L70 residual N=256",             {256 * 8192},           FT_F32,  0,               0,    BT},

    {OP_XENT,            OT_SMALL, "xent grad 1",                    {7, 50},                FT_F32,  1,               1e-6, 2e-2},
    {OP_XENT,            OT_SMALL, "xent grad 0.25",                 {9, 300},               FT_F32,  2,               1e-6, 2e-2},
    {OP_XENT,            OT_SMALL, "xent loss only",                 {5, 64},                FT_F32,  0,               1e-6, 2e-2},
    {OP_XENT,            OT_MID,   "m xent grad 1",                  {6, 5000},              FT_F32,  1,               0,    BT},
    {OP_XENT,            OT_MID,   "m xent loss only",               {5, 3000},              FT_F32,  0,               0,    BT},
    {OP_XENT,            OT_REAL,  "L70 lm_head chunk grad 1",       {64, 128256},           FT_F32,  1,               0,    BT},
    {OP_XENT,            OT_REAL,  "Q32 lm_head chunk grad 0.25",    {64, 151936},           FT_F32,  2,               0,    BT},
    {OP_XENT,            OT_REAL,  "M24 lm_head chunk loss only",    {64, 131072},           FT_F32,  0,               0,    BT},

    {OP_SUMSQ,           OT_SMALL, "sumsq",                          {200003},               FT_F32,  0,               1e-7, 1e-6},
    {OP_SUMSQ,           OT_MID,   "m sumsq",                        {1000003},              FT_F32,  0,               0,    1e-5},
    {OP_SUMSQ,           OT_REAL,  "LoRA grads 16M",                 {16777217},             FT_F32,  0,               0,    1e-5},

    {OP_SCALE,           OT_SMALL, "scale",                          {1234},                 FT_F32,  0,               1e-7, 1e-7},
    {OP_SCALE,           OT_MID,   "m scale",                        {70001},                FT_F32,  0,               0,    1e-5},
    {OP_SCALE,           OT_REAL,  "LoRA grads 16M",                 {16777217},             FT_F32,  0,               0,    1e-5},

    {OP_ADAMW,           OT_SMALL, "adamw",                          {1000},                 FT_F32,  0,               1e-6, 1e-6},
    {OP_ADAMW,           OT_MID,   "m adamw",                        {70001},                FT_F32,  0,               0,    1e-5},
    {OP_ADAMW,           OT_REAL,  "LoRA params 16M",                {16777217},             FT_F32,  0,               0,    1e-5},

    {OP_CLIP,            OT_SMALL, "clip_factor",                    {11},                   FT_F32,  0,               0,    0},
    {OP_CLIP,            OT_MID,   "m clip_factor",                  {40},                   FT_F32,  0,               0,    0},
    {OP_CLIP,            OT_REAL,  "grad-norm clip factor",          {16},                   FT_F32,  0,               0,    0},

    /* trainable tokens (s = N, C, k, M): rows_set copies (the BF16 rounding of the f32 rows is the only
     * difference between backends), rows_sum adds in f32 in the same order on every backend (bit-equal
     * to the CPU on BF16 inputs); F_EMPTY gives token k/2 no rows; M = 0 and every row of x are edges */
    {OP_ROWS_SET,        OT_SMALL, "rows_set k=1 C=5",               {20, 5, 1, 3},          FT_F32,  0,               0,    8e-3},
    {OP_ROWS_SET,        OT_SMALL, "rows_set empty token",           {30, 24, 4, 10},        FT_F32,  F_EMPTY,         0,    8e-3},
    {OP_ROWS_SET,        OT_SMALL, "rows_set every row C=5",         {16, 5, 3, 16},         FT_F32,  0,               0,    8e-3},
    {OP_ROWS_SET,        OT_SMALL, "rows_set M=0",                   {12, 8, 1, 0},          FT_F32,  F_EMPTY,         0,    0},
    {OP_ROWS_AND_SUM,    OT_MID,   "m rows C=77 empty token",        {300, 77, 5, 120},      FT_F32,  F_EMPTY,         0,    BT},
    {OP_ROWS_AND_SUM,    OT_MID,   "m rows every row",               {64, 264, 3, 64},       FT_F32,  0,               0,    BT},
    {OP_ROWS_AND_SUM,    OT_REAL,  "L70 trainable token rows",       {4096, 8192, 8, 512},   FT_F32,  0,               0,    BT},
    {OP_ROWS_SUM,        OT_SMALL, "rows_sum k=1 C=5",               {20, 5, 1, 3},          FT_F32,  0,               1e-6, 1e-6},
    {OP_ROWS_SUM,        OT_SMALL, "rows_sum empty token",           {30, 24, 4, 10},        FT_F32,  F_EMPTY,         1e-6, 1e-6},
    {OP_ROWS_SUM,        OT_SMALL, "rows_sum every row C=5",         {16, 5, 3, 16},         FT_F32,  0,               1e-6, 1e-6},
    {OP_ROWS_SUM,        OT_SMALL, "rows_sum M=0",                   {12, 8, 1, 0},          FT_F32,  F_EMPTY,         0,    0},
    /* (s = n, V, k): bit copies of activations, so exact on every backend; the columns include 0 and V - 1 */
    {OP_COLS_SET,        OT_SMALL, "cols_set k=1",                   {7, 50, 1},             FT_F32,  0,               0,    0},
    {OP_COLS_SET,        OT_SMALL, "cols_set",                       {9, 300, 5},            FT_F32,  0,               0,    0},
    {OP_COLS_SET,        OT_SMALL, "cols_set every column",          {3, 20, 20},            FT_F32,  0,               0,    0},
    {OP_COLS_AND_TAKE,   OT_MID,   "m cols",                         {37, 5000, 7},          FT_F32,  0,               0,    0},
    {OP_COLS_AND_TAKE,   OT_MID,   "m cols k=1 odd V",               {5, 301, 1},            FT_F32,  0,               0,    0},
    {OP_COLS_AND_TAKE,   OT_REAL,  "L70 lm_head trainable columns",  {1024, 128256, 8},      FT_F32,  0,               0,    0},
    {OP_COLS_TAKE,       OT_SMALL, "cols_take k=1",                  {7, 50, 1},             FT_F32,  0,               0,    0},
    {OP_COLS_TAKE,       OT_SMALL, "cols_take",                      {9, 300, 5},            FT_F32,  0,               0,    0},
    {OP_COLS_TAKE,       OT_SMALL, "cols_take every column",         {3, 20, 20},            FT_F32,  0,               0,    0},

    /* DoRA (s = in, out, R for the norm; N, out for the scale and the magnitude's gradient). dora_norm: an f32
     * result whose W a BF16 backend rounds to BF16 (the GEMM's operand, ops.h) where the CPU multiplies the
     * weight's own values: 1e-5 for BF16 weights (the same values on both), 1e-3 (small, mid) and 1e-4 (real)
     * for the others, whose BF16 rounding moves the norm by ~1.5e-3 / sqrt(in) RMS (docs/ops.md). Odd widths
     * read W an element at a time (CUDA), R > 16 stages the rank in two steps; ggml rows are whole blocks */
    {OP_DORA_NORM,       OT_SMALL, "dora_norm bf16",                 {72, 40, 8},            FT_BF16, 0,               1e-6, 1e-5},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm bf16 r20",             {264, 33, 20},          FT_BF16, 0,               1e-6, 1e-5},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm f32 odd in",           {70, 33, 4},            FT_F32,  0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm f16 r3",               {64, 20, 3},            FT_F16,  0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm nf4",                  {136, 40, 16},          FT_NF4,  0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm nf4 odd in",           {70, 9, 8},             FT_NF4,  0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm q4_k",                 {512, 24, 8},           FT_Q4_K, 0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm q6_k",                 {256, 17, 16},          FT_Q6_K, 0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm q4_0",                 {96, 20, 8},            FT_Q4_0, 0,               1e-6, 1e-3},
    {OP_DORA_NORM,       OT_SMALL, "dora_norm iq4_xs",               {256, 12, 8},           FT_IQ4_XS, 0,             1e-6, 1e-3},
    {OP_DORA_NORM,       OT_MID,   "m dora_norm nf4 r16",            {520, 100, 16},         FT_NF4,  0,               0,    1e-3},
    {OP_DORA_NORM,       OT_MID,   "m dora_norm q4_k r32",           {1024, 70, 32},         FT_Q4_K, 0,               0,    1e-3},
    {OP_DORA_NORM,       OT_MID,   "m dora_norm bf16 r12 odd in",    {300, 65, 12},          FT_BF16, 0,               0,    1e-5},
    {OP_DORA_NORM,       OT_REAL,  "L70 q_proj nf4 r16",             {8192, 8192, 16},       FT_NF4,  0,               0,    1e-4},
    {OP_DORA_NORM,       OT_REAL,  "L70 gate_proj nf4 r16",          {8192, 28672, 16},      FT_NF4,  0,               0,    1e-4},
    {OP_DORA_NORM,       OT_REAL,  "L70 down_proj q4_k r16",         {28672, 8192, 16},      FT_Q4_K, 0,               0,    1e-4},
    {OP_DORA_NORM,       OT_REAL,  "L70 k_proj bf16 r16",            {8192, 1024, 16},       FT_BF16, 0,               0,    1e-5},
    /* dora_scale rounds an f32 result once (8e-3 small, like add); F_ALIAS writes y over z; dora_mag_grad sums
     * BF16 inputs in f32 (f32 rule: 1e-5), in row chunks fixed by (N, out) (several from N 130 on) */
    {OP_DORA_SCALE,      OT_SMALL, "dora_scale",                     {9, 40},                FT_F32,  0,               1e-6, 8e-3},
    {OP_DORA_SCALE,      OT_SMALL, "dora_scale bf16 bias +acc",      {9, 40},                FT_BF16, F_BIAS | F_ACC,  1e-6, 8e-3},
    {OP_DORA_SCALE,      OT_SMALL, "dora_scale f16 bias in place",   {7, 33},                FT_F16,  F_BIAS | F_ALIAS, 1e-6, 8e-3},
    {OP_DORA_SCALE,      OT_SMALL, "dora_scale f32 bias",            {5, 24},                FT_F32,  F_BIAS,          1e-6, 8e-3},
    {OP_DORA_SCALE_AND_GRAD, OT_MID, "m dora vec8 bf16 bias",        {37, 264},              FT_BF16, F_BIAS,          0,    BT},
    {OP_DORA_SCALE_AND_GRAD, OT_MID, "m dora odd out +acc",          {133, 100},             FT_F32,  F_ACC,           0,    BT},
    {OP_DORA_SCALE,      OT_MID,   "m dora_scale in place",          {40, 136},              FT_F32,  F_ALIAS,         0,    BT},
    {OP_DORA_SCALE_AND_GRAD, OT_REAL, "L70 gate_proj N=128",         {128, 28672},           FT_F32,  0,               0,    BT},
    {OP_DORA_SCALE_AND_GRAD, OT_REAL, "L70 q_proj bias +acc N=256",  {256, 8192},            FT_BF16, F_BIAS | F_ACC,  0,    BT},
    {OP_DORA_MAG_GRAD,   OT_SMALL, "dora_mag_grad",                  {9, 40},                FT_F32,  0,               1e-6, 1e-5},
    {OP_DORA_MAG_GRAD,   OT_SMALL, "dora_mag_grad chunks vec8",      {130, 16},              FT_F32,  0,               1e-6, 1e-5},
    {OP_DORA_MAG_GRAD,   OT_SMALL, "dora_mag_grad chunks odd out",   {70, 33},               FT_F32,  0,               1e-6, 1e-5},
    {OP_DORA_MAG_GRAD,   OT_REAL,  "L70 k_proj N=4096",              {4096, 1024},           FT_F32,  0,               0,    BT},

    {OP_NF4,             OT_SMALL, "nf4 from f32",                   {33, 200},              FT_F32,  0,               0,    0},
    {OP_NF4,             OT_SMALL, "nf4 from bf16 (odd n)",          {17, 129},              FT_BF16, 0,               0,    0},
    {OP_NF4,             OT_MID,   "m nf4 f32 (17 256-blocks)",      {64, 4100},             FT_F32,  0,               0,    0},
    {OP_NF4,             OT_MID,   "m nf4 bf16 odd n",               {333, 777},             FT_BF16, 0,               0,    0},
    {OP_NF4,             OT_REAL,  "L70 q_proj load",                {8192, 8192},           FT_F32,  0,               0,    0},
    {OP_NF4,             OT_REAL,  "L70 gate_proj load",             {28672, 8192},          FT_BF16, 0,               0,    0},
};
const int ot_nrows = (int)(sizeof ot_rows / sizeof ot_rows[0]);
