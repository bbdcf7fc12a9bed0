"""Certificate revocation (RFC 5280 §6.3 CRLs, RFC 6960 OCSP), pure: the engine never fetches.

The engine asks and the service fetches. When a peer's chain names a CRL distribution point
(RFC 5280 §4.2.1.13) or an OCSP responder (Authority Information Access, §4.2.2.1) whose answer
we do not hold yet, IKE_AUTH is held (`hold`): the engine emits one RevocationFetch event per
missing answer and does not process the message further: a held request is answered, and a
held response processed (our request resent, the peer replays its answer, RFC 7296 §2.1), as
soon as the service hands the answer back (`Engine.revocation_fetched`). The retransmission
series bounds every wait: a fetch nobody answers counts as failed after FETCH_TIMEOUT, and a
retransmission then finds the status decided; the peer gives up on its own schedule.

Then `verdict` decides with strongSwan's revocation policies (swanctl.conf remote.revocation):
- strict: every certificate of the path must be known good;
- ifuri: fails when a certificate names a CRL/OCSP URI but no status could be had;
- relaxed (the default): fails only for a certificate known to be revoked.
A revoked certificate fails under every policy (RFC 7296 §2.21.2 AUTHENTICATION_FAILED).
Each certificate below the trust anchor is checked against its issuer: an OCSP answer signed by
the issuer or by a responder the issuer delegated to (id-kp-OCSPSigning, RFC 6960 §4.2.2.2), or
a CRL the issuer signed that is not past its nextUpdate (RFC 5280 §6.3.3 (a)).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from .config import RevocationPolicy
from .events import Event

FETCH_TIMEOUT = 10.0  # s: a fetch the service has not answered by then counts as failed
RETRY_AFTER = 60.0  # s: a failed (or useless) fetch of the same URI is not repeated before
OCSP_MAX_AGE = timedelta(hours=1)  # an OCSP answer without nextUpdate is fresh this long
CLOCK_SKEW = timedelta(minutes=5)  # thisUpdate may lie this far ahead of our clock
MAX_CACHED = 1024  # fetched CRLs and OCSP answers kept (oldest dropped first)


class Status(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RevocationFetch(Event):
    """Fetch `uri` for the IKE SA `ike_sa_id`: kind "crl" (an HTTP GET of a DER or PEM CRL) or
    "ocsp" (an RFC 6960 request about `cert`, issued by `issuer`, POSTed to `uri`). Hand the
    bytes (or None on failure) to Engine.revocation_fetched."""

    kind: str
    uri: str
    cert: bytes = field(repr=False)
    issuer: bytes = field(repr=False)

    @property
    def key(self) -> tuple[str, ...]:
        if self.kind == "crl":
            return ("crl", self.uri)
        leaf = x509.load_der_x509_certificate(self.cert)
        return ("ocsp", self.uri, _key_hash(self.issuer), str(leaf.serial_number))


class _Attempt(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class Assessment:
    """What we know of one path: certificates revoked, unknown (and whether they name a URI),
    the fetches that would tell more, and whether some are under way."""

    revoked: list[str] = field(default_factory=list)
    unknown: list[tuple[str, bool]] = field(default_factory=list)
    wanted: list[RevocationFetch] = field(default_factory=list)
    pending: bool = False


class RevocationCache:
    """CRLs and OCSP answers the service fetched, and the state of each fetch. `fetching`:
    whether anyone fetches (the service sets it); without, URIs are never asked for and count
    as unreachable."""

    def __init__(self) -> None:
        self.fetching = False
        self.crls: dict[tuple[str, ...], x509.CertificateRevocationList] = {}
        self.ocsp: dict[tuple[str, ...], ocsp.OCSPResponse] = {}
        self.attempts: dict[tuple[str, ...], tuple[_Attempt, float]] = {}
        self.held: set[int] = set()  # IKE SAs whose IKE_AUTH waits for an answer
        # the peer's held IKE_AUTH request per IKE SA (message ID, inner payloads), answered
        # as soon as the status is in (tasks/revocation_wait.py)
        self.requests: dict[int, tuple[int, tuple[Any, ...]]] = {}

    def state(self, key: tuple[str, ...], now: float) -> str:
        """ "new" (fetch it), "pending" (under way) or "done" (answered, failed or given up)."""
        attempt = self.attempts.get(key)
        if attempt is None:
            return "new"
        kind, at = attempt
        if kind is _Attempt.PENDING and now - at < FETCH_TIMEOUT:
            return "pending"
        if kind is _Attempt.PENDING:
            at += FETCH_TIMEOUT  # timed out: a failure from then on
        return "new" if now - at >= RETRY_AFTER else "done"

    def requested(self, key: tuple[str, ...], now: float) -> None:
        self.attempts[key] = (_Attempt.PENDING, now)

    def answer(self, request: RevocationFetch, data: bytes | None, now: float) -> bool:
        """Record a fetch's result; False when the bytes are no CRL / OCSP answer."""
        key = request.key
        parsed = _parse(request.kind, data) if data else None
        self.attempts[key] = (_Attempt.DONE if parsed is not None else _Attempt.FAILED, now)
        if isinstance(parsed, x509.CertificateRevocationList):
            self.crls[key] = parsed
        elif isinstance(parsed, ocsp.OCSPResponse):
            self.ocsp[key] = parsed
        for table in (self.crls, self.ocsp):
            while len(table) > MAX_CACHED:
                del table[next(iter(table))]
        while len(self.attempts) > 4 * MAX_CACHED:
            del self.attempts[next(iter(self.attempts))]
        return parsed is not None


def _parse(kind: str, data: bytes) -> x509.CertificateRevocationList | ocsp.OCSPResponse | None:
    try:
        if kind == "ocsp":
            return ocsp.load_der_ocsp_response(data)
        return load_crl(data)
    except (ValueError, TypeError):
        return None


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes (ValueError if it is none)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _key_hash(issuer_der: bytes) -> str:
    """RFC 6960 §4.1.1 issuerKeyHash: SHA-1 of the issuer's subjectPublicKey BIT STRING value
    (not of the whole SubjectPublicKeyInfo), as cryptography's CertID computes it."""
    return _issuer_key_hash(issuer_der)


@functools.lru_cache(maxsize=256)
def _issuer_key_hash(issuer_der: bytes) -> str:
    issuer = x509.load_der_x509_certificate(issuer_der)
    request = ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, hashes.SHA1()).build()
    return request.issuer_key_hash.hex()


# --------------------------------------------------------------------------- URIs in certificates


def crl_uris(cert: x509.Certificate) -> list[str]:
    """HTTP(S) URIs of the CRL distribution points (RFC 5280 §4.2.1.13)."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [
        name.value
        for point in points
        for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier) and _http(name.value)
    ]


def ocsp_uris(cert: x509.Certificate) -> list[str]:
    """HTTP URIs of the OCSP responders in Authority Information Access (RFC 5280 §4.2.2.1)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [
        d.access_location.value
        for d in access
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
        and _http(d.access_location.value)
    ]


def _http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


# --------------------------------------------------------------------------- deciding


def _verify(key: object, signature: bytes, data: bytes, algorithm: object) -> bool:
    """A signature by an issuer's key over `data` (RFC 6960 §4.2.1 BasicOCSPResponse)."""
    try:
        if isinstance(key, rsa.RSAPublicKey) and isinstance(algorithm, hashes.HashAlgorithm):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
            algorithm, hashes.HashAlgorithm
        ):
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _ocsp_signer_ok(response: ocsp.OCSPResponse, issuer: x509.Certificate, utc: datetime) -> bool:
    """Signed by the issuer, or by a certificate the issuer gave id-kp-OCSPSigning."""
    data, sig = response.tbs_response_bytes, response.signature
    algorithm = response.signature_hash_algorithm
    if _verify(issuer.public_key(), sig, data, algorithm):
        return True
    for responder in response.certificates:
        if responder.issuer != issuer.subject:
            continue
        try:
            responder.verify_directly_issued_by(issuer)
            usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
            continue
        fresh = responder.not_valid_before_utc <= utc <= responder.not_valid_after_utc
        if (
            fresh
            and ExtendedKeyUsageOID.OCSP_SIGNING in usage
            and _verify(responder.public_key(), sig, data, algorithm)
        ):
            return True
    return False


def _ocsp_status(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate, utc: datetime
) -> Status:
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Status.UNKNOWN
    try:
        if not _ocsp_signer_ok(response, issuer, utc):
            return Status.UNKNOWN
        key_hash = _key_hash(issuer.public_bytes(serialization.Encoding.DER))
        for single in response.responses:
            if single.serial_number != cert.serial_number:
                continue
            if single.issuer_key_hash.hex() != key_hash and single.hash_algorithm.name == "sha1":
                continue
            this_update, next_update = single.this_update_utc, single.next_update_utc
            if this_update > utc + CLOCK_SKEW:
                continue
            expiry = next_update if next_update is not None else this_update + OCSP_MAX_AGE
            if utc > expiry:
                continue
            if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                return Status.REVOKED
            if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
                return Status.GOOD
    except Exception:  # fetched bytes decode lazily: any failure means "no status from it"
        return Status.UNKNOWN
    return Status.UNKNOWN


def _crl_status(
    crls: Iterable[x509.CertificateRevocationList],
    cert: x509.Certificate,
    issuer: x509.Certificate,
    utc: datetime,
) -> Status:
    """RFC 5280 §6.3.3: a CRL of this issuer, signed by it and current, lists the serial or not."""
    status = Status.UNKNOWN
    for crl in crls:
        try:
            key: Any = issuer.public_key()  # any CA key type; is_signature_valid checks it
            if crl.issuer != issuer.subject or not crl.is_signature_valid(key):
                continue
            next_update = crl.next_update_utc
            if next_update is not None and utc > next_update:
                continue  # stale (§6.3.3 (a)): a newer one must be fetched
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return Status.REVOKED
        except Exception:  # fetched (or configured) bytes decode lazily: this CRL says nothing
            continue
        status = Status.GOOD
    return status


def assess(
    cache: RevocationCache,
    sa_id: int,
    path: Sequence[x509.Certificate],
    static_crls: Sequence[x509.CertificateRevocationList],
    utc: datetime,
    now: float | None,
) -> Assessment:
    """Each certificate of `path` (end entity first, trust anchor last) against its issuer.
    With `now` (monotonic), also the fetches that would tell more (`wanted`, `pending`)."""
    result = Assessment()
    for cert, issuer in itertools.pairwise(path):
        name = cert.subject.rfc4514_string() or f"serial {cert.serial_number}"
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        issuer_der = issuer.public_bytes(serialization.Encoding.DER)
        uris = [("ocsp", u) for u in ocsp_uris(cert)] + [("crl", u) for u in crl_uris(cert)]
        requests = [RevocationFetch(sa_id, kind, u, cert_der, issuer_der) for kind, u in uris]
        keys = [r.key for r in requests]
        statuses = [_ocsp_status(cache.ocsp[k], cert, issuer, utc) for k in keys if k in cache.ocsp]
        fetched = [cache.crls[k] for k in keys if k in cache.crls]
        statuses.append(_crl_status([*static_crls, *fetched], cert, issuer, utc))
        if Status.REVOKED in statuses:
            result.revoked.append(name)
            continue
        if Status.GOOD in statuses:
            continue
        result.unknown.append((name, bool(requests)))
        if not cache.fetching or now is None:
            continue
        for request, key in zip(requests, keys, strict=True):
            state = cache.state(key, now)
            if state == "new":
                result.wanted.append(request)
            result.pending |= state != "done"
    return result


def verdict(assessment: Assessment, policy: RevocationPolicy) -> str | None:
    """Why the path fails under `policy`, or None when it passes."""
    if assessment.revoked:
        return f"certificate revoked: {', '.join(assessment.revoked)}"
    for name, has_uri in assessment.unknown:
        if policy is RevocationPolicy.STRICT:
            return f"revocation status unknown (strict): {name}"
        if policy is RevocationPolicy.IFURI and has_uri:
            return f"revocation status unavailable (ifuri): {name}"
    return None


def static_crls(ders: Sequence[bytes]) -> list[x509.CertificateRevocationList]:
    """The configured CRLs (files the config loader checked), decoded once each."""
    out = []
    for der in ders:
        with contextlib.suppress(ValueError):
            out.append(_decoded_crl(der))
    return out


@functools.lru_cache(maxsize=64)
def _decoded_crl(der: bytes) -> x509.CertificateRevocationList:
    return load_crl(der)
