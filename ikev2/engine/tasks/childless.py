"""Childless IKE SAs (RFC 6023), both roles, with swanctl.conf's `childless` policy.

    HDR, SA, KEi, Ni  -->
                  <--  HDR, SA, KEr, Nr, [CERTREQ], N(CHILDLESS_IKEV2_SUPPORTED)
    HDR, SK {IDi, [CERT], [IDr], AUTH, [CP]}  -->          (no SA, TSi, TSr)
                  <--  HDR, SK {IDr, [CERT], AUTH, [CP]}
    ... children follow, each in its own CREATE_CHILD_SA (RFC 7296 §1.3.1)

RFC 6023 §4: the responder announces support in its IKE_SA_INIT response; only then may the
initiator leave SA, TSi and TSr out of IKE_AUTH (wire/rules.py checks "all three or none").

The policy per connection, as strongSwan's (swanctl.conf `childless`):

    policy   initiator: first child            responder: IKE_AUTH with / without a child
    allow    in IKE_AUTH                       accepted / accepted
    prefer   deferred if the peer supports it  accepted / accepted
    force    deferred; the IKE SA fails if     refused  / accepted
             the peer does not support it
    never    in IKE_AUTH                       accepted / refused (and not announced)

An IKE SA initiated with no child at all is childless under every policy (strongSwan does the
same, and it fails at a responder without the extension). A refusal answers IKE_AUTH with
INVALID_SYNTAX, as strongSwan does, and ends the half-open IKE SA with nothing installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

from ...constants import NotifyType
from ...wire import Message, NotifyPayload, Payload, SaPayload
from ..config import ChildConfig, Childless, ConnectionConfig
from . import find_payload
from .create_child import CreateChildExchange

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


class FirstChild(Enum):
    """What the initiator does with the first child of an IKE SA."""

    IN_IKE_AUTH = "in-ike-auth"
    DEFERRED = "deferred"  # its own CREATE_CHILD_SA once the IKE SA is up
    FAIL = "fail"  # the peer cannot do what the policy demands


# (policy, the responder announced CHILDLESS_IKEV2_SUPPORTED) -> the first child's way
INITIATOR: dict[tuple[Childless, bool], FirstChild] = {
    (Childless.ALLOW, True): FirstChild.IN_IKE_AUTH,
    (Childless.ALLOW, False): FirstChild.IN_IKE_AUTH,
    (Childless.PREFER, True): FirstChild.DEFERRED,
    (Childless.PREFER, False): FirstChild.IN_IKE_AUTH,
    (Childless.FORCE, True): FirstChild.DEFERRED,
    (Childless.FORCE, False): FirstChild.FAIL,
    (Childless.NEVER, True): FirstChild.IN_IKE_AUTH,
    (Childless.NEVER, False): FirstChild.IN_IKE_AUTH,
}

# (policy, IKE_AUTH carries a child) -> why a responder refuses it, or None to accept
RESPONDER: dict[tuple[Childless, bool], str | None] = {
    (Childless.ALLOW, True): None,
    (Childless.ALLOW, False): None,
    (Childless.PREFER, True): None,
    (Childless.PREFER, False): None,
    (Childless.FORCE, True): "childless = force, but the peer's IKE_AUTH carries a child SA",
    (Childless.FORCE, False): None,
    (Childless.NEVER, True): None,
    (Childless.NEVER, False): "childless = never, but the peer's IKE_AUTH carries no child SA",
}


# --- IKE_SA_INIT
def init_notifies(sa: IkeSa) -> list[Payload]:
    """Responder: N(CHILDLESS_IKEV2_SUPPORTED) when a connection the peer may turn out to use
    accepts childless IKE SAs (RFC 6023 §4); the IKE_AUTH check below applies the chosen one's."""
    if any(conn.childless is not Childless.NEVER for conn in sa.candidates):
        return [NotifyPayload(NotifyType.CHILDLESS_IKEV2_SUPPORTED)]
    return []


def record(sa: IkeSa, message: Message) -> None:
    """Initiator: did the responder announce the extension (RFC 6023 §4)?"""
    sa.peer_childless = message.notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED) is not None


# --- initiator's IKE_AUTH
def first_child(sa: IkeSa, child: ChildConfig | None) -> FirstChild:
    """How the initiator's IKE_AUTH treats its first child (the table above)."""
    if child is None:
        return FirstChild.IN_IKE_AUTH  # nothing to defer: the IKE_AUTH is childless anyway
    return INITIATOR[(sa.conn.childless, sa.peer_childless)]


def defer(sa: IkeSa, child: ChildConfig, reqid: int) -> None:
    """Queue the first child as the first CREATE_CHILD_SA after IKE_AUTH (RFC 6023 §4, RFC 7296
    §1.3.1), ahead of the connection's other children, keeping the reqid drawn for it."""
    sa.log.info("child deferred to CREATE_CHILD_SA (childless IKE SA)", child=child.name)
    sa.queue.appendleft(CreateChildExchange(child, reqid))


# --- responder's IKE_AUTH
def refusal(conn: ConnectionConfig, payloads: Sequence[Payload]) -> str | None:
    """Why the responder refuses this first IKE_AUTH under `conn`'s policy, or None."""
    carries_child = find_payload(payloads, SaPayload) is not None
    return RESPONDER[(conn.childless, carries_child)]
