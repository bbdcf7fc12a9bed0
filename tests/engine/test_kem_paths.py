"""KEM-shaped key exchanges (ML-KEM, FIPS 203) wherever a KE payload is made or consumed:
IKE_SA_INIT, CREATE_CHILD_SA with PFS, IKE SA rekey (RFC 7296 §1.2, §1.3.1, §1.3.2). A KEM
responder must encapsulate to the initiator's key; it never holds a key pair of its own.

And the invariant the first bug broke: no IKE SA is ever left without a deadline, whatever an
unauthenticated peer sends (a half-open SA without a timer is memory nobody gives back).
"""

from __future__ import annotations

import pytest

from ikev2.constants import ExchangeType, KeId, PayloadType
from ikev2.engine import Engine
from ikev2.engine.config import EngineConfig
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished
from ikev2.engine.state import IkeState
from ikev2.engine.tasks import ike_init
from ikev2.wire import KePayload, Message, decode_message, encode_message

from .pairing import ADDR_I, ADDR_R, Pair, psk_connections, seeded_env


def unscheduled(engine: Engine) -> list[int]:
    """The IKE SAs the engine holds with no deadline armed (none may exist)."""
    return [sa.id for sa in engine.sas.values() if engine._scheduled.get(sa.id) is None]


def assert_keys_agree(pair: Pair) -> None:
    for sa_i in pair.i.engine.sas.values():
        (sa_r,) = [s for s in pair.r.engine.sas.values() if s.spi_i == sa_i.spi_i]
        assert sa_i.keys is not None and sa_i.keys == sa_r.keys


@pytest.mark.parametrize("group", ["mlkem768", "mlkem1024"])
def test_mlkem_as_the_ike_sa_init_key_exchange(group: str) -> None:
    """The bug of issue 15: the responder called compute() (decapsulate) on a fresh ML-KEM
    object and dropped the request with a UsageError."""
    pair = Pair(*psk_connections(f"aes256gcm16-prfsha256-{group}"))
    pair.initiate()
    pair.run(until=1)
    (ei,) = pair.i.of(IkeSaEstablished)
    (er,) = pair.r.of(IkeSaEstablished)
    assert ei.suite.endswith(f"ML_KEM_{group[5:]}") and er.suite == ei.suite
    assert_keys_agree(pair)
    assert len(pair.i.of(ChildSaEstablished)) == len(pair.r.of(ChildSaEstablished)) == 1


def _init_request(ike: str, seed: int = 3) -> tuple[bytes, Pair]:
    """An initiator's IKE_SA_INIT datagram for proposal `ike` (not delivered)."""
    pair = Pair(*psk_connections(ike), seed=seed)
    pair.initiate()
    (datagram,) = pair.i.engine.datagrams_to_send()
    return datagram.data, pair


def _lenient_responder(ike: str) -> Engine:
    _conn_i, conn_r = psk_connections(ike)
    return Engine(EngineConfig((conn_r,)), seeded_env(77))  # strict=False: as in service


def _with_ke_data(raw: bytes, data: bytes) -> bytes:
    message = decode_message(raw)
    payloads = tuple(
        KePayload(p.group, data) if isinstance(p, KePayload) else p for p in message.payloads
    )
    return encode_message(Message(message.header, payloads))


def test_a_kem_responder_answers_and_arms_the_half_open_timer() -> None:
    ike = "aes256gcm16-prfsha256-mlkem768"
    raw, _ = _init_request(ike)
    responder = _lenient_responder(ike)
    responder.receive_datagram(raw, (ADDR_I, 500), (ADDR_R, 500), 0.0)
    (answer,) = responder.datagrams_to_send()
    reply = decode_message(answer.data)
    assert reply.header.exchange == ExchangeType.IKE_SA_INIT
    ke = reply.find(KePayload)
    assert ke is not None and ke.group == KeId.ML_KEM_768 and len(ke.data) == 1088  # ciphertext
    (sa,) = responder.sas.values()
    assert sa.state is IkeState.INIT_DONE and unscheduled(responder) == []
    # the half-open deadline is real: it ends the SA
    responder.handle_timer(sa.created_at + sa.conn.timers.half_open_timeout)
    assert responder.sas == {}


@pytest.mark.parametrize(
    "bad",
    [
        b"\xff" * 1184,  # every coefficient >= q: FIPS 203 §7.2 modulus check fails
        b"\x00" * 1183,  # one byte short
        b"\x00" * 1568,  # an ML-KEM-1024 sized share for ML-KEM-768
    ],
    ids=["modulus", "short", "long"],
)
def test_a_bad_kem_share_in_ike_sa_init_leaves_nothing_behind(bad: bytes) -> None:
    ike = "aes256gcm16-prfsha256-mlkem768"
    raw, _ = _init_request(ike)
    responder = _lenient_responder(ike)
    responder.receive_datagram(_with_ke_data(raw, bad), (ADDR_I, 500), (ADDR_R, 500), 0.0)
    assert responder.sas == {} and responder.by_spi == {} and len(responder.half_open) == 0
    # and nothing in the answer carries a responder SPI (no state was made for it)
    for datagram in responder.datagrams_to_send():
        assert decode_message(datagram.data).header.spi_r == bytes(8)


def test_an_internal_error_while_answering_ike_sa_init_forgets_the_sa(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our own bug in the responder's IKE_SA_INIT path (as the compute()/respond() mix-up
    was): the datagram is dropped, and the SA made for it goes too."""
    ike = "aes256gcm16-prfsha256-x25519"
    raw, _ = _init_request(ike)
    for target in ("process_r", "build_r"):
        responder = _lenient_responder(ike)
        with monkeypatch.context() as patch:

            def broken(*_args: object) -> None:
                raise RuntimeError("a bug")

            patch.setattr(ike_init, target, broken)
            responder.receive_datagram(raw, (ADDR_I, 500), (ADDR_R, 500), 0.0)
        assert responder.sas == {} and responder.by_spi == {}, target
        assert responder.datagrams_to_send() == []


@pytest.mark.parametrize("by_initiator", [True, False])
def test_child_pfs_with_mlkem_in_create_child_sa(by_initiator: bool) -> None:
    """CREATE_CHILD_SA { SA, Ni, KEi(ML-KEM), TSi, TSr } -->, either peer initiating."""
    pair = Pair(*psk_connections(esp="aes256gcm16-mlkem768"))
    pair.initiate()
    pair.run(until=1)
    side = pair.i if by_initiator else pair.r
    (old,) = side.of(ChildSaEstablished)
    (sa,) = side.engine.sas.values()
    side.events += side.engine.rekey_child(sa.id, old.spi_in, pair.now)
    pair.run(until=2)
    _first_i, new_i = pair.i.of(ChildSaEstablished)
    _first_r, new_r = pair.r.of(ChildSaEstablished)
    assert new_i.suite.endswith("ML_KEM_768") and new_r.suite == new_i.suite
    assert new_i.outbound.enc_key == new_r.inbound.enc_key
    assert new_i.inbound.enc_key == new_r.outbound.enc_key
    assert new_i.outbound.enc_key != _first_i.outbound.enc_key


@pytest.mark.parametrize("by_initiator", [True, False])
def test_ike_rekey_with_mlkem(by_initiator: bool) -> None:
    """CREATE_CHILD_SA { SA, Ni, KEi(ML-KEM) } --> for the IKE SA, either peer initiating."""
    pair = Pair(*psk_connections("aes256gcm16-prfsha256-mlkem768"))
    pair.initiate()
    pair.run(until=1)
    side = pair.i if by_initiator else pair.r
    (sa,) = side.engine.sas.values()
    side.events += side.engine.rekey_ike(sa.id, pair.now)
    pair.run(until=2)
    for s in (pair.i, pair.r):
        (new,) = [e for e in s.of(IkeSaEstablished) if e.rekeyed_from is not None]
        assert new.suite.endswith("ML_KEM_768")
        assert len(s.engine.sas) == 1
    assert_keys_agree(pair)


def test_a_responder_kem_object_cannot_decapsulate() -> None:
    """The KEM roles are not interchangeable: compute() on an object that never sent an
    encapsulation key is our bug, refused loudly (UsageError), never a silent wrong secret."""
    from ikev2.crypto.dh import create_key_exchange, respond_key_exchange
    from ikev2.errors import UsageError

    initiator = create_key_exchange(KeId.ML_KEM_768, seeded_env(1).random_bytes)
    responder, secret = respond_key_exchange(
        KeId.ML_KEM_768, initiator.public_bytes, seeded_env(2).random_bytes
    )
    assert responder.is_kem and initiator.compute(responder.public_bytes) == secret
    with pytest.raises(UsageError):
        create_key_exchange(KeId.ML_KEM_768, seeded_env(3).random_bytes).compute(
            responder.public_bytes
        )
    x25519, _ = respond_key_exchange(
        KeId.CURVE25519,
        create_key_exchange(KeId.CURVE25519, seeded_env(4).random_bytes).public_bytes,
        seeded_env(5).random_bytes,
    )
    assert not x25519.is_kem


def test_no_sa_without_a_deadline_after_failed_or_partial_handshakes() -> None:
    """Half a handshake, refused handshakes, garbage: every SA either side still holds has a
    deadline (the responder's half-open expiry, the initiator's retransmits)."""
    ike = "aes256gcm16-prfsha256-mlkem768"
    raw, pair = _init_request(ike)
    responder = _lenient_responder(ike)
    now = 0.0
    responder.receive_datagram(raw, (ADDR_I, 500), (ADDR_R, 500), now)  # never continued
    responder.receive_datagram(raw, (ADDR_I, 500), (ADDR_R, 500), now)  # retransmit
    responder.receive_datagram(raw[:-40], (ADDR_I, 501), (ADDR_R, 500), now)  # truncated
    message = decode_message(raw)
    no_ke = tuple(p for p in message.payloads if p.payload_type != PayloadType.KE)
    responder.receive_datagram(
        encode_message(Message(message.header, no_ke)), (ADDR_I, 502), (ADDR_R, 500), now
    )
    assert len(responder.sas) == 1 and unscheduled(responder) == []
    assert unscheduled(pair.i.engine) == [] and len(pair.i.engine.sas) == 1
    # both run out on their own
    for engine in (responder, pair.i.engine):
        for _ in range(20):
            timer = engine.get_timer()
            if timer is None:
                break
            engine.handle_timer(timer)
            assert unscheduled(engine) == []
        assert engine.sas == {}
