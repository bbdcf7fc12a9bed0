"""A small PKI for revocation tests, made with `cryptography` at test time: a CA, end entities
naming a CRL distribution point and/or an OCSP responder (RFC 5280 §4.2.1.13, §4.2.2.1), CRLs
(RFC 5280 §5) and OCSP answers (RFC 6960 §4.2), and an `openssl ocsp` index file. Nothing here
is secret: the keys exist for tests only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ikev2 revocation test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(
    common_name: str = "Revocation Test CA",
    issuer: Issued | None = None,
    *,
    crl_uri: str | None = None,
) -> Issued:
    """A self-signed root, or an intermediate CA issued by `issuer` (optionally with a CDP)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if crl_uri is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_uri)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def make_leaf(
    ca: Issued,
    fqdn: str,
    *,
    crl_uri: str | None = None,
    ocsp_uri: str | None = None,
    ocsp_signing: bool = False,
) -> Issued:
    """An end entity for `fqdn` (also its subjectAltName), optionally with a CDP and an AIA."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(fqdn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if crl_uri is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_uri)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_uri is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_uri)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), False)
    if ocsp_signing:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_crl(
    ca: Issued,
    revoked: tuple[x509.Certificate, ...] = (),
    *,
    last_update: dt.datetime = NOT_BEFORE,
    next_update: dt.datetime = NOT_AFTER,
    signer: Issued | None = None,
) -> bytes:
    """A DER CRL of `ca` listing `revoked` (signed by `signer`, the CA by default)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(last_update)
        .next_update(next_update)
    )
    for cert in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(last_update)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign((signer or ca).key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


def ocsp_answer(
    cert: x509.Certificate,
    ca: Issued,
    status: ocsp.OCSPCertStatus,
    *,
    this_update: dt.datetime = NOT_BEFORE,
    next_update: dt.datetime | None = NOT_AFTER,
    responder: Issued | None = None,
) -> bytes:
    """A DER OCSP answer about `cert`, signed by the CA or by a delegated `responder`."""
    revoked_at = this_update if status == ocsp.OCSPCertStatus.REVOKED else None
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert,
        issuer=ca.cert,
        algorithm=hashes.SHA1(),
        cert_status=status,
        this_update=this_update,
        next_update=next_update,
        revocation_time=revoked_at,
        revocation_reason=None,
    )
    signer = responder or ca
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    if responder is not None:
        builder = builder.certificates([responder.cert])
    response = builder.sign(signer.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


def openssl_index(path: Path, entries: list[tuple[x509.Certificate, bool]]) -> None:
    """An `openssl ca` index.txt that `openssl ocsp -index` serves: V (valid) or R (revoked)."""
    lines = []
    for cert, revoked in entries:
        expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        when = NOT_BEFORE.strftime("%y%m%d%H%M%SZ") if revoked else ""
        serial = f"{cert.serial_number:X}"
        serial = serial if len(serial) % 2 == 0 else "0" + serial
        subject = "/" + "/".join(f"{a.rfc4514_attribute_name}={a.value!s}" for a in cert.subject)
        lines.append("\t".join(("R" if revoked else "V", expiry, when, serial, "unknown", subject)))
    path.write_text("\n".join(lines) + "\n")
    Path(f"{path}.attr").write_text("unique_subject = no\n")
