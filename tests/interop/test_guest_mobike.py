"""Issue 16's guest row: MOBIKE with real ESP in the QEMU guest. strongSwan 5.9.8
(kernel-netlink) against our daemon (--kernel xfrm): the initiator's first address is removed
while it pings through the child; both kernels move the child's SAs in place (same SPIs) and
its policies to the second link, and the pings go on (the lost ones are counted and printed).
One boot runs guest_mobike.py's scenario in both roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.testing import guest, strongswan

from .guest_rows import boot_once, load_script, row_checks

pytestmark = [pytest.mark.interop, pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_mobike.py")
EXPECTED = {
    "children_and_keys_match",
    "mobike_negotiated",
    "pings_before_the_move",
    "pings_after_the_move",
    "lost_at_most_3_s",
    "same_ike_sa",
    "same_child_spis",
    "moved_both_sides",
    "kernel_states_both_sides",
    "kernel_sas_on_the_new_path",
    "kernel_keys_equal",
    "policies_on_the_new_path",
    "down",
    "zero_after_teardown",
}


SCENARIOS = [(s.key, s.role) for s in load_script(SCRIPT, "guest_mobike").SCENARIOS]


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(tmp_path_factory, SCRIPT, "mobike", needs=(strongswan.available,))


@pytest.mark.parametrize(("key", "role"), SCENARIOS, ids=[k for k, _ in SCENARIOS])
def test_guest_mobike_move(guest_run: guest.GuestRun, key: str, role: str) -> None:
    record = row_checks(guest_run, key, EXPECTED)
    checks = record["checks"]
    print(f"[guest mobike] {key}: {checks['_lost_pings']} of 60 pings lost during the move, "
          f"{record['seconds']} s, phases {checks['_phases']}")  # fmt: skip
