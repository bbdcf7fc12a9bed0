"""IKE message fragmentation and reassembly (RFC 7383), pure and clock-free.

- max_ike_size: the largest IKE message that fits one unfragmented IP packet (RFC 7383 §2.5.1).
- fragment_message: one SK message when it fits, else N Encrypted Fragment (SKF) messages, each
  protected on its own (RFC 7383 §2.5).
- Reassembler: verifies, collects and joins the SKF fragments of one message ID at a time
  (RFC 7383 §2.6); the caller passes `now`, there is no timer here.

The engine decides whether fragmentation was negotiated (IKEV2_FRAGMENTATION_SUPPORTED in
IKE_SA_INIT, RFC 7383 §2.3) and which messages may be fragmented (only SK-protected ones, §2.4).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

from ..crypto.sk import RandomSource, SkCipher
from ..errors import IntegrityError, UsageError
from ..wire import (
    Header,
    Message,
    Payload,
    SkfPayload,
    decode_payloads,
    encode_payloads,
    sk_associated_data,
)

if TYPE_CHECKING:
    from .ike_sa import IkeSa
    from .manager import Engine

log = structlog.get_logger("ikev2.engine")

IKE_HEADER_BYTES: Final = 28  # RFC 7296 §3.1
SK_HEADER_BYTES: Final = 4  # generic payload header (RFC 7296 §3.14)
SKF_HEADER_BYTES: Final = 8  # generic header + Fragment Number + Total Fragments (RFC 7383 §2.5)
UDP_HEADER_BYTES: Final = 8
IP_HEADER_BYTES: Final = {4: 20, 6: 40}  # without options / extension headers
NON_ESP_MARKER_BYTES: Final = 4  # RFC 3948 §2.2: IKE on the NAT-T port carries four zero octets
NAT_T_PORT: Final = 4500
DEFAULT_MTU: Final = 1280  # RFC 7383 §2.5.1 names 1280 for IPv6 (576 for IPv4); strongSwan: 1280
MAX_TOTAL_FRAGMENTS: Final = 255  # our own sending limit; the field itself is 16 bits (§2.5)
_SKF_FIELDS: Final = struct.Struct(">HH")


def max_ike_size(family: int, port: int, mtu: int = DEFAULT_MTU) -> int:
    """The largest IKE message (header included) that fits an IP packet of `mtu` octets.

    RFC 7383 §2.5.1: the MTU minus the IP header (20 for IPv4, 40 for IPv6) minus the UDP header
    (8), minus the non-ESP marker (4) when IKE runs on port 4500 (RFC 3948 §2.2). With the RFC's
    defaults that is 548 (IPv4, MTU 576) and 1232 (IPv6, MTU 1280) octets on port 500.
    """
    if family not in IP_HEADER_BYTES:
        raise UsageError(f"address family {family}: expected 4 or 6")
    size = mtu - IP_HEADER_BYTES[family] - UDP_HEADER_BYTES
    if port == NAT_T_PORT:
        size -= NON_ESP_MARKER_BYTES
    if size <= IKE_HEADER_BYTES + SKF_HEADER_BYTES:
        raise UsageError(f"an MTU of {mtu} leaves no room for an IKE message")
    return size


def _largest_chunk(sk: SkCipher, max_size: int, limit: int) -> int:
    """The most plaintext octets (at most `limit`) one SKF message of max_size can carry."""
    budget = max_size - IKE_HEADER_BYTES - SKF_HEADER_BYTES
    low, high = 0, limit  # body_length is non-decreasing in the plaintext length
    while low < high:
        middle = (low + high + 1) // 2
        if sk.body_length(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def fragment_message(
    header: Header,
    payloads: Sequence[Payload],
    sk: SkCipher,
    random_bytes: RandomSource,
    max_size: int,
) -> list[bytes]:
    """The datagrams that carry `payloads` under SK protection, none longer than max_size.

    A message that fits is one ordinary SK message, built exactly as IkeSa.protect builds it
    (RFC 7383 §2.5: fragmentation is used only when the message is too big). Otherwise the
    encoded inner chain is cut into chunks of equal size (the last may be shorter) and each
    chunk becomes its own SKF message, separately encrypted and integrity protected, with
    Fragment Number 1..N and Total Fragments N; only fragment 1 names the first inner payload
    type, the others carry Next Payload 0 (RFC 7383 §2.5). The associated data of each fragment
    is its IKE header and SKF header including both fragment fields (RFC 7383 §2.5).
    """
    first, plain = encode_payloads(list(payloads))
    body_length = sk.body_length(len(plain))
    if IKE_HEADER_BYTES + SK_HEADER_BYTES + body_length <= max_size:
        aad = sk_associated_data(header, first, body_length)
        return [aad + sk.protect(aad, plain, random_bytes)]
    chunk = _largest_chunk(sk, max_size, len(plain))
    if chunk == 0:
        raise UsageError(f"a maximum IKE message size of {max_size} leaves no room for data")
    total = -(-len(plain) // chunk)
    if total > MAX_TOTAL_FRAGMENTS:
        raise UsageError(
            f"{len(plain)} octets need {total} fragments of {chunk}; "
            f"more than {MAX_TOTAL_FRAGMENTS} (RFC 7383 §2.5)"
        )
    datagrams = []
    for number in range(1, total + 1):
        part = plain[(number - 1) * chunk : number * chunk]
        inner = first if number == 1 else 0
        aad = sk_associated_data(header, inner, sk.body_length(len(part)), fragment=(number, total))
        datagrams.append(aad + sk.protect(aad, part, random_bytes))
    return datagrams


@dataclass(slots=True)
class _FragmentSet:
    """The verified fragments of one message collected so far (RFC 7383 §2.6)."""

    message_id: int
    total: int
    exchange: int
    flags: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    first_type: int = 0
    size: int = 0


class Reassembler:
    """Reassembly of the SKF messages of one IKE SA in one direction (RFC 7383 §2.6).

    One instance for the requests we receive and one for the responses we receive. It keeps the
    fragments of one message ID at a time; only fragments whose ICV verifies are ever stored,
    so a forged fragment can neither replace nor block a genuine one. Every dropped fragment is
    logged once with its reason, which is also left in `last_drop`.
    """

    def __init__(
        self, *, max_fragments: int = 32, max_bytes: int = 65535, timeout: float = 30.0
    ) -> None:
        self.max_fragments = max_fragments
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.last_drop: str | None = None
        # (first inner payload type, joined plaintext) of the last set completed: what RFC 9242
        # §3.3.2 authenticates of a fragmented IKE_INTERMEDIATE message
        self.completed: tuple[int, bytes] | None = None
        self._set: _FragmentSet | None = None
        self._floor: int | None = None  # the newest message ID seen with a valid ICV

    def reset(self) -> None:
        """Forget the stored fragments and the message ID history (e.g. after a rekey)."""
        self._set = None
        self._floor = None
        self.last_drop = None

    @property
    def pending(self) -> tuple[int, int, int] | None:
        """(message ID, fragments held, Total Fragments) of the set being collected, if any."""
        if self._set is None:
            return None
        return self._set.message_id, len(self._set.parts), self._set.total

    def _drop(self, reason: str, message_id: int, number: int = 0, total: int = 0) -> None:
        self.last_drop = reason
        # debug: at info the engine logs it through its rate limit (log_drop), since a flood of
        # forged fragments must not become a flood of log lines
        log.debug(
            "IKE fragment dropped",
            reason=reason,
            message_id=message_id,
            fragment=number,
            total=total,
        )

    def add(
        self, raw: bytes, message: Message, sk: SkCipher, now: float
    ) -> tuple[Payload, ...] | None:
        """Take one received SKF message; the inner payloads once the last fragment is in.

        `raw` is the datagram `message` was decoded from and `sk` the peer's outbound cipher.
        Returns None while fragments are missing or when this one is dropped. A DecodeError from
        the joined inner chain propagates (the caller answers INVALID_SYNTAX, RFC 7296 §2.21).
        """
        self.last_drop = None
        header = message.header
        message_id = header.message_id
        current = self._set
        if current is not None and now - current.started > self.timeout:
            # RFC 7383 §2.6: a reassembly that does not finish in time is given up
            self._set = None
            self._drop(
                f"stale: fragments of message {current.message_id} older than {self.timeout}s",
                current.message_id,
                total=current.total,
            )
        skf = message.payloads[-1] if message.payloads else None
        if not isinstance(skf, SkfPayload):
            self._drop("no Encrypted Fragment payload last", message_id)
            return None
        number, total = skf.fragment_number, skf.total_fragments
        # RFC 7383 §2.5 / §2.6: sanity of the fragment fields before any crypto
        if not 1 <= number <= total:
            self._drop(f"fragment number {number} of {total}", message_id, number, total)
            return None
        if total > self.max_fragments:
            self._drop(
                f"Total Fragments {total} exceeds the limit of {self.max_fragments}",
                message_id,
                number,
                total,
            )
            return None
        if number > 1 and skf.inner_next_payload != 0:
            self._drop(f"fragment {number} names an inner payload", message_id, number, total)
            return None
        body_start = len(raw) - len(skf.body)
        fields_start = body_start - _SKF_FIELDS.size
        if (
            fields_start < IKE_HEADER_BYTES
            or raw[body_start:] != skf.body
            or _SKF_FIELDS.unpack_from(raw, fields_start) != (number, total)
            or int.from_bytes(raw[20:24]) != message_id
        ):
            raise UsageError("the message was not decoded from this datagram")
        # RFC 7383 §2.6: the ICV of each fragment is checked before it is kept; the associated
        # data runs from the IKE header to the end of the SKF header (§2.5)
        try:
            plain = sk.unprotect(raw[:body_start], skf.body)
        except IntegrityError as error:
            self._drop(f"ICV check failed: {error}", message_id, number, total)
            return None
        return self._store(header, skf, plain, now)

    def _store(
        self, header: Header, skf: SkfPayload, plain: bytes, now: float
    ) -> tuple[Payload, ...] | None:
        message_id = header.message_id
        number, total = skf.fragment_number, skf.total_fragments
        if self._floor is not None and message_id < self._floor:
            self._drop(
                f"message ID {message_id} older than {self._floor}", message_id, number, total
            )
            return None
        self._floor = message_id
        current = self._set
        if current is not None and current.message_id != message_id:
            self._set = current = None  # a newer message: its fragments replace the old set
        if current is not None and (current.exchange, current.flags) != (
            header.exchange,
            header.flags,
        ):
            self._drop("exchange or flags differ from the stored fragments", message_id)
            return None
        if current is not None and total != current.total:
            if total < current.total:
                # RFC 7383 §2.6: fewer fragments than before is a stale copy of the message
                self._drop(
                    f"Total Fragments {total} below the stored {current.total}",
                    message_id,
                    number,
                    total,
                )
                return None
            # RFC 7383 §2.6: more fragments means the sender re-fragmented (smaller PMTU):
            # discard what we hold and start over with the new set
            self._set = current = None
        if current is None:
            current = _FragmentSet(message_id, total, header.exchange, header.flags, now)
            self._set = current
        if number in current.parts:
            self._drop(f"duplicate fragment {number}", message_id, number, total)
            return None
        if current.size + len(plain) > self.max_bytes:
            self._set = None
            self._drop(
                f"more than {self.max_bytes} octets of fragments; set discarded",
                message_id,
                number,
                total,
            )
            return None
        current.parts[number] = plain
        current.size += len(plain)
        if number == 1:
            current.first_type = skf.inner_next_payload
        if len(current.parts) < total:
            return None
        # RFC 7383 §2.6: all fragments are in; join them in order and decode the inner chain
        self._set = None
        data = b"".join(current.parts[index] for index in range(1, total + 1))
        self.completed = (current.first_type, data)
        return decode_payloads(current.first_type, data, is_response=header.is_response)


def log_drop(engine: Engine, sa: IkeSa, responses: bool, now: float) -> None:
    """The engine's rate-limited line (DropLog) for a fragment the SA's reassembler just
    dropped, if it dropped one (RFC 7383 §2.6)."""
    reassembler = sa.fragments_in.get(responses)
    if reassembler is not None and reassembler.last_drop is not None:
        engine._gate_info(
            now,
            "IKE fragment dropped",
            "IKE fragment dropped",
            sa.log,
            detail=reassembler.last_drop,
        )
