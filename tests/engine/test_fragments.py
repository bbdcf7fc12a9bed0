"""IKE fragmentation (RFC 7383): fragment_message, Reassembler and max_ike_size.

Real SkCipher objects throughout (AES-GCM-16-256 and AES-CBC-256 with HMAC-SHA2-256-128).
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Callable, Sequence

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.constants import (
    AuthMethod,
    CertEncoding,
    EncrId,
    ExchangeType,
    HeaderFlag,
    IdType,
    IntegId,
    PayloadType,
)
from ikev2.crypto.sk import SkCipher
from ikev2.crypto.suites import encr_suite, integ_suite
from ikev2.engine.fragments import (
    MAX_TOTAL_FRAGMENTS,
    Reassembler,
    fragment_message,
    max_ike_size,
)
from ikev2.engine.ike_sa import IkeSa, Outbox
from ikev2.errors import DecodeError, UsageError
from ikev2.wire import (
    AuthPayload,
    CertPayload,
    Header,
    IdiPayload,
    Message,
    Payload,
    SkfPayload,
    SkPayload,
    decode_message,
    encode_payloads,
    sk_associated_data,
)

from .pairing import psk_connections, seeded_env

SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")


def gcm() -> SkCipher:
    suite = encr_suite(EncrId.AES_GCM_16, 256)
    return SkCipher(suite, os.urandom(suite.key_bytes), None, b"")


def cbc() -> SkCipher:
    suite = encr_suite(EncrId.AES_CBC, 256)
    integ = integ_suite(IntegId.HMAC_SHA2_256_128)
    return SkCipher(suite, os.urandom(suite.key_bytes), integ, os.urandom(integ.key_bytes))


CIPHERS: dict[str, Callable[[], SkCipher]] = {"aes256gcm16": gcm, "aes256-sha256": cbc}


@pytest.fixture(params=sorted(CIPHERS))
def sk(request: pytest.FixtureRequest) -> SkCipher:
    return CIPHERS[request.param]()


def header(message_id: int = 1, exchange: int = ExchangeType.IKE_AUTH) -> Header:
    return Header(
        spi_i=SPI_I,
        spi_r=SPI_R,
        next_payload=0,
        exchange=exchange,
        flags=HeaderFlag.INITIATOR,
        message_id=message_id,
        length=0,
    )


def counter_iv() -> Callable[[int], bytes]:
    """A deterministic IV source (distinct IVs, as RFC 5282 needs for GCM)."""
    state = {"n": 0}

    def source(size: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(size)

    return source


def big_chain(seed: int = 1) -> list[Payload]:
    rng = random.Random(seed)
    return [
        IdiPayload(IdType.FQDN, b"moon.example.org"),
        *(CertPayload(CertEncoding.X509_SIGNATURE, rng.randbytes(2000)) for _ in range(3)),
        AuthPayload(AuthMethod.DIGITAL_SIGNATURE, rng.randbytes(264)),
    ]


def fragments_of(
    sk: SkCipher, payloads: Sequence[Payload], max_size: int, message_id: int = 1
) -> list[tuple[bytes, Message]]:
    datagrams = fragment_message(header(message_id), payloads, sk, os.urandom, max_size)
    return [(raw, decode_message(raw)) for raw in datagrams]


def feed(
    reassembler: Reassembler, sk: SkCipher, items: Sequence[tuple[bytes, Message]], now: float = 0
) -> list[tuple[Payload, ...]]:
    """Every result add() returned that was not None."""
    results = []
    for raw, message in items:
        result = reassembler.add(raw, message, sk, now)
        if result is not None:
            results.append(result)
    return results


def reason(reassembler: Reassembler) -> str | None:
    """last_drop, read through a call so a type checker does not keep an earlier narrowing."""
    return reassembler.last_drop


def flip(raw: bytes, offset: int, bit: int = 0) -> bytes:
    data = bytearray(raw)
    data[offset] ^= 1 << bit
    return bytes(data)


def forged(raw: bytes, offset: int) -> tuple[bytes, Message]:
    raw = flip(raw, offset)
    return raw, decode_message(raw)


def handmade(
    sk: SkCipher, number: int, total: int, plain: bytes, message_id: int = 1
) -> tuple[bytes, Message]:
    """A correctly protected SKF message with any fragment fields, bypassing the decoder's own
    checks (which already refuse number 0 or number > total) to reach the Reassembler's."""
    inner = int(PayloadType.IDi) if number == 1 else 0
    aad = sk_associated_data(
        header(message_id), inner, sk.body_length(len(plain)), fragment=(number, total)
    )
    body = sk.protect(aad, plain, os.urandom)
    hdr = header(message_id)
    return aad + body, Message(hdr, (SkfPayload(inner, number, total, body),))


# --- max_ike_size (RFC 7383 §2.5.1)


def test_max_ike_size() -> None:
    assert max_ike_size(4, 500) == 1280 - 20 - 8 == 1252
    assert max_ike_size(4, 4500) == 1280 - 20 - 8 - 4 == 1248
    assert max_ike_size(6, 500) == 1280 - 40 - 8 == 1232
    assert max_ike_size(6, 4500) == 1280 - 40 - 8 - 4 == 1228
    assert max_ike_size(4, 500, mtu=576) == 548  # the RFC's IPv4 default
    assert max_ike_size(6, 4500, mtu=1500) == 1448
    with pytest.raises(UsageError):
        max_ike_size(5, 500)
    with pytest.raises(UsageError):
        max_ike_size(4, 500, mtu=60)


# --- fragment_message (RFC 7383 §2.5)


@pytest.mark.parametrize("max_size", [548, 1228, 1252])
def test_fragments_fit_and_reassemble_in_any_order(sk: SkCipher, max_size: int) -> None:
    payloads = big_chain()
    items = fragments_of(sk, payloads, max_size)
    total = len(items)
    plain_length = len(encode_payloads(payloads)[1])
    assert total > 1 and total >= plain_length / max_size
    for index, (raw, message) in enumerate(items, start=1):
        assert len(raw) <= max_size
        assert message.header.next_payload == PayloadType.SKF
        assert message.header.message_id == 1
        assert len(message.payloads) == 1
        skf = message.payloads[-1]
        assert isinstance(skf, SkfPayload)
        assert (skf.fragment_number, skf.total_fragments) == (index, total)
        assert skf.inner_next_payload == (PayloadType.IDi if index == 1 else 0)
    # all fragments but the last are the same size (RFC 7383 §2.5)
    assert len({len(raw) for raw, _ in items[:-1]}) == 1
    assert len(items[-1][0]) <= len(items[0][0])
    # the chunks are as large as max_size allows: one more octet would overflow
    first_skf = items[0][1].payloads[-1]
    assert isinstance(first_skf, SkfPayload)
    chunk = len(sk.unprotect(items[0][0][: -len(first_skf.body)], first_skf.body))
    assert 28 + 8 + sk.body_length(chunk + 1) > max_size

    shuffled = list(items)
    random.Random(7).shuffle(shuffled)
    with_duplicates = [items[0], items[0], *items[1:-1], items[1], items[-1]]
    for order in (items, items[::-1], shuffled, with_duplicates):
        reassembler = Reassembler()
        results = feed(reassembler, sk, order)
        assert results == [tuple(payloads)]
        assert reassembler.pending is None


def test_small_message_is_one_sk_message_identical_to_ike_sa_protect(sk: SkCipher) -> None:
    payloads: list[Payload] = [
        IdiPayload(IdType.FQDN, b"sun"),
        AuthPayload(AuthMethod.PSK, bytes(32)),
    ]
    conn, _ = psk_connections()
    sa = IkeSa(
        1,
        conn,
        initiator=True,
        local=(ipaddress.ip_address("192.0.2.1"), 500),
        remote=(ipaddress.ip_address("192.0.2.2"), 500),
        spi_i=SPI_I,
        spi_r=SPI_R,
        outbox=Outbox(),
        env=seeded_env(1),
        now=0.0,
    )
    sa.sk_out = sk
    sa.random_bytes = random.Random(3).randbytes
    expected = sa.protect(ExchangeType.IKE_AUTH, 1, False, payloads)
    datagrams = fragment_message(header(1), payloads, sk, random.Random(3).randbytes, 1232)
    assert datagrams == [expected]
    message = decode_message(datagrams[0])
    assert isinstance(message.payloads[-1], SkPayload)


def test_message_exactly_at_the_limit_is_not_fragmented(sk: SkCipher) -> None:
    payloads = big_chain()
    whole = fragment_message(header(), payloads, sk, os.urandom, 65535)
    assert len(whole) == 1
    size = len(whole[0])
    exact = fragment_message(header(), payloads, sk, os.urandom, size)
    assert len(exact) == 1 and len(exact[0]) == size
    assert isinstance(decode_message(exact[0]).payloads[-1], SkPayload)
    split = fragment_message(header(), payloads, sk, os.urandom, size - 1)
    assert len(split) > 1 and all(len(raw) <= size - 1 for raw in split)


def test_impossible_fragmentation_is_a_usage_error(sk: SkCipher) -> None:
    with pytest.raises(UsageError, match="no room"):
        fragment_message(header(), big_chain(), sk, os.urandom, 28 + 8 + sk.body_length(0) - 1)
    huge = [CertPayload(CertEncoding.X509_SIGNATURE, bytes(60000))]
    with pytest.raises(UsageError, match=str(MAX_TOTAL_FRAGMENTS)):
        fragment_message(header(), huge, sk, os.urandom, 200)


# --- Reassembler drops (RFC 7383 §2.6): each with its reason, and a valid set still works


def assert_valid_set_delivers(
    reassembler: Reassembler, sk: SkCipher, message_id: int = 1, now: float = 0
) -> None:
    payloads = big_chain(message_id)
    items = fragments_of(sk, payloads, 548, message_id)
    assert feed(reassembler, sk, items, now) == [tuple(payloads)]


@pytest.mark.parametrize("where", ["ciphertext", "icv", "fragment_number", "message_id"])
def test_forged_fragment_is_dropped_and_never_stored(sk: SkCipher, where: str) -> None:
    items = fragments_of(sk, big_chain(), 548)
    raw, _ = items[1]
    offset = {
        "ciphertext": 28 + 8 + sk.encr.iv_bytes + 5,
        "icv": len(raw) - 1,
        "fragment_number": 28 + 4 + 1,  # fragment 2 -> 3, still a well-formed SKF
        "message_id": 23,
    }[where]
    bad_raw, bad_message = forged(raw, offset)
    reassembler = Reassembler()
    with structlog.testing.capture_logs() as logs:
        assert reassembler.add(bad_raw, bad_message, sk, 0) is None
    assert reassembler.last_drop is not None and reassembler.last_drop.startswith("ICV")
    assert [entry["reason"] for entry in logs] == [reassembler.last_drop]
    assert reassembler.pending is None
    # the forged copy arriving first (and again in the middle) does not block the genuine one
    order = [(bad_raw, bad_message), items[0], (bad_raw, bad_message), *items[1:]]
    assert feed(reassembler, sk, order) == [tuple(big_chain())]


def test_duplicate_fragment_dropped(sk: SkCipher) -> None:
    items = fragments_of(sk, big_chain(), 548)
    reassembler = Reassembler()
    assert reassembler.add(*items[0], sk, 0) is None
    with structlog.testing.capture_logs() as logs:
        assert reassembler.add(*items[0], sk, 0) is None
    assert reassembler.last_drop == "duplicate fragment 1"
    assert len(logs) == 1 and logs[0]["reason"] == "duplicate fragment 1"
    assert feed(reassembler, sk, items[1:]) == [tuple(big_chain())]


def test_overlapping_refragmented_copy_with_same_total_is_a_duplicate(sk: SkCipher) -> None:
    """A retransmission re-protected with fresh IVs: same numbers, different bytes."""
    items = fragments_of(sk, big_chain(), 548)
    again = fragments_of(sk, big_chain(), 548)
    assert items[0][0] != again[0][0]
    reassembler = Reassembler()
    results = feed(reassembler, sk, [items[0], again[0], again[1], items[1], *items[2:]])
    assert results == [tuple(big_chain())]


@pytest.mark.parametrize(
    ("number", "total", "reason"),
    [
        (1, 0, "fragment number 1 of 0"),
        (0, 3, "fragment number 0 of 3"),
        (4, 3, "fragment number 4 of 3"),
        (1, 33, "Total Fragments 33 exceeds the limit of 32"),
    ],
)
def test_bad_fragment_fields_dropped(sk: SkCipher, number: int, total: int, reason: str) -> None:
    reassembler = Reassembler()
    raw, message = handmade(sk, number, total, b"\x00" * 40)
    assert reassembler.add(raw, message, sk, 0) is None
    assert reassembler.last_drop == reason
    assert_valid_set_delivers(reassembler, sk)


def test_max_fragments_limit_is_configurable(sk: SkCipher) -> None:
    items = fragments_of(sk, big_chain(), 548)
    reassembler = Reassembler(max_fragments=len(items) - 1)
    assert feed(reassembler, sk, items) == []
    assert reassembler.last_drop == (
        f"Total Fragments {len(items)} exceeds the limit of {len(items) - 1}"
    )
    assert reassembler.pending is None
    assert feed(Reassembler(max_fragments=len(items)), sk, items) == [tuple(big_chain())]


def test_excessive_total_bytes_discards_the_set(sk: SkCipher) -> None:
    items = fragments_of(sk, big_chain(), 548)
    reassembler = Reassembler(max_bytes=3000)
    reasons = []
    for item in items:
        assert reassembler.add(*item, sk, 0) is None
        if reassembler.last_drop is not None:
            reasons.append(reassembler.last_drop)
            assert reassembler.pending is None  # the whole set went, not just this fragment
    assert reasons and set(reasons) == {"more than 3000 octets of fragments; set discarded"}
    # the set was thrown away, so the remaining fragments start (and again overflow) a new one
    small: list[Payload] = [
        IdiPayload(IdType.FQDN, b"x" * 900),
        AuthPayload(AuthMethod.PSK, bytes(32)),
    ]
    small_items = fragments_of(sk, small, 548, message_id=2)
    assert len(small_items) > 1
    assert feed(reassembler, sk, small_items) == [tuple(small)]


def test_larger_total_restarts_smaller_total_dropped(sk: SkCipher) -> None:
    payloads = big_chain()
    coarse = fragments_of(sk, payloads, 1232)  # fewer, bigger fragments
    fine = fragments_of(sk, payloads, 548)  # the sender lowered the fragment size
    assert len(fine) > len(coarse)
    reassembler = Reassembler()
    assert feed(reassembler, sk, coarse[:-1]) == []
    assert reassembler.pending == (1, len(coarse) - 1, len(coarse))
    # RFC 7383 §2.6: a larger Total Fragments discards the stored set and starts over
    assert reassembler.add(*fine[0], sk, 0) is None
    assert reassembler.last_drop is None
    assert reassembler.pending == (1, 1, len(fine))
    # a fragment of the older, coarser set is now dropped
    assert reassembler.add(*coarse[-1], sk, 0) is None
    assert reason(reassembler) == f"Total Fragments {len(coarse)} below the stored {len(fine)}"
    assert feed(reassembler, sk, fine[1:]) == [tuple(payloads)]


def test_older_message_id_dropped_newer_replaces(sk: SkCipher) -> None:
    old = fragments_of(sk, big_chain(1), 548, message_id=1)
    new = fragments_of(sk, big_chain(2), 548, message_id=2)
    reassembler = Reassembler()
    assert feed(reassembler, sk, old[:2]) == []
    # a newer message ID replaces the stored set of message 1
    assert reassembler.add(*new[0], sk, 0) is None
    assert reassembler.pending == (2, 1, len(new))
    for item in old:
        assert reassembler.add(*item, sk, 0) is None
        assert reassembler.last_drop == "message ID 1 older than 2"
    # interleaved: message 1's fragments keep arriving while message 2 completes
    interleaved = []
    for index, item in enumerate(new[1:]):
        interleaved += [old[index % len(old)], item]
    assert feed(reassembler, sk, interleaved) == [tuple(big_chain(2))]


def test_stale_set_discarded_on_next_add(sk: SkCipher) -> None:
    items = fragments_of(sk, big_chain(), 548)
    reassembler = Reassembler(timeout=30.0)
    assert feed(reassembler, sk, items[:-1], now=100.0) == []
    with structlog.testing.capture_logs() as logs:
        assert reassembler.add(*items[-1], sk, 131.0) is None
    assert reassembler.last_drop == "stale: fragments of message 1 older than 30.0s"
    assert [entry["reason"] for entry in logs] == [reassembler.last_drop]
    assert reassembler.pending == (1, 1, len(items))  # the late fragment began a new set
    # not stale yet: within the timeout the set completes
    assert feed(reassembler, sk, items[:-1], now=160.0) == [tuple(big_chain())]


def test_message_without_skf_dropped_and_reset_forgets(sk: SkCipher) -> None:
    whole = fragment_message(header(), [IdiPayload(IdType.FQDN, b"sun")], sk, os.urandom, 1232)
    reassembler = Reassembler()
    assert reassembler.add(whole[0], decode_message(whole[0]), sk, 0) is None
    assert reassembler.last_drop == "no Encrypted Fragment payload last"
    assert_valid_set_delivers(reassembler, sk, message_id=5)
    assert reassembler.add(*fragments_of(sk, big_chain(), 548, 4)[0], sk, 0) is None
    assert reassembler.last_drop == "message ID 4 older than 5"
    reassembler.reset()
    assert reason(reassembler) is None
    assert_valid_set_delivers(reassembler, sk, message_id=4)


def test_exchange_mismatch_dropped(sk: SkCipher) -> None:
    items = fragments_of(sk, big_chain(), 548)
    other = fragment_message(
        header(1, ExchangeType.INFORMATIONAL), big_chain(), sk, os.urandom, 548
    )
    reassembler = Reassembler()
    assert reassembler.add(*items[0], sk, 0) is None
    assert reassembler.add(other[1], decode_message(other[1]), sk, 0) is None
    assert reassembler.last_drop == "exchange or flags differ from the stored fragments"
    assert feed(reassembler, sk, items[1:]) == [tuple(big_chain())]


def test_raw_and_message_must_match(sk: SkCipher) -> None:
    items = fragments_of(sk, big_chain(), 548)
    with pytest.raises(UsageError):
        Reassembler().add(items[0][0], items[1][1], sk, 0)


def test_garbage_inner_chain_raises_decode_error(sk: SkCipher) -> None:
    """Authentic fragments whose joined plaintext is not a payload chain: INVALID_SYNTAX."""
    reassembler = Reassembler()
    assert reassembler.add(*handmade(sk, 1, 2, b"\x00\x00\x00\x30" + bytes(20)), sk, 0) is None
    with pytest.raises(DecodeError):
        reassembler.add(*handmade(sk, 2, 2, bytes(30)), sk, 0)
    assert reassembler.pending is None
    assert_valid_set_delivers(reassembler, sk, message_id=2)


# --- property: any split, any interleaving with forgeries and duplicates


CIPHER_OBJECTS = {name: make() for name, make in CIPHERS.items()}


@settings(max_examples=60, deadline=None)
@given(
    cipher=st.sampled_from(sorted(CIPHER_OBJECTS)),
    sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=5),
    max_size=st.integers(120, 1300),
    data=st.data(),
)
def test_any_interleaving_yields_nothing_or_the_original(
    cipher: str, sizes: list[int], max_size: int, data: st.DataObject
) -> None:
    sk = CIPHER_OBJECTS[cipher]
    payloads: list[Payload] = [
        CertPayload(CertEncoding.X509_SIGNATURE, bytes([n % 251]) * n) for n in sizes
    ]
    datagrams = fragment_message(header(9), payloads, sk, os.urandom, max_size)
    assert all(len(raw) <= max_size for raw in datagrams)
    pool: list[bytes] = list(datagrams)
    for _ in range(data.draw(st.integers(0, 6), label="forgeries")):
        raw = data.draw(st.sampled_from(datagrams), label="victim")
        offset = data.draw(st.integers(0, len(raw) - 1), label="offset")
        pool.append(flip(raw, offset, data.draw(st.integers(0, 7), label="bit")))
    extra = data.draw(st.lists(st.sampled_from(datagrams), max_size=4), label="duplicates")
    order = data.draw(st.permutations(pool + extra), label="order")
    reassembler = Reassembler(max_fragments=255, max_bytes=1 << 20)
    delivered = 0
    for raw in order:
        try:
            message = decode_message(raw)
        except DecodeError:
            continue  # the caller drops undecodable datagrams before reassembly
        try:
            result = reassembler.add(raw, message, sk, 0)
        except DecodeError:
            continue
        if result is not None:
            assert result == tuple(payloads)
            delivered += 1
    if len(datagrams) > 1:
        assert delivered >= 1  # every genuine fragment was in the pool
