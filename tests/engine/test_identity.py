"""Identities: strongSwan text syntax, printing, matching, ID payloads (RFC 7296 §3.5)."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from ikev2.constants import IdType
from ikev2.engine.config import Identity
from ikev2.engine.identity import (
    format_dn,
    identity_from_payload,
    identity_matches,
    identity_to_payload,
    identity_to_str,
    parse_dn,
    parse_identity,
    parse_identity_pattern,
)
from ikev2.errors import InvalidSyntax
from ikev2.wire import IdiPayload, IdPayload, IdrPayload

MOON_DN = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strongSwan"),
        x509.NameAttribute(NameOID.COMMON_NAME, "moon"),
    ]
)

# (text, id type, data, canonical text or None when it is the input)
CASES: list[tuple[str, IdType, bytes, str | None]] = [
    ("192.0.2.1", IdType.IPV4_ADDR, bytes([192, 0, 2, 1]), None),
    ("2001:db8::1", IdType.IPV6_ADDR, ipaddress.IPv6Address("2001:db8::1").packed, None),
    ("moon.strongswan.org", IdType.FQDN, b"moon.strongswan.org", None),
    ("@moon.strongswan.org", IdType.FQDN, b"moon.strongswan.org", "moon.strongswan.org"),
    ("moon", IdType.FQDN, b"moon", None),
    ("carol@strongswan.org", IdType.RFC822_ADDR, b"carol@strongswan.org", None),
    ("@@carol", IdType.RFC822_ADDR, b"carol", "email:carol"),
    ("C=CH, O=strongSwan, CN=moon", IdType.DER_ASN1_DN, MOON_DN.public_bytes(), None),
    (
        "C=CH,O=strongSwan,CN=moon",
        IdType.DER_ASN1_DN,
        MOON_DN.public_bytes(),
        "C=CH, O=strongSwan, CN=moon",
    ),
    (
        "/C=CH/O=strongSwan/CN=moon",
        IdType.DER_ASN1_DN,
        MOON_DN.public_bytes(),
        "C=CH, O=strongSwan, CN=moon",
    ),
    ("@#0a0b", IdType.KEY_ID, b"\x0a\x0b", None),
    ("keyid:#0A0B", IdType.KEY_ID, b"\x0a\x0b", "@#0a0b"),
    ("keyid:hello", IdType.KEY_ID, b"hello", "@#68656c6c6f"),
    ("fqdn:192.0.2.1", IdType.FQDN, b"192.0.2.1", None),
    ("fqdn:a=b", IdType.FQDN, b"a=b", None),
    (
        "email:carol@strongswan.org",
        IdType.RFC822_ADDR,
        b"carol@strongswan.org",
        "carol@strongswan.org",
    ),
    ("ipv4:10.1.2.3", IdType.IPV4_ADDR, bytes([10, 1, 2, 3]), "10.1.2.3"),
    ("ipv6:::1", IdType.IPV6_ADDR, ipaddress.IPv6Address("::1").packed, "::1"),
    (
        "asn1dn:C=CH, O=strongSwan, CN=moon",
        IdType.DER_ASN1_DN,
        MOON_DN.public_bytes(),
        "C=CH, O=strongSwan, CN=moon",
    ),
    ("asn1dn:#3000", IdType.DER_ASN1_DN, b"\x30\x00", None),
    ("asn1gn:#a00b", IdType.DER_ASN1_GN, b"\xa0\x0b", None),
    ("%null", IdType.NULL, b"", None),
]


@pytest.mark.parametrize(("text", "id_type", "data", "canonical"), CASES)
def test_parse_and_format(text: str, id_type: IdType, data: bytes, canonical: str | None) -> None:
    identity = parse_identity(text)
    assert identity == Identity(id_type, data)
    assert identity_to_str(identity) == (canonical or text)
    assert str(identity) == (canonical or text)
    assert parse_identity(identity_to_str(identity)) == identity


def test_dn_with_specials_and_more_attributes() -> None:
    identity = parse_identity('C=CH, O="Acme, Inc.", OU=R\\,D, CN=carol, E=carol@acme.example')
    name = x509.Name.from_bytes(identity.data)
    assert [a.value for a in name] == ["CH", "Acme, Inc.", "R,D", "carol", "carol@acme.example"]
    assert name.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "carol@acme.example"
    assert identity_to_str(identity) == (
        'C=CH, O="Acme, Inc.", OU="R,D", CN=carol, E=carol@acme.example'
    )
    assert parse_identity(identity_to_str(identity)) == identity
    oid = parse_identity("2.5.4.3=moon, DC=org")
    assert x509.Name.from_bytes(oid.data).rfc4514_string() == "DC=org,CN=moon"


def test_unknown_oid_prints_dotted() -> None:
    name = x509.Name([x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4"), "x")])
    assert format_dn(name) == "1.2.3.4=x"
    assert parse_dn("1.2.3.4=x") == name


@pytest.mark.parametrize(
    "text",
    [
        "C=CH, XX=moon",
        "C=CHE, CN=x",
        "C=CH, CN",
        "ipv4:2001:db8::1",
        "ipv6:10.0.0.1",
        "@#zz",
        "%any",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_identity(text)


def test_pattern_any() -> None:
    assert parse_identity_pattern("%any") is None
    assert parse_identity_pattern("") is None
    assert parse_identity_pattern("moon") == Identity(IdType.FQDN, b"moon")


def test_unprintable_data_falls_back_to_hex() -> None:
    odd = Identity(IdType.FQDN, b"\xff\xfe")
    assert identity_to_str(odd) == "fqdn:#fffe"
    assert parse_identity(identity_to_str(odd)) == odd
    short = Identity(IdType.IPV4_ADDR, b"\x01\x02")
    assert identity_to_str(short) == "<IPV4_ADDR #0102>"


# --------------------------------------------------------------------------- matching


def test_matches() -> None:
    moon = parse_identity("moon.strongswan.org")
    assert identity_matches(None, moon)
    assert identity_matches(parse_identity("MOON.strongSwan.org"), moon)
    assert identity_matches(parse_identity("*.strongswan.org"), moon)
    assert not identity_matches(parse_identity("*.example.org"), moon)
    assert not identity_matches(parse_identity("sun.strongswan.org"), moon)
    assert not identity_matches(parse_identity("email:moon.strongswan.org"), moon)
    carol = parse_identity("carol@strongswan.org")
    assert identity_matches(parse_identity("*@strongswan.org"), carol)
    assert identity_matches(parse_identity("Carol@StrongSwan.org"), carol)
    assert not identity_matches(parse_identity("dave@strongswan.org"), carol)
    assert identity_matches(parse_identity("192.0.2.1"), parse_identity("ipv4:192.0.2.1"))
    assert not identity_matches(parse_identity("192.0.2.1"), parse_identity("192.0.2.2"))
    assert identity_matches(parse_identity("@#0a0b"), parse_identity("keyid:#0a0b"))
    assert not identity_matches(parse_identity("@#0a0b"), parse_identity("@#0a0c"))


def test_dn_matching_is_by_rdn_not_bytes() -> None:
    printable = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(
                NameOID.ORGANIZATION_NAME, "strongSwan", x509.name._ASN1Type.PrintableString
            ),
            x509.NameAttribute(NameOID.COMMON_NAME, "moon", x509.name._ASN1Type.PrintableString),
        ]
    )
    received = Identity(IdType.DER_ASN1_DN, printable.public_bytes())
    expected = parse_identity("C=CH, O=strongSwan, CN=moon")
    assert expected.data != received.data  # UTF8String vs PrintableString
    assert identity_matches(expected, received)
    assert identity_matches(parse_identity("c=ch, o=STRONGSWAN,  cn=moon"), received)
    assert identity_matches(parse_identity("C=CH, O=strongSwan, CN=*"), received)
    assert not identity_matches(parse_identity("C=CH, O=strongSwan, CN=sun"), received)
    assert not identity_matches(parse_identity("C=CH, CN=moon"), received)
    assert not identity_matches(parse_identity("CN=moon, O=strongSwan, C=CH"), received)
    assert not identity_matches(expected, Identity(IdType.DER_ASN1_DN, b"\x30\x05junk"))


# --------------------------------------------------------------------------- payloads


def test_payload_conversion() -> None:
    identity = parse_identity("C=CH, O=strongSwan, CN=moon")
    idi = identity_to_payload(identity, IdiPayload)
    assert isinstance(idi, IdiPayload) and idi.id_type == 9 and idi.data == identity.data
    assert identity_from_payload(idi) == identity
    idr = identity_to_payload(parse_identity("2001:db8::1"), IdrPayload)
    assert identity_from_payload(idr) == parse_identity("2001:db8::1")
    with pytest.raises(InvalidSyntax, match="unknown ID type 200"):
        identity_from_payload(IdPayload(200, b"x"))
    with pytest.raises(InvalidSyntax, match="IPV4_ADDR of 5 bytes"):
        identity_from_payload(IdPayload(1, b"12345"))


# --------------------------------------------------------------------------- properties

label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
dn_value = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20
)


@given(st.lists(label, min_size=2, max_size=4))
def test_property_fqdn_round_trip(labels: list[str]) -> None:
    identity = Identity(IdType.FQDN, ".".join(labels).encode())
    assert parse_identity(identity_to_str(identity)) == identity


@given(st.lists(st.tuples(st.sampled_from(["O", "OU", "CN", "L", "ST"]), dn_value), min_size=1,
                max_size=4))  # fmt: skip
def test_property_dn_round_trip(rdns: list[tuple[str, str]]) -> None:
    oids = {"O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "CN": NameOID.COMMON_NAME, "L": NameOID.LOCALITY_NAME,
            "ST": NameOID.STATE_OR_PROVINCE_NAME}  # fmt: skip
    name = x509.Name([x509.NameAttribute(oids[k], v) for k, v in rdns])
    identity = Identity(IdType.DER_ASN1_DN, name.public_bytes())
    text = identity_to_str(identity)
    assert parse_identity(text) == identity, text
    assert identity_matches(parse_identity(text), identity)


@given(st.binary(min_size=1, max_size=20))
def test_property_key_id_round_trip(data: bytes) -> None:
    identity = Identity(IdType.KEY_ID, data)
    assert parse_identity(identity_to_str(identity)) == identity
