"""Parse and build cost of ikev2.wire for reference messages, in µs per message.

Messages (fixtures/captures): the first IKE_SA_INIT request (frame 1, 232 octets), the first
IKE_AUTH request (frame 3: the outer message, header + SK) and that IKE_AUTH's decrypted inner
payload chain (IDi, CERTREQ, IDr, AUTH, SA, TSi, TSr, 5 Notify). Each figure is the median of
REPEATS timeit runs of NUMBER calls, on the production path (struct_codec.DEFAULT_CODEC: the
handshake payloads read and written with struct, the others through compiled construct parsers
and plain-struct builders) and, for comparison, with interpreted construct both ways.
The last stdout line is one JSON object of the figures.

Run: .venv/bin/python bench/bench_wire.py
"""

from __future__ import annotations

import json
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path

from ikev2.tools.capture import read_datagrams
from ikev2.wire import decode_message, decode_payloads, encode_message, encode_payloads
from ikev2.wire.codec import INTERPRETED_CODEC, PayloadCodec
from ikev2.wire.struct_codec import DEFAULT_CODEC

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "captures"
REPEATS, NUMBER = 7, 2000


def median_us(call: Callable[[], object], number: int = NUMBER) -> float:
    runs = timeit.repeat(call, number=number, repeat=REPEATS)
    return round(statistics.median(runs) / number * 1e6, 1)


def inner_chain(frame: int) -> tuple[int, bytes]:
    for line in (CAPTURES / "ikev2-reference-inner.txt").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == str(frame):
            return int(fields[1]), bytes.fromhex(fields[3])
    raise LookupError(frame)


def measure(codec: PayloadCodec, number: int) -> dict[str, float]:
    frames = {d.frame: d.payload for d in read_datagrams(CAPTURES / "ikev2-reference.pcapng")}
    init, auth = frames[1], frames[3]
    init_msg, auth_msg = decode_message(init, codec=codec), decode_message(auth, codec=codec)
    first, chain = inner_chain(3)
    inner = decode_payloads(first, chain, codec=codec)
    assert encode_message(init_msg, codec=codec) == init
    assert encode_payloads(inner, codec=codec) == (first, chain)
    return {
        "ike_sa_init_parse_us": median_us(lambda: decode_message(init, codec=codec), number),
        "ike_sa_init_build_us": median_us(lambda: encode_message(init_msg, codec=codec), number),
        "ike_auth_parse_us": median_us(lambda: decode_message(auth, codec=codec), number),
        "ike_auth_build_us": median_us(lambda: encode_message(auth_msg, codec=codec), number),
        "ike_auth_inner_parse_us": median_us(
            lambda: decode_payloads(first, chain, codec=codec), number
        ),
        "ike_auth_inner_build_us": median_us(lambda: encode_payloads(inner, codec=codec), number),
    }


def main() -> None:
    production = measure(DEFAULT_CODEC, NUMBER)
    interpreted = measure(INTERPRETED_CODEC, NUMBER // 10)
    for name, value in production.items():
        print(f"{name:26} {value:7.1f} µs   (interpreted construct: {interpreted[name]:7.1f} µs)")
    figures = {**production, **{f"interpreted_{k}": v for k, v in interpreted.items()}}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
