"""Real XFRM interop in the QEMU guest: strongSwan (kernel-netlink) and our daemon (--kernel xfrm)
install ESP/AH SAs, pings pass, ESP/AH is on the wire. One boot runs every scenario of
guest_interop.py; each scenario x role is then its own test (and its own docs/interop.md row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ikev2.testing import guest, strongswan

from .guest_rows import all_checks_pass, boot_once, load_script, row_record

pytestmark = [pytest.mark.interop, pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_interop.py")


SCENARIOS = [(s.key, s.name, s.role) for s in load_script(SCRIPT, "guest_interop").SCENARIOS]


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(tmp_path_factory, SCRIPT, "interop", needs=(strongswan.available,))


def test_guest_ran_every_scenario(guest_run: guest.GuestRun) -> None:
    tail = guest_run.console[-3000:]
    assert guest_run.exit_code is not None, f"the guest never reported; console:\n{tail}"
    missing = [k for k, _, _ in SCENARIOS if not (guest_run.results / f"{k}.json").exists()]
    assert not missing, f"no result for {missing}; console:\n{tail}"


def _param(key: str, name: str, role: str) -> Any:
    return pytest.param(name, role, id=key)


@pytest.mark.parametrize(("scenario", "role"), [_param(*s) for s in SCENARIOS])
def test_guest(guest_run: guest.GuestRun, scenario: str, role: str) -> None:
    log = guest_run.results / "command.log"
    tail = log.read_text()[-3000:] if log.exists() else ""
    checks = row_record(guest_run, f"{scenario}--{role}", tail=tail)["checks"]
    expected = {
        "children_and_keys_match",
        "ping",
        "kernel_states_both_sides",
        "kernel_keys_equal",
        "kernel_proto_mode",
        "counters_moved",
        "down",
        "zero_after_teardown",
    }
    if "-in-v6-" in scenario:  # IPv6 outer addresses: both kernels' SAs use them
        expected.add("kernel_outer_ipv6")
    assert any(k.startswith("wire_") for k in checks), "no wire check recorded"
    all_checks_pass(checks, expected)
