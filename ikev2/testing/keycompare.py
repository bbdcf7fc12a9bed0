"""Compare the keys our daemon exported (`--key-log`: Wireshark ikev2_decryption_table and esp_sa
lines) with the keys strongSwan logged at ike/chd level 4 (ikev2.testing.strongswan).

Both formats may share one file: an esp_sa line starts with "IPv4"/"IPv6", an IKE line with the
16 hex digits of SPIi. Mismatches come back as readable strings naming the SPI and the key,
never the key bytes themselves.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from .strongswan import ChildKeys, IkeKeys


@dataclass(frozen=True)
class EspKeys:
    family: str
    src: str
    dst: str
    spi: str  # 8 lowercase hex digits
    encr: str
    encr_key: bytes = field(repr=False)
    integ: str
    integ_key: bytes = field(repr=False)


@dataclass(frozen=True)
class IkeTableKeys:
    spi_i: str  # 16 lowercase hex digits
    spi_r: str
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    encr: str
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    integ: str


@dataclass
class KeyLog:
    ike: dict[tuple[str, str], IkeTableKeys] = field(default_factory=dict)
    esp: dict[str, EspKeys] = field(default_factory=dict)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.strip().removeprefix("0x"))


def _spi(text: str, width: int) -> str:
    return text.strip().lower().removeprefix("0x").rjust(width, "0")


def parse_key_log(text: str) -> KeyLog:
    """Every IKE and ESP line of a Wireshark key table (later lines win for the same SPI)."""
    out = KeyLog()
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0].lstrip().startswith("#"):
            continue
        if row[0] in ("IPv4", "IPv6") and len(row) >= 8:
            esp = EspKeys(
                row[0], row[1], row[2], _spi(row[3], 8), row[4], _hex(row[5]), row[6], _hex(row[7])
            )
            out.esp[esp.spi] = esp
        elif len(row) >= 8 and len(row[0].strip()) == 16:
            ike = IkeTableKeys(
                _spi(row[0], 16),
                _spi(row[1], 16),
                _hex(row[2]),
                _hex(row[3]),
                row[4],
                _hex(row[5]),
                _hex(row[6]),
                row[7],
            )
            out.ike[(ike.spi_i, ike.spi_r)] = ike
    return out


def compare_child(ours: KeyLog, theirs: ChildKeys, they_initiated: bool) -> list[str]:
    """What differs between our exported ESP/AH keys and strongSwan's for one child SA:
    both SPIs must be in our log and each SA's keys must equal strongSwan's for that SA.
    `they_initiated`: strongSwan started the exchange that created the child."""
    problems: list[str] = []
    for spi, (encr, integ) in theirs.by_spi(they_initiated).items():
        mine = ours.esp.get(spi)
        if mine is None:
            problems.append(f"SPI {spi} ({theirs.child}) is not in our key log")
            continue
        if mine.encr_key != encr:
            problems.append(
                f"SPI {spi}: encryption key differs ({len(mine.encr_key)} vs {len(encr)} bytes)"
            )
        if mine.integ_key != integ:
            problems.append(
                f"SPI {spi}: integrity key differs ({len(mine.integ_key)} vs {len(integ)} bytes)"
            )
    return problems


def compare_ike(ours: KeyLog, theirs: IkeKeys, spi_i: str, spi_r: str) -> list[str]:
    """What differs between our exported SK_e*/SK_a* and strongSwan's for IKE SA (spi_i, spi_r)."""
    mine = ours.ike.get((_spi(spi_i, 16), _spi(spi_r, 16)))
    if mine is None:
        return [f"IKE SA {spi_i}_i {spi_r}_r is not in our key log"]
    problems = []
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        if getattr(mine, name) != getattr(theirs, name):
            problems.append(f"IKE SA {spi_i}_i {spi_r}_r: {name} differs")
    return problems
