#!/usr/bin/env bash
# The main job for a newcomer: two ikev2 daemons negotiate an IKE SA with a child SA, show it,
# and tear it down (namespaces + veth as root, loopback otherwise).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec ikev2 demo "$@"
