#!/usr/bin/env bash
# The main job for a newcomer.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec ikev2 decode fixtures/captures/ikev2-reference.pcapng "$@"
