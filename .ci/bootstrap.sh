#!/usr/bin/env bash
# Sourced by the other .ci scripts: makes .venv with the project and its dev tools, and (as root)
# the Debian packages the root/guest/interop tests need. Idempotent; a second run is quick.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Installer output goes to a log, shown only when a step fails: a newcomer sees the demo or the
# tests, not pip's and apt's warnings.
mkdir -p .cache
log="$repo/.cache/bootstrap.log"
quietly() {
  if ! "$@" >>"$log" 2>&1; then
    echo "bootstrap: '$*' failed; its output ($log):" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
: >"$log"

APT_PACKAGES=(qemu-system-x86 busybox-static kmod xz-utils iproute2 iputils-ping tcpdump nftables
              strongswan-charon strongswan-swanctl libcharon-extra-plugins
              libstrongswan-standard-plugins
              libcharon-extauth-plugins  # strongSwan's eap-mschapv2 (tests/interop/test_eap.py)
              freeradius  # the RADIUS server behind EAP-RADIUS (tests/service/test_radius.py)
              # to build strongSwan 6 from source, the interop peer with ML-KEM and RFC 9370
              # (.ci/strongswan6.sh; /work/shared/vendor/README.md)
              autoconf automake libtool pkg-config gperf bison flex libssl-dev libgmp-dev make gcc)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    # installed, not merely known (a removed package keeps "deinstall ok config-files")
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: apt-get install ${missing[*]}" >&2
    quietly apt-get update -qq
    quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  quietly python3 -m venv .venv
fi
stamp=.venv/.ikev2-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing the project and its dev tools into .venv (log: $log)" >&2
  quietly .venv/bin/pip install -q --upgrade pip
  quietly .venv/bin/pip install -q -e ".[dev,fast]"  # fast: uvloop, so its event loop is tested too
  touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
