#!/usr/bin/env bash
# tests/gpu/fetch-deps.sh: run on the development machine (Debian/Ubuntu with apt), before a GPU
# session, when the GPU machine's image lacks ftune's build dependencies (it cannot reach a
# package registry). Downloads, without installing, the .deb files of the libraries ftune builds
# against into build-gpudeps/ (ignored by git through /build*/), which the device call carries:
#     run(command="tests/gpu/run.sh", carry=["build-gpudeps"])
# run.sh unpacks them under /tmp/ftdeps only if pkg-config cannot find the libraries there, and
# points pkg-config, CMake and the loader at that prefix; nothing is installed into /.
# Also downloads into build-gpudeps/whl/ the Python wheels the `peft` phase (tests/ref/bench_peft.py)
# needs beyond the image's torch/transformers/peft/accelerate: bitsandbytes (FT_BNB_VERSION, default
# the pinned 0.50.2) for CPython 3.12 on manylinux x86-64, repacked with only its CPU and CUDA 13.x
# libraries (the full wheel is 43 MB, over the 64 MiB the device call carries with the repository);
# run.sh installs it with pip --no-index --no-deps under /tmp/site. Into build-unsloth/: unsloth and
# the packages it needs that the image lacks (FT_FETCH_UNSLOTH=0 skips them).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/build-gpudeps"
mkdir -p "$dir"
cd "$dir"
pkgs=(libcjson-dev libcjson1 libyaml-dev libyaml-0-2 libzstd-dev libzstd1 libpcre2-dev libpcre2-8-0
      libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libxxhash-dev libxxhash0 libutf8proc-dev libutf8proc2
      libopenblas0-pthread libopenblas-pthread-dev libgfortran5 libquadmath0
      pkgconf pkgconf-bin libpkgconf3)
if ! apt-get download "${pkgs[@]}" >/dev/null 2>&1; then
  echo "fetch-deps: apt-get download failed; refreshing the package lists and retrying" >&2
  apt-get update -qq
  apt-get download "${pkgs[@]}" >/dev/null
fi
# The static archives are not needed (ftune links the shared libraries) and would push the carried
# tree past the device tool's 64 MiB: repack the -dev packages without them.
for deb in libopenblas-pthread-dev_*.deb; do
  [ -e "$deb" ] || continue
  tmp="$(mktemp -d)"
  dpkg-deb -R "$deb" "$tmp/p"
  find "$tmp/p" -name '*.a' -delete
  dpkg-deb -b "$tmp/p" "$deb" >/dev/null
  rm -rf "$tmp"
done

# ---- Python wheels for the peft phase ----------------------------------------------------------------
whl="$dir/whl"
bnb_version="${FT_BNB_VERSION:-0.50.2}"
mkdir -p "$whl"
pip=("${FT_PIP_PYTHON:-python3}" -m pip) # any python with pip: the wheel is chosen by the flags below
# fetch DIR SPEC...: the wheels for CPython 3.12 on manylinux x86-64, without their dependencies
fetch() {
  local into="$1"
  shift
  "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$into" "$@"
}
# repack WHEEL DROP [NEED]: the wheel without the files whose names match the regular expression DROP,
# their lines taken out of RECORD so that it stays consistent (the files kept keep their hashes); fails
# when no file matches NEED.
repack() {
  python3 - "$@" <<'PYEOF'
import os, re, sys, zipfile
src, drop_re = sys.argv[1], re.compile(sys.argv[2])
need = re.compile(sys.argv[3]) if len(sys.argv) > 3 else None
with zipfile.ZipFile(src) as zin:
    names = zin.namelist()
    if need and not any(need.search(n) for n in names):
        sys.exit(f"fetch-deps: {src} has no file matching {need.pattern}: pick another version")
    drop = {n for n in names if drop_re.search(n)}
    if drop:
        tmp = src + ".tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            for info in zin.infolist():
                if info.filename in drop:
                    continue
                data = zin.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = [l for l in data.decode().splitlines() if l.split(",")[0] not in drop]
                    data = ("\n".join(lines) + "\n").encode()
                zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        os.replace(tmp, src)
        print(f"fetch-deps: {os.path.basename(src)}: dropped {len(drop)} files, "
              f"{os.path.getsize(src) / 2**20:.1f} MiB left", file=sys.stderr)
PYEOF
}
rm -f "$whl"/*.whl.tmp
if ! ls "$whl"/bitsandbytes-"$bnb_version"-*.whl >/dev/null 2>&1; then
  rm -f "$whl"/bitsandbytes-*.whl
  fetch "$whl" "bitsandbytes==$bnb_version"
  # Keep libbitsandbytes_cpu.so and libbitsandbytes_cuda13*.so (the image's torch is cu130; bitsandbytes
  # loads the library named after torch.version.cuda); drop the other CUDA, ROCm and XPU builds.
  for w in "$whl"/bitsandbytes-*.whl; do
    repack "$w" 'libbitsandbytes_(?!cpu\.so$|cuda13[0-9]\.so$)\w+\.so$' 'libbitsandbytes_cuda13[0-9]\.so$'
  done
fi

# ---- unsloth and what it needs beyond the image: the peft phase's --unsloth runs --------------------
# In build-unsloth/, carried only by the call that runs them (carry=["build-gpudeps", "build-unsloth"]);
# run.sh installs them under /tmp/site-unsloth. Pinned: unsloth 2026.10.9 pins transformers <= 5.17
# (the image's), trl <= 1.15 and datasets < 5. The image already has torch 2.11, torchvision 0.26,
# transformers, peft, accelerate, pyarrow, pandas, aiohttp, fsspec, xxhash, typer, rich, einops,
# triton (KINDS.md's package list); the rest of unsloth's and unsloth_zoo's Requires-Dist, and theirs,
# are below. unsloth's wheel is repacked without its web UI (studio/: 2,034 of its 2,257 files).
uns="$root/build-unsloth"
unsloth_pkgs=(unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 dill==0.4.1
  multiprocess==0.70.19 tyro==1.0.17 docstring-parser==0.18.0 shtab==1.13.0 typeguard==4.6.0
  xformers==0.0.35 torchao==0.18.0 cut_cross_entropy==25.1.1 diffusers==0.42.1 importlib_metadata==10.2.0
  lazy-importer==0.1.0 hf_transfer==0.1.9 msgspec==0.22.0 structlog==26.1.0 json5==0.17.3
  nest-asyncio==1.6.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0
  typing-inspection==0.4.5 typing_extensions==4.16.0)
if [ "${FT_FETCH_UNSLOTH:-1}" = 1 ] && ! ls "$uns"/unsloth-2026.10.9-*.whl >/dev/null 2>&1; then
  rm -rf "$uns"
  mkdir -p "$uns"
  fetch "$uns" "${unsloth_pkgs[@]}"
  repack "$uns"/unsloth-2026.10.9-*.whl '^studio/' '^unsloth/__init__\.py$'
fi
[ -d "$uns" ] && du -sh "$uns"
ls -l "$whl"
du -sh "$dir"
ls "$dir"
# the device call carries the repository's files and build-gpudeps (and build-unsloth for the unsloth
# runs): 64 MiB in all
repo_bytes=$(cd "$root" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
deps_bytes=$(du -sb "$dir" | cut -f1)
uns_bytes=$( (du -sb "$uns" 2>/dev/null || echo 0) | cut -f1)
echo "fetch-deps: carried $(((repo_bytes + deps_bytes) / 1048576)) MiB (repository $((repo_bytes / 1048576)) MiB + build-gpudeps $((deps_bytes / 1048576)) MiB) of 64 MiB; with build-unsloth $(((repo_bytes + deps_bytes + uns_bytes) / 1048576)) MiB"
