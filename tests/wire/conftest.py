"""Reference data for the wire tests: the strongSwan capture's IKE messages by frame number and
the tshark-decrypted inner payload chains (fixtures/captures/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from ikev2.tools.capture import read_datagrams

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"


class InnerChain(NamedTuple):
    first_type: int
    is_response: bool
    data: bytes


@pytest.fixture(scope="session")
def reference() -> dict[int, bytes]:
    """frame number -> IKE message octets (46 messages)."""
    return {d.frame: d.payload for d in read_datagrams(CAPTURES / "ikev2-reference.pcapng")}


@pytest.fixture(scope="session")
def inner_chains() -> dict[int, InnerChain]:
    """frame number -> decrypted inner payload chain of its SK payload (34 messages)."""
    chains = {}
    for line in (CAPTURES / "ikev2-reference-inner.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        frame, first, response, hexdata = line.split()
        data = b"" if hexdata == "-" else bytes.fromhex(hexdata)
        chains[int(frame)] = InnerChain(int(first), response == "1", data)
    return chains
