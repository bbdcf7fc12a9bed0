"""KeyExchange: round trips for every group, peer value validation (RFC 7296 §3.4, RFC 6989)."""

from __future__ import annotations

import os

import pytest

from ikev2.constants import KeId
from ikev2.crypto.dh import create_key_exchange, modp_prime
from ikev2.crypto.suites import UnsupportedTransform, ke_suite, supported_ke
from ikev2.errors import InvalidKeyExchange, UsageError

GROUPS = sorted(supported_ke())


@pytest.mark.parametrize("group", GROUPS)
def test_both_sides_agree(group: int) -> None:
    suite = ke_suite(group)
    initiator = create_key_exchange(group, os.urandom)
    responder = create_key_exchange(group, os.urandom)
    assert len(initiator.public_bytes) == suite.public_bytes_initiator
    secret = responder.respond(initiator.public_bytes)
    assert len(responder.public_bytes) == suite.public_bytes_responder
    assert initiator.compute(responder.public_bytes) == secret
    if suite.kind == "modp":
        assert len(secret) == suite.public_bytes_initiator  # left-padded to the prime length


@pytest.mark.parametrize("group", GROUPS)
def test_wrong_length_is_refused(group: int) -> None:
    initiator = create_key_exchange(group, os.urandom)
    responder = create_key_exchange(group, os.urandom)
    peer = create_key_exchange(group, os.urandom).public_bytes
    with pytest.raises(InvalidKeyExchange, match="expected"):
        responder.respond(peer + b"\x00")
    with pytest.raises(InvalidKeyExchange, match="expected"):
        initiator.public_bytes  # noqa: B018 (ML-KEM: makes the key pair)
        initiator.compute(peer[:-1])


@pytest.mark.parametrize("group", [KeId.ECP256, KeId.ECP384, KeId.ECP521])
def test_off_curve_point_is_refused(group: int) -> None:
    """RFC 7296 §3.4 / RFC 6989 §2.3: a point not on the curve."""
    ke = create_key_exchange(group, os.urandom)
    good = create_key_exchange(group, os.urandom).public_bytes
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(InvalidKeyExchange, match="curve"):
        ke.compute(bad)
    with pytest.raises(InvalidKeyExchange):
        ke.compute(bytes(len(good)))  # (0, 0) is no point


# RFC 7748 §6.1: all-zero output for low-order inputs; u = 0, u = 1 and a point of order 8.
LOW_ORDER_X25519 = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("point", LOW_ORDER_X25519, ids=["u0", "u1", "order8"])
def test_x25519_all_zero_result_is_refused(point: bytes) -> None:
    with pytest.raises(InvalidKeyExchange, match="all-zero"):
        create_key_exchange(KeId.CURVE25519, os.urandom).compute(point)


def test_x448_all_zero_result_is_refused() -> None:
    with pytest.raises(InvalidKeyExchange, match="all-zero"):
        create_key_exchange(KeId.CURVE448, os.urandom).compute(bytes(56))


@pytest.mark.parametrize("value", ["zero", "one", "p-1", "p", "ones"])
def test_modp_degenerate_values_are_refused(value: str) -> None:
    """RFC 6989 §2.1: 0, 1 and p-1 (and anything >= p) are not in (1, p-1)."""
    p = modp_prime(2048)
    number = {"zero": 0, "one": 1, "p-1": p - 1, "p": p, "ones": 2**2048 - 1}[value]
    with pytest.raises(InvalidKeyExchange, match=r"\(1, p-1\)"):
        create_key_exchange(KeId.MODP2048, os.urandom).compute(number.to_bytes(256))


def test_mlkem_roles() -> None:
    """The responder encapsulates (no key pair); the initiator cannot respond after sending."""
    initiator = create_key_exchange(KeId.ML_KEM_768, os.urandom)
    responder = create_key_exchange(KeId.ML_KEM_768, os.urandom)
    with pytest.raises(UsageError):
        initiator.compute(bytes(1088))  # no encapsulation key sent yet
    ek = initiator.public_bytes
    with pytest.raises(UsageError):
        initiator.respond(ek)
    shared = responder.respond(ek)
    with pytest.raises(UsageError):
        responder.respond(ek)
    assert initiator.compute(responder.public_bytes) == shared


def test_mlkem_seed_comes_from_the_random_source() -> None:
    seed = bytes(range(64))
    a = create_key_exchange(KeId.ML_KEM_1024, lambda n: seed[:n])
    b = create_key_exchange(KeId.ML_KEM_1024, lambda n: seed[:n])
    assert a.public_bytes == b.public_bytes


def test_mlkem_bad_encapsulation_key_is_refused() -> None:
    with pytest.raises(InvalidKeyExchange):
        create_key_exchange(KeId.ML_KEM_768, os.urandom).respond(b"\xff" * 1184)


def test_unsupported_group() -> None:
    with pytest.raises(UnsupportedTransform):
        create_key_exchange(KeId.MODP1024, os.urandom)
