"""The EAP conversations (RFC 3748 §2, §4, §5): framing, Identity, Nak, Success/Failure."""

from __future__ import annotations

import random

import pytest

from ikev2.engine.eap import EapCode, EapPacket, EapPeer, EapServer, EapType, Outcome, parse_packet
from ikev2.engine.eap.base import EapError

USERS = {b"carol": b"carol's password", b"dave": b"dave's password"}


def test_packet_framing_rfc3748_section_4() -> None:
    raw = EapPacket(EapCode.REQUEST, 0x11, EapType.IDENTITY, b"hi").encode()
    assert raw == bytes([1, 0x11, 0, 7, 1]) + b"hi"
    assert EapPacket(EapCode.SUCCESS, 5).encode() == bytes([3, 5, 0, 4])
    assert parse_packet(raw + b"padding") == EapPacket(EapCode.REQUEST, 0x11, 1, b"hi")
    assert parse_packet(bytes([4, 9, 0, 4])) == EapPacket(EapCode.FAILURE, 9)


@pytest.mark.parametrize("raw", [b"", b"\x01\x01\x00", bytes([1, 1, 0, 9, 1]),
                                 bytes([1, 1, 0, 3, 1]), bytes([9, 1, 0, 4]),
                                 bytes([2, 1, 0, 4])])  # fmt: skip
def test_malformed_packets_are_refused(raw: bytes) -> None:
    with pytest.raises(EapError):
        parse_packet(raw)


def conversation(
    method: EapType, identity: bytes | None, user: bytes, password: bytes, allowed=None
) -> tuple[EapServer, EapPeer, list[tuple[str, Outcome]]]:
    r = random.Random(3)
    server = EapServer(method, identity, USERS.get, b"gw", r.randbytes)
    peer = EapPeer(user, password, allowed or (method,), r.randbytes)
    log: list[tuple[str, Outcome]] = []
    packet = server.start()
    for _ in range(10):
        answer = peer.process(packet)
        log.append(("peer", answer.outcome))
        if answer.packet is None:
            break
        result = server.process(answer.packet)
        log.append(("server", result.outcome))
        packet = result.packet
    return server, peer, log


@pytest.mark.parametrize("method", [EapType.MSCHAPV2, EapType.MD5_CHALLENGE])
@pytest.mark.parametrize("ask", [False, True])
def test_success_with_and_without_the_identity_round(method: EapType, ask: bool) -> None:
    server, peer, log = conversation(method, None if ask else b"carol", b"carol", USERS[b"carol"])
    assert log[-1] == ("peer", Outcome.SUCCESS) and log[-2] == ("server", Outcome.SUCCESS)
    # Requests after the first: MSCHAPv2 its Success request; the Identity round adds one
    rounds = {EapType.MSCHAPV2: 1, EapType.MD5_CHALLENGE: 0}[method] + ask
    assert sum(1 for who, o in log if who == "server" and o is Outcome.CONTINUE) == rounds
    assert server.identity == b"carol" and server.msk == peer.msk
    assert (server.msk is not None) is (method is EapType.MSCHAPV2)


@pytest.mark.parametrize("method", [EapType.MSCHAPV2, EapType.MD5_CHALLENGE])
def test_wrong_password_ends_in_eap_failure(method: EapType) -> None:
    server, peer, log = conversation(method, b"carol", b"carol", b"a wrong password")
    assert ("server", Outcome.FAILURE) in log and log[-1] == ("peer", Outcome.FAILURE)
    assert server.done and peer.done and peer.msk is None


def test_identity_round_picks_the_users_secret() -> None:
    server, _, log = conversation(EapType.MD5_CHALLENGE, None, b"dave", USERS[b"dave"])
    assert log[-1] == ("peer", Outcome.SUCCESS) and server.identity == b"dave"
    server, _, log = conversation(EapType.MD5_CHALLENGE, None, b"dave", USERS[b"carol"])
    assert log[-1] == ("peer", Outcome.FAILURE)


def test_peer_naks_a_method_it_is_not_configured_for() -> None:
    server, _, log = conversation(
        EapType.MSCHAPV2, b"carol", b"carol", b"x", allowed=(EapType.MD5_CHALLENGE,)
    )
    assert log[-1] == ("peer", Outcome.FAILURE) and ("server", Outcome.FAILURE) in log
    # the server saw the Nak and named what the peer wanted
    r = random.Random(3)
    server = EapServer(EapType.MSCHAPV2, b"carol", USERS.get, b"gw", r.randbytes)
    peer = EapPeer(b"carol", b"x", (EapType.MD5_CHALLENGE,), r.randbytes)
    nak = peer.process(server.start())
    assert nak.packet is not None and parse_packet(nak.packet).type == EapType.NAK
    assert parse_packet(nak.packet).data == bytes([EapType.MD5_CHALLENGE])
    result = server.process(nak.packet)
    assert result.outcome is Outcome.FAILURE and "wants 4" in result.reason


@pytest.mark.parametrize("ask", [False, True])
def test_server_with_alternatives_switches_to_the_method_the_peer_naks_for(ask: bool) -> None:
    r = random.Random(3)
    server = EapServer(EapType.MSCHAPV2, None if ask else b"carol", USERS.get, b"gw",
                       r.randbytes, (EapType.MD5_CHALLENGE,))  # fmt: skip
    peer = EapPeer(b"carol", USERS[b"carol"], (EapType.MD5_CHALLENGE,), r.randbytes)
    packet, types = server.start(), []
    for _ in range(6):
        answer = peer.process(packet)
        if answer.packet is None:
            break
        types.append(parse_packet(answer.packet).type)
        result = server.process(answer.packet)
        packet = result.packet
    assert answer.outcome is Outcome.SUCCESS and server.eap_type is EapType.MD5_CHALLENGE
    assert types == [*([EapType.IDENTITY] if ask else []), EapType.NAK, EapType.MD5_CHALLENGE]


def test_a_nak_for_a_method_we_do_not_offer_still_fails() -> None:
    r = random.Random(3)
    server = EapServer(EapType.MSCHAPV2, b"carol", USERS.get, b"gw", r.randbytes,
                       (EapType.MD5_CHALLENGE,))  # fmt: skip
    start = parse_packet(server.start())
    nak = EapPacket(EapCode.RESPONSE, start.identifier, EapType.NAK, bytes([13])).encode()
    result = server.process(nak)
    assert result.outcome is Outcome.FAILURE and "wants 13" in result.reason


def test_peer_ignores_an_early_eap_success() -> None:
    r = random.Random(3)
    peer = EapPeer(b"carol", b"pw", (EapType.MSCHAPV2,), r.randbytes)
    result = peer.process(EapPacket(EapCode.SUCCESS, 1).encode())
    assert result.outcome is Outcome.FAILURE and "before the method" in result.reason


def test_server_refuses_a_response_to_another_identifier() -> None:
    r = random.Random(3)
    server = EapServer(EapType.MD5_CHALLENGE, b"carol", USERS.get, b"gw", r.randbytes)
    request = parse_packet(server.start())
    wrong = EapPacket(EapCode.RESPONSE, (request.identifier + 1) % 256, 4, b"\x01x").encode()
    assert server.process(wrong).outcome is Outcome.FAILURE
    assert server.process(wrong).outcome is Outcome.FAILURE  # and stays over


def test_peer_answers_notification_and_identity() -> None:
    r = random.Random(3)
    peer = EapPeer(b"carol", b"pw", (EapType.MD5_CHALLENGE,), r.randbytes)
    note = peer.process(EapPacket(EapCode.REQUEST, 4, EapType.NOTIFICATION, b"hello").encode())
    assert note.packet == EapPacket(EapCode.RESPONSE, 4, EapType.NOTIFICATION).encode()
    ident = peer.process(EapPacket(EapCode.REQUEST, 5, EapType.IDENTITY).encode())
    assert ident.packet == EapPacket(EapCode.RESPONSE, 5, EapType.IDENTITY, b"carol").encode()


@pytest.mark.parametrize("seed", range(60))
def test_random_packets_never_raise(seed: int) -> None:
    r = random.Random(seed)
    server = EapServer(EapType.MSCHAPV2, None, USERS.get, b"gw", r.randbytes)
    server.start()
    peer = EapPeer(b"carol", b"pw", (EapType.MSCHAPV2,), r.randbytes)
    for _ in range(4):
        kind = r.choice([1, 2, 3, 4, r.randrange(256)])
        body = bytes([r.choice([1, 3, 4, 26, r.randrange(256)])]) + r.randbytes(r.randrange(40))
        raw = bytes([kind, r.randrange(256)]) + (len(body) + 4).to_bytes(2, "big") + body
        raw = raw[: r.randrange(len(raw) + 1)] if r.random() < 0.3 else raw
        assert server.process(raw).outcome in (Outcome.CONTINUE, Outcome.FAILURE)
        peer.process(raw)
