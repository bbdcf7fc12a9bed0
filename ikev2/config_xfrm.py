"""Route-based VPN keys of a child (swanctl.conf names): XFRM marks and interface IDs, and the
xfrm interface the daemon creates or uses (engine/config.py XfrmIds).

    [connections.gw.children.net]
    if_id_in = 42                  # or "%unique", "%unique-dir", "0x2a"
    if_id_out = 42
    mark_in = "0x10/0xff"          # value[/mask]; "%unique" / "%unique-dir" as value
    mark_out = "0x10/0xff"
    xfrm_interface = "ipsec0"      # ours: an xfrm interface with if_id = if_id_out (a number)
    ipcomp = true                  # or "yes" / "no" as in swanctl.conf; default false

ipcomp offers (and accepts) IPComp (RFC 3173, DEFLATE) for the child: with both peers willing,
each direction gets an IPComp SA beside the ESP/AH one (engine/tasks/ipcomp.py).

strongSwan leaves creating the interface to the operator (or an updown script); with
xfrm_interface set, the daemon makes it (RTM_NEWLINK kind xfrm, IFLA_XFRM_IF_ID) unless it
exists, brings it up, and deletes what it made when it stops (kernel/links.py).
Mistakes are ConfigErrors naming the file, key and fix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .engine.config import UNIQUE, UNIQUE_DIR, XfrmIds

if TYPE_CHECKING:
    from .config import _Table

CHILD_KEYS = ("if_id_in", "if_id_out", "mark_in", "mark_out", "xfrm_interface", "ipcomp")
YES_NO = {"yes": True, "true": True, "no": False, "false": False}  # swanctl.conf's spellings
SPECIAL = {"%unique": UNIQUE, "%unique-dir": UNIQUE_DIR}
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ - 1, no '/' or spaces
MAX_U32 = 0xFFFF_FFFF


def _number(table: _Table, name: str, text: str, example: str) -> int:
    if text.lower() in SPECIAL:
        return SPECIAL[text.lower()]
    try:
        value = int(text, 0)
    except ValueError:
        table.fail(name, f"{text!r} is not a number", f"write e.g. {name} = {example}")
        raise AssertionError from None
    if not 0 <= value <= MAX_U32:
        table.fail(name, f"{text} is outside 0..0xffffffff", f"write e.g. {name} = {example}")
    return value


def _if_id(table: _Table, name: str) -> int | None:
    raw = table.get(name, (int, str), None, "42")
    if raw is None:
        return None
    value = _number(table, name, str(raw), '42 or "%unique"')
    if value == 0:
        table.fail(name, "0 means no interface ID", "remove the key, or use 1 or more")
    return value


def _mark(table: _Table, name: str) -> tuple[int, int] | None:
    raw = table.get(name, (int, str), None, '"0x10/0xff"')
    if raw is None:
        return None
    text = str(raw)
    value_text, _, mask_text = text.partition("/")
    value = _number(table, name, value_text.strip(), '"0x10/0xff"')
    mask = _number(table, name, mask_text.strip(), '"0x10/0xff"') if mask_text else MAX_U32
    if mask < 0:
        table.fail(name, "a mask cannot be %unique", 'write e.g. "%unique/0xff"')
    if value >= 0 and value & ~mask:
        table.fail(name, f"value {value:#x} has bits outside mask {mask:#x}", "widen the mask")
    return value, mask


def child_xfrm_ids(table: _Table) -> XfrmIds:
    ids = XfrmIds(
        mark_in=_mark(table, "mark_in"),
        mark_out=_mark(table, "mark_out"),
        if_id_in=_if_id(table, "if_id_in"),
        if_id_out=_if_id(table, "if_id_out"),
        interface=str(table.get("xfrm_interface", str, "", '"ipsec0"')),
    )
    if ids.interface:
        if not IFNAME.match(ids.interface):
            table.fail("xfrm_interface", f"{ids.interface!r} is not an interface name",
                       "use up to 15 letters, digits, '.', '-' or '_'")  # fmt: skip
        if ids.if_id_out is None or ids.if_id_in != ids.if_id_out or ids.if_id_out < 0:
            # a %unique value changes with each new instance of the child, the interface (one
            # name) would keep the first one's
            table.fail("xfrm_interface", "an xfrm interface needs one fixed if_id both ways",
                       "set if_id_in = if_id_out = a number, e.g. 42")  # fmt: skip
    return ids


def child_ipcomp(table: _Table) -> bool:
    """`ipcomp`: a TOML boolean, or swanctl.conf's "yes" / "no"."""
    raw = table.get("ipcomp", (bool, str), False, "true")
    if isinstance(raw, bool):
        return raw
    if raw.strip().lower() not in YES_NO:
        table.fail("ipcomp", f"{raw!r} is neither yes nor no", "write ipcomp = true (or false)")
    return YES_NO[raw.strip().lower()]
