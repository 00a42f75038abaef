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
# run.sh installs it with pip --no-index --no-deps under /tmp/site. unsloth does not fit: see
# tests/gpu/README.md.
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
rm -f "$whl"/bitsandbytes-*.whl.tmp
if ! ls "$whl"/bitsandbytes-"$bnb_version"-*.whl >/dev/null 2>&1; then
  rm -f "$whl"/bitsandbytes-*.whl
  "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$whl" "bitsandbytes==$bnb_version"
fi
# Keep libbitsandbytes_cpu.so and libbitsandbytes_cuda13*.so (the image's torch is cu130; bitsandbytes
# loads the library named after torch.version.cuda), drop the other CUDA, ROCm and XPU builds, and
# take their lines out of RECORD so the wheel stays consistent (the files kept keep their hashes).
for w in "$whl"/bitsandbytes-*.whl; do
  python3 - "$w" <<'PYEOF'
import os, re, sys, zipfile
src = sys.argv[1]
keep = re.compile(r"libbitsandbytes_(cpu|cuda13[0-9])\.so$")
with zipfile.ZipFile(src) as zin:
    drop = {n for n in zin.namelist() if re.search(r"libbitsandbytes_\w+\.so$", n) and not keep.search(n)}
    if not any(keep.search(n) for n in zin.namelist() if "cuda13" in n):
        sys.exit(f"fetch-deps: {src} has no libbitsandbytes_cuda13*.so: pick another FT_BNB_VERSION")
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
        print(f"fetch-deps: {os.path.basename(src)}: dropped {len(drop)} libraries, "
              f"{os.path.getsize(src) / 2**20:.1f} MiB left", file=sys.stderr)
PYEOF
done
ls -l "$whl"
du -sh "$dir"
ls "$dir"
# the device call carries the repository's files and build-gpudeps: 64 MiB in all
repo_bytes=$(cd "$root" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
deps_bytes=$(du -sb "$dir" | cut -f1)
echo "fetch-deps: carried $(((repo_bytes + deps_bytes) / 1048576)) MiB (repository $((repo_bytes / 1048576)) MiB + build-gpudeps $((deps_bytes / 1048576)) MiB) of 64 MiB"
