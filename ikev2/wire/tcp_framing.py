"""TCP encapsulation of IKE and ESP (RFC 9329 §3, §4): stream prefix, length framing, markers.

A TCP-encapsulated stream starts with the 6 octets "IKETCP", sent once by the TCP Originator
(§4). After it, every packet is framed by a 2-octet big-endian Length that counts itself (§3):

    IKE (§3.1):  | Length | 0x00000000 (non-ESP marker) | IKE header, payloads ... |
    ESP (§3.2):  | Length | SPI (never 0) | sequence number, payload ... |

A frame of Length 3 holding the single octet 0xFF is a NAT-keepalive (§6.6); it is dropped
silently. A Length of 0 or 1 is a fatal error (§3): the connection must be closed. A Length of 2
(an empty frame) carries nothing a peer could mean and is treated the same way.

StreamDecoder is fed whatever recv() returned, split anywhere, and hands back whole frames. It
never raises on peer input: a broken stream (wrong prefix, bad Length) sets `error` to a fixed
reason and the decoder stops consuming, so the caller closes the connection (§6.1).
Stateless helpers encode frames; nothing here touches a socket.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

STREAM_PREFIX = b"IKETCP"  # RFC 9329 §4
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # §3.1 (as RFC 3948 §2.2 on UDP port 4500)
NAT_KEEPALIVE = b"\xff"  # §6.6 (RFC 3948 §2.3)
LENGTH_BYTES = 2
MAX_FRAME = 0xFFFF  # the Length field counts itself: at most 65,533 octets of packet
MAX_PACKET = MAX_FRAME - LENGTH_BYTES


class FrameKind(enum.Enum):
    IKE = "ike"  # non-ESP marker stripped: the bytes are an IKE message
    ESP = "esp"  # the whole ESP packet, SPI first


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    data: bytes = field(repr=False)


class FramingError(ValueError):
    """Our own misuse: a packet too large for one frame (never raised for peer input)."""


def frame_packet(packet: bytes) -> bytes:
    """One packet (an IKE message with its non-ESP marker, or an ESP packet) with its Length."""
    if not packet or len(packet) > MAX_PACKET:
        raise FramingError(f"a TCP frame holds 1..{MAX_PACKET} octets, not {len(packet)}")
    return (len(packet) + LENGTH_BYTES).to_bytes(LENGTH_BYTES, "big") + packet


def frame_ike(message: bytes) -> bytes:
    """§3.1: Length, non-ESP marker, IKE message."""
    return frame_packet(NON_ESP_MARKER + message)


def frame_esp(packet: bytes) -> bytes:
    """§3.2: Length, ESP packet (its SPI is never zero)."""
    if packet[:4] == NON_ESP_MARKER:
        raise FramingError("an ESP packet cannot start with a zero SPI")
    return frame_packet(packet)


def keepalive_frame() -> bytes:
    """§6.6: what a NAT-keepalive looks like in the stream (we never send one; tests do)."""
    return frame_packet(NAT_KEEPALIVE)


class StreamDecoder:
    """Whole frames out of a byte stream split at arbitrary points.

    `expect_prefix`: True on the TCP Responder's side, which must see "IKETCP" first (§4);
    the TCP Originator receives no prefix. `counts` tallies frames by outcome for the service's
    statistics; `error` holds the reason once the stream is broken (then nothing more is read).
    """

    __slots__ = ("_buffer", "_prefix_pending", "counts", "error")

    def __init__(self, *, expect_prefix: bool) -> None:
        self._buffer = bytearray()
        self._prefix_pending = expect_prefix
        self.error: str | None = None
        self.counts = {"ike": 0, "esp": 0, "keepalive": 0}

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Append `data`; return every frame now complete, in order."""
        if self.error is not None:
            return []
        self._buffer += data
        frames: list[Frame] = []
        if self._prefix_pending:
            have = bytes(self._buffer[: len(STREAM_PREFIX)])
            if not STREAM_PREFIX.startswith(have):
                return self._fail("stream does not start with IKETCP")
            if len(have) < len(STREAM_PREFIX):
                return frames
            del self._buffer[: len(STREAM_PREFIX)]
            self._prefix_pending = False
        start = 0
        buffer = self._buffer
        while len(buffer) - start >= LENGTH_BYTES:
            length = (buffer[start] << 8) | buffer[start + 1]
            if length <= LENGTH_BYTES:  # 0 and 1 are fatal (§3); 2 is an empty frame
                del buffer[:start]
                return frames + self._fail(f"frame length {length}")
            if len(buffer) - start < length:
                break
            packet = bytes(buffer[start + LENGTH_BYTES : start + length])
            start += length
            frame = self._classify(packet)
            if frame is not None:
                frames.append(frame)
        del buffer[:start]
        return frames

    def _classify(self, packet: bytes) -> Frame | None:
        if packet == NAT_KEEPALIVE:
            self.counts["keepalive"] += 1  # §6.6: drop silently, not an error
            return None
        if packet[:4] == NON_ESP_MARKER:
            self.counts["ike"] += 1
            return Frame(FrameKind.IKE, packet[4:])
        self.counts["esp"] += 1
        return Frame(FrameKind.ESP, packet)

    def _fail(self, reason: str) -> list[Frame]:
        self.error = reason
        self._buffer.clear()
        return []
