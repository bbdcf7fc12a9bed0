"""IKE SA states and the ONE table of their transitions (h11's rule: every transition is here).

An IKE SA moves through IKE_SA_INIT and IKE_AUTH (RFC 7296 §1.2) to ESTABLISHED, then to
DELETING when we start an IKE SA delete (§1.4.1), and to CLOSED from anywhere when it ends. A
pair missing from the table is our own bug and raises UsageError.
"""

from __future__ import annotations

import enum

from ..constants import ExchangeType
from ..errors import UsageError


class IkeState(enum.Enum):
    CREATED = "created"
    INIT_SENT = "init-sent"  # initiator: IKE_SA_INIT request out
    INIT_DONE = "init-done"  # responder: IKE_SA_INIT answered, keys derived, half-open
    AUTH_SENT = "auth-sent"  # initiator: IKE_AUTH request out
    ESTABLISHED = "established"
    DELETING = "deleting"  # our Delete of the IKE SA is out
    CLOSED = "closed"


class IkeInput(enum.Enum):
    SEND_INIT = "send-init"
    RETRY_INIT = "retry-init"  # COOKIE or INVALID_KE_PAYLOAD answer: same state
    RECV_INIT_RESPONSE = "recv-init-response"
    RESPOND_INIT = "respond-init"
    SEND_AUTH = "send-auth"
    AUTH_DONE = "auth-done"  # both sides authenticated
    ADOPT = "adopt"  # made by rekeying an established IKE SA (§2.18)
    START_DELETE = "start-delete"
    CLOSE = "close"  # deleted, failed, timed out


S, In = IkeState, IkeInput

TRANSITIONS: dict[tuple[IkeState, IkeInput], IkeState] = {
    (S.CREATED, In.SEND_INIT): S.INIT_SENT,
    (S.CREATED, In.RESPOND_INIT): S.INIT_DONE,
    (S.CREATED, In.ADOPT): S.ESTABLISHED,
    (S.INIT_SENT, In.RETRY_INIT): S.INIT_SENT,
    (S.INIT_SENT, In.RECV_INIT_RESPONSE): S.INIT_SENT,
    (S.INIT_SENT, In.SEND_AUTH): S.AUTH_SENT,
    (S.AUTH_SENT, In.AUTH_DONE): S.ESTABLISHED,
    (S.INIT_DONE, In.AUTH_DONE): S.ESTABLISHED,
    (S.ESTABLISHED, In.START_DELETE): S.DELETING,
    # a reauthentication attempt abandoned while its IKE_AUTH is out: the peer may hold the
    # IKE SA, so it is deleted as an established one (reauth.py, §2.8.3)
    (S.AUTH_SENT, In.START_DELETE): S.DELETING,
    **{(state, In.CLOSE): S.CLOSED for state in IkeState if state is not S.CLOSED},
}

# States in which keys exist and SK-protected messages can be exchanged.
KEYED_STATES = frozenset({S.INIT_DONE, S.AUTH_SENT, S.ESTABLISHED, S.DELETING})
HALF_OPEN_STATES = frozenset({S.CREATED, S.INIT_SENT, S.INIT_DONE, S.AUTH_SENT})


def next_state(state: IkeState, event: IkeInput) -> IkeState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise UsageError(f"no IKE SA transition from {state.value} on {event.value}") from None


def can(state: IkeState, event: IkeInput) -> bool:
    return (state, event) in TRANSITIONS


# Which requests each state of an IKE SA accepts (RFC 7296 §1.2: IKE_AUTH first, then the rest).
ALLOWED_REQUESTS: dict[IkeState, frozenset[int]] = {
    # RFC 9242 §3: IKE_INTERMEDIATE rounds come between IKE_SA_INIT and IKE_AUTH; §2.21.2: an
    # initiator that cannot authenticate us says so in an INFORMATIONAL (informational.half_open)
    IkeState.INIT_DONE: frozenset(
        {ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_AUTH, ExchangeType.INFORMATIONAL}
    ),
    IkeState.ESTABLISHED: frozenset(
        {ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA, ExchangeType.IKE_FOLLOWUP_KE}
    ),
    IkeState.DELETING: frozenset(
        {ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA, ExchangeType.IKE_FOLLOWUP_KE}
    ),
}
