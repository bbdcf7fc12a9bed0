"""IKE identities (RFC 7296 §3.5): strongSwan's text syntax, printing and matching.

Text forms, as strongSwan's identification_create_from_string reads them:
  192.0.2.1, 2001:db8::1         IPV4_ADDR / IPV6_ADDR
  @moon.example, moon.example    FQDN ("@" forces FQDN; any other plain name is an FQDN too)
  carol@example.org, @@carol     RFC822_ADDR
  C=CH, O=strongSwan, CN=moon    DER_ASN1_DN (RDNs in the order written, as strongSwan does)
  @#0a0b                         KEY_ID (hex)
  %null                          NULL (RFC 7619)
  fqdn:, email:, rfc822:, ipv4:, ipv6:, keyid:, asn1dn:, asn1gn:   explicit type; a value
                                 "#<hex>" after a prefix gives the raw identification data
"%any" is no identity but a pattern: parse_identity_pattern gives None for it, and
identity_matches(None, x) is true. Patterns may use strongSwan's wildcards: "*@example.org",
"*.example.org", and "*" as an RDN value ("C=CH, O=strongSwan, CN=*").
"""

from __future__ import annotations

import ipaddress
import re
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ..constants import IdType
from ..errors import InvalidSyntax
from ..wire import IdPayload
from .config import Identity

_P = TypeVar("_P", bound=IdPayload)

# RDN attribute short names, as strongSwan prints them; the first name of an OID is canonical.
DN_ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "SN": NameOID.SURNAME,
    "G": NameOID.GIVEN_NAME,
    "GN": NameOID.GIVEN_NAME,
    "T": NameOID.TITLE,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "street": NameOID.STREET_ADDRESS,
    "dnQualifier": NameOID.DN_QUALIFIER,
    "pseudonym": NameOID.PSEUDONYM,
}
DN_NAME_FOR_OID: dict[ObjectIdentifier, str] = {}
for _name, _oid in DN_ATTRIBUTES.items():
    DN_NAME_FOR_OID.setdefault(_oid, _name)
DN_ATTRIBUTES_FOLDED = {name.casefold(): oid for name, oid in DN_ATTRIBUTES.items()}

# Explicit "type:" prefixes; the first prefix of a type is the one identity_to_str writes.
PREFIXES: dict[str, IdType] = {
    "ipv4": IdType.IPV4_ADDR,
    "ipv6": IdType.IPV6_ADDR,
    "fqdn": IdType.FQDN,
    "email": IdType.RFC822_ADDR,
    "rfc822": IdType.RFC822_ADDR,
    "userfqdn": IdType.RFC822_ADDR,
    "asn1dn": IdType.DER_ASN1_DN,
    "asn1gn": IdType.DER_ASN1_GN,
    "keyid": IdType.KEY_ID,
    "fcname": IdType.FC_NAME,
}
PREFIX_FOR_TYPE: dict[IdType, str] = {}
for _prefix, _id_type in PREFIXES.items():
    PREFIX_FOR_TYPE.setdefault(_id_type, _prefix)

ADDRESS_LENGTH: dict[IdType, int] = {IdType.IPV4_ADDR: 4, IdType.IPV6_ADDR: 16}
ANY_PATTERNS = frozenset({"%any", "%any6", "*", ""})
_OID_TEXT = re.compile(r"\d+(\.\d+)+")


# --------------------------------------------------------------------------- distinguished names


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split at `separator` outside double quotes and not after a backslash; keeps escapes."""
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def parse_dn(text: str) -> x509.Name:
    """'C=CH, O=strongSwan, CN=moon' (or '/C=CH/O=strongSwan/CN=moon') as an x509.Name."""
    separator = "/" if text.startswith("/") else ","
    attributes: list[x509.NameAttribute[str]] = []
    for part in _split_unescaped(text.lstrip("/") if separator == "/" else text, separator):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals:
            raise ValueError(f"RDN {part.strip()!r} in {text!r} has no '='")
        if _OID_TEXT.fullmatch(name):
            oid = ObjectIdentifier(name)
        elif name.casefold() in DN_ATTRIBUTES_FOLDED:
            oid = DN_ATTRIBUTES_FOLDED[name.casefold()]
        else:
            raise ValueError(f"unknown RDN attribute {name!r} in {text!r}")
        attributes.append(x509.NameAttribute(oid, _unescape(value)))
    if not attributes:
        raise ValueError(f"empty distinguished name {text!r}")
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])


def _quote(value: str) -> str:
    if value != value.strip() or any(c in value for c in ',/+"\\') or not value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def format_dn(name: x509.Name) -> str:
    """strongSwan's rendering: RDNs in DER order, 'C=CH, O=strongSwan, CN=moon'."""
    rdns = []
    for rdn in name.rdns:
        values = []
        for attribute in rdn:
            label = DN_NAME_FOR_OID.get(attribute.oid, attribute.oid.dotted_string)
            value = attribute.value
            text = value if isinstance(value, str) else "#" + value.hex()
            values.append(f"{label}={_quote(text)}")
        rdns.append(" + ".join(values))
    return ", ".join(rdns)


def _normalize(value: str | bytes) -> str:
    """RFC 5280 §7.1 in short: case-insensitive, inner whitespace runs as one space."""
    text = value if isinstance(value, str) else value.hex()
    return " ".join(text.split()).casefold()


def dn_matches(pattern: x509.Name, name: x509.Name) -> bool:
    """RDN by RDN, attribute types equal, values equal after normalization; '*' in the pattern
    matches any value of that attribute."""
    if len(pattern.rdns) != len(name.rdns):
        return False
    for want_rdn, got_rdn in zip(pattern.rdns, name.rdns, strict=True):
        want = sorted((a.oid.dotted_string, _normalize(a.value)) for a in want_rdn)
        got = sorted((a.oid.dotted_string, _normalize(a.value)) for a in got_rdn)
        if len(want) != len(got):
            return False
        for (want_oid, want_value), (got_oid, got_value) in zip(want, got, strict=True):
            if want_oid != got_oid or want_value not in ("*", got_value):
                return False
    return True


# --------------------------------------------------------------------------- text


def _explicit(id_type: IdType, value: str) -> Identity:
    if value.startswith("#") and id_type not in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        return Identity(id_type, bytes.fromhex(value[1:]))
    if id_type in ADDRESS_LENGTH:
        address = ipaddress.ip_address(value)
        if len(address.packed) != ADDRESS_LENGTH[id_type]:
            raise ValueError(f"{value!r} is not an {id_type.name} address")
        return Identity(id_type, address.packed)
    if id_type == IdType.DER_ASN1_DN:
        return Identity(id_type, parse_dn(value).public_bytes())
    return Identity(id_type, value.encode())


def parse_identity(text: str) -> Identity:
    """An identity from strongSwan's syntax (see the module docstring); ValueError if malformed."""
    text = text.strip()
    if text.lower() in ANY_PATTERNS:
        raise ValueError(f"{text!r} matches any identity; it is not an identity of its own")
    if text.lower() == "%null":
        return Identity(IdType.NULL, b"")
    prefix, colon, rest = text.partition(":")
    if colon and prefix.lower() in PREFIXES:
        return _explicit(PREFIXES[prefix.lower()], rest)
    if text.startswith("@#"):
        return Identity(IdType.KEY_ID, bytes.fromhex(text[2:]))
    if text.startswith("@@"):
        return Identity(IdType.RFC822_ADDR, text[2:].encode())
    if text.startswith("@"):
        return Identity(IdType.FQDN, text[1:].encode())
    if "=" in text:
        return Identity(IdType.DER_ASN1_DN, parse_dn(text).public_bytes())
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        id_type = IdType.IPV4_ADDR if address.version == 4 else IdType.IPV6_ADDR
        return Identity(id_type, address.packed)
    if "@" in text:
        return Identity(IdType.RFC822_ADDR, text.encode())
    return Identity(IdType.FQDN, text.encode())


def parse_identity_pattern(text: str) -> Identity | None:
    """Like parse_identity, but "%any" (and an empty string) give None: any identity."""
    return None if text.strip().lower() in ANY_PATTERNS else parse_identity(text)


def _plain(identity: Identity) -> str:
    id_type, data = identity.id_type, identity.data
    if id_type in ADDRESS_LENGTH and len(data) == ADDRESS_LENGTH[id_type]:
        return str(ipaddress.ip_address(data))
    if id_type in (IdType.FQDN, IdType.RFC822_ADDR):
        return data.decode()
    if id_type == IdType.DER_ASN1_DN:
        return format_dn(x509.Name.from_bytes(data))
    if id_type == IdType.KEY_ID:
        return "@#" + data.hex()
    if id_type == IdType.NULL and not data:
        return "%null"
    raise ValueError("no plain form")


def _text_forms(identity: Identity) -> list[str]:
    """Candidate texts, most readable first."""
    forms: list[str] = []
    prefix = PREFIX_FOR_TYPE.get(identity.id_type)
    try:
        plain = _plain(identity)
    except (ValueError, UnicodeDecodeError):
        pass
    else:
        forms.append(plain)
        if prefix is not None:
            forms.append(f"{prefix}:{plain}")
    if prefix is not None:
        forms.append(f"{prefix}:#{identity.data.hex()}")
    return forms


def identity_to_str(identity: Identity) -> str:
    """The text parse_identity reads back to the same identity (a prefix is added when the plain
    form would read as another type, "#hex" when the data is not printable). Data no text reads
    back to (an IP address of the wrong length) prints as <TYPE #hex>."""
    for text in _text_forms(identity):
        try:
            if parse_identity(text) == identity:
                return text
        except ValueError:
            continue
    return f"<{identity.id_type.name} #{identity.data.hex()}>"


# --------------------------------------------------------------------------- matching


def _wildcard_matches(pattern: str, value: str) -> bool:
    pattern, value = pattern.casefold(), value.casefold()
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def identity_matches(expected: Identity | None, received: Identity) -> bool:
    """Does the peer's ID satisfy our expectation? None (%any) matches anything; types must agree;
    FQDN and RFC822 compare case-insensitively (a leading '*' matches any prefix); DNs compare
    RDN by RDN (not byte by byte); everything else byte by byte."""
    if expected is None:
        return True
    if expected.id_type != received.id_type:
        return False
    if expected.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
        try:
            return _wildcard_matches(expected.data.decode(), received.data.decode())
        except UnicodeDecodeError:
            return expected.data == received.data
    if expected.id_type == IdType.DER_ASN1_DN:
        try:
            return dn_matches(
                x509.Name.from_bytes(expected.data), x509.Name.from_bytes(received.data)
            )
        except ValueError:
            return expected.data == received.data
    return expected.data == received.data


# --------------------------------------------------------------------------- ID payloads


def identity_from_payload(payload: IdPayload) -> Identity:
    """The Identity an IDi/IDr payload carries; InvalidSyntax for an unknown type or an address
    of the wrong length."""
    try:
        id_type = IdType(payload.id_type)
    except ValueError:
        raise InvalidSyntax(f"unknown ID type {payload.id_type}") from None
    expected_length = ADDRESS_LENGTH.get(id_type)
    if expected_length is not None and len(payload.data) != expected_length:
        raise InvalidSyntax(f"{id_type.name} of {len(payload.data)} bytes")
    return Identity(id_type, payload.data)


def identity_to_payload(identity: Identity, payload_class: type[_P]) -> _P:
    """IdiPayload or IdrPayload for an identity."""
    return payload_class(int(identity.id_type), identity.data)
