"""EAP over RADIUS (RFC 3579) for the gateway: the codec (RFC 2865 packets, RFC 3579 EAP-Message
and Message-Authenticator, RFC 2548 MS-MPPE keys) and an asyncio client.

    Access-Request { User-Name, NAS-Identifier, Service-Type, NAS-Port-Type, Calling-Station-Id,
                     EAP-Message+, [State], Message-Authenticator }        -->  RADIUS server
        <--  Access-Challenge { EAP-Message+, State, Message-Authenticator }
        <--  Access-Accept { EAP-Message (Success), MS-MPPE-Recv-Key, MS-MPPE-Send-Key, ... }
        <--  Access-Reject { EAP-Message (Failure) }

The MSK for IKE (RFC 7296 §2.16) is MS-MPPE-Recv-Key || MS-MPPE-Send-Key, as strongSwan's
eap-radius builds it. A reply is only believed when its Response Authenticator (RFC 2865 §3)
and its Message-Authenticator (RFC 3579 §3.2) check out with the shared secret; the secret and
the keys are never logged. IO lives here, not in the engine (DESIGN §5).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from ..log import get_logger

log = get_logger("ikev2.service.radius")

HEADER = struct.Struct("!BBH16s")
MAX_PACKET = 4096
USER_NAME, NAS_IP_ADDRESS, SERVICE_TYPE, STATE, VENDOR_SPECIFIC = 1, 4, 6, 24, 26
CALLING_STATION_ID, NAS_IDENTIFIER, NAS_PORT_TYPE = 31, 32, 61
EAP_MESSAGE, MESSAGE_AUTHENTICATOR = 79, 80
SERVICE_FRAMED, PORT_VIRTUAL = 2, 5
MICROSOFT = 311
MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY = 16, 17
RETRIES, TIMEOUT = 3, 2.0  # RFC 5080 §2.2.1 leaves it to us: 3 tries, 2 s each


class Code(enum.IntEnum):
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCESS_CHALLENGE = 11


class RadiusError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Packet:
    code: int
    identifier: int
    authenticator: bytes
    attributes: tuple[tuple[int, bytes], ...] = field(repr=False)

    def all(self, kind: int) -> list[bytes]:
        return [value for t, value in self.attributes if t == kind]

    def first(self, kind: int) -> bytes | None:
        values = self.all(kind)
        return values[0] if values else None


def encode_attributes(attributes: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for kind, value in attributes:
        if len(value) > 253:
            raise ValueError(f"RADIUS attribute {kind} longer than 253 octets")
        out += bytes([kind, len(value) + 2]) + value
    return bytes(out)


def decode(data: bytes) -> Packet:
    """RFC 2865 §3: header and attributes, every length checked; RadiusError otherwise."""
    if len(data) < HEADER.size:
        raise RadiusError("short RADIUS packet")
    code, identifier, length, authenticator = HEADER.unpack_from(data)
    if length < HEADER.size or length > len(data) or length > MAX_PACKET:
        raise RadiusError(f"bad RADIUS length {length}")
    attributes, offset = [], HEADER.size
    while offset < length:
        if offset + 2 > length:
            raise RadiusError("truncated RADIUS attribute")
        kind, size = data[offset], data[offset + 1]
        if size < 2 or offset + size > length:
            raise RadiusError(f"bad length {size} of RADIUS attribute {kind}")
        attributes.append((kind, data[offset + 2 : offset + size]))
        offset += size
    return Packet(code, identifier, authenticator, tuple(attributes))


def eap_chunks(eap: bytes) -> list[tuple[int, bytes]]:
    """RFC 3579 §3.1: an EAP packet split over EAP-Message attributes of at most 253 octets."""
    return [(EAP_MESSAGE, eap[i : i + 253]) for i in range(0, len(eap), 253)] or [
        (EAP_MESSAGE, b"")
    ]


def _message_authenticator(secret: bytes, packet: bytes) -> bytes:
    return hmac.new(secret, packet, hashlib.md5).digest()


def access_request(
    secret: bytes, identifier: int, authenticator: bytes, attributes: list[tuple[int, bytes]]
) -> bytes:
    """An Access-Request with its Message-Authenticator (RFC 3579 §3.2: HMAC-MD5 over the packet
    with the attribute's value zero)."""
    body = encode_attributes([*attributes, (MESSAGE_AUTHENTICATOR, bytes(16))])
    length = HEADER.size + len(body)
    packet = HEADER.pack(Code.ACCESS_REQUEST, identifier, length, authenticator) + body
    mac = _message_authenticator(secret, packet)
    return packet[:-16] + mac


def verify_reply(secret: bytes, raw: bytes, request_authenticator: bytes) -> Packet:
    """Decode a reply to our request and check both authenticators; RadiusError if forged."""
    packet = decode(raw)
    length = HEADER.unpack_from(raw)[2]
    raw = raw[:length]
    expected = hashlib.md5(raw[:4] + request_authenticator + raw[20:] + secret).digest()
    if not hmac.compare_digest(expected, packet.authenticator):
        raise RadiusError("bad Response Authenticator (wrong shared secret?)")
    macs = packet.all(MESSAGE_AUTHENTICATOR)
    if packet.all(EAP_MESSAGE) and len(macs) != 1:  # RFC 3579 §3.2: required with EAP-Message
        raise RadiusError("reply with EAP-Message but no Message-Authenticator")
    if macs:
        zeroed, offset = bytearray(raw[:4] + request_authenticator + raw[20:]), HEADER.size
        while offset < len(zeroed):  # the attribute's value zeroed, as it was computed
            if zeroed[offset] == MESSAGE_AUTHENTICATOR and zeroed[offset + 1] == 18:
                zeroed[offset + 2 : offset + 18] = bytes(16)
            offset += zeroed[offset + 1]
        if not hmac.compare_digest(_message_authenticator(secret, bytes(zeroed)), macs[0]):
            raise RadiusError("bad Message-Authenticator")
    return packet


def decrypt_mppe_key(secret: bytes, request_authenticator: bytes, value: bytes) -> bytes:
    """RFC 2548 §2.4.2/2.4.3: Salt(2) || String, String = P xor MD5 chain over S, R, A; the
    plaintext is the key's length octet, the key and padding."""
    if len(value) < 18 or (len(value) - 2) % 16:
        raise RadiusError("bad MS-MPPE key attribute")
    salt, cipher = value[:2], value[2:]
    plain, previous = bytearray(), request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i : i + 16]
        pad = hashlib.md5(secret + previous).digest()
        plain += bytes(a ^ b for a, b in zip(block, pad, strict=True))
        previous = block
    size = plain[0]
    if size > len(plain) - 1:
        raise RadiusError("bad MS-MPPE key length")
    return bytes(plain[1 : 1 + size])


def mppe_keys(secret: bytes, request_authenticator: bytes, packet: Packet) -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    for value in packet.all(VENDOR_SPECIFIC):
        if len(value) < 6 or struct.unpack("!I", value[:4])[0] != MICROSOFT:
            continue
        offset = 4
        while offset + 2 <= len(value):
            kind, size = value[offset], value[offset + 1]
            if size < 2 or offset + size > len(value):
                break
            if kind in (MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY):
                keys[kind] = decrypt_mppe_key(
                    secret, request_authenticator, value[offset + 2 : offset + size]
                )
            offset += size
    return keys


# --------------------------------------------------------------------------- the answers


class Verdict(enum.Enum):
    CHALLENGE = "challenge"  # relay the EAP Request, wait for the next Response
    ACCEPT = "accept"  # EAP-Success; the MSK is set when the method makes one
    REJECT = "reject"  # EAP-Failure (or none): authentication failed


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: Verdict
    eap: bytes = field(repr=False)  # the EAP packet to relay to the client
    msk: bytes | None = field(default=None, repr=False)
    reason: str = ""


def answer_of(secret: bytes, request_authenticator: bytes, packet: Packet) -> tuple[Answer, bytes]:
    """The verdict of a verified reply, and its State (to echo in the next request)."""
    eap = b"".join(packet.all(EAP_MESSAGE))
    state = packet.first(STATE) or b""
    if packet.code == Code.ACCESS_CHALLENGE and eap:
        return Answer(Verdict.CHALLENGE, eap), state
    if packet.code == Code.ACCESS_ACCEPT:
        keys = mppe_keys(secret, request_authenticator, packet)
        recv, send = keys.get(MS_MPPE_RECV_KEY), keys.get(MS_MPPE_SEND_KEY)
        msk = recv + send if recv and send else None
        return Answer(Verdict.ACCEPT, eap, msk), b""
    reason = "Access-Reject" if packet.code == Code.ACCESS_REJECT else f"RADIUS code {packet.code}"
    return Answer(Verdict.REJECT, eap, reason=reason), b""


# --------------------------------------------------------------------------- the client


@dataclass
class _Outstanding:
    packet: bytes = field(repr=False)
    authenticator: bytes = field(repr=False)
    future: asyncio.Future[bytes]


class RadiusClient(asyncio.DatagramProtocol):
    """One UDP socket to one RADIUS server; each conversation (IKE SA) keeps its State here."""

    def __init__(
        self,
        server: tuple[str, int],
        secret: bytes,
        nas_identifier: bytes = b"ikev2",
        random: Callable[[int], bytes] = os.urandom,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
    ) -> None:
        self.server = server
        self._secret = secret
        self.nas_identifier = nas_identifier
        self._random = random
        self.timeout, self.retries = timeout, retries
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, _Outstanding] = {}
        self._next_id = 0
        self.states: dict[int, bytes] = {}  # conversation -> the State to echo

    def __repr__(self) -> str:
        return f"RadiusClient(server={self.server[0]}:{self.server[1]})"

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, remote_addr=self.server)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if len(data) < HEADER.size:
            return
        outstanding = self._pending.get(data[1])
        if outstanding is not None and not outstanding.future.done():
            outstanding.future.set_result(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for outstanding in self._pending.values():
            if not outstanding.future.done():
                outstanding.future.cancel()

    def forget(self, conversation: int) -> None:
        self.states.pop(conversation, None)

    def _identifier(self) -> int:
        for _ in range(256):
            self._next_id = (self._next_id + 1) % 256
            if self._next_id not in self._pending:
                return self._next_id
        raise RadiusError("256 RADIUS requests outstanding")

    async def exchange(
        self, conversation: int, user: bytes, eap: bytes, calling_station: str = ""
    ) -> Answer:
        """Forward one EAP Response; the server's verdict (REJECT with a reason on timeout or a
        reply that does not verify: nothing unauthenticated is believed)."""
        assert self._transport is not None, "open() first"
        attributes = [(USER_NAME, user[:253]), (NAS_IDENTIFIER, self.nas_identifier),
                      (SERVICE_TYPE, struct.pack("!I", SERVICE_FRAMED)),
                      (NAS_PORT_TYPE, struct.pack("!I", PORT_VIRTUAL))]  # fmt: skip
        if calling_station:
            attributes.append((CALLING_STATION_ID, calling_station.encode()[:253]))
        attributes += eap_chunks(eap)
        state = self.states.get(conversation)
        if state:
            attributes.append((STATE, state))
        identifier, authenticator = self._identifier(), self._random(16)
        packet = access_request(self._secret, identifier, authenticator, attributes)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[identifier] = _Outstanding(packet, authenticator, future)
        try:
            for _ in range(self.retries):
                self._transport.sendto(packet)
                try:
                    raw = await asyncio.wait_for(asyncio.shield(future), self.timeout)
                except TimeoutError:
                    continue
                try:
                    reply = verify_reply(self._secret, raw, authenticator)
                except RadiusError as exc:
                    log.warning("RADIUS reply dropped", reason=exc.reason)
                    future = asyncio.get_running_loop().create_future()
                    self._pending[identifier].future = future
                    continue
                answer, next_state = answer_of(self._secret, authenticator, reply)
                if next_state:
                    self.states[conversation] = next_state
                else:
                    self.states.pop(conversation, None)
                return answer
            return Answer(Verdict.REJECT, b"", reason="no RADIUS answer")
        finally:
            self._pending.pop(identifier, None)
