"""The post-quantum preshared keys of the TOML file (RFC 8784), named as in swanctl.conf:

    [secrets.ppk-moon]            # a section whose name starts with "ppk" holds a PPK
    id = "ppk-moon"               # its PPK_ID (or ids = [...], several names for one PPK)
    secret = "0x5f7a..."          # 0x: hex, 0s: base64, otherwise the text itself
    # secret_file = "ppk.key"     # or from a file (refused when group/world readable)

    [connections.net]
    ppk_id = "ppk-moon"           # the PPK we use as initiator (and the only one accepted)
    ppk_required = true           # no IKE SA without a PPK (default: fall back without one)

A connection without ppk_id takes, as responder, any PPK the initiator names (as strongSwan).
RFC 8784 §3 asks for PPKs of at least 256 bits of entropy: shorter ones are refused. PPKs never
appear in an error text (only the key names do) or in a repr.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from .engine.config import AuthMethodName, Credentials

if TYPE_CHECKING:
    from .config import _Loader, _Table

PPK_SECRET_KEYS = ("id", "ids", "secret", "secret_file")
PPK_CONNECTION_KEYS = ("ppk_id", "ppk_required")
MIN_PPK = 32  # bytes: RFC 8784 §3 wants at least 256 bits of entropy
_GENERATE = 'e.g. secret = "0x$(openssl rand -hex 32)"'


def is_ppk_section(name: str) -> bool:
    """swanctl.conf's secrets.ppk<suffix>: a PPK, not an IKE PSK."""
    return name.startswith("ppk")


def _value(table: _Table, key: str, text: str) -> bytes:
    """A secret as swanctl writes it: 0x<hex>, 0s<base64>, or the text's bytes."""
    try:
        if text.startswith("0x"):
            return bytes.fromhex(text[2:])
        if text.startswith("0s"):
            return base64.b64decode(text[2:], validate=True)
    except (ValueError, binascii.Error):
        table.fail(key, "the PPK is not valid hex (0x) or base64 (0s)", _GENERATE)
    return text.encode()


def load_ppks(loader: _Loader, root: _Table) -> tuple[tuple[bytes, bytes], ...]:
    """Every (PPK_ID, PPK) of the secrets.ppk* sections."""
    from .config import _Table

    sections = root.data.get("secrets", {})
    if not isinstance(sections, dict):
        return ()  # _secrets reports it
    out: list[tuple[bytes, bytes]] = []
    for name, data in sections.items():
        if not is_ppk_section(name):
            continue
        table = _Table(loader, f"secrets.{name}", data, PPK_SECRET_KEYS)
        ids = table.strings("ids") + table.strings("id")
        if not ids:
            table.fail("id", "a PPK needs its PPK_ID", 'add id = "ppk-moon"')
        if "secret" in table.data and "secret_file" in table.data:
            table.fail("secret", "both secret and secret_file are set", "keep one of them")
        if "secret_file" in table.data:
            path = str(table.get("secret_file", str, "", '"ppk.key"'))
            raw = loader.file(table.sub("secret_file"), path, secret=True).strip()
            value = _value(table, "secret_file", raw.decode("ascii", "replace"))
            key = "secret_file"
        elif "secret" in table.data:
            value = _value(table, "secret", str(table.get("secret", str, "", _GENERATE)))
            key = "secret"
        else:
            table.fail("secret", "no secret given", "add secret = ... or secret_file = ...")
            raise AssertionError
        if len(value) < MIN_PPK:
            table.fail(key, f"the PPK is shorter than {MIN_PPK} bytes (RFC 8784: 256 bits)",
                       _GENERATE)  # fmt: skip
        for ppk_id in ids:
            if any(ppk_id.encode() == known for known, _ in out):
                table.fail("id", f"PPK_ID {ppk_id!r} is given twice", "give each PPK its own id")
            out.append((ppk_id.encode(), value))
    return tuple(out)


def connection_ppk(
    table: _Table,
    ppks: tuple[tuple[bytes, bytes], ...],
    local: Credentials,
    remote: Credentials,
) -> dict[str, Any]:
    """The ConnectionConfig fields ppk_id, ppk_required and ppks of one connection."""
    text = table.get("ppk_id", str, None, '"ppk-moon"')
    required = bool(table.get("ppk_required", bool, False, "true"))
    ppk_id = text.encode() if text is not None else None
    if text is not None and not text:
        table.fail("ppk_id", "is empty", 'write e.g. ppk_id = "ppk-moon"')
    if ppk_id is not None:
        usable = tuple(p for p in ppks if p[0] == ppk_id)
        if not usable:
            table.fail("ppk_id", f"no [secrets.ppk*] entry has the PPK_ID {text!r}",
                       f'add [secrets.ppk-1] with id = "{text}" and a secret')  # fmt: skip
    else:
        usable = ppks
    if required and not usable:
        table.fail("ppk_required", "a PPK is required but no [secrets.ppk*] entry exists",
                   'add [secrets.ppk-1] with id = "..." and secret = "0x..."')  # fmt: skip
    if (ppk_id is not None or required) and AuthMethodName.EAP in (local.method, remote.method):
        table.fail("ppk_id", "PPKs with EAP authentication are not supported",
                   "use psk or pubkey authentication, or remove ppk_id")  # fmt: skip
    return {"ppk_id": ppk_id, "ppk_required": required, "ppks": usable}
