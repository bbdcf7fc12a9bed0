#!/usr/bin/env bash
# Build strongSwan 6 (the ML-KEM / RFC 9370 interop peer) into .cache/strongswan6/ when it is not
# there yet: ikev2/testing/strongswan_build.py. Idempotent and quiet (one line when it builds, the
# log's tail when it fails); safe when two runs race (a lock). Needs bootstrap's build packages.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec python -m ikev2.testing.strongswan_build "$@"
