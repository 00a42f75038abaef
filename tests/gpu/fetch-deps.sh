#!/usr/bin/env bash
# tests/gpu/fetch-deps.sh: run on the development machine (Debian/Ubuntu with apt), before a GPU
# session, when the GPU machine's image lacks ftune's build dependencies (it cannot reach a
# package registry). Downloads, without installing, the .deb files of the libraries ftune builds
# against into build-gpudeps/ (ignored by git through /build*/), which the device call carries:
#     run(command="tests/gpu/run.sh", carry=["build-gpudeps"])
# run.sh unpacks them under /tmp/ftdeps only if pkg-config cannot find the libraries there, and
# points pkg-config, CMake and the loader at that prefix; nothing is installed into /.
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
du -sh "$dir"
ls "$dir"
