"""Redirects (RFC 5685), both roles: a gateway sends a client elsewhere, and the client follows.

    client                                                    gateway
    HDR, SAi1, KEi, Ni, N(REDIRECT_SUPPORTED)  -->                              §3.2
                                <--  HDR, N(REDIRECT, New_GW_ID, Ni)  (IKE_SA_INIT, §3.3)
    HDR, SK {IDi, AUTH, SA, TSi, TSr}  -->
                   <--  HDR, SK {IDr, AUTH, N(REDIRECT, New_GW_ID)}  (IKE_AUTH, §3.5)
                   <--  HDR, SK {N(REDIRECT, New_GW_ID)}  (INFORMATIONAL, established, §3.6)
    HDR, SK {}  -->
    and to the new gateway: HDR, SAi1, KEi, Ni, N(REDIRECTED_FROM, Original_GW_ID)  (§3.4)

The REDIRECT data (§4.2): GW Ident Type (1 IPv4, 2 IPv6, 3 FQDN), GW Ident Len, the identity,
and in IKE_SA_INIT the initiator's nonce. The IKE_SA_INIT answer is unprotected, so the nonce is
what a client checks: one whose nonce is not ours is a forgery by someone who did not see our
request, and is ignored (we keep waiting for the real answer, §3.3/§7). The IKE_AUTH redirect
comes after the gateway's AUTH, so the client checks that first (ike_auth.py calls us then).

Client: in IKE_SA_INIT the same IKE SA starts over towards the new gateway (fresh nonce and key
share, strongSwan's redirect_connecting); after IKE_AUTH the client deletes the redirected IKE
SA (§3.5) and a new IKE SA takes its children to the new gateway; an established IKE SA
(§3.6) is kept until the new one is up with its children, then deleted (make-before-break, as
strongSwan's ike_reauth_complete). Loop protection (§6 leaves it to us; strongSwan's numbers):
at most `limit` redirects followed within `period` seconds, counted along the chain of IKE SAs.
An FQDN target is not followed: resolving a name is IO, which the engine does not do.

Gateway: the connection's `redirect.to` targets, the one for a client chosen by its SPI (its
retransmits land on the same target), never our own address; only clients that announced
support are redirected (§3.2). An IKE SA redirected in IKE_AUTH or INFORMATIONAL is deleted
after the half-open timeout if the client does not delete it first (§3.5, §3.6; strongSwan
schedules the same delete).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from ...constants import ExchangeType, NotifyType
from ...errors import UsageError
from ...wire import Message, NotifyPayload, Payload
from ..config import ChildConfig, ConnectionConfig, IPAddress
from ..events import IkeSaFailed, IkeSaRedirected
from ..state import IkeInput, IkeState

if TYPE_CHECKING:
    from ..config import Identity
    from ..ike_sa import IkeSa
    from .ike_auth import IkeAuthExchange

log = structlog.get_logger("ikev2.engine")

Gateway = IPAddress | str  # an address, or an FQDN
GW_IPV4, GW_IPV6, GW_FQDN = 1, 2, 3  # §4.2 GW Ident Type
_GW_TYPES: dict[int, type] = {GW_IPV4: ipaddress.IPv4Address, GW_IPV6: ipaddress.IPv6Address}
MAX_FQDN = 255  # GW Ident Len is one octet


@dataclass(slots=True)
class RedirectState:
    """What one IKE SA knows of redirects: as gateway, whether the client announced support
    (§3.2); as client, the gateway that sent us here (REDIRECTED_FROM, §3.4) and when we
    followed redirects lately (loop protection)."""

    peer_supports: bool = False
    redirected_from: IPAddress | None = None
    history: tuple[float, ...] = field(default=())


def _state(sa: IkeSa) -> RedirectState:
    if sa.redirect is None:
        sa.redirect = RedirectState()
    state: RedirectState = sa.redirect
    return state


# --- the GW identity (§4.2)
def parse_gateway(text: str) -> Gateway:
    """A target as configured or given to the `redirect` command: an IP address or an FQDN.
    Raises UsageError otherwise."""
    text = text.strip()
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    valid = all(
        0 < len(label) < 64 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )
    if not text or not valid or len(text) > MAX_FQDN:
        raise UsageError(f"{text!r} is neither an IP address nor a host name")
    return text.rstrip(".")


def encode_gateway(gateway: Gateway, nonce: bytes = b"") -> bytes:
    if isinstance(gateway, str):
        kind, data = GW_FQDN, gateway.encode("ascii")
    else:
        kind, data = (GW_IPV4 if gateway.version == 4 else GW_IPV6), gateway.packed
    return bytes([kind, len(data)]) + data + nonce


def decode_gateway(data: bytes) -> tuple[Gateway, bytes] | None:
    """(gateway, nonce data) of a REDIRECT or REDIRECTED_FROM notify; None when malformed."""
    if len(data) < 2 or len(data) < 2 + data[1]:
        return None
    kind, ident, rest = data[0], data[2 : 2 + data[1]], data[2 + data[1] :]
    address = _GW_TYPES.get(kind)
    try:
        if address is not None:
            return address(ident), rest
        if kind == GW_FQDN:
            return parse_gateway(ident.decode("ascii")), rest
    except (ValueError, UnicodeDecodeError, UsageError):
        return None
    return None


def _redirect_in(payloads: tuple[Payload, ...]) -> NotifyPayload | None:
    found = (p for p in payloads if isinstance(p, NotifyPayload))
    return next((n for n in found if n.notify_type == NotifyType.REDIRECT), None)


def redirect_notify(gateway: Gateway, nonce: bytes = b"") -> NotifyPayload:
    return NotifyPayload(NotifyType.REDIRECT, data=encode_gateway(gateway, nonce))


def choose_target(conn: ConnectionConfig, spi_i: bytes, local: IPAddress) -> Gateway | None:
    """The configured target for this client (by its SPI: its retransmits get the same one),
    never our own address; None when there is none."""
    targets = [t for t in (parse_gateway(text) for text in conn.redirect.to) if t != local]
    if not targets:
        return None
    return targets[int.from_bytes(spi_i, "big") % len(targets)]


def _announced(message: Message) -> bool:
    """§3.2: REDIRECT_SUPPORTED, or REDIRECTED_FROM (a client redirected here supports it)."""
    return any(
        n.notify_type in (NotifyType.REDIRECT_SUPPORTED, NotifyType.REDIRECTED_FROM)
        for n in message.notifies
    )


# --- client: IKE_SA_INIT request (§3.2, §3.4)
def init_notifies(sa: IkeSa) -> list[Payload]:
    if not sa.conn.redirect.follow:
        return []
    came_from = sa.redirect.redirected_from if sa.redirect is not None else None
    if came_from is not None:
        return [NotifyPayload(NotifyType.REDIRECTED_FROM, data=encode_gateway(came_from))]
    return [NotifyPayload(NotifyType.REDIRECT_SUPPORTED)]


# --- gateway: IKE_SA_INIT (§3.3)
def init_redirect(
    conn: ConnectionConfig, message: Message, local: IPAddress
) -> tuple[bytes, str] | None:
    """The unprotected REDIRECT answer (responder SPI zero, no state kept: a retransmitted
    request is redirected again) and the target, when this connection redirects here."""
    from ...wire import NoncePayload
    from .ike_init import error_response

    nonce = message.find(NoncePayload)
    if conn.redirect.on != "init" or not conn.redirect.to or nonce is None:
        return None
    if not _announced(message):
        return None
    target = choose_target(conn, message.header.spi_i, local)
    if target is None:
        return None
    data = encode_gateway(target, nonce.data)
    return error_response(message, NotifyType.REDIRECT, data), str(target)


def note_support(sa: IkeSa, message: Message) -> None:
    """Gateway: remember a client's announcement for a later IKE_AUTH redirect (§3.5)."""
    if _announced(message):
        _state(sa).peer_supports = True


# --- client: IKE_SA_INIT response (§3.3)
def init_response(sa: IkeSa, message: Message, now: float) -> bool:
    """True when the answer is a REDIRECT, which is then followed, refused or ignored."""
    from . import ike_init

    notify = message.notify(NotifyType.REDIRECT)
    if notify is None:
        return False
    parsed = decode_gateway(notify.data)
    if parsed is None or not sa.nonce_i or not hmac.compare_digest(parsed[1], sa.nonce_i):
        # §3.3: the nonce proves the gateway saw our request; without it, a forgery
        sa.log.warning("REDIRECT ignored", reason="malformed, or its nonce is not ours")
        return True
    target = parsed[0]
    local, problem = _check(sa, target, now)
    if problem or local is None or isinstance(target, str):
        ike_init.fail(sa, problem, None)
        return True
    state = _state(sa)
    state.redirected_from = sa.remote[0]
    sa.log.info("redirected in IKE_SA_INIT", to=str(target))
    sa.emit(IkeSaRedirected(sa.id, sa.conn.name, str(target), sa.id))
    sa.remote = (target, sa.conn.remote_port)
    sa.local = (local, sa.conn.local_port)
    sa.log = sa.log.bind(peer=f"{target}:{sa.conn.remote_port}")
    sa.nonce_i = b""  # a fresh nonce and key share for the new gateway (build_i makes them)
    sa.ke = None
    sa.cookie = b""
    sa.init_retries = 0
    ike_init.build_i(sa, now)  # the same message ID 0, a fresh retransmit schedule
    return True


def _check(sa: IkeSa, target: Gateway, now: float) -> tuple[IPAddress | None, str]:
    """(our address towards target, "") when we follow; (None, why not) otherwise. Counts
    the redirect in the loop-protection history when it is followed."""
    config = sa.conn.redirect
    if not config.follow:
        return None, "redirected, but follow_redirects is off"
    if isinstance(target, str):
        return None, f"redirected to {target}: resolving a name is not supported"
    state = _state(sa)
    recent = tuple(t for t in state.history if now - t < config.period)
    if len(recent) >= config.limit:
        return None, f"redirect loop: {config.limit} redirects within {config.period:g} s"
    local = _local_address(sa, target)
    if local is None:
        return None, f"redirected to {target}: no local address of its family"
    state.history = (*recent, now)
    return local, ""


def _local_address(sa: IkeSa, target: IPAddress) -> IPAddress | None:
    if sa.local[0].version == target.version:
        return sa.local[0]
    return next((a for a in sa.conn.local_addrs if a.version == target.version), None)


# --- gateway: IKE_AUTH (§3.5)
def auth_redirect(sa: IkeSa, now: float) -> list[Payload]:
    """The REDIRECT for our IKE_AUTH answer (no child SA then), when the connection redirects
    there and the client announced support; the IKE SA goes after the half-open timeout
    unless the client deletes it first."""
    config = sa.conn.redirect
    supported = sa.redirect is not None and sa.redirect.peer_supports
    if config.on != "auth" or not config.to or not supported:
        return []
    target = choose_target(sa.conn, sa.spi_i, sa.local[0])
    if target is None:
        return []
    sa.log.info("redirecting peer in IKE_AUTH", to=str(target))
    _expire_soon(sa, now)
    return [redirect_notify(target)]


def _expire_soon(sa: IkeSa, now: float) -> None:
    deadline = now + sa.conn.timers.half_open_timeout
    sa.expire_at = min(sa.expire_at or deadline, deadline)
    sa.rekey_at = sa.reauth_at = None
    sa.touch()


# --- client: IKE_AUTH response (§3.5)
def auth_redirected(
    sa: IkeSa,
    exchange: IkeAuthExchange,
    identity: Identity,
    payloads: tuple[Payload, ...],
    now: float,
) -> bool:
    """The gateway, authenticated, redirects us: the IKE SA is deleted (§3.5) and, unless we
    refuse to follow, a new one takes its children to the new gateway. True when handled."""
    from .informational import DeleteIkeExchange

    notify = _redirect_in(payloads)
    parsed = decode_gateway(notify.data) if notify is not None else None
    if parsed is None:
        if notify is not None:
            sa.log.warning("malformed REDIRECT in IKE_AUTH ignored")
        return False
    target = parsed[0]
    sa.remote_identity = identity
    sa.established_at = now
    sa.transition(IkeInput.AUTH_DONE)  # authenticated; no IkeSaEstablished: it goes at once
    sa.forget_handshake()
    local, problem = _check(sa, target, now)
    if problem or local is None or isinstance(target, str):
        sa.log.warning("REDIRECT not followed", reason=problem)
        sa.emit(IkeSaFailed(sa.id, sa.conn.name, problem, None))
        sa.queue.clear()
        sa.queue.append(DeleteIkeExchange(problem))
        return True
    from ..reauth import take_new_children

    plan: list[tuple[ChildConfig, int]] = []
    if exchange.child_config is not None:
        plan.append((exchange.child_config, exchange.reqid))
    plan += take_new_children(sa)
    _follow(sa, target, local, plan, now)
    sa.queue.clear()
    sa.queue.append(DeleteIkeExchange(f"redirected to {target}"))
    return True


def _follow(
    old: IkeSa, target: IPAddress, local: IPAddress, plan: list[tuple[ChildConfig, int]], now: float
) -> IkeSa:
    """A new IKE SA of old's connection to the new gateway, with REDIRECTED_FROM (§3.4) and
    old's children (the first in IKE_AUTH, the others by CREATE_CHILD_SA, their reqids kept)."""
    from ..reauth import _current
    from . import ike_init
    from .create_child import CreateChildExchange
    from .ike_auth import IkeAuthExchange

    assert old.host is not None
    conn = old.host.current_connection(old.conn.name) or old.conn
    new = old.spawn(True, old.host.new_ike_spi(), bytes(8), now, conn)
    new.local = (local, conn.local_port)
    new.remote = (target, conn.remote_port)
    new.log = new.log.bind(peer=f"{target}:{conn.remote_port}")
    state = _state(new)
    state.redirected_from = old.remote[0]
    state.history = _state(old).history
    plan = [(_current(conn, config), reqid) for config, reqid in plan]
    first_config, first_reqid = plan[0] if plan else (None, 0)
    new.queue.append(IkeAuthExchange(first_config, first_reqid, initial_contact=False))
    for config, reqid in plan[1:]:
        new.queue.append(CreateChildExchange(config, reqid))
    ike_init.build_i(new, now)
    old.log.info("redirected", to=str(target), new_ike_sa=new.id, children=len(plan))
    old.emit(IkeSaRedirected(old.id, old.conn.name, str(target), new.id))
    return new


# --- gateway: established IKE SA (§3.6)
class RedirectExchange:
    """Our INFORMATIONAL with N(REDIRECT) (no nonce, §3.6). Once answered, the IKE SA is
    deleted after the half-open timeout unless the client deletes it first."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, target: Gateway) -> None:
        self.target = target

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        if sa.state is not IkeState.ESTABLISHED:
            return None
        sa.log.info("redirecting peer", to=str(self.target))
        return [redirect_notify(self.target)]

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        _expire_soon(sa, now)

    def give_up(self, sa: IkeSa, now: float) -> None:
        from .informational import ike_deleted

        ike_deleted(sa, "peer did not answer the redirect")


def start(sa: IkeSa | None, target: str, now: float) -> bool:
    """The `redirect` command: False unless the IKE SA is established; UsageError for a
    target that is neither an IP address nor a host name."""
    gateway = parse_gateway(target)
    if sa is None or sa.state is not IkeState.ESTABLISHED:
        return False
    sa.start_exchange(RedirectExchange(gateway), now)
    return True


# --- client: established IKE SA (§3.6)
def informational(sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
    """A REDIRECT in the gateway's INFORMATIONAL request: answered (empty) by the caller; a new
    IKE SA to the new gateway takes over the children, then this one is deleted."""
    from ..reauth import merge, plan_of, take_new_children

    notify = _redirect_in(payloads)
    if notify is None:
        return
    parsed = decode_gateway(notify.data)
    if parsed is None or not sa.conn.remote_addrs or sa.state is not IkeState.ESTABLISHED:
        sa.log.warning("REDIRECT ignored", reason="malformed, or we cannot initiate")
        return
    local, problem = _check(sa, parsed[0], now)
    if problem or local is None or isinstance(parsed[0], str):
        sa.log.warning("REDIRECT not followed", reason=problem)
        return
    plan = merge(plan_of(sa), take_new_children(sa))
    new = _follow(sa, parsed[0], local, plan, now)
    new.queue.append(DeleteWhenUp(sa))


class DeleteWhenUp:
    """Queued on the new IKE SA after its children: when its turn comes it is up and every
    child exchange has ended, so the redirected IKE SA goes (make-before-break). Sends
    nothing itself."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, old: IkeSa) -> None:
        self.old: IkeSa | None = old  # dropped once run

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None:
        from .informational import DeleteIkeExchange

        old, self.old = self.old, None
        if old is not None:
            old = old.home()  # rekeyed meanwhile (§2.18)
            if old.state is IkeState.ESTABLISHED:
                old.start_exchange(DeleteIkeExchange("redirected", follows_rekey=True), now)
            old.touch()
        return None

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None:
        raise AssertionError("DeleteWhenUp sends no request")  # pragma: no cover

    def give_up(self, sa: IkeSa, now: float) -> None:
        raise AssertionError("DeleteWhenUp sends no request")  # pragma: no cover
