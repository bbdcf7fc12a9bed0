"""EAP-MSCHAPv2: the primitives against RFC 2759 §9.2 and RFC 3079 §3.5.3, MD4 against RFC 1320
A.5, and the two halves of the method against each other and against bad input."""

from __future__ import annotations

import random

import pytest

from ikev2.engine.eap import mschapv2
from ikev2.engine.eap.base import Outcome
from ikev2.engine.eap.md4 import md4

# RFC 2759 §9.2 "Hash Examples"
USER = b"User"
PASSWORD = b"clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")


@pytest.mark.parametrize(
    ("message", "digest"),
    [  # RFC 1320 Appendix A.5
        (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
        (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
        (b"message digest", "d9130a8164549fe818874806e1c7014b"),
        (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4",
        ),
        (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
    ],
)
def test_md4_rfc1320_suite(message: bytes, digest: str) -> None:
    assert md4(message).hex() == digest


def test_md4_block_boundaries_differ() -> None:
    # padding crosses into a second block at 56 octets: every length gives its own digest
    digests = {md4(b"x" * n) for n in range(50, 70)}
    assert len(digests) == 20


def test_rfc2759_section_9_2_hash_examples() -> None:
    assert mschapv2.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER).hex().upper() == (
        "D02E4386BCE91226"
    )
    password_hash = mschapv2.nt_password_hash(PASSWORD)
    assert password_hash.hex().upper() == "44EBBA8D5312B8D611474411F56989AE"
    assert md4(password_hash).hex().upper() == "41C00C584BD2D91C4017A2A12FA59F3F"
    nt = mschapv2.nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD)
    assert nt.hex().upper() == "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF"
    auth = mschapv2.authenticator_response(PASSWORD, nt, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert auth == b"S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_rfc3079_section_3_5_3_keys_and_the_msk() -> None:
    nt = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
    master = mschapv2.master_key(PASSWORD, nt)
    assert master.hex().upper() == "FDECE3717A8C838CB388E527AE3CDD31"
    # §3.5.3 prints the server's send key, 128 bits (Magic3) - the client's receive key
    server_send = mschapv2.asymmetric_start_key(master, send=True, server=True)
    assert server_send.hex().upper() == "8B7CDC149B993A1BA118CB153F56DCCB"
    assert mschapv2.asymmetric_start_key(master, send=False, server=False) == server_send
    client_send = mschapv2.asymmetric_start_key(master, send=True, server=False)
    assert client_send == mschapv2.asymmetric_start_key(master, send=False, server=True)
    assert client_send != server_send
    msk = mschapv2.msk(PASSWORD, nt)
    # MasterReceiveKey | MasterSendKey (as the server names them) | 32 zero octets
    assert msk == client_send + server_send + bytes(32) and len(msk) == 64


def test_domain_is_stripped_from_the_user_name_in_the_challenge_hash() -> None:
    plain = mschapv2.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert mschapv2.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, b"CORP\\User") == plain


def rng(seed: int) -> random.Random:
    return random.Random(seed)


def converse(
    password: bytes, user: bytes = b"carol"
) -> tuple[mschapv2.MsChapV2Server, mschapv2.MsChapV2Peer, list[Outcome]]:
    server = mschapv2.MsChapV2Server(b"gw", {b"carol": b"right password"}.get, rng(1).randbytes)
    peer = mschapv2.MsChapV2Peer(user, password, rng(2).randbytes)
    outcomes = []
    request: bytes | None = server.start(7)
    while request is not None:
        answer = peer.process(7, request)
        outcomes.append(answer.outcome)
        if answer.data is None:
            break
        step = server.process(8, answer.data)
        outcomes.append(step.outcome)
        request = step.data if step.outcome is Outcome.CONTINUE else None
    return server, peer, outcomes


def test_right_password_succeeds_with_the_same_msk_on_both_sides() -> None:
    server, peer, outcomes = converse(b"right password")
    # Challenge -> Response -> Success request (peer verified it) -> Success response
    assert outcomes == [Outcome.CONTINUE, Outcome.CONTINUE, Outcome.SUCCESS, Outcome.SUCCESS]
    assert server.msk() is not None and server.msk() == peer.msk()
    assert server.peer_name() == b"carol"


@pytest.mark.parametrize(("password", "user"), [(b"wrong password", b"carol"),
                                                (b"right password", b"dave")])  # fmt: skip
def test_wrong_password_or_user_ends_in_the_failure_round(password: bytes, user: bytes) -> None:
    server, _peer, outcomes = converse(password, user)
    # Response -> Failure request (E=691) -> our OpCode 4 -> the server's verdict
    assert outcomes == [Outcome.CONTINUE, Outcome.CONTINUE, Outcome.FAILURE, Outcome.FAILURE]
    assert server.msk() is None


def test_peer_refuses_a_forged_authenticator_response() -> None:
    server = mschapv2.MsChapV2Server(b"gw", {b"carol": b"right password"}.get, rng(1).randbytes)
    peer = mschapv2.MsChapV2Peer(b"carol", b"right password", rng(2).randbytes)
    response = peer.process(1, server.start(1))
    assert response.data is not None
    success = server.process(2, response.data)
    assert success.data is not None and b"S=" in success.data
    forged = success.data.replace(b"S=", b"S=0")[: len(success.data)]
    step = peer.process(2, forged)
    assert step.outcome is Outcome.FAILURE and "authenticator response" in step.reason


def test_peer_refuses_success_before_a_challenge() -> None:
    peer = mschapv2.MsChapV2Peer(b"carol", b"pw", rng(2).randbytes)
    step = peer.process(1, bytes([3, 1, 0, 46]) + b"S=" + b"0" * 40 + b" M=x")
    assert step.outcome is Outcome.FAILURE


@pytest.mark.parametrize("seed", range(40))
def test_garbage_never_raises(seed: int) -> None:
    r = random.Random(seed)
    data = r.randbytes(r.randrange(0, 80))
    server = mschapv2.MsChapV2Server(b"gw", {b"carol": b"pw"}.get, r.randbytes)
    server.start(1)
    assert server.process(2, data).outcome is Outcome.FAILURE
    peer = mschapv2.MsChapV2Peer(b"carol", b"pw", r.randbytes)
    assert peer.process(1, data).outcome in (Outcome.FAILURE, Outcome.CONTINUE)
