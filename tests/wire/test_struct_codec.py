"""The direct struct codec (struct_codec.py, production) decodes exactly what the construct
schemas decode, on hostile input too: mutated reference messages and inner chains give equal
payloads under DEFAULT_CODEC and COMPILED_CODEC, or a DecodeError under both."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ikev2.errors import DecodeError
from ikev2.wire import Message, Payload, decode_message, decode_payloads
from ikev2.wire.codec import COMPILED_CODEC, PayloadCodec
from ikev2.wire.struct_codec import DEFAULT_CODEC

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"
MESSAGES = [bytes.fromhex(line) for line in (CAPTURES / "ikev2-reference.hex").read_text().split()]
INNER = [
    (int(first), response == "1", bytes.fromhex(data))
    for first, response, data in (
        line.split()[1:]
        for line in (CAPTURES / "ikev2-reference-inner.txt").read_text().splitlines()
        if not line.startswith("#") and line.split()[3] != "-"
    )
]


def _message(codec: PayloadCodec, data: bytes) -> Message | str:
    try:
        return decode_message(data, codec=codec)
    except DecodeError:
        return "DecodeError"


def _chain(
    codec: PayloadCodec, first: int, response: bool, data: bytes
) -> tuple[Payload, ...] | str:
    try:
        return decode_payloads(first, data, is_response=response, codec=codec)
    except DecodeError:
        return "DecodeError"


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    mutated = bytearray(data)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    return bytes(mutated)


EDITS = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=6)


def test_reference_messages_decode_alike() -> None:
    for data in MESSAGES:
        assert _message(DEFAULT_CODEC, data) == _message(COMPILED_CODEC, data)
    decoded = [_message(DEFAULT_CODEC, data) for data in MESSAGES]
    assert all(isinstance(m, Message) for m in decoded)


@settings(max_examples=2000)
@given(st.sampled_from(MESSAGES), EDITS)
def test_mutated_messages_decode_alike(data: bytes, edits: list[tuple[int, int]]) -> None:
    # Octets 24-27 hold the length: keep it right so most mutations reach the payloads.
    mutated = _mutate(data, edits)
    mutated = mutated[:24] + len(mutated).to_bytes(4, "big") + mutated[28:]
    assert _message(DEFAULT_CODEC, mutated) == _message(COMPILED_CODEC, mutated)


@settings(max_examples=2000)
@given(st.sampled_from(INNER), EDITS)
def test_mutated_inner_chains_decode_alike(
    chain: tuple[int, bool, bytes], edits: list[tuple[int, int]]
) -> None:
    first, response, data = chain
    mutated = _mutate(data, edits)
    assert _chain(DEFAULT_CODEC, first, response, mutated) == _chain(
        COMPILED_CODEC, first, response, mutated
    )


def test_encoding_mistakes_are_the_same_usage_error_in_every_codec() -> None:
    """API misuse (not peer input): an attribute type with the AF bit, an oversize payload."""
    from ikev2.errors import UsageError
    from ikev2.wire import IdrPayload, NoncePayload, Proposal, SaPayload, Transform, encode_payloads
    from ikev2.wire.codec import INTERPRETED_CODEC, LAYOUT_CODEC

    af_bit = SaPayload((Proposal(1, 1, b"", (Transform(1, 12, 128, ((0x8001, 5),)),)),))
    for payload, words in (
        (af_bit, "attribute type 0x8001 has the AF bit set"),
        (IdrPayload(2, bytes(70_000)), "IDr of 70008 octets"),
        (NoncePayload(bytes(70_000)), "NONCE of 70004 octets"),
    ):
        for codec in (DEFAULT_CODEC, LAYOUT_CODEC, COMPILED_CODEC, INTERPRETED_CODEC):
            try:
                encode_payloads([payload], codec=codec)
            except UsageError as error:
                assert words in str(error), (codec, error)
            else:
                raise AssertionError(f"{codec} encoded {type(payload).__name__}")
