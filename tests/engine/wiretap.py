"""A passive tap on a Pair's link: every IKE message either side sends, opened with its
sender's keys (RFC 7383 fragments reassembled first), so a test can say what was actually on
the wire (exchange, request or response, notify types, Delete payloads) rather than what it
expected to be there.

The tap never changes a datagram. Each time datagrams are collected it learns the outbound SK
cipher of every IKE SA either side holds, and keeps it after the SA is gone, so a message sent
on an SA that its sender (or its receiver) has just deleted can still be read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ikev2.constants import ExchangeType, NotifyType, ProtocolId
from ikev2.crypto.sk import SkCipher
from ikev2.engine.events import Datagram
from ikev2.engine.fragments import Reassembler
from ikev2.wire import (
    DeletePayload,
    NotifyPayload,
    SaPayload,
    SkfPayload,
    SkPayload,
    decode_message,
    decode_payloads,
)

from .pairing import Pair, Side


def notify_name(value: int) -> str:
    try:
        return NotifyType(value).name
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class Seen:
    """One IKE message as it crossed the link."""

    sender: str  # "initiator" or "responder": the Pair's side that sent it
    exchange: int
    response: bool
    message_id: int
    notifies: tuple[int, ...]  # notify types, in payload order
    deletes: tuple[tuple[int, int], ...]  # (protocol, number of SPIs) per Delete payload
    proposed_spis: tuple[bytes, ...]  # the sender's SPI in each SA proposal it carried

    def named(self, kind: str) -> bool:
        return self.exchange == ExchangeType[kind]

    @property
    def notify_names(self) -> tuple[str, ...]:
        return tuple(notify_name(n) for n in self.notifies)


class Tap:
    def __init__(self, pair: Pair) -> None:
        assert pair.tamper is None, "the pair already has a tamper hook"
        self.pair = pair
        self.seen: list[Seen] = []
        # (side, spi_i, spi_r) -> the SK cipher that side sends with on that IKE SA; it is the
        # peer's inbound one too (the same key, the same code both ways)
        self._keys: dict[tuple[str, bytes, bytes], SkCipher] = {}
        self._fragments: dict[tuple[str, bytes, bytes, bool], Reassembler] = {}
        self._learn()
        pair.tamper = self._observe

    def _name(self, side: Side) -> str:
        return "initiator" if side is self.pair.i else "responder"

    def _learn(self) -> None:
        for side in (self.pair.i, self.pair.r):
            for sa in side.engine.sas.values():
                if sa.sk_out is not None:
                    self._keys.setdefault((self._name(side), sa.spi_i, sa.spi_r), sa.sk_out)

    def _observe(self, sender: Side, d: Datagram) -> Datagram:
        self._learn()
        message = decode_message(d.data)
        header = message.header
        if header.exchange == ExchangeType.IKE_SA_INIT:
            payloads = message.payloads
        else:
            key = self._keys.get((self._name(sender), header.spi_i, header.spi_r))
            assert key is not None, f"the tap never saw the {self._name(sender)}'s keys"
            sk = message.payloads[-1] if message.payloads else None
            if isinstance(sk, SkfPayload):  # RFC 7383: one Seen per reassembled message
                where = (self._name(sender), header.spi_i, header.spi_r, header.is_response)
                joined = self._fragments.setdefault(where, Reassembler()).add(
                    d.data, message, key, self.pair.now
                )
                if joined is None:
                    return d
                payloads = joined
            else:
                assert isinstance(sk, SkPayload), "the tap reads SK and SKF messages"
                aad = d.data[: len(d.data) - len(sk.body)]
                plain = key.unprotect(aad, sk.body)
                payloads = decode_payloads(sk.inner_next_payload, plain, len(aad))
        self.seen.append(
            Seen(
                sender=self._name(sender),
                exchange=header.exchange,
                response=header.is_response,
                message_id=header.message_id,
                notifies=tuple(p.notify_type for p in payloads if isinstance(p, NotifyPayload)),
                deletes=tuple(
                    (p.protocol, len(p.spis)) for p in payloads if isinstance(p, DeletePayload)
                ),
                proposed_spis=tuple(
                    proposal.spi
                    for p in payloads
                    if isinstance(p, SaPayload)
                    for proposal in p.proposals
                ),
            )
        )
        return d

    def of(self, kind: str, *, response: bool | None = None) -> list[Seen]:
        return [
            s for s in self.seen if s.named(kind) and (response is None or s.response is response)
        ]

    def notify_names(self, kind: str, *, response: bool) -> set[str]:
        """Every notify type seen in this kind of exchange's requests or responses."""
        return {n for s in self.of(kind, response=response) for n in s.notify_names}

    def deletes(self, protocol: ProtocolId) -> list[Seen]:
        """The INFORMATIONAL requests that carried a Delete payload for this protocol."""
        return [
            s
            for s in self.of("INFORMATIONAL", response=False)
            if any(p == protocol for p, _ in s.deletes)
        ]

    def summary(self) -> str:
        """What crossed the link, for a table cell: the requests by exchange, the error notifies
        in responses, and the Delete payloads by protocol, each with its count, by name."""

        def counted(counter: Counter[str]) -> str:
            return ", ".join(f"{name} ×{n}" for name, n in sorted(counter.items()))

        requests = Counter(ExchangeType(s.exchange).name for s in self.seen if not s.response)
        errors = Counter(
            notify_name(n)
            for s in self.seen
            if s.response
            for n in s.notifies
            if n < 16384  # RFC 7296 §3.10.1: the error types
        )
        deletes = Counter(
            ProtocolId(p).name for s in self.seen if not s.response for p, _ in s.deletes
        )
        parts = [f"requests: {counted(requests)}"]
        if errors:
            parts.append(f"errors answered: {counted(errors)}")
        if deletes:
            parts.append(f"Delete payloads: {counted(deletes)}")
        return "; ".join(parts)
