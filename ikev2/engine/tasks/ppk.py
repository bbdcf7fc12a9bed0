"""Post-quantum preshared keys (RFC 8784), both roles.

    IKE_SA_INIT  HDR, SA, KEi, Ni, N(USE_PPK)  -->
                                 <--  HDR, SA, KEr, Nr, N(USE_PPK)
    IKE_AUTH     HDR, SK {IDi, AUTH, N(PPK_IDENTITY, PPK_ID), [N(NO_PPK_AUTH)], ...}  -->
                                 <--  HDR, SK {IDr, AUTH, N(PPK_IDENTITY), ...}

With USE_PPK both ways (§3) the initiator picks its PPK, replaces SK_d, SK_pi and SK_pr with
prf+(PPK, SK_x') (crypto.ppk.mix_ppk) and computes AUTH with the new SK_pi; when a PPK is
optional for it, NO_PPK_AUTH carries the AUTH data computed with SK_pi' as well. A responder that
has the PPK named by PPK_ID mixes it the same way, verifies AUTH with it (a PPK it has never falls
back to NO_PPK_AUTH) and confirms with an empty PPK_IDENTITY; our AUTH then uses the new SK_pr.

Every mismatch (§3), `ppk_required` being the local policy of each side:
- initiator requires a PPK, responder sends no USE_PPK: the initiator aborts the IKE SA;
- the peer offered no USE_PPK, PPK_IDENTITY, or the PPK we required: AUTHENTICATION_FAILED;
- responder does not have the PPK of PPK_ID (or the connection names another PPK_ID): with a
  PPK optional for it, it verifies NO_PPK_AUTH and goes on without a PPK, and fails with
  AUTHENTICATION_FAILED when there is none; with a PPK required, AUTHENTICATION_FAILED;
- responder answers without PPK_IDENTITY: an initiator requiring a PPK fails (and tells the
  responder, RFC 7296 §2.21.2), one with an optional PPK goes back to SK_d' and SK_pr'.
No PPK appears in any log line or repr; the PPK_ID (an identifier, not a secret) does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ...constants import NotifyType
from ...crypto.keymat import IkeKeys
from ...crypto.ppk import mix_ppk
from ...errors import AuthenticationFailed
from ...wire import AuthPayload, Message, NotifyPayload, Payload
from ..config import AuthMethodName, ConnectionConfig
from . import find_payload

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

# RFC 8784 §5.1 PPK_ID types: we send FIXED (as strongSwan does) and read both
PPK_ID_OPAQUE = 1
PPK_ID_FIXED = 2


@dataclass(slots=True)
class PpkState:
    """One IKE SA's PPK: negotiated (USE_PPK both ways), the PPK_ID in use, and (initiator, until
    the IKE_AUTH response) the keys before the PPK, for the fallback of §3."""

    negotiated: bool = False
    ppk_id: bytes | None = None
    used: bool = False  # the IKE SA's SK_d, SK_pi and SK_pr have the PPK in them
    primed: IkeKeys | None = field(default=None, repr=False)


def encode_ppk_id(ppk_id: bytes) -> bytes:
    """PPK_IDENTITY notification data: PPK_ID type, then the PPK_ID (RFC 8784 §5.1)."""
    return bytes([PPK_ID_FIXED]) + ppk_id


def decode_ppk_id(data: bytes) -> bytes | None:
    """The PPK_ID of a PPK_IDENTITY notification, None when malformed or of an unknown type."""
    if len(data) < 2 or data[0] not in (PPK_ID_OPAQUE, PPK_ID_FIXED):
        return None
    return data[1:]


def _eap(conn: ConnectionConfig) -> bool:
    return AuthMethodName.EAP in (conn.local_auth.method, conn.remote_auth.method)


def _text(ppk_id: bytes | None) -> str:
    return ppk_id.decode("utf-8", "replace") if ppk_id is not None else ""


def _lookup(conn: ConnectionConfig, ppk_id: bytes) -> bytes | None:
    """The PPK of ppk_id this connection may use: a connection naming a PPK_ID takes only that."""
    if conn.ppk_id is not None and ppk_id != conn.ppk_id:
        return None
    return next((secret for name, secret in conn.ppks if name == ppk_id), None)


def _apply(sa: IkeSa, state: PpkState, ppk_id: bytes, ppk: bytes) -> None:
    """RFC 8784 §3: SK_d, SK_pi, SK_pr from the PPK; the SK ciphers (SK_e, SK_a) stay."""
    assert sa.keys is not None
    state.primed, state.ppk_id, state.used = sa.keys, ppk_id, True
    sa.keys = mix_ppk(sa.prf_id, ppk, sa.keys)


def _notify(payloads: Sequence[Payload], kind: NotifyType) -> NotifyPayload | None:
    return next(
        (p for p in payloads if isinstance(p, NotifyPayload) and p.notify_type == kind), None
    )


# --- IKE_SA_INIT
def init_request_notifies(conn: ConnectionConfig) -> list[Payload]:
    """The initiator's N(USE_PPK), when it has a PPK to use (§3)."""
    return [NotifyPayload(NotifyType.USE_PPK)] if conn.ppk_id is not None else []


def init_response_i(sa: IkeSa, message: Message) -> str | None:
    """The initiator reads the responder's USE_PPK; returns why the IKE SA must stop, if so."""
    conn = sa.conn
    if conn.ppk_id is None:
        return "PPK required but no ppk_id configured" if conn.ppk_required else None
    if message.notify(NotifyType.USE_PPK) is None:
        if conn.ppk_required:  # §3: the initiator MUST abort
            return "PPK required but the responder sent no USE_PPK"
        sa.log.info("responder does not use PPKs, going on without one")
        return None
    sa.ppk = PpkState(negotiated=True)
    return None


def init_request_r(sa: IkeSa, message: Message) -> None:
    """The responder: USE_PPK from the initiator, and a connection here that has PPKs (§3)."""
    if message.notify(NotifyType.USE_PPK) is not None and any(
        c.ppks for c in sa.candidates if not _eap(c)
    ):
        sa.ppk = PpkState(negotiated=True)


def init_response_notifies(sa: IkeSa) -> list[Payload]:
    return [NotifyPayload(NotifyType.USE_PPK)] if sa.ppk is not None else []


# --- IKE_AUTH, initiator
def apply_i(sa: IkeSa) -> None:
    """Before our AUTH is computed: mix the PPK of our ppk_id into the keys (§3)."""
    state, conn = sa.ppk, sa.conn
    if state is None or not state.negotiated or conn.ppk_id is None or _eap(conn):
        return
    ppk = _lookup(conn, conn.ppk_id)
    if ppk is None:
        sa.log.warning("no PPK for our ppk_id", ppk_id=_text(conn.ppk_id))
        return
    _apply(sa, state, conn.ppk_id, ppk)


def auth_notifies_i(sa: IkeSa, auth_payloads: Callable[[], list[Payload]]) -> list[Payload]:
    """PPK_IDENTITY, and NO_PPK_AUTH (AUTH data with SK_pi') when a PPK is optional (§3);
    auth_payloads() builds our CERT/AUTH payloads with the keys the SA holds."""
    state = sa.ppk
    if state is None or not state.used or state.ppk_id is None:
        return []
    out: list[Payload] = [NotifyPayload(NotifyType.PPK_IDENTITY, data=encode_ppk_id(state.ppk_id))]
    if not sa.conn.ppk_required:  # §3: MUST NOT be sent when the PPK is mandatory
        assert state.primed is not None
        with_ppk, sa.keys = sa.keys, state.primed
        try:
            auth = auth_payloads()[-1]
        finally:
            sa.keys = with_ppk
        assert isinstance(auth, AuthPayload)
        out.append(NotifyPayload(NotifyType.NO_PPK_AUTH, data=auth.data))
    return out


def response_i(sa: IkeSa, payloads: tuple[Payload, ...]) -> None:
    """The IKE_AUTH response, before the responder's AUTH is verified: did it use our PPK?
    Raises AuthenticationFailed when our policy needs a PPK it did not use."""
    state, conn = sa.ppk, sa.conn
    confirmed = _notify(payloads, NotifyType.PPK_IDENTITY) is not None
    if state is not None and state.used:
        primed, state.primed = state.primed, None
        if confirmed:
            sa.log.info("PPK used", ppk_id=_text(state.ppk_id))
            return
        if conn.ppk_required:
            raise AuthenticationFailed("PPK required but the responder did not use it")
        assert primed is not None
        sa.keys, state.used = primed, False  # §3: back to SK_d' and SK_pr'
        sa.log.info("responder did not use the PPK, going on without it")
        return
    if conn.ppk_required:
        raise AuthenticationFailed("PPK required but none was used")


# --- IKE_AUTH, responder
def request_r(
    sa: IkeSa, conn: ConnectionConfig, payloads: tuple[Payload, ...]
) -> tuple[Payload, ...]:
    """The initiator's IKE_AUTH request, before its AUTH is verified against `conn` (the
    connection chosen by identity): mix in the PPK it names, or fall back, or fail (§3).
    Returns the payloads to verify (AUTH replaced by NO_PPK_AUTH's data on the fallback)."""
    state = sa.ppk
    required = conn.ppk_required
    if state is None or not state.negotiated:
        if required:
            raise AuthenticationFailed("PPK required but the initiator sent no USE_PPK")
        return payloads
    identity = _notify(payloads, NotifyType.PPK_IDENTITY)
    if identity is None:
        if required:
            raise AuthenticationFailed("PPK required but the initiator sent no PPK_IDENTITY")
        return payloads
    ppk_id = decode_ppk_id(identity.data)
    ppk = _lookup(conn, ppk_id) if ppk_id is not None and not _eap(conn) else None
    if ppk is not None and ppk_id is not None:
        _apply(sa, state, ppk_id, ppk)
        state.primed = None  # no way back: AUTH must verify with the PPK (fail closed)
        sa.log.info("PPK used", ppk_id=_text(ppk_id))
        return payloads
    if required:
        raise AuthenticationFailed(f"PPK required but no PPK for PPK_ID {_text(ppk_id)!r}")
    fallback = _notify(payloads, NotifyType.NO_PPK_AUTH)
    auth = find_payload(payloads, AuthPayload)
    if fallback is None or auth is None:
        raise AuthenticationFailed(f"no PPK for PPK_ID {_text(ppk_id)!r} and no NO_PPK_AUTH")
    sa.log.info("no PPK for the initiator's PPK_ID, using NO_PPK_AUTH", ppk_id=_text(ppk_id))
    swapped = replace(auth, data=fallback.data)
    return tuple(swapped if p is auth else p for p in payloads)


def response_notifies_r(sa: IkeSa) -> list[Payload]:
    """An empty PPK_IDENTITY tells the initiator the PPK is in the keys (§3)."""
    used = sa.ppk is not None and sa.ppk.used
    return [NotifyPayload(NotifyType.PPK_IDENTITY)] if used else []


# --- afterwards
def used(sa: IkeSa) -> bool:
    return sa.ppk is not None and sa.ppk.used


def inherit(new: IkeSa, old: IkeSa) -> None:
    """A rekeyed IKE SA's keys come from the old SK_d (RFC 7296 §2.18): the PPK stays in them."""
    if used(old):
        assert old.ppk is not None
        new.ppk = PpkState(negotiated=True, ppk_id=old.ppk.ppk_id, used=True)
