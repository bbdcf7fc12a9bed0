"""Issue 16's TCP rows: IKE over TCP (RFC 9329) between two of our daemons with real XFRM in the
QEMU guest, UDP to 500/4500 dropped by nftables; and the udp-then-tcp fallback. ESP in the TCP
stream needs the kernel's espintcp: the row asserts pings as ESP in TCP where the guest kernel
has it, and otherwise that the kernel refused the TCP-encapsulated child while the IKE SA over
TCP stayed up (Debian 12's kernel is built without CONFIG_INET_ESPINTCP). One boot runs both
scenarios of guest_tcp.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest
from ikev2.testing.gates import is_root, need

pytestmark = [pytest.mark.interop, pytest.mark.guest]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("guest_tcp.py")
COMMON = {"tcp_listener", "ike_over_tcp", "no_nat_seen", "ike_in_tcp_on_the_wire",
          "no_esp_outside_tcp", "down"}  # fmt: skip
PER_SCENARIO = {
    "tcp-udp-blocked": {"no_udp_sent", "nothing_dropped"},
    "udp-then-tcp-fallback": {"up_followed_the_fallback", "udp_dropped", "fallback_logged"},
}
WITH_ESPINTCP = {"ping_through_esp_in_tcp", "no_cleartext_echo", "kernel_sa_espintcp"}
WITHOUT_ESPINTCP = {"child_refused_without_espintcp", "no_kernel_sa_left", "ike_sa_survives"}


def _scenarios() -> list[str]:
    spec = importlib.util.spec_from_file_location("guest_tcp", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.SCENARIOS)


SCENARIOS = _scenarios()


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[guest.GuestRun]:
    need(is_root(), "the guest shares the host root read-only with QEMU; needs root")
    need(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86 is not installed")
    need(shutil.which("nft") is not None, "nftables is not installed")
    try:
        image = guest.prepare(guest.default_cache(REPO))
    except guest.GuestError as exc:
        pytest.fail(f"cannot prepare the QEMU guest: {exc}", pytrace=False)
    results = tmp_path_factory.mktemp("guest-tcp")
    python = guest.interpreter()
    run = guest.boot(image, [str(python), str(SCRIPT), "/results"], results, cwd=REPO, timeout=900)
    print(f"\n[guest tcp] boot + scenarios: {run.wall_seconds:.1f} s, exit {run.exit_code}")
    yield run


@pytest.mark.parametrize("key", SCENARIOS)
def test_guest_tcp(guest_run: guest.GuestRun, key: str) -> None:
    path = guest_run.results / f"{key}.json"
    assert path.exists(), f"no result; console:\n{guest_run.console[-3000:]}"
    record: dict[str, Any] = json.loads(path.read_text())
    checks = record["checks"]
    assert "error" not in checks, (
        f"{key} raised in the guest:\n{checks['error']}\n{checks.get('_logs', '')}"
    )
    esp = WITH_ESPINTCP if checks["_espintcp"] else WITHOUT_ESPINTCP
    expected = COMMON | PER_SCENARIO[key] | esp
    assert set(checks) >= expected, f"checks missing: {expected - set(checks)}"
    failed = sorted(k for k, v in checks.items() if not k.startswith("_") and v is not True)
    details = {k: v for k, v in checks.items() if k.startswith("_")}
    assert not failed, f"failed checks {failed}; details: {details}"
    print(f"[guest tcp] {key}: {record['seconds']} s, espintcp {checks['_espintcp']}, "
          f"wire {checks['_wire']}, phases {checks['_phases']}")  # fmt: skip
