"""kernel/addresses.py against the real kernel in a fresh network namespace (root): a virtual IP
added with RTM_NEWADDR appears (to our dump and to `ip addr`), RTM_DELADDR removes it; an
address already present is reported, not taken over. MemoryAddresses keeps the same contract."""

from __future__ import annotations

import errno
import subprocess
from ipaddress import ip_address

import pytest

from ikev2.kernel import KernelError
from ikev2.kernel.addresses import MemoryAddresses, NetlinkAddresses
from ikev2.testing.netns import run_in_netns

V4, V6 = ip_address("10.3.0.7"), ip_address("fd03::7")


def _ip_addr_show() -> str:
    return subprocess.run(
        ["ip", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.root
def test_address_appears_and_disappears_in_a_fresh_netns(netns: str) -> None:
    def body() -> tuple[object, ...]:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        table = NetlinkAddresses()
        try:
            before = table.list("lo")
            added = (table.add("lo", V4), table.add("lo", V6))
            again = table.add("lo", V4)  # already there: not ours a second time
            listed = table.list("lo")
            shown = _ip_addr_show()
            table.delete("lo", V4)
            table.delete("lo", V6)
            table.delete("lo", V6)  # gone already: fine
            after = table.list("lo")
            shown_after = _ip_addr_show()
            try:
                table.add("nosuchif0", V4)
                missing = None
            except KernelError as exc:
                missing = exc.errno
        finally:
            table.close()
        return before, added, again, listed, shown, after, shown_after, missing

    before, added, again, listed, shown, after, shown_after, missing = run_in_netns(netns, body)
    assert (V4, 32) not in before  # type: ignore[operator]
    assert added == (True, True) and again is False
    assert (V4, 32) in listed and (V6, 128) in listed  # type: ignore[operator]
    assert "inet 10.3.0.7/32" in shown and "inet6 fd03::7/128" in shown  # type: ignore[operator]
    assert (V4, 32) not in after and (V6, 128) not in after  # type: ignore[operator]
    assert "10.3.0.7" not in shown_after and "fd03::7" not in shown_after  # type: ignore[operator]
    assert missing == errno.ENODEV


def test_memory_addresses_keep_the_same_contract() -> None:
    table = MemoryAddresses()
    assert table.add("lo", V4) is True
    assert table.add("lo", V4) is False
    assert table.list("lo") == [(V4, 32)]
    table.delete("lo", V4)
    table.delete("lo", V4)
    assert table.list("lo") == []
