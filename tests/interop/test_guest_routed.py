"""Issue 14's guest rows with real ESP in the QEMU guest, strongSwan 5.9.8 (kernel-netlink)
against our daemon (--kernel xfrm): a route-based VPN over an xfrm interface the daemon makes
(if_id 42; traffic routed into it is ESP, traffic routed around it meets no policy), and
start_action = trap (the first packet brings the tunnel up). One boot runs guest_routed.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.testing import guest, strongswan

from .guest_rows import boot_once, load_script, row_checks

pytestmark = [pytest.mark.interop, pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_routed.py")
EXPECTED = {
    "xfrm-interface-esp-tunnel--ours-initiator": {
        "children_and_keys_match", "interface_made", "sas_carry_if_id", "policies_carry_if_id",
        "ping", "wire_esp", "counters_moved", "policies_match_only_that_if_id",
        "sas_untouched_around", "down", "zero_after_teardown", "interface_removed_on_stop",
    },
    "trap-esp-tunnel--ours-initiator": {
        "trap_installed", "acquire_logged", "tunnel_up_by_traffic", "children_and_keys_match",
        "ping", "wire_esp", "down", "zero_after_teardown",
    },
}  # fmt: skip


SCENARIOS = list(load_script(SCRIPT, "guest_routed").SCENARIO_KEYS)


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(tmp_path_factory, SCRIPT, "routed", needs=(strongswan.available,))


@pytest.mark.parametrize("key", SCENARIOS)
def test_guest_routed(guest_run: guest.GuestRun, key: str) -> None:
    record = row_checks(guest_run, key, EXPECTED[key])
    checks = record["checks"]
    extra = {
        k: checks[k] for k in ("_first_packet_answered", "_first_series_received") if k in checks
    }
    print(f"[guest routed] {key}: {record['seconds']} s {extra}")
