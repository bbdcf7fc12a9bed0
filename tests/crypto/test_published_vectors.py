"""Published test vectors: each test names the RFC section (or CAVP) its data comes from."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from ikev2.constants import IntegId, KeId, PrfId
from ikev2.crypto.dh import create_key_exchange, modp_prime
from ikev2.crypto.keymat import Prf, derive_child_keys, prf_plus
from ikev2.crypto.mac import XcbcMac, make_mac
from ikev2.crypto.sk import SkCipher
from ikev2.crypto.suites import encr_suite, integ_suite
from ikev2.errors import IntegrityError

from .vectors import h, load

RFC5903 = load("rfc5903-ecp.json")
RFC7748 = load("rfc7748-x25519-x448.json")
RFC4868 = load("rfc4868-hmac-sha2.json")
AES_MACS = load("aes-xcbc-cmac.json")
RFC8439 = load("rfc8439-chacha20-poly1305.json")
CAVP = load("cavp-ikev2-kdf.json")
RFC3526 = load("rfc3526-modp.json")


def fixed(value: bytes):  # type: ignore[no-untyped-def]
    """A random source that returns the given bytes once."""

    def source(n: int) -> bytes:
        assert n == len(value), (n, len(value))
        return value

    return source


@pytest.mark.parametrize("vector", RFC5903["groups"], ids=lambda v: f"RFC5903-{v['section']}")
def test_ecp_rfc5903_section_8(vector: dict[str, Any]) -> None:
    """RFC 5903 §8: KE data is gix|giy (no 0x04), the shared secret is girx, both directions."""
    initiator = create_key_exchange(vector["group"], fixed(h(vector["i"])))
    responder = create_key_exchange(vector["group"], fixed(h(vector["r"])))
    assert initiator.public_bytes == h(vector["gix"] + vector["giy"])
    assert responder.public_bytes == h(vector["grx"] + vector["gry"])
    assert initiator.compute(responder.public_bytes) == h(vector["girx"])
    assert responder.respond(initiator.public_bytes) == h(vector["girx"])


@pytest.mark.parametrize("vector", RFC7748["dh"], ids=lambda v: f"RFC7748-{v['section']}")
def test_montgomery_rfc7748_section_6(vector: dict[str, Any]) -> None:
    """RFC 7748 §6.1 (X25519) and §6.2 (X448) Diffie-Hellman examples."""
    alice = create_key_exchange(vector["group"], fixed(h(vector["alice_private"])))
    bob = create_key_exchange(vector["group"], fixed(h(vector["bob_private"])))
    assert alice.public_bytes == h(vector["alice_public"])
    assert bob.public_bytes == h(vector["bob_public"])
    assert alice.compute(bob.public_bytes) == h(vector["shared"])
    assert bob.respond(alice.public_bytes) == h(vector["shared"])


def test_x25519_rfc7748_section_5_2_iterated() -> None:
    """RFC 7748 §5.2: k = X25519(k, u), u = old k, from k = u = 9; after 1 and 1000 rounds.

    Run through the KeyExchange interface (private key k injected, peer value u)."""
    iterated = RFC7748["x25519_iterated"]
    k = u = h(iterated["start"])
    for round_number in range(1, 1001):
        k, u = create_key_exchange(KeId.CURVE25519, fixed(k)).compute(u), k
        if round_number == 1:
            assert k == h(iterated["after_1"])
    assert k == h(iterated["after_1000"])
    assert isinstance(x25519.X25519PrivateKey.from_private_bytes(k), x25519.X25519PrivateKey)


@pytest.mark.parametrize("group", RFC3526["groups"], ids=lambda g: f"RFC3526-{g['section']}")
def test_modp_primes_rfc3526(group: dict[str, Any]) -> None:
    """RFC 3526 §2-7: the computed primes carry the RFC's first and last words and are safe primes
    (a Fermat test of p and (p-1)/2, base 2 and 3)."""
    p = modp_prime(group["bits"])
    text = f"{p:X}"
    assert len(text) * 4 == group["bits"]
    assert text.startswith(group["first_words"])
    assert text.endswith(group["last_words"])
    q = (p - 1) // 2
    for base in (2, 3):
        assert pow(base, p - 1, p) == 1
        assert pow(base, q - 1, q) == 1


@pytest.mark.parametrize("vector", RFC4868["prf"], ids=lambda v: v["case"])
def test_hmac_sha2_prf_rfc4868_section_2_7_1(vector: dict[str, Any]) -> None:
    """RFC 4868 §2.7.1: PRF-HMAC-SHA-256/384/512 test cases."""
    prf_ids = {
        "prf_hmac_sha2_256": PrfId.HMAC_SHA2_256,
        "prf_hmac_sha2_384": PrfId.HMAC_SHA2_384,
        "prf_hmac_sha2_512": PrfId.HMAC_SHA2_512,
    }
    checked = 0
    for field, prf_id in prf_ids.items():
        if field in vector:
            prf = Prf(prf_id, h(vector["key"]))
            assert prf.compute(vector["data_ascii"].encode()) == h(vector[field])
            checked += 1
    assert checked


@pytest.mark.parametrize("vector", RFC4868["auth"], ids=lambda v: v["case"])
def test_hmac_sha2_icv_rfc4868_section_2_7_2(vector: dict[str, Any]) -> None:
    """RFC 4868 §2.7.2.1: the truncated ICVs of HMAC-SHA-256-128/384-192/512-256 from the keyed
    MAC of the INTEG suite (the one SkCipher uses), whole and from split parts."""
    integ = integ_suite(vector["integ"])
    data = vector["data_ascii"].encode()
    assert integ.icv_bytes == len(h(vector["icv"]))
    mac = make_mac(integ.mac, integ.hash_name, h(vector["key"]))
    assert mac.compute(data)[: integ.icv_bytes] == h(vector["icv"])
    assert mac.compute(data[:3], data[3:])[: integ.icv_bytes] == h(vector["icv"])


@pytest.mark.parametrize(
    "case", AES_MACS["xcbc_mac"]["cases"], ids=lambda c: f"RFC3566-{c['case']}"
)
def test_aes_xcbc_mac_rfc3566(case: dict[str, Any]) -> None:
    """RFC 3566 §4.6 test cases 1-6 (AES-XCBC-MAC; the -96 ICV is the first 12 bytes)."""
    mac = XcbcMac(h(AES_MACS["xcbc_mac"]["key"]))
    assert mac.compute(h(case["message"])) == h(case["mac"])


@pytest.mark.parametrize(
    ("prf_id", "table"),
    [(PrfId.AES128_XCBC, "xcbc_prf"), (PrfId.AES128_CMAC, "cmac_prf")],
    ids=["RFC4434", "RFC4615"],
)
def test_aes_prf_variable_keys(prf_id: PrfId, table: str) -> None:
    """RFC 4434 §5 (AES-XCBC-PRF-128), RFC 4615 §4 (AES-CMAC-PRF-128): 16, 10, 18-byte keys."""
    message = h(AES_MACS[table]["message"])
    for case in AES_MACS[table]["cases"]:
        assert Prf(prf_id, h(case["key"])).compute(message) == h(case["output"])


def test_chacha20_poly1305_rfc8439_section_2_8_2_through_sk() -> None:
    """RFC 8439 §2.8.2, seen as an SK body under RFC 7634 §2: nonce = salt | IV.

    The RFC plaintext ends in '.', 0x2e = 46, which the SK layer reads as the Pad Length, so
    unprotect returns the first 114 - 1 - 46 bytes; the tag and ciphertext are the RFC's."""
    encr = encr_suite(28)
    nonce = h(RFC8439["nonce"])
    cipher = SkCipher(encr, h(RFC8439["key"]) + nonce[:4], None, b"")
    body = nonce[4:] + h(RFC8439["ciphertext"]) + h(RFC8439["tag"])
    plaintext = RFC8439["plaintext_ascii"].encode()
    assert cipher.unprotect(h(RFC8439["aad"]), body) == plaintext[: len(plaintext) - 1 - 46]
    sealed = cipher.protect(h(RFC8439["aad"]), plaintext[:-47], fixed(nonce[4:]))
    # our padding differs from the RFC's tail, so only the first bytes of ciphertext agree
    assert sealed[8 : 8 + 67] == h(RFC8439["ciphertext"])[:67]
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(IntegrityError):
        cipher.unprotect(h(RFC8439["aad"]), tampered)


def test_ikev2_kdf_cavp_sample() -> None:
    """NIST CAVP SP 800-135 IKEv2 KDF sample (SHA-1): SKEYSEED, DKM, child DKM with and without
    g^ir (new), and the rekey SKEYSEED (RFC 7296 §2.13, §2.14, §2.17, §2.18)."""
    v = CAVP
    prf_id = v["prf"]
    ni, nr, gir, gir_new = h(v["ni"]), h(v["nr"]), h(v["gir"]), h(v["gir_new"])
    skeyseed = Prf(prf_id, ni + nr).compute(gir)
    assert skeyseed == h(v["skeyseed"])
    dkm = prf_plus(Prf(prf_id, skeyseed), ni + nr + h(v["spi_i"]) + h(v["spi_r"]), v["dkm_bytes"])
    assert dkm == h(v["dkm"])
    sk_d = dkm[:20]
    assert prf_plus(Prf(prf_id, sk_d), ni + nr, v["dkm_bytes"]) == h(v["dkm_child"])
    assert prf_plus(Prf(prf_id, sk_d), gir_new + ni + nr, v["dkm_bytes"]) == h(v["dkm_child_dh"])
    assert Prf(prf_id, sk_d).compute(gir_new + ni + nr) == h(v["skeyseed_rekey"])
    # The same through derive_child_keys: AES-CBC-256 + HMAC-SHA1-96 takes 2 * (32 + 20) bytes.
    keys = derive_child_keys(
        prf_id, sk_d, encr_suite(12, 256), integ_suite(IntegId.HMAC_SHA1_96), ni, nr, gir_new
    )
    assert keys.encr_i + keys.integ_i + keys.encr_r + keys.integ_r == h(v["dkm_child_dh"])[:104]
