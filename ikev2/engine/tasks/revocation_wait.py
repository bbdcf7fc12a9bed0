"""IKE_AUTH and revocation status (engine/revocation.py): hold the exchange while the service
fetches, then judge the peer's path with its connection's policy (swanctl remote.revocation).

Both roles: the responder holds the peer's IKE_AUTH request (no answer yet; a retransmission of
it, RFC 7296 §2.1, is held the same way) and answers it as soon as the status is in
(Engine.revocation_fetched); the initiator holds the peer's IKE_AUTH response (our request stays
outstanding and is retransmitted; the peer replays its cached answer), and `resume` resends our
request as soon as the status is in. Either side waits only for the fetch. Over TCP
(RFC 9329 §6.2: no timed retransmissions) nothing is held: the answers held by then decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from ...constants import CertEncoding
from ...errors import AuthenticationFailed
from ...wire import CertPayload, Payload
from ..config import AuthMethodName, ConnectionConfig, Credentials
from ..credentials import CertificateError, verify_path
from ..revocation import RevocationCache, assess, static_crls, verdict

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


def _cache(sa: IkeSa) -> RevocationCache | None:
    return sa.host.revocation if sa.host is not None else None


def _path(sa: IkeSa, creds: Credentials, payloads: Sequence[Payload]) -> list[x509.Certificate]:
    certs = [
        p.data
        for p in payloads
        if isinstance(p, CertPayload) and p.encoding == CertEncoding.X509_SIGNATURE
    ]
    if not certs:
        return []
    try:
        return verify_path(certs[0], certs[1:], creds.trust_anchors, sa.env.utc_now())
    except CertificateError:
        return []  # verify_peer reports it


def hold(
    sa: IkeSa,
    conn: ConnectionConfig | None,
    payloads: Sequence[Payload],
    now: float,
    request_id: int | None = None,
) -> bool:
    """Whether IKE_AUTH must wait for revocation answers; asks for those not asked for yet.
    `request_id`: the peer's request (message ID) being held, kept to be answered later."""
    cache = _cache(sa)
    if cache is None or not cache.fetching or conn is None or sa.tcp is not None:
        return False  # over TCP (RFC 9329 §6.2) nothing is retransmitted: judge with what we hold
    creds = conn.remote_auth
    if creds.method is not AuthMethodName.PUBKEY:
        return False
    path = _path(sa, creds, payloads)
    if not path:
        return False
    found = assess(cache, sa.id, path, static_crls(creds.crls), sa.env.utc_now(), now)
    if found.revoked or not found.pending:
        cache.held.discard(sa.id)
        cache.requests.pop(sa.id, None)
        return False
    if request_id is not None:
        cache.requests[sa.id] = (request_id, tuple(payloads))
    for request in found.wanted:
        cache.requested(request.key, now)
        sa.emit(request)
    cache.held.add(sa.id)
    sa.log.info("IKE_AUTH waits for revocation status", fetches=[r.uri for r in found.wanted])
    return True


def check(sa: IkeSa, creds: Credentials, path: Sequence[x509.Certificate]) -> None:
    """Raise AuthenticationFailed when the path fails the connection's revocation policy."""
    cache = _cache(sa) or RevocationCache()
    found = assess(cache, sa.id, path, static_crls(creds.crls), sa.env.utc_now(), None)
    reason = verdict(found, creds.revocation)
    if reason is not None:
        raise AuthenticationFailed(reason)


def resume(sa: IkeSa, now: float) -> None:
    """An answer arrived: resend our outstanding request (the peer answers from its cache)."""
    if sa.initiator:
        for out in sa.requests.slots:
            for packet in out.packets:
                sa.send(packet)
