"""The responder's limits against floods that the daemon-level bench found costly (issue 18):

- while COOKIEs are demanded (RFC 7296 §2.6), a new IKE_SA_INIT without one is answered from
  SPIi and Ni alone, before the datagram is decoded, with the very answer the full path gives;
- `max_packet` (strongSwan's charon.max_packet, 10000): a longer datagram is dropped unread,
  and the fragments of one message (RFC 7383) are held up to that many octets;
- a fragment the reassembler drops is logged through the engine's rate limit, not once each.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine import Engine, dispatch
from ikev2.engine.config import EngineConfig
from ikev2.engine.fragments import fragment_message
from ikev2.engine.ike_sa import IkeSa
from ikev2.wire import NotifyPayload, decode_message, probe_init_request

from .pairing import ADDR_I, ADDR_R, psk_connections, seeded_env, with_

R_END = (ADDR_R, 500)


def init_request(seed: int = 3) -> tuple[Engine, bytes]:
    conn_i, _ = psk_connections()
    initiator = Engine(EngineConfig((conn_i,)), seeded_env(seed), strict=True)
    initiator.initiate("net", 0.0)
    [datagram] = initiator.datagrams_to_send()
    return initiator, datagram.data


def responder(**changes: Any) -> Engine:
    _, conn_r = psk_connections()
    config = EngineConfig((with_(conn_r, remote_addrs=()),), **changes)
    return Engine(config, seeded_env(99), strict=True)


def answers(engine: Engine, data: bytes, source: str = "192.0.2.7") -> list[bytes]:
    engine.receive_datagram(data, (ipaddress.ip_address(source), 500), R_END, 1.0)
    return [d.data for d in engine.datagrams_to_send()]


def test_cookie_demand_before_decoding_is_the_full_paths_answer(monkeypatch: Any) -> None:
    _, data = init_request()
    calls = []
    real = dispatch.decode_message
    monkeypatch.setattr(dispatch, "decode_message", lambda d: calls.append(d) or real(d))
    fast = answers(responder(cookie_threshold=0), data)
    assert calls == []  # never decoded
    monkeypatch.setattr(dispatch.gate, "cookie_first", lambda *args: False)
    full = answers(responder(cookie_threshold=0), data)
    assert len(calls) == 1
    assert fast == full and len(fast) == 1
    [notify] = decode_message(fast[0]).payloads
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.COOKIE


def test_an_initiator_that_returns_the_cookie_gets_in() -> None:
    initiator, data = init_request()
    r = responder(cookie_threshold=0)
    [cookie_answer] = answers(r, data, str(ADDR_I))
    initiator.receive_datagram(cookie_answer, R_END, (ADDR_I, 500), 1.0)
    [retry] = [d.data for d in initiator.datagrams_to_send()]
    assert probe_init_request(retry) is not None and probe_init_request(retry).cookie_first  # type: ignore[union-attr]
    [answer] = answers(r, retry, str(ADDR_I))
    assert decode_message(answer).header.spi_r != bytes(8)  # a half-open SA, not another COOKIE
    assert len(r.half_open) == 1


def test_below_the_cookie_threshold_nothing_changes() -> None:
    _, data = init_request()
    r = responder()  # cookie_threshold 30
    [answer] = answers(r, data)
    assert decode_message(answer).header.spi_r != bytes(8)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d[:19] + bytes([d[19] | 0x20]) + d[20:],  # a response
        lambda d: d[:8] + b"\x01" * 8 + d[16:],  # SPIr set
        lambda d: d[:18] + bytes([ExchangeType.IKE_AUTH]) + d[19:],
        lambda d: d + b"\x00",  # Length disagrees
        lambda d: d[:-1],
        lambda d: d[:28],  # no payloads, so no Nonce
        lambda d: d[:17] + b"\x30" + d[18:],  # version 3
    ],
)
def test_the_probe_leaves_anything_else_to_the_full_decoder(change: Any) -> None:
    _, data = init_request()
    assert probe_init_request(data) is not None
    assert probe_init_request(change(data)) is None


def test_a_datagram_over_max_packet_is_dropped_unread() -> None:
    _, data = init_request()
    assert answers(responder(max_packet=len(data)), data)
    with structlog.testing.capture_logs() as logs:
        assert answers(responder(max_packet=len(data) - 1), data) == []
    assert [e["reason"] for e in logs if e["event"] == "datagram dropped"] == [
        "datagram over max_packet"
    ]


def half_open_pair(max_packet: int) -> tuple[IkeSa, Engine]:
    """An initiator SA with keys after IKE_SA_INIT, and the responder holding its half-open SA."""
    initiator, data = init_request()
    r = responder(max_packet=max_packet)
    [answer] = answers(r, data, str(ADDR_I))
    initiator.receive_datagram(answer, R_END, (ADDR_I, 500), 1.0)
    initiator.datagrams_to_send()  # its IKE_AUTH: not delivered
    [sa] = initiator.sas.values()
    assert sa.sk_out is not None and len(r.half_open) == 1
    return sa, r


def fragments(sa: IkeSa, size: int, mtu: int = 1400) -> list[bytes]:
    assert sa.sk_out is not None
    junk = NotifyPayload(40000, data=os.urandom(size))
    header = sa._header(ExchangeType.IKE_AUTH, 1, False)
    return fragment_message(header, [junk], sa.sk_out, sa.random_bytes, mtu)


@pytest.mark.parametrize(("max_packet", "held"), [(10000, False), (65535, True)])
def test_fragments_are_held_up_to_max_packet(max_packet: int, held: bool) -> None:
    sa, r = half_open_pair(max_packet)
    parts = fragments(sa, 30000)
    assert len(parts) < 32  # under the reassembler's fragment count limit
    for part in parts[:-1]:  # never the last one
        answers(r, part, str(ADDR_I))
    [victim] = r.half_open.values()
    reassembler = victim.fragments_in[False]
    pending = reassembler.pending
    if held:
        assert pending is not None and pending[1] == len(parts) - 1
    else:  # at most max_packet octets were ever held; the set was discarded
        assert pending is None or pending[1] * 1400 <= max_packet
        assert reassembler.max_bytes == 10000


def test_dropped_fragments_log_bounded_lines() -> None:
    sa, r = half_open_pair(10000)
    part = bytearray(fragments(sa, 3000)[0])
    part[-1] ^= 1  # the ICV fails
    with structlog.testing.capture_logs() as logs:
        for _ in range(500):
            answers(r, bytes(part), str(ADDR_I))
    info = [e for e in logs if e["log_level"] != "debug"]
    drops = [e for e in info if e["event"] == "IKE fragment dropped"]
    assert len(drops) == r.config.drop_log_lines and drops[0]["reason"].startswith("ICV")
    assert len(info) <= r.config.drop_log_lines + 1
    assert len([e for e in logs if e["event"] == "IKE fragment dropped"]) == 1000  # debug: each


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_the_probe_never_raises_on_mutated_requests(data: st.DataObject) -> None:
    _, request = INIT
    out = bytearray(request)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(out) - 1))
        out[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(out)))
    probe = probe_init_request(bytes(out[:cut]))
    if probe is not None:  # what it found is in the datagram, where the chain says
        assert probe.spi_i == bytes(out[:8]) and probe.nonce in bytes(out)


INIT = init_request()


def unknown_spi_request() -> bytes:
    """An INFORMATIONAL request (RFC 7296 §3.1 header only) for an IKE SA nobody has."""
    return (b"\x11" * 8 + b"\x22" * 8 + bytes([0, 0x20, ExchangeType.INFORMATIONAL, 0x08])
            + (1).to_bytes(4) + (28).to_bytes(4))  # fmt: skip


def test_invalid_ike_spi_answers_are_rate_limited_and_their_table_bounded() -> None:
    """§2.21.4: an unprotected INVALID_IKE_SPI at most once a second per peer; the record of
    whom we answered holds at most 1024 peers (it is cleared, not grown)."""
    r = responder()
    data = unknown_spi_request()
    peer = (ipaddress.ip_address("192.0.2.9"), 500)
    sent = 0
    for step in range(100):  # 100 requests within one second: one answer
        r.receive_datagram(data, peer, R_END, 1.0 + step * 0.005)
        sent += len(r.datagrams_to_send())
    assert sent == 1
    r.receive_datagram(data, peer, R_END, 2.1)
    assert len(r.datagrams_to_send()) == 1  # a second later: the next one
    for n in range(3000):  # forged sources: each is answered once, the table stays bounded
        source = (ipaddress.ip_address(f"198.18.{n // 250}.{n % 250 + 1}"), 500)
        r.receive_datagram(data, source, R_END, 3.0)
        assert len(r.datagrams_to_send()) == 1
        assert len(r._invalid_spi_sent) <= 1025
