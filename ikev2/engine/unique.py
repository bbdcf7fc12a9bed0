"""Uniqueness of IKE SAs per peer identity: INITIAL_CONTACT (RFC 7296 §2.4, §3.10.1) and
strongSwan's `unique = no | never | replace | keep` (swanctl.conf; default no).

INITIAL_CONTACT in an IKE_AUTH request says the peer holds no other IKE SA with us: once the new
IKE SA is authenticated, every other IKE SA between the same two identities is stale and is
forgotten silently (no Delete: the peer has nothing to delete; strongSwan's check_uniqueness
with force_replace). Unless `unique = never`, which also stops us sending INITIAL_CONTACT.

Without INITIAL_CONTACT, the responder's policy for a second IKE SA of the same connection and
identities (strongSwan ike_sa_manager.c check_uniqueness, enforce_replace):
- no: both are kept.
- replace: the old one is deleted with the peer. From the same peer address it looks like a
  reauthentication (§2.8.3: its children are being recreated on the new IKE SA), so it is
  deleted only after REAUTH_GRACE seconds, as strongSwan does.
- keep: the new one is refused with AUTHENTICATION_FAILED, unless it comes from the same peer
  address (a reauthentication); checked before the peer is authenticated, so nothing of it is
  set up, and the answer is the one a failed authentication gets.

As initiator, INITIAL_CONTACT is sent only while no other IKE SA of ours holds the same
identities (strongSwan's has_contact): a second `up` must not make the peer drop the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..constants import IdType, NotifyType
from ..wire import IdiPayload, NotifyPayload, Payload
from .config import ConnectionConfig, Identity, Unique
from .events import IkeSaFailed
from .identity import identity_matches
from .state import IkeInput, IkeState
from .tasks import find_payload
from .tasks.informational import DeleteIkeExchange, ike_deleted

if TYPE_CHECKING:
    from .ike_sa import IkeSa
    from .reauth import PeerIndex

__all__ = ["Unique", "enforce", "refuse_duplicate", "send_initial_contact"]
REAUTH_GRACE = 10.0  # strongSwan's delay before deleting a duplicate from the same address


def _duplicates(peers: PeerIndex, new: IkeSa, local: Identity, remote: Identity) -> list[IkeSa]:
    """The other live IKE SAs between the same two identities, from the manager's index (a
    scan of every SA here made each IKE_AUTH O(SAs): issue 17)."""
    return [sa for sa in peers.with_identities(local, remote) if sa is not new and not sa.closed]


def has_initial_contact(payloads: Sequence[Payload]) -> bool:
    return any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
        for p in payloads
    )


def send_initial_contact(sas: Iterable[IkeSa], conn: ConnectionConfig) -> bool:
    """Initiator: INITIAL_CONTACT in our IKE_AUTH? Not with unique = never, not when the peer
    ID is a pattern (strongSwan: only for an ID without wildcards), and not while another IKE
    SA of ours, up or being set up, has the same local ID and this connection or this peer."""
    if not conn.send_initial_contact or conn.unique is Unique.NEVER:
        return False
    remote = conn.remote_id
    if remote is not None and b"*" in remote.data:
        return False
    for sa in sas:
        if sa.closed or sa.conn.local_id != conn.local_id:
            continue
        if sa.conn.name == conn.name:
            return False
        peer = sa.remote_identity
        if remote is not None and peer is not None and identity_matches(remote, peer):
            return False
    return True


def refuse_duplicate(
    peers: PeerIndex, sa: IkeSa, conn: ConnectionConfig | None, payloads: Sequence[Payload]
) -> list[Payload] | None:
    """Responder, before authenticating IKE_AUTH: `unique = keep` refuses a new IKE SA for
    identities that already have one of this connection from another address. Returns the
    answer (AUTHENTICATION_FAILED) and closes `sa`, or None to go on."""
    if conn is None or conn.unique is not Unique.KEEP or has_initial_contact(payloads):
        return None
    idi = find_payload(payloads, IdiPayload)
    if idi is None:
        return None
    try:
        peer = Identity(IdType(idi.id_type), idi.data)
    except ValueError:
        return None
    kept = [
        old
        for old in _duplicates(peers, sa, conn.local_id, peer)
        if old.conn.name == conn.name and old.state is IkeState.ESTABLISHED
    ]
    if not kept or any(old.remote[0] == sa.remote[0] for old in kept):
        return None  # none, or a reauthentication from the same address
    reason = f"unique = keep: {peer} already has IKE SA {kept[0].id}"
    sa.log.warning("IKE_AUTH refused", reason=reason)
    sa.emit(IkeSaFailed(sa.id, conn.name, reason, NotifyType.AUTHENTICATION_FAILED))
    sa.transition(IkeInput.CLOSE)
    return [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)]


def enforce(peers: PeerIndex, sa: IkeSa, payloads: Sequence[Payload], now: float) -> list[IkeSa]:
    """Responder, once IKE_AUTH authenticated `sa`: INITIAL_CONTACT and `unique = replace`
    (see the module docstring). Returns the other IKE SAs it changed."""
    remote = sa.remote_identity
    policy = sa.conn.unique
    if remote is None or sa.state is not IkeState.ESTABLISHED or policy is Unique.NEVER:
        return []
    contact = has_initial_contact(payloads)
    if not contact and policy is not Unique.REPLACE:
        return []
    duplicates = _duplicates(peers, sa, sa.conn.local_id, remote)
    touched = []
    if contact:
        for old in duplicates:
            old.log.info("IKE SA replaced", reason="peer sent INITIAL_CONTACT", new=sa.id)
            ike_deleted(old, f"replaced by IKE SA {sa.id}: peer sent INITIAL_CONTACT")
            touched.append(old)
        return touched
    for old in duplicates:
        if old.conn.name != sa.conn.name or old.state is not IkeState.ESTABLISHED:
            continue
        if old.remote[0] == sa.remote[0]:  # looks like a reauthentication (§2.8.3)
            due = now + REAUTH_GRACE
            old.expire_at = min(old.expire_at or due, due)
            old.log.info("duplicate IKE SA deleted soon (unique = replace)", new=sa.id,
                         delay=REAUTH_GRACE)  # fmt: skip
        else:
            old.log.info("duplicate IKE SA deleted (unique = replace)", new=sa.id)
            old.start_exchange(DeleteIkeExchange(f"replaced by IKE SA {sa.id} (unique)"), now)
        touched.append(old)
    return touched
