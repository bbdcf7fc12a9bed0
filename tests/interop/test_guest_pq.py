"""Issue 15's guest rows: the post-quantum hybrid with real ESP in the QEMU guest. strongSwan
6.0.6 (kernel-netlink) against our daemon (--kernel xfrm): an x25519 + ML-KEM-768 IKE SA, then
its child rekeyed with PFS over IKE_FOLLOWUP_KE (RFC 9370 §2.2.4), or (with an RFC 8784 PPK in
its keys) the IKE SA itself rekeyed over IKE_FOLLOWUP_KE; pings through the child as ESP, both
kernels holding the same keys. One boot runs every scenario of guest_pq.py in both roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.testing import guest, strongswan

from .guest_rows import all_checks_pass, boot_once, load_script, row_record

pytestmark = [pytest.mark.interop, pytest.mark.guest, pytest.mark.sw6]

SCRIPT = Path(__file__).with_name("guest_pq.py")
COMMON = {
    "strongswan6",
    "hybrid_ike_sa",
    "one_intermediate",
    "one_followup_ke",
    "children_and_keys_match",
    "ping",
    "wire_esp",
    "no_cleartext_echo",
    "kernel_states_both_sides",
    "kernel_keys_equal",
    "counters_moved",
    "down",
    "zero_after_teardown",
}
# the checks each scenario must have recorded, by scenario name
EXPECTED = {
    "hybrid-pfs-followup-esp-tunnel": COMMON | {"pfs_child_selected"},
    "hybrid-ppk-ike-rekey-esp-tunnel": COMMON | {"ppk_used", "ike_rekeyed_hybrid", "child_moved"},
}


SCENARIOS = list(load_script(SCRIPT, "guest_pq").SCENARIO_KEYS)


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(tmp_path_factory, SCRIPT, "pq", needs=(strongswan.missing6,))


@pytest.mark.parametrize("key", SCENARIOS)
def test_guest_pq(guest_run: guest.GuestRun, key: str) -> None:
    record = row_record(guest_run, key)
    checks = record["checks"]
    all_checks_pass(checks, EXPECTED[record["name"]])
    print(f"[guest pq] {key}: {record['seconds']} s, phases {checks['_phases']}")
