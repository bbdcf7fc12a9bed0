"""Every initiator request of the strongSwan reference capture, fed to a responder engine, is
answered or refused without an exception (fixtures/captures/README.md says where it is from)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

from ikev2.constants import ExchangeType, NotifyType
from ikev2.engine import Engine
from ikev2.engine.config import EngineConfig
from ikev2.engine.identity import parse_identity
from ikev2.tools.capture import read_datagrams
from ikev2.wire import KePayload, SaPayload, decode_message

from .pairing import psk_connections, seeded_env

CAPTURE = Path(__file__).resolve().parents[2] / "fixtures" / "captures" / "ikev2-reference.pcapng"


def test_reference_requests_are_answered_or_refused() -> None:
    # the responder's side of the reference (config/swanctl-responder.conf): PSK, both proposals
    _, conn = psk_connections(
        "aes256gcm16-prfsha256-x25519,aes128-sha256-modp2048",
        "aes256gcm16,aes128-sha256",
        addr_i=ipaddress.ip_address("10.99.0.1"),
        addr_r=ipaddress.ip_address("10.99.0.2"),
        net_i="10.99.0.64/26",
        net_r="10.99.0.128/26",
    )
    conn = replace(
        conn,
        local_id=parse_identity("resp-psk.sbase.test"),
        remote_id=parse_identity("init-psk.sbase.test"),
    )
    # a replay never completes IKE_AUTH, so its six IKE_SA_INITs from one address stay
    # half-open: lift the per-source cap (block_threshold, test_dos.py) for this test
    engine = Engine(EngineConfig((conn,), block_threshold=0), seeded_env(5), strict=True)
    requests = 0
    init_answers: list[tuple[int, int]] = []
    other_answers: list[int] = []
    for now, d in enumerate(read_datagrams(CAPTURE)):
        header = decode_message(d.payload).header
        if header.is_response:
            continue
        requests += 1
        assert d.src is not None and d.dst is not None and d.sport and d.dport
        remote = (ipaddress.ip_address(d.src), d.sport)
        local = (ipaddress.ip_address(d.dst), d.dport)
        engine.receive_datagram(d.payload, remote, local, float(now))
        for out in engine.datagrams_to_send():
            answer = decode_message(out.data)
            assert answer.header.is_response
            assert answer.header.message_id == header.message_id
            if header.exchange == ExchangeType.IKE_SA_INIT:
                sa = answer.find(SaPayload)
                ke = answer.find(KePayload)
                assert sa is not None and ke is not None
                init_answers.append((sa.proposals[0].number, ke.group))
            else:
                # the reference's IKE SAs are not ours: §2.21.4 INVALID_IKE_SPI, unprotected
                assert answer.notify(NotifyType.INVALID_IKE_SPI) is not None
                other_answers.append(header.message_id)
    assert requests == 23
    # six IKE_SA_INITs, answered in the group each initiator sent: three x25519, three MODP-2048
    assert sorted(group for _number, group in init_answers) == [14] * 3 + [31] * 3
    assert other_answers  # rate limited per peer, but answered at least once
