"""Cross-check against strongSwan 5.9.8: keys, AUTH and SK bodies of the reference capture.

Data: fixtures/vectors/strongswan-reference-ike-keys.json and strongswan-reference-messages.json,
made by fixtures/vectors/extract_strongswan_reference.py from /work/shared/reference
(charon-responder.log line numbers, capture frame numbers and esp_sa lines are in the JSON).
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from ikev2.constants import AuthMethod
from ikev2.crypto.auth import psk_auth_data, verify_auth, verify_psk_auth
from ikev2.crypto.keymat import (
    Prf,
    derive_child_keys,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
)
from ikev2.crypto.sk import SkCipher
from ikev2.crypto.suites import EncrSuite, IntegSuite, encr_suite, integ_suite
from ikev2.errors import IntegrityError, SignatureError

from .vectors import VECTORS, h, load

REFERENCE = load("strongswan-reference-ike-keys.json")
MESSAGES = load("strongswan-reference-messages.json")["messages"]
SK_FIELDS = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")

CERTS = {
    "ecdsa": ("init-ecdsa.crt", "resp-ecdsa.crt"),
    "ed25519": ("init-ed25519.crt", "resp-ed25519.crt"),
}


def suites(record: dict[str, Any]) -> tuple[EncrSuite, IntegSuite | None]:
    encr = encr_suite(record["encr"], record["encr_key_bits"])
    return encr, integ_suite(record["integ"]) if record["integ"] else None


@pytest.mark.parametrize("sa", REFERENCE["ike_sas"], ids=lambda sa: sa["label"])
def test_ike_sa_keys_match_strongswan(sa: dict[str, Any]) -> None:
    """RFC 7296 §2.14: SKEYSEED and all seven SK_* of each IKE SA equal charon's logged values."""
    encr, integ = suites(sa)
    skeyseed, keys = derive_ike_keys(
        sa["prf"], encr, integ, h(sa["ni"]), h(sa["nr"]), h(sa["shared_secret"]),
        h(sa["spi_i"]), h(sa["spi_r"]),
    )  # fmt: skip
    assert skeyseed.hex() == sa["skeyseed"]
    for name in SK_FIELDS:
        assert getattr(keys, name).hex() == sa[name], name


def test_rekeyed_ike_sa_keys_match_strongswan() -> None:
    """RFC 7296 §2.18: IKE SA <2> from <1>'s SK_d, the CREATE_CHILD_SA nonces, the new SPIs and the
    new x25519 secret (frames 17/18; log lines in the JSON)."""
    new = REFERENCE["rekeyed_ike_sa"]
    old = next(sa for sa in REFERENCE["ike_sas"] if sa["log_id"] == new["old_log_id"])
    encr, integ = suites(new)
    skeyseed, keys = derive_rekeyed_ike_keys(
        old["prf"], h(old["sk_d"]), new["prf"], encr, integ, h(new["shared_secret"]),
        h(new["ni"]), h(new["nr"]), h(new["spi_i"]), h(new["spi_r"]),
    )  # fmt: skip
    assert skeyseed.hex() == new["skeyseed"]
    for name in SK_FIELDS:
        assert getattr(keys, name).hex() == new[name], name


CHILDREN = [c for c in REFERENCE["child_sas"] if not c["pfs"]]


@pytest.mark.parametrize("child", CHILDREN, ids=lambda c: f"frames{c['frames']}")
def test_child_keys_match_esp_sa_table(child: dict[str, Any]) -> None:
    """RFC 7296 §2.17: KEYMAT = prf+(SK_d, Ni | Nr) split as encr_i, integ_i, encr_r, integ_r
    equals keys/esp_sa for every child without PFS (IKE_AUTH children and the CHILD_SA rekey)."""
    sa = next(s for s in REFERENCE["ike_sas"] if s["label"] == child["ike_sa"])
    encr, integ = suites(child)
    keys = derive_child_keys(sa["prf"], h(sa["sk_d"]), encr, integ, h(child["ni"]), h(child["nr"]))
    assert (keys.encr_i.hex(), keys.integ_i.hex()) == (child["encr_i"], child["integ_i"])
    assert (keys.encr_r.hex(), keys.integ_r.hex()) == (child["encr_r"], child["integ_r"])


def test_pfs_child_needs_its_unlogged_secret() -> None:
    """The PFS child (frames 5/6) cannot be derived without its x25519 secret, which charon did
    not log: without it the keys differ from esp_sa (the test of the PFS formula is CAVP's)."""
    child = next(c for c in REFERENCE["child_sas"] if c["pfs"])
    sa = REFERENCE["ike_sas"][0]
    encr, integ = suites(child)
    keys = derive_child_keys(sa["prf"], h(sa["sk_d"]), encr, integ, h(child["ni"]), h(child["nr"]))
    assert keys.encr_i.hex() != child["encr_i"]


AUTHS = [(sa, auth) for sa in REFERENCE["ike_sas"] for auth in sa["auth"]]


@pytest.mark.parametrize("sa_auth", AUTHS, ids=lambda p: f"{p[0]['label']}-{p[1]['signer']}")
def test_auth_payloads_verify(sa_auth: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """RFC 7296 §2.15: the logged octets end in prf(SK_p, IDx'); PSK AUTH (method 2) recomputes to
    the AUTH payload of the capture; signatures (RFC 7427, method 14) verify with the peer cert."""
    sa, auth = sa_auth
    sk_p = sa["sk_pi"] if auth["signer"] == "initiator" else sa["sk_pr"]
    octets = h(auth["octets"])
    assert octets.endswith(Prf(sa["prf"], h(sk_p)).compute(h(auth["id_body"])))
    if auth["method"] == AuthMethod.PSK:
        psk = REFERENCE["psk"].encode()
        assert psk_auth_data(sa["prf"], psk, octets).hex() == auth["auth_data"]
        assert verify_psk_auth(sa["prf"], psk, octets, h(auth["auth_data"]))
        assert not verify_psk_auth(sa["prf"], psk + b"x", octets, h(auth["auth_data"]))
        return
    kind = sa["label"].split("(")[1].rstrip(")")
    cert_name = CERTS[kind][0 if auth["signer"] == "initiator" else 1]
    cert = x509.load_pem_x509_certificate((PKI_DIR / cert_name).read_bytes())
    key: Any = cert.public_key()
    method = AuthMethod(auth["method"])
    verify_auth(method, key, octets, h(auth["auth_data"]))
    with pytest.raises(SignatureError):
        verify_auth(method, key, octets + b"x", h(auth["auth_data"]))


PKI_DIR = VECTORS / "strongswan-pki"


def _sk_parts(raw: bytes) -> tuple[bytes, bytes, int] | None:
    """(associated data, SK body, I flag) when the first payload is SK (RFC 7296 §3.14)."""
    if raw[16] != 46:
        return None
    sk_length = int.from_bytes(raw[30:32])
    return raw[:32], raw[32 : 28 + sk_length], raw[19] & 0x08


def _keys_by_spi() -> dict[str, tuple[dict[str, Any], EncrSuite, IntegSuite | None]]:
    table: dict[str, tuple[dict[str, Any], EncrSuite, IntegSuite | None]] = {}
    for sa in [*REFERENCE["ike_sas"], REFERENCE["rekeyed_ike_sa"]]:
        encr, integ = suites(sa)
        table[sa["spi_i"]] = (sa, encr, integ)
    return table


def test_every_encrypted_message_of_the_capture_unprotects() -> None:
    """RFC 5282 (AES-GCM-256) and RFC 7296 §3.14 (AES-CBC-128 + HMAC-SHA2-256-128): all SK bodies
    strongSwan sent verify and decrypt with our SkCipher and the derived keys; each one with a
    flipped bit anywhere (header, IV, ciphertext, ICV) raises IntegrityError."""
    keys = _keys_by_spi()
    checked = 0
    for message in MESSAGES:
        raw = h(message["hex"])
        parts = _sk_parts(raw)
        if parts is None:
            continue
        associated, body, initiator = parts
        sa, encr, integ = keys[raw[:8].hex()]
        side = "i" if initiator else "r"
        cipher = SkCipher(encr, h(sa[f"sk_e{side}"]), integ, h(sa[f"sk_a{side}"]))
        inner = cipher.unprotect(associated, body)
        assert cipher.body_length(len(inner)) >= len(body) - encr.block_bytes
        for position in (0, 20, len(associated) + 1, len(associated) + len(body) // 2, -1):
            whole = bytearray(associated + body)
            whole[position] ^= 0x01
            with pytest.raises(IntegrityError):
                cipher.unprotect(bytes(whole[:32]), bytes(whole[32:]))
        checked += 1
    assert checked == 34  # 52 frames - 12 IKE_SA_INIT - 6 ESP
