"""Certificates and keys for public-key authentication: pure checks on bytes and key objects.

- verify_chain: RFC 5280 §6 path validation, reduced to what IKE needs (RFC 4945 §5): names
  chain, signatures verify, every certificate is valid at `now`, issuers are CAs (basicConstraints
  cA, keyUsage keyCertSign if present) within their pathLenConstraint, no unknown critical
  extension. No name or policy constraints; revocation (CRL/OCSP) is revocation.py's, on
  the path verify_path returns.
- identity_matches_certificate: strongSwan's rule (x509_cert has_subject): an ID matches the
  subject DN or one subjectAltName of its own type; KEY_ID matches the subjectKeyIdentifier or
  the SHA-1 of the public key. Strict: an FQDN is not looked up in the subject's CN.
- auth_method_for_key: what we sign with (RFC 7296 §3.8, RFC 4754, RFC 7427, RFC 8420).
- certreq_authority_hash / requested_authorities / select_chain_for_certreq: RFC 7296 §3.7
  CERTREQ handling: the chain we send stops below the CA the peer asked for.
No file IO and no clock: callers pass bytes and `now`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtensionOID

from ..constants import AuthMethod, CertEncoding, HashAlgorithm, IdType
from ..errors import AuthenticationFailed, UsageError
from ..wire import CertReqPayload
from .config import Identity
from .identity import dn_matches, identity_matches

MAX_CHAIN_DEPTH = 8  # certificates from the end entity up to and including the trust anchor
CERT_CACHE = 512  # decoded certificates and checked signatures kept (LRU)

# Extensions whose meaning we check or which carry nothing to enforce for us; any other
# extension marked critical makes the certificate unusable (RFC 5280 §4.2).
UNDERSTOOD_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CERTIFICATE_POLICIES,
    }
)


class CertificateError(AuthenticationFailed):
    """A peer certificate or chain we refuse; `kind` is a short stable reason such as "expired",
    "not yet valid", "untrusted issuer", "bad signature", "not a CA", "path length exceeded",
    "chain too long", "malformed", "key usage", "unsupported critical extension"."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class SignatureSchemeError(AuthenticationFailed):
    """We have no signature scheme for our key that the peer can verify."""


# --------------------------------------------------------------------------- loading (bytes in)


def load_certificate(pem_or_der: bytes) -> bytes:
    """One certificate, PEM or DER, as DER bytes (the form CERT payloads carry)."""
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(pem_or_der)
        else:
            cert = x509.load_der_x509_certificate(pem_or_der)
    except ValueError as exc:
        raise ValueError(f"not an X.509 certificate: {exc}") from None
    return cert.public_bytes(serialization.Encoding.DER)


def load_certificates(pem: bytes) -> tuple[bytes, ...]:
    """All certificates of a PEM bundle, in order, as DER."""
    certs = x509.load_pem_x509_certificates(pem)
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKeyTypes:
    """A private key from PEM (PKCS#8 or traditional) or DER bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_private_key(data, password)
    return serialization.load_der_private_key(data, password)


# --------------------------------------------------------------------------- path validation


def _parse(der: bytes, what: str) -> x509.Certificate:
    """A certificate whose every field we use decodes. cryptography decodes the names, the
    extensions and the key lazily, on first access, and raises ValueError, TypeError,
    DuplicateExtension (RFC 5280 §4.2: an extension appears at most once) or
    UnsupportedAlgorithm from there. Touching each field here, inside the guard, turns any of
    them into CertificateError("malformed"), so the peer gets AUTHENTICATION_FAILED
    (RFC 7296 §2.21.2) instead of an exception escaping the exchange; later accesses re-decode
    the same bytes and succeed."""
    try:
        return _decoded(der)
    except Exception as exc:  # peer-controlled bytes: any decoding failure is "malformed"
        raise CertificateError("malformed", f"{what}: {type(exc).__name__}: {exc}") from None


# The same DER decodes to the same (immutable) certificate: our trust anchors on every
# handshake, and a peer's certificate on each of its handshakes, are decoded once (the decoding
# above was a third of an ECDSA responder's handshake). Failures are not cached. Bounded: a
# flood of distinct certificates only evicts.
@functools.lru_cache(maxsize=CERT_CACHE)
def _decoded(der: bytes) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(der)
    cert.subject.rfc4514_string()
    cert.issuer.rfc4514_string()
    _ = cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc
    for extension in cert.extensions:
        _ = extension.value
    _ = cert.public_key()
    return cert


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number}"


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            "not yet valid", f"{_describe(cert)} is valid from {cert.not_valid_before_utc}"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            "expired", f"{_describe(cert)} expired at {cert.not_valid_after_utc}"
        )


def _check_extensions(cert: x509.Certificate) -> None:
    try:  # _parse decoded them already; kept for certificates parsed elsewhere
        extensions = list(cert.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:  # duplicate or unparsable extension
        raise CertificateError("malformed", f"serial {cert.serial_number}: {exc}") from None
    for extension in extensions:
        if extension.critical and extension.oid not in UNDERSTOOD_EXTENSIONS:
            raise CertificateError(
                "unsupported critical extension",
                f"{_describe(cert)} has critical {extension.oid.dotted_string}",
            )


def _check_issuer(issuer: x509.Certificate, certs_below: int) -> None:
    """`issuer` signs a path with `certs_below` CA certificates under it (RFC 5280 §6.1.4)."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateError("not a CA", f"{_describe(issuer)} has no basicConstraints") from None
    if not constraints.ca:
        raise CertificateError("not a CA", f"{_describe(issuer)} has cA=FALSE")
    if constraints.path_length is not None and certs_below > constraints.path_length:
        raise CertificateError(
            "path length exceeded",
            f"{_describe(issuer)} allows {constraints.path_length} CAs below, has {certs_below}",
        )
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise CertificateError("key usage", f"{_describe(issuer)} lacks keyCertSign")


def _check_end_entity_usage(cert: x509.Certificate) -> None:
    """RFC 4945 §5.1.3.2: keyUsage, when present, allows digitalSignature or nonRepudiation."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise CertificateError("key usage", f"{_describe(cert)} may not sign")


# Whether `issuer`'s key signed `cert` depends on their bytes only (certificates hash and
# compare by their DER): remembered, as strongSwan's cert_cache does, so a peer that
# authenticates again costs no signature check for its chain. Validity, CA flags and path
# length are still checked on every call.
@functools.lru_cache(maxsize=CERT_CACHE)
def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def verify_chain(
    end_entity_der: bytes,
    intermediates: Sequence[bytes],
    trust_anchors: Sequence[bytes],
    now: datetime,
) -> x509.Certificate:
    """Build and check a path end entity -> intermediates -> one trust anchor; return the end
    entity. Raises CertificateError naming the most specific reason found."""
    return verify_path(end_entity_der, intermediates, trust_anchors, now)[0]


def verify_path(
    end_entity_der: bytes,
    intermediates: Sequence[bytes],
    trust_anchors: Sequence[bytes],
    now: datetime,
) -> list[x509.Certificate]:
    """verify_chain's path itself: end entity first, the trust anchor last (the end entity
    alone when it is pinned as a trust anchor). Revocation checks walk it (revocation.py)."""
    if now.tzinfo is None:
        raise UsageError("verify_chain needs a timezone-aware `now`")
    now = now.astimezone(UTC)
    leaf = _parse(end_entity_der, "end entity")
    pool = [_parse(der, f"intermediate #{i + 1}") for i, der in enumerate(intermediates)]
    anchors = [_parse(der, f"trust anchor #{i + 1}") for i, der in enumerate(trust_anchors)]
    _check_extensions(leaf)
    _check_validity(leaf, now)
    _check_end_entity_usage(leaf)
    if end_entity_der in trust_anchors:  # a pinned end entity
        return [leaf]
    failure: list[CertificateError] = []
    found = _extend(leaf, [leaf], pool, anchors, now, failure)
    if found is not None:
        return found
    raise (
        failure[0]
        if failure
        else CertificateError(
            "untrusted issuer",
            f"no trust anchor or intermediate named {leaf.issuer.rfc4514_string()}",
        )
    )


def _extend(
    cert: x509.Certificate,
    path: list[x509.Certificate],
    pool: list[x509.Certificate],
    anchors: list[x509.Certificate],
    now: datetime,
    failure: list[CertificateError],
) -> list[x509.Certificate] | None:
    """Depth-first search upwards from `cert`: the path up to a trust anchor, or None; records
    the first specific failure met."""

    def note(error: CertificateError) -> None:
        if not failure:
            failure.append(error)

    if len(path) >= MAX_CHAIN_DEPTH:
        note(CertificateError("chain too long", f"more than {MAX_CHAIN_DEPTH} certificates"))
        return None
    certs_below = len(path) - 1  # CA certificates between `cert`'s issuer and the end entity
    for is_anchor, candidates in ((True, anchors), (False, pool)):
        for issuer in candidates:
            if issuer.subject != cert.issuer or any(issuer == p for p in path):
                continue
            if not _signed_by(cert, issuer):
                note(CertificateError("bad signature", f"{_describe(cert)} by {_describe(issuer)}"))
                continue
            try:
                _check_extensions(issuer)
                _check_validity(issuer, now)
                _check_issuer(issuer, certs_below)
            except CertificateError as error:
                note(error)
                continue
            if is_anchor:
                return [*path, issuer]
            found = _extend(issuer, [*path, issuer], pool, anchors, now, failure)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- identities


def _key_ids(cert: x509.Certificate) -> set[bytes]:
    spki_bits = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # RFC 5280 §4.2.1.2 method (1), SHA-1 of the whole SPKI, and the SKI the CA wrote
    ids = {x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest}
    ids.add(hashlib.sha1(spki_bits).digest())
    with contextlib.suppress(x509.ExtensionNotFound):
        ids.add(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    return ids


def _alt_names(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def identity_matches_certificate(identity: Identity, cert: x509.Certificate) -> bool:
    """Does `cert` certify `identity`? (see the module docstring for the rule). A certificate
    whose fields do not decode certifies nothing."""
    try:
        return _identity_matches_certificate(identity, cert)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension):
        return False


def _identity_matches_certificate(identity: Identity, cert: x509.Certificate) -> bool:
    id_type, data = identity.id_type, identity.data
    subject = Identity(IdType.DER_ASN1_DN, cert.subject.public_bytes())
    if id_type == IdType.DER_ASN1_DN and identity_matches(identity, subject):
        return True
    if id_type == IdType.KEY_ID:
        return data in _key_ids(cert)
    sans = _alt_names(cert)
    if sans is None:
        return False
    if id_type in (IdType.FQDN, IdType.RFC822_ADDR):
        kind: type[x509.DNSName] | type[x509.RFC822Name]
        kind = x509.DNSName if id_type == IdType.FQDN else x509.RFC822Name
        return any(
            identity_matches(Identity(id_type, data), Identity(id_type, name.encode()))
            and "*" not in name  # a SAN is a name, not a pattern
            for name in sans.get_values_for_type(kind)
        )
    if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        addresses = sans.get_values_for_type(x509.IPAddress)
        return any(isinstance(a, IPv4Address | IPv6Address) and a.packed == data for a in addresses)
    if id_type == IdType.DER_ASN1_DN:
        try:
            wanted = x509.Name.from_bytes(data)
        except ValueError:
            return False
        return any(
            dn_matches(wanted, name) for name in sans.get_values_for_type(x509.DirectoryName)
        )
    return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def pinned_certificate(identity: Identity, trust_anchors: Sequence[bytes]) -> bytes | None:
    """The end-entity certificate among our trust anchors that certifies `identity`: what
    authenticates a peer that sent no CERT (RFC 7296 §3.6 leaves CERT optional when the peer
    has it; its send_cert = never or ifasked without our CERTREQ), as strongSwan looks the
    peer's certificate up in its own store. None when none is pinned for it."""
    for der in trust_anchors:
        try:
            cert = _decoded(der)
        except Exception:  # our own anchors decoded at load time; a bad one pins nothing
            continue
        if not _is_ca(cert) and identity_matches_certificate(identity, cert):
            return der
    return None


def default_identity_for_cert(cert: x509.Certificate) -> Identity:
    """The ID strongSwan sends for a certificate when none is configured: its subject DN."""
    return Identity(IdType.DER_ASN1_DN, cert.subject.public_bytes())


# --------------------------------------------------------------------------- signing choice

# RFC 7296 §3.8 / RFC 4754: the methods that fix the hash by the key; EdDSA has none.
CLASSIC_METHOD_FOR_CURVE: dict[str, tuple[AuthMethod, HashAlgorithm]] = {
    "secp256r1": (AuthMethod.ECDSA_SHA256_P256, HashAlgorithm.SHA2_256),
    "secp384r1": (AuthMethod.ECDSA_SHA384_P384, HashAlgorithm.SHA2_384),
    "secp521r1": (AuthMethod.ECDSA_SHA512_P521, HashAlgorithm.SHA2_512),
}
# RFC 7427 hash preference per key type; ECDSA starts with its curve's hash (RFC 8247 §3.2).
SIGNATURE_HASH_PREFERENCE: dict[str, tuple[HashAlgorithm, ...]] = {
    "rsa": (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512),
    "secp256r1": (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512),
    "secp384r1": (HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512, HashAlgorithm.SHA2_256),
    "secp521r1": (HashAlgorithm.SHA2_512, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_256),
    "eddsa": (HashAlgorithm.IDENTITY,),  # RFC 8420
}


def _key_kind(private_key: object) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.curve.name
    if isinstance(private_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "eddsa"
    raise SignatureSchemeError(f"no IKE signature method for a {type(private_key).__name__}")


def auth_method_for_key(
    private_key: object, peer_hashes: Collection[int] = ()
) -> tuple[AuthMethod, HashAlgorithm | None]:
    """The AUTH method and hash we sign with. With the peer's SIGNATURE_HASH_ALGORITHMS
    (RFC 7427 §4) in hand, DIGITAL_SIGNATURE with our preferred hash the peer supports; else
    the classic method (RSA_SIG with SHA-1 for RSA, RFC 4754 ECDSA methods). Raises
    SignatureSchemeError when no scheme fits (EdDSA without Identity, an unknown key)."""
    kind = _key_kind(private_key)
    for hash_algorithm in SIGNATURE_HASH_PREFERENCE.get(kind, ()):
        if hash_algorithm in peer_hashes:
            return AuthMethod.DIGITAL_SIGNATURE, hash_algorithm
    if kind == "rsa":
        return AuthMethod.RSA_SIG, HashAlgorithm.SHA1
    if kind in CLASSIC_METHOD_FOR_CURVE:
        return CLASSIC_METHOD_FOR_CURVE[kind]
    raise SignatureSchemeError(
        f"a {kind} key signs only with RFC 7427 hashes {SIGNATURE_HASH_PREFERENCE.get(kind)}, "
        f"the peer announced {sorted(peer_hashes)}"
    )


# --------------------------------------------------------------------------- CERTREQ


@functools.lru_cache(maxsize=CERT_CACHE)  # our own trust anchors, on every handshake
def certreq_authority_hash(ca_der: bytes) -> bytes:
    """RFC 7296 §3.7: the SHA-1 of the CA's SubjectPublicKeyInfo, as CERTREQ lists it."""
    public_key = x509.load_der_x509_certificate(ca_der).public_key()
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(spki).digest()


def split_certreq_hashes(data: bytes) -> tuple[bytes, ...]:
    """A CERTREQ payload's Certification Authority field: concatenated 20-octet hashes."""
    return tuple(data[i : i + 20] for i in range(0, len(data) - len(data) % 20, 20))


def requested_authorities(payloads: Iterable[object]) -> tuple[bytes, ...]:
    """The CA hashes of every X.509 CERTREQ payload among `payloads` (RFC 7296 §3.7); an
    empty tuple when there is none, or none names a CA."""
    hashes: list[bytes] = []
    for p in payloads:
        if isinstance(p, CertReqPayload) and p.encoding == CertEncoding.X509_SIGNATURE:
            hashes += split_certreq_hashes(p.data)
    return tuple(hashes)


def asks_for_certificates(payloads: Iterable[object]) -> bool:
    """Whether `payloads` hold a CERTREQ of any encoding (RFC 7296 §3.7: "a request for
    certificates"); an empty one still asks, as strongSwan's send_cert = ifasked reads it."""
    return any(isinstance(p, CertReqPayload) for p in payloads)


def _self_signed(der: bytes) -> bool:
    try:
        cert = x509.load_der_x509_certificate(der)
        return cert.subject == cert.issuer and _signed_by(cert, cert)
    except ValueError:
        return False


def select_chain_for_certreq(
    chain: Sequence[bytes], requested: Collection[bytes]
) -> tuple[bytes, ...]:
    """What we send as CERT payloads (RFC 7296 §3.6-3.7): our chain (end entity first) up to,
    and without, the first CA the peer asked for by CERTREQ hash; it holds that CA. Without a
    hit (or without a CERTREQ) every intermediate. A self-signed root is never sent (the peer
    must hold it as a trust anchor anyway). strongSwan's build_trustchain does the same: it
    walks up from the end entity, stops at a CA of the peer's CERTREQ or at a self-signed one,
    and sends what lies below (ike_cert_post add_im_certs)."""
    if not chain:
        return ()
    selected = [chain[0]]
    for der in chain[1:]:
        if certreq_authority_hash(der) in requested or _self_signed(der):
            break
        selected.append(der)
    return tuple(selected)
