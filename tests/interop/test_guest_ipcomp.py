"""Issue 14's IPComp rows (RFC 3173) with real XFRM in the QEMU guest: strongSwan 5.9.8
(kernel-netlink, `ipcomp = yes`) against our daemon in both roles, and two of our daemons
(with a child rekey). Compressible pings go through compressed inside ESP; both kernels hold
the IPComp SAs (tunnel mode, deflate) with ESP in transport mode under them, as strongSwan
installs them. One boot runs every scenario of guest_ipcomp.py.

strongSwan on the host (kernel-libipsec) has no IPComp at all (its get_cpi is NOT_SUPPORTED),
so the rows against 5.9.8 run here, where its kernel-netlink can install IPComp SAs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest, strongswan

from .guest_rows import all_checks_pass, boot_once, load_script, row_record

pytestmark = [pytest.mark.interop, pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_ipcomp.py")
TRAFFIC = {"big_pings", "small_pings", "wire_esp", "wire_compressed"}
KERNEL = {"comp_sas", "comp_counted", "esp_transport", "policy_templates"}
COMMON = {"kernel_has_ipcomp", "cpis_negotiated", "down", "zero_after_teardown"} | TRAFFIC
EXPECTED = {
    "strongswan": COMMON | {"children_and_keys_match"}
    | {f"{k}_{who}" for k in KERNEL for who in ("ours", "strongswan")},
    "ours-ours": COMMON | {"up", "rekey_keeps_ipcomp", "comp_counted_after_rekey"}
    | {f"{k}_{who}" for k in KERNEL for who in ("left", "right")}
    | {f"{k}_after_rekey" for k in TRAFFIC},
}  # fmt: skip

SCENARIOS = [(s.key, s.name, s.role) for s in load_script(SCRIPT, "guest_ipcomp").SCENARIOS]


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(tmp_path_factory, SCRIPT, "ipcomp", needs=(strongswan.available,))


def _param(key: str, name: str, role: str) -> Any:
    return pytest.param(name, role, id=key)


@pytest.mark.parametrize(("scenario", "role"), [_param(*s) for s in SCENARIOS])
def test_guest_ipcomp(guest_run: guest.GuestRun, scenario: str, role: str) -> None:
    log = guest_run.results / "command.log"
    tail = log.read_text()[-3000:] if log.exists() else ""
    record = row_record(guest_run, f"{scenario}--{role}", tail=tail)
    checks = record["checks"]
    all_checks_pass(checks, EXPECTED["ours-ours" if role == "ours-ours" else "strongswan"])
    print(f"[guest ipcomp] {scenario}--{role}: {record['seconds']} s, cpis "
          f"{checks.get('_cpis') or checks.get('_children')}, wire {checks['_wire']}")  # fmt: skip
