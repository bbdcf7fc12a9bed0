"""IPComp negotiation (RFC 3173; IPCOMP_SUPPORTED, RFC 7296 §2.22, §3.10.1) between two engines:
both willing, one side only, malformed notifies, an unsolicited answer, rekeys and new children
in CREATE_CHILD_SA, and the CPI registry."""

from __future__ import annotations

import random
import struct
from dataclasses import replace

import pytest

from ikev2.constants import ExchangeType, IpcompTransform, NotifyType
from ikev2.engine.events import ChildSaDeleted, ChildSaEstablished, ChildSaFailed
from ikev2.engine.spis import MIN_CPI, CpiRegistry
from ikev2.engine.tasks import ipcomp
from ikev2.wire import NotifyPayload

from .pairing import Pair, psk_connections
from .wiretap import Tap

IPCOMP = NotifyType.IPCOMP_SUPPORTED


def ipcomp_pair(initiator: bool = True, responder: bool = True) -> tuple[Pair, Tap]:
    conn_i, conn_r = psk_connections()
    conn_i = replace(conn_i, children=(replace(conn_i.children[0], ipcomp=initiator),))
    conn_r = replace(conn_r, children=(replace(conn_r.children[0], ipcomp=responder),))
    pair = Pair(conn_i, conn_r)
    return pair, Tap(pair)


def notifies_in(tap: Tap, exchange: str, response: bool) -> list[tuple[str, ...]]:
    return [s.notify_names for s in tap.seen if s.named(exchange) and s.response == response]


def assert_mirrored(mine: ChildSaEstablished, theirs: ChildSaEstablished) -> None:
    assert mine.ipcomp and theirs.ipcomp
    assert (mine.cpi_in, mine.cpi_out) == (theirs.cpi_out, theirs.cpi_in)
    assert min(mine.cpi_in, mine.cpi_out) >= MIN_CPI and max(mine.cpi_in, mine.cpi_out) <= 0xFFFF


def test_both_willing_negotiate_ipcomp_in_ike_auth() -> None:
    pair, tap = ipcomp_pair()
    pair.initiate()
    pair.run(until=1)
    (ci,), (cr,) = pair.i.of(ChildSaEstablished), pair.r.of(ChildSaEstablished)
    assert_mirrored(ci, cr)
    # IKE_AUTH { ..., N(IPCOMP_SUPPORTED), SA, TSi, TSr } --> and back
    assert any("IPCOMP_SUPPORTED" in n for n in notifies_in(tap, "IKE_AUTH", False))
    assert any("IPCOMP_SUPPORTED" in n for n in notifies_in(tap, "IKE_AUTH", True))
    view = pair.i.engine.list_sas()[0].children[0]  # what list-sas shows
    assert (view.cpi_in, view.cpi_out) == (ci.cpi_in, ci.cpi_out)


@pytest.mark.parametrize(("initiator", "responder"), [(True, False), (False, True)])
def test_one_side_only_means_no_ipcomp(initiator: bool, responder: bool) -> None:
    pair, tap = ipcomp_pair(initiator, responder)
    pair.initiate()
    pair.run(until=1)
    (ci,), (cr,) = pair.i.of(ChildSaEstablished), pair.r.of(ChildSaEstablished)
    assert not ci.ipcomp and not cr.ipcomp
    assert (ci.cpi_in, ci.cpi_out, cr.cpi_in, cr.cpi_out) == (0, 0, 0, 0)
    offered = any("IPCOMP_SUPPORTED" in n for n in notifies_in(tap, "IKE_AUTH", False))
    assert offered is initiator  # a responder alone never starts it
    assert not any("IPCOMP_SUPPORTED" in n for n in notifies_in(tap, "IKE_AUTH", True))


MALFORMED = {
    "short": b"\x12\x34",
    "long": b"\x12\x34\x02\x00",
    "lzs": struct.pack("!HB", 0x1234, IpcompTransform.LZS),
    "well-known cpi": struct.pack("!HB", 2, IpcompTransform.DEFLATE),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_offer_is_ignored(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipcomp, "_notify", lambda cpi: NotifyPayload(IPCOMP, data=MALFORMED[kind]))
    pair, tap = ipcomp_pair()
    pair.initiate()
    pair.run(until=1)
    (ci,), (cr,) = pair.i.of(ChildSaEstablished), pair.r.of(ChildSaEstablished)
    assert not ci.ipcomp and not cr.ipcomp  # the child is up, without IPComp
    assert any("IPCOMP_SUPPORTED" in n for n in notifies_in(tap, "IKE_AUTH", False))
    assert not any("IPCOMP_SUPPORTED" in n for n in notifies_in(tap, "IKE_AUTH", True))


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_answer_means_no_ipcomp(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ipcomp.answer

    def bad_answer(sa, child, payloads):  # type: ignore[no-untyped-def]
        real(sa, child, payloads)
        return [NotifyPayload(IPCOMP, data=MALFORMED[kind])]

    monkeypatch.setattr(ipcomp, "answer", bad_answer)
    pair, _tap = ipcomp_pair()
    pair.initiate()
    pair.run(until=1)
    (ci,), (cr,) = pair.i.of(ChildSaEstablished), pair.r.of(ChildSaEstablished)
    assert cr.ipcomp  # the responder did agree: only its notify was broken
    assert not ci.ipcomp and ci.cpi_in == 0 and not pair.i.of(ChildSaFailed)


def test_an_unsolicited_answer_fails_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """As strongSwan: the peer would compress what we cannot take, so no child."""
    monkeypatch.setattr(
        ipcomp,
        "answer",
        lambda sa, child, payloads: [NotifyPayload(IPCOMP, data=struct.pack("!HB", 0x4321, 2))],
    )
    pair, _tap = ipcomp_pair(initiator=False)
    pair.initiate()
    pair.run(until=1)
    assert not pair.i.of(ChildSaEstablished)
    (failed,) = pair.i.of(ChildSaFailed)
    assert failed.reason == ipcomp.UNSOLICITED


@pytest.mark.parametrize("by_initiator", [True, False])
def test_a_rekey_keeps_ipcomp_with_new_cpis(by_initiator: bool) -> None:
    pair, tap = ipcomp_pair()
    pair.initiate()
    pair.run(until=1)
    side = pair.i if by_initiator else pair.r
    (old,) = side.of(ChildSaEstablished)
    (sa,) = side.engine.sas.values()
    side.events += side.engine.rekey_child(sa.id, old.spi_in, pair.now)
    pair.run(until=2)
    (_, ni), (_, nr) = pair.i.of(ChildSaEstablished), pair.r.of(ChildSaEstablished)
    assert_mirrored(ni, nr)
    first_i = pair.i.of(ChildSaEstablished)[0]
    assert (ni.cpi_in, ni.cpi_out) != (first_i.cpi_in, first_i.cpi_out)
    assert ni.cpi_in != first_i.cpi_in and ni.cpi_out != first_i.cpi_out
    assert [e.spi_in for e in pair.i.of(ChildSaDeleted)] == [first_i.spi_in]
    # CREATE_CHILD_SA { N(REKEY_SA), N(IPCOMP_SUPPORTED), SA, Ni, TSi, TSr } --> and back
    sent = [s for s in tap.seen if s.exchange == ExchangeType.CREATE_CHILD_SA]
    assert sent and all("IPCOMP_SUPPORTED" in s.notify_names for s in sent)


def test_a_new_child_in_create_child_sa_negotiates_it() -> None:
    pair, _tap = ipcomp_pair()
    sa_id = pair.initiate()
    pair.run(until=1)
    pair.i.engine.initiate_child("net", "net", pair.now)
    pair.run(until=2)
    assert sa_id in pair.i.engine.sas
    (_, ni), (_, nr) = pair.i.of(ChildSaEstablished), pair.r.of(ChildSaEstablished)
    assert_mirrored(ni, nr)


class _NoLog:
    def info(self, *args: object, **kwargs: object) -> None:
        self.last = kwargs

    warning = info


class _FakeSa:
    log = _NoLog()


@pytest.mark.parametrize("kind", MALFORMED)
def test_peer_cpi_skips_malformed_notifies_and_takes_the_next(kind: str) -> None:
    good = NotifyPayload(IPCOMP, data=struct.pack("!HB", 0x0ABC, IpcompTransform.DEFLATE))
    bad = NotifyPayload(IPCOMP, data=MALFORMED[kind])
    sa = _FakeSa()
    assert ipcomp.peer_cpi(sa, [bad]) == 0  # type: ignore[arg-type]
    assert "reason" in sa.log.last
    assert ipcomp.peer_cpi(sa, [bad, good]) == 0x0ABC  # type: ignore[arg-type]


def test_cpi_registry_never_repeats_and_gives_up_when_full() -> None:
    rng = random.Random(5)
    registry = CpiRegistry(tuple)
    drawn = [registry.draw(rng.randbytes) for _ in range(2000)]
    assert None not in drawn and len(set(drawn)) == 2000
    assert all(MIN_CPI <= c <= 0xFFFF for c in drawn if c is not None)
    stuck = CpiRegistry(tuple)
    assert stuck.draw(lambda n: b"\x01\x00") == 0x100
    assert stuck.draw(lambda n: b"\x01\x00") is None  # the only value the source gives is taken
    assert CpiRegistry(tuple).draw(lambda n: b"\x00\x05") is None  # below 256 only
