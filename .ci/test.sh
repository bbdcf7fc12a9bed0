#!/usr/bin/env bash
# The whole test suite: lint, types, the import contract, then every test (unit, root, guest,
# interop). Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
echo "== ruff check";        ruff check ikev2 tests bench
echo "== ruff format";       ruff format --check ikev2 tests bench
echo "== mypy --strict";     mypy --strict ikev2
echo "== import contracts";  lint-imports
if [ "$(id -u)" = 0 ] || [ -n "${CI:-}" ]; then
  # the strongSwan 6 peer of the sw6 interop rows: built once into .cache (about 2 minutes)
  echo "== strongSwan 6";    python -m ikev2.testing.strongswan_build
fi
echo "== pytest"
HYPOTHESIS_PROFILE=ci exec pytest "$@"
