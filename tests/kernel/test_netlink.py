"""The netlink request socket never waits forever: a request whose answer does not come raises
KernelError(ETIMEDOUT) after REQUEST_TIMEOUT (a daemon stuck in recv() was seen in guest runs)."""

from __future__ import annotations

import errno
import time

import pytest

from ikev2.kernel import netlink
from ikev2.kernel.types import KernelError
from ikev2.testing.gates import is_root, need


def test_an_unanswered_request_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    need(is_root(), "needs root (CAP_NET_ADMIN) for a NETLINK_XFRM socket")
    monkeypatch.setattr(netlink, "REQUEST_TIMEOUT", 0.2)
    sock = netlink.NetlinkSocket()
    # the request is never sent, so no answer can come
    monkeypatch.setattr(sock, "_send", lambda op, msg_type, flags, body: 12345)
    try:
        start = time.monotonic()
        with pytest.raises(KernelError) as info:
            sock.request("get SA", 0, b"")
        assert info.value.errno == errno.ETIMEDOUT
        assert "no netlink answer within 0.2 s" in str(info.value)
        assert 0.15 <= time.monotonic() - start < 2.0
    finally:
        sock.close()
