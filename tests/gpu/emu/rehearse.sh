#!/usr/bin/env bash
# tests/gpu/emu/rehearse.sh: a dress rehearsal of tests/gpu/run.sh on a machine without a GPU. Every
# phase's own logic (commands, log parsing, JSON tables, pass/fail marking, the summary) runs for real,
# with the CUDA kernels on the emulator (emu/run.sh) and tiny shapes in place of the real ones, so a
# bug in the script costs no device time: a GPU session gets 30 minutes in all.
#
# What it stands in for: `build` (the emulated binaries replace the nvcc build; the real sm_90 build
# of the same targets is `tests/gpu/run.sh build` here, with nvcc and no GPU), the op table's real
# shapes (the small tier instead), the bench shapes (tiny, seq 32), compute-sanitizer (skipped), the
# device memory (FT_EMU_MEM_MIB, so `--seq max` finds a short sequence) and PyTorch's device (cpu,
# when the venv has torch, peft and bitsandbytes; else the peft phase reports that it cannot import
# them). What it proves: each phase runs to its summary lines and marks ok; not speed, not the real
# shapes, not the hardware.
#
# usage: tests/gpu/emu/rehearse.sh [phase...]       (default: every phase but build, sanitize, resume and
#        context: resume trains four 10-step runs and context one step of the longest sequence a
#        132 MiB device fits (~7,400 tokens of the tiny shape), each an hour or more here; name them
#        to run them)
#   FT_EMU_BUILD  the emulator's build directory (default build-emu-rehearse)
#   FT_PEFT_PYTHON python with torch, transformers, peft, accelerate and bitsandbytes (default
#                 /work/venv/bin/python when it exists, else python3)
#   OUT           where run.sh writes its logs (default build-emu-rehearse/out)
# Slow (the emulator runs one OS thread per CUDA thread); measured 2026-11-23 on two cores shared
# with other jobs: ops 5 min (24 on 2026-11-24, alone, with every attention cross-check), e2e 11,
# load 0.5, bench 2.5, ablate 20, peft 0.2, profile 2.6 (fake ncu); context chose its
# sequence (7,424) but its step had not ended after 30 min. Name the phases that changed. e2e
# now trains the demo recipe (2,048 tokens a step, ~28x the old e2e's): run only when named, with
# FT_E2E_STEPS=1 (its parsing and pass/fail logic were checked on CPU binaries instead).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
export FT_EMU_BUILD="${FT_EMU_BUILD:-$root/build-emu-rehearse}"
emu="$root/tests/gpu/emu/run.sh"
"$emu" build >/dev/null                  # test_ops_cuda_emu, test_ops_cpu_emu
"$emu" ftune --version >/dev/null        # ftune_emu
[ $# -eq 0 ] && set -- ops load bench ablate peft profile

export OUT="${OUT:-$FT_EMU_BUILD/out}"
export FT_GPU_BUILD="$FT_EMU_BUILD/gpu"
export FT_GPU_FTUNE="$FT_EMU_BUILD/ftune_emu"
export FT_GPU_OPS_CUDA="$FT_EMU_BUILD/test_ops_cuda_emu"
export FT_GPU_OPS_CPU="$FT_EMU_BUILD/test_ops_cpu_emu"
export FT_GPU_SANITIZER=none
# the emulator has no cuDNN: the FT_CUDA_ATTN=cudnn cross-check falls back to our kernels there, and
# test_sdpa_graph (a CTest on the CPU build) is not rerun
export FT_GPU_REHEARSAL=1 FT_GPU_SDPA_TEST=/bin/true
export FT_OPS_ARGS="--small" FT_OPS_BIG="--small" FT_OPS_ATTN_TIERS="--small"
export FT_E2E_STEPS="${FT_E2E_STEPS:-1}" FT_E2E_D128_STEPS=2 FT_E2E_GEN_N=4
export FT_LOAD_SHAPE=tiny FT_LOAD_LAYERS=2 FT_LOAD_SHARDS=2 FT_LOAD_DIR="$FT_EMU_BUILD/synth-ckpt"
export FT_RESUME_STEPS=10
export FT_BENCH_SHAPES="tiny tiny:16 tiny+keep tiny@12" FT_BENCH_SEQ=32 FT_BENCH_STEPS=3 FT_BENCH_ARGS="--peak-n 64"
export FT_ABLATE_ARGS="--shape tiny --steps 2" FT_ABLATE_SEQS="64 32"
export FT_PEFT_DEVICE=cpu FT_PEFT_STEPS=2 FT_UNSLOTH=0 # unsloth needs a GPU
[ -z "${FT_PEFT_PYTHON:-}" ] && [ -x /work/venv/bin/python ] && export FT_PEFT_PYTHON=/work/venv/bin/python
export FT_CONTEXT_SHAPE=tiny FT_CONTEXT_PEFT=0 # bench_peft.py --seq max needs CUDA
# no Nsight Compute without a GPU: fake-ncu.sh checks run.sh's options, runs the bench, prints made-up rows
export FT_GPU_NCU="$root/tests/gpu/emu/fake-ncu.sh" FT_PROFILE_ARGS="--shape tiny --layers 2 --seq 32 --micro-batch 1"
mkdir -p "$FT_GPU_BUILD" "$OUT"
# the context phase on a 132 MiB device (`--seq max` then picks ~7,400 tokens, not 1M), the rest on the
# emulator's default 32 GiB; each run writes its own summary
rest=() ctx=0 rc=0
for p in "$@"; do if [ "$p" = context ]; then ctx=1; else rest+=("$p"); fi; done
if [ ${#rest[@]} -gt 0 ]; then "$root/tests/gpu/run.sh" "${rest[@]}" || rc=1; fi
if [ $ctx -eq 1 ]; then
  OUT="$OUT/context" FT_EMU_MEM_MIB="${FT_EMU_MEM_MIB:-132}" "$root/tests/gpu/run.sh" context || rc=1
fi
exit $rc
