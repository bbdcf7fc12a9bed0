#!/usr/bin/env bash
# Sourced by the other .ci scripts: makes .venv with the project and its dev tools, and (as root)
# the Debian packages the root/guest/interop tests need. Idempotent; a second run is quick.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

APT_PACKAGES=(qemu-system-x86 busybox-static kmod xz-utils iproute2 iputils-ping tcpdump nftables
              strongswan-charon strongswan-swanctl libcharon-extra-plugins)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: apt-get install ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.ikev2-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev,fast]"  # fast: uvloop, so its event loop is tested too
  touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
