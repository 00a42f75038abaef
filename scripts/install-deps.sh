#!/usr/bin/env bash
# Installs the Debian packages ftune builds against, only those missing. Needs root (or sudo).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libzstd-dev libyaml-dev libcjson-dev libpcre2-dev
      libopenblas-dev libxxhash-dev libutf8proc-dev zlib1g-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
