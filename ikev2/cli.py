"""The `ikev2` command: a thin argparse front over the tools and the service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _cmd_decode(args: argparse.Namespace) -> int:
    from .tools.decode import run_decode

    return run_decode(args.file, keys=args.keys, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikev2", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    decode = sub.add_parser(
        "decode", help="print every IKE message of a pcap, pcapng or hex dump as JSON lines"
    )
    decode.add_argument("file", help="capture file (pcap, pcapng) or hex dump")
    decode.add_argument(
        "--keys",
        metavar="TABLE",
        help="Wireshark ikev2_decryption_table: decrypt and verify SK payloads",
    )
    decode.set_defaults(handler=_cmd_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
