"""RFC 9329 framing (wire/tcp_framing.py): frames survive any split of the stream, the prefix is
checked, keepalives vanish, bad lengths break the stream without raising, and the reference
capture's IKE messages round-trip through the framing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.wire.tcp_framing import (
    MAX_PACKET,
    NON_ESP_MARKER,
    STREAM_PREFIX,
    Frame,
    FrameKind,
    FramingError,
    StreamDecoder,
    frame_esp,
    frame_ike,
    frame_packet,
    keepalive_frame,
)

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"
MESSAGES = [bytes.fromhex(line) for line in (CAPTURES / "ikev2-reference.hex").read_text().split()]

ike = st.binary(min_size=0, max_size=300).map(lambda b: Frame(FrameKind.IKE, b))
esp = st.binary(min_size=1, max_size=300).filter(lambda b: b[:4] != NON_ESP_MARKER)
esp = esp.filter(lambda b: b != b"\xff").map(lambda b: Frame(FrameKind.ESP, b))
frames = st.lists(st.one_of(ike, esp), max_size=12)


def _encode(frame: Frame) -> bytes:
    return frame_ike(frame.data) if frame.kind is FrameKind.IKE else frame_esp(frame.data)


def _feed_in_pieces(decoder: StreamDecoder, stream: bytes, cuts: list[int]) -> list[Frame]:
    out: list[Frame] = []
    last = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        out += decoder.feed(stream[last:cut])
        last = cut
    return out


@settings(max_examples=300, deadline=None)
@given(frames, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20), st.booleans())
def test_frames_round_trip_over_any_split(sent: list[Frame], cuts: list[int], prefix: bool) -> None:
    stream = (STREAM_PREFIX if prefix else b"") + b"".join(_encode(f) for f in sent)
    decoder = StreamDecoder(expect_prefix=prefix)
    assert _feed_in_pieces(decoder, stream, cuts) == sent
    assert decoder.error is None
    assert decoder.buffered == 0
    assert decoder.counts["ike"] + decoder.counts["esp"] == len(sent)


@settings(max_examples=100, deadline=None)
@given(frames, st.integers(min_value=0, max_value=5))
def test_keepalives_are_dropped_silently(sent: list[Frame], every: int) -> None:
    """§6.6: a NAT-keepalive (Length 3, 0xFF) between frames is no frame and no error."""
    parts = []
    for i, frame in enumerate(sent):
        if every and i % every == 0:
            parts.append(keepalive_frame())
        parts.append(_encode(frame))
    decoder = StreamDecoder(expect_prefix=False)
    got = []
    for byte in b"".join(parts):  # one octet at a time: the hardest split
        got += decoder.feed(bytes([byte]))
    assert got == sent
    assert decoder.error is None
    assert decoder.counts["keepalive"] == sum(1 for p in parts if p == keepalive_frame())


def test_keepalive_encoding_is_length_three() -> None:
    assert keepalive_frame() == b"\x00\x03\xff"


@pytest.mark.parametrize("length", [0, 1, 2])
def test_bad_length_breaks_the_stream_without_raising(length: int) -> None:
    """§3: Length 0 or 1 is fatal; frames before it are still delivered, nothing after."""
    good = frame_ike(b"first")
    decoder = StreamDecoder(expect_prefix=True)
    got = decoder.feed(STREAM_PREFIX + good + length.to_bytes(2, "big") + frame_ike(b"after"))
    assert got == [Frame(FrameKind.IKE, b"first")]
    assert decoder.error == f"frame length {length}"
    assert decoder.feed(frame_ike(b"more")) == []
    assert decoder.buffered == 0


@pytest.mark.parametrize("start", [b"GET / HTTP/1.1\r\n", b"IKETCQ", b"\x16\x03\x01", b"I\x00"])
def test_wrong_prefix_is_refused(start: bytes) -> None:
    decoder = StreamDecoder(expect_prefix=True)
    assert decoder.feed(start + frame_ike(b"x")) == []
    assert decoder.error == "stream does not start with IKETCP"


def test_prefix_split_one_octet_at_a_time() -> None:
    decoder = StreamDecoder(expect_prefix=True)
    for byte in STREAM_PREFIX:
        assert decoder.feed(bytes([byte])) == []
        assert decoder.error is None
    assert decoder.feed(frame_ike(b"m")) == [Frame(FrameKind.IKE, b"m")]


def test_originator_side_takes_no_prefix() -> None:
    """§4: only the TCP Originator sends IKETCP; on the other side "IK" reads as a Length of
    18,763 octets, so no IKE message comes out of a stream that wrongly carries a prefix."""
    decoder = StreamDecoder(expect_prefix=False)
    assert decoder.feed(STREAM_PREFIX + frame_ike(b"m")) == []
    assert decoder.buffered == len(STREAM_PREFIX) + len(frame_ike(b"m"))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.booleans(), st.lists(st.integers(0, 2000), max_size=8))
def test_garbage_never_raises(data: bytes, prefix: bool, cuts: list[int]) -> None:
    decoder = StreamDecoder(expect_prefix=prefix)
    got = _feed_in_pieces(decoder, data, cuts)
    assert all(isinstance(f, Frame) for f in got)
    # whatever was consumed is accounted for: frames, or the error that stopped it
    assert decoder.error is not None or decoder.buffered < 0xFFFF


def test_reference_messages_round_trip() -> None:
    """The strongSwan capture's 46 IKE messages, framed back to back and read in 1,000-octet
    reads, come out byte for byte (IKE: the marker stripped)."""
    stream = STREAM_PREFIX + b"".join(frame_ike(m) for m in MESSAGES)
    decoder = StreamDecoder(expect_prefix=True)
    got = []
    for i in range(0, len(stream), 1000):
        got += decoder.feed(stream[i : i + 1000])
    assert [f.data for f in got] == MESSAGES
    assert {f.kind for f in got} == {FrameKind.IKE}


def test_frame_sizes() -> None:
    assert frame_packet(b"\x01" * MAX_PACKET)[:2] == b"\xff\xff"
    with pytest.raises(FramingError):
        frame_packet(b"\x01" * (MAX_PACKET + 1))
    with pytest.raises(FramingError):
        frame_packet(b"")
    with pytest.raises(FramingError):
        frame_esp(NON_ESP_MARKER + b"not esp")
    assert frame_ike(b"ab") == b"\x00\x08" + NON_ESP_MARKER + b"ab"


def test_largest_frame_split_in_two() -> None:
    packet = b"\x01\x02\x03\x04" + bytes(MAX_PACKET - 4)
    decoder = StreamDecoder(expect_prefix=False)
    stream = frame_esp(packet)
    assert decoder.feed(stream[:40_000]) == []
    assert decoder.feed(stream[40_000:]) == [Frame(FrameKind.ESP, packet)]
