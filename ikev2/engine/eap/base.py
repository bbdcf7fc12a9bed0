"""EAP packets (RFC 3748 §4) and the one small interface every method implements.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |     Code      |  Identifier   |            Length             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |     Type      |  Type-Data ...
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

A method is pure: it sees the Type-Data of the packets addressed to it and returns the Type-Data
of its answer. Framing, identifiers, Identity and Nak rounds and the final Success/Failure live in
server.py (the authenticator) and peer.py (the peer), so each method module stays small.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Protocol

from ...errors import DecodeError


class EapCode(enum.IntEnum):
    """RFC 3748 §4."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(enum.IntEnum):
    """RFC 3748 §5 and IANA's EAP method types (only those we know)."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    TLS = 13
    MSCHAPV2 = 26


class EapError(DecodeError):
    """A malformed or unexpected EAP packet (never raised out of the engine)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 0)


@dataclass(frozen=True, slots=True)
class EapPacket:
    code: EapCode
    identifier: int
    type: int | None = None  # Request and Response only
    data: bytes = field(default=b"", repr=False)

    def encode(self) -> bytes:
        if self.type is None:
            return struct.pack("!BBH", self.code, self.identifier, 4)
        return struct.pack("!BBHB", self.code, self.identifier, 5 + len(self.data), self.type) + (
            self.data
        )


def parse_packet(raw: bytes) -> EapPacket:
    """RFC 3748 §4: check the length; octets past Length are padding and ignored (§4.1)."""
    if len(raw) < 4:
        raise EapError(f"EAP packet of {len(raw)} octets")
    code, identifier, length = struct.unpack_from("!BBH", raw)
    if length < 4 or length > len(raw):
        raise EapError(f"EAP length {length} with {len(raw)} octets")
    try:
        kind = EapCode(code)
    except ValueError:
        raise EapError(f"unknown EAP code {code}") from None
    if kind in (EapCode.SUCCESS, EapCode.FAILURE):
        return EapPacket(kind, identifier)
    if length < 5:
        raise EapError("EAP request/response without a type")
    return EapPacket(kind, identifier, raw[4], bytes(raw[5:length]))


class Outcome(enum.Enum):
    CONTINUE = "continue"  # send `data` and wait for the next packet
    SUCCESS = "success"
    FAILURE = "failure"
    PENDING = "pending"  # the answer comes later, from a RADIUS server (tasks/eap_radius.py)


@dataclass(frozen=True, slots=True)
class Step:
    """What a method answers: the Type-Data to send (for a peer: its Response; for a server:
    its next Request, none once it has decided) and where the conversation stands."""

    outcome: Outcome
    data: bytes | None = field(default=None, repr=False)
    reason: str = ""


def fail(reason: str) -> Step:
    return Step(Outcome.FAILURE, reason=reason)


class ServerMethod(Protocol):
    """The authenticator side of one method for one conversation."""

    eap_type: EapType

    def start(self, identifier: int) -> bytes:
        """The Type-Data of the first Request (sent with this EAP Identifier)."""
        ...

    def process(self, identifier: int, data: bytes) -> Step:
        """A Response's Type-Data -> the next Request's, or the verdict (SUCCESS, FAILURE).
        `identifier` is the one the next Request will carry."""
        ...

    def msk(self) -> bytes | None:
        """After SUCCESS: the Master Session Key (RFC 5247), or None if the method has none."""
        ...

    def peer_name(self) -> bytes:
        """After SUCCESS: the name the peer authenticated as."""
        ...


class PeerMethod(Protocol):
    """The peer side of one method for one conversation."""

    eap_type: EapType
    mutual: bool  # does the method authenticate the server too (RFC 5998 §4)?

    def process(self, identifier: int, data: bytes) -> Step:
        """A Request's Type-Data (and its EAP Identifier) -> our Response's (CONTINUE) or
        FAILURE. SUCCESS with data: our last Response; the server's EAP-Success is accepted
        only from then on (RFC 3748 §4.2: a Success before the method is done is ignored)."""
        ...

    def msk(self) -> bytes | None: ...
