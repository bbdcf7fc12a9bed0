"""Issue 16's TCP rows: IKE over TCP (RFC 9329) between two of our daemons with real XFRM in the
QEMU guest, UDP to 500/4500 dropped by nftables; and the udp-then-tcp fallback. ESP in the TCP
stream needs the kernel's espintcp: the row asserts pings as ESP in TCP where the guest kernel
has it, and otherwise that the kernel refused the TCP-encapsulated child while the IKE SA over
TCP stayed up (Debian 12's kernel is built without CONFIG_INET_ESPINTCP). One boot runs both
scenarios of guest_tcp.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.testing import guest

from .guest_rows import all_checks_pass, boot_once, load_script, nft_installed, row_record

pytestmark = [pytest.mark.interop, pytest.mark.guest]

SCRIPT = Path(__file__).with_name("guest_tcp.py")
COMMON = {"tcp_listener", "ike_over_tcp", "no_nat_seen", "ike_in_tcp_on_the_wire",
          "no_esp_outside_tcp", "down"}  # fmt: skip
PER_SCENARIO = {
    "tcp-udp-blocked": {"no_udp_sent", "nothing_dropped"},
    "udp-then-tcp-fallback": {"up_followed_the_fallback", "udp_dropped", "fallback_logged"},
}
WITH_ESPINTCP = {"ping_through_esp_in_tcp", "no_cleartext_echo", "kernel_sa_espintcp"}
WITHOUT_ESPINTCP = {"child_refused_without_espintcp", "no_kernel_sa_left", "ike_sa_survives"}


SCENARIOS = list(load_script(SCRIPT, "guest_tcp").SCENARIOS)


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> guest.GuestRun:
    return boot_once(tmp_path_factory, SCRIPT, "tcp", needs=(nft_installed,))


@pytest.mark.parametrize("key", SCENARIOS)
def test_guest_tcp(guest_run: guest.GuestRun, key: str) -> None:
    record = row_record(guest_run, key)
    checks = record["checks"]
    esp = WITH_ESPINTCP if checks["_espintcp"] else WITHOUT_ESPINTCP
    all_checks_pass(checks, COMMON | PER_SCENARIO[key] | esp)
    print(f"[guest tcp] {key}: {record['seconds']} s, espintcp {checks['_espintcp']}, "
          f"wire {checks['_wire']}, phases {checks['_phases']}")  # fmt: skip
