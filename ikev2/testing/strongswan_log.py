"""strongSwan's log at ike/chd level 4, parsed: the hex dumps charon writes (`label => N bytes
@ 0x...`), the child SA keys it derived and the SPIs it then established, and SKEYSEED/SK_* per
IKE SA derivation. The same format in 5.9.8 and 6.0.6; with RFC 9370 additional key exchanges
6.0.6 derives the IKE keys once in IKE_SA_INIT and again after each IKE_INTERMEDIATE (§2.2.2),
so `ike_keys` lists every derivation and the last one of an SA is the one it uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_DUMP_HEAD = re.compile(
    r"^\S+ \d+\[(?P<grp>[A-Z]+)\] (?:<(?P<sa>[^>]*)> )?(?P<label>.+?) => (?P<n>\d+) bytes @ 0x"
)
_DUMP_LINE = re.compile(r"^\S+ \d+\[[A-Z]+\] (?:<[^>]*> )?\s+\d+: ((?:[0-9A-F]{2} ?)+)")


@dataclass(frozen=True)
class LogDump:
    group: str  # IKE, CHD, ENC ...
    sa: str  # the "<name|id>" tag without brackets, "" when absent
    label: str
    line: int  # 0-based line number of the header in the log
    data: bytes = field(repr=False)


def log_dumps(text: str) -> list[LogDump]:
    """Every `label => N bytes @ 0x...` hex dump in a charon log, in order."""
    out: list[LogDump] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        head = i
        m = _DUMP_HEAD.match(lines[i])
        i += 1
        if m is None:
            continue
        want = int(m.group("n"))
        data = bytearray()
        while len(data) < want and i < len(lines):
            d = _DUMP_LINE.match(lines[i])
            if d is None:
                break
            data += bytes.fromhex(d.group(1).replace(" ", "")[: 2 * 16])
            i += 1
        out.append(
            LogDump(m.group("grp"), m.group("sa") or "", m.group("label"), head, bytes(data))
        )
    return out


@dataclass(frozen=True)
class ChildKeys:
    """Child SA keys as strongSwan derived them (KEYMAT split, RFC 7296 §2.17): encryption and
    integrity keys of the initiator->responder (`_i`) and responder->initiator (`_r`) SAs,
    where "initiator" is whoever started the exchange that made the child. Empty bytes where the
    algorithm has no such key (AEAD: no integrity; AH: no encryption). spi_in/spi_out are
    charon's, from the "established with SPIs" line that follows the derivation."""

    sa: str  # charon's IKE SA tag, "name|id" or "id"
    child: str  # "name{id}"
    spi_in: str
    spi_out: str
    encr_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)
    integ_i: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)

    def by_spi(self, exchange_initiator: bool) -> dict[str, tuple[bytes, bytes]]:
        """SPI (8 hex digits) -> (encryption key, integrity key) of that SA, when charon was
        (True) or was not (False) the initiator of the exchange that created this child."""
        fwd, rev = (self.encr_i, self.integ_i), (self.encr_r, self.integ_r)
        out_keys, in_keys = (fwd, rev) if exchange_initiator else (rev, fwd)
        return {self.spi_out: out_keys, self.spi_in: in_keys}


_CHILD_LABELS = {
    "encryption initiator key": "encr_i",
    "encryption responder key": "encr_r",
    "integrity initiator key": "integ_i",
    "integrity responder key": "integ_r",
}
_ESTABLISHED = re.compile(
    r"\[IKE\] <(?P<sa>[^>]*)> (?:inbound |outbound )?CHILD_SA (?P<child>\S+\{\d+\}) "
    r"established with SPIs "
    r"(?P<spi_in>[0-9a-f]{8})_i(?:\s+[0-9a-f]{8}_i)? (?P<spi_out>[0-9a-f]{8})_o"
)


def child_keys(text: str) -> list[ChildKeys]:
    """The child SAs charon derived keys for (chd level 4) and then established, in order."""
    out: list[ChildKeys] = []
    pending: dict[str, dict[str, bytes]] = {}  # IKE SA id -> keys derived, not yet established
    events: list[tuple[int, str, Any]] = [(d.line, "dump", d) for d in log_dumps(text)]
    for number, line in enumerate(text.splitlines()):
        m = _ESTABLISHED.search(line)
        if m is not None:
            events.append((number, "up", m))
    events.sort(key=lambda e: e[0])
    for _, kind, item in events:
        if kind == "dump":
            dump = item
            sa_id = dump.sa.rsplit("|", 1)[-1]
            if dump.group == "CHD" and dump.label == "seed":
                pending[sa_id] = {}
            elif dump.label in _CHILD_LABELS and sa_id in pending:
                pending[sa_id][_CHILD_LABELS[dump.label]] = dump.data
        else:
            m = item
            keys = pending.pop(m.group("sa").rsplit("|", 1)[-1], None)
            if keys is None:
                continue
            out.append(
                ChildKeys(
                    m.group("sa"),
                    m.group("child"),
                    m.group("spi_in"),
                    m.group("spi_out"),
                    keys.get("encr_i", b""),
                    keys.get("encr_r", b""),
                    keys.get("integ_i", b""),
                    keys.get("integ_r", b""),
                )
            )
    return out


@dataclass(frozen=True)
class IkeKeys:
    sa: str
    skeyseed: bytes = field(repr=False)
    sk_d: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)


def ike_keys(text: str) -> list[IkeKeys]:
    """SKEYSEED and SK_* per IKE SA (and per IKE rekey) from a charon log at ike level 4."""
    out: list[IkeKeys] = []
    current: dict[str, bytes] | None = None
    sa = ""
    names = {
        "Sk_d secret": "sk_d",
        "Sk_ei secret": "sk_ei",
        "Sk_er secret": "sk_er",
        "Sk_ai secret": "sk_ai",
        "Sk_ar secret": "sk_ar",
        "Sk_pi secret": "sk_pi",
        "Sk_pr secret": "sk_pr",
    }
    for dump in log_dumps(text):
        if dump.label == "SKEYSEED":
            if current is not None:
                out.append(_ike_keys(sa, current))
            current = {"skeyseed": dump.data}
            sa = dump.sa
        elif current is not None and dump.label in names:
            current[names[dump.label]] = dump.data
            if dump.label == "Sk_pr secret":
                out.append(_ike_keys(sa, current))
                current = None
    return out


def _ike_keys(sa: str, d: dict[str, bytes]) -> IkeKeys:
    return IkeKeys(
        sa,
        d.get("skeyseed", b""),
        d.get("sk_d", b""),
        d.get("sk_ei", b""),
        d.get("sk_er", b""),
        d.get("sk_ai", b""),
        d.get("sk_ar", b""),
        d.get("sk_pi", b""),
        d.get("sk_pr", b""),
    )
