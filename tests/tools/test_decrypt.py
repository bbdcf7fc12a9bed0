"""ikev2.tools.decrypt against the strongSwan reference capture and its Wireshark key table.

fixtures/vectors/strongswan-ikev2_decryption_table is /work/shared/reference/keys/
ikev2_decryption_table; the messages are fixtures/vectors/strongswan-reference-messages.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ikev2.constants import EncrId, IntegId
from ikev2.tools.decrypt import (
    ICV_FAILED,
    DecryptionTableError,
    decrypt_message,
    encr_from_wireshark,
    integ_from_wireshark,
    load_decryption_table,
)
from ikev2.wire import AuthPayload, IdiPayload, SkPayload, decode_message

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"
TABLE = VECTORS / "strongswan-ikev2_decryption_table"
MESSAGES = {
    m["frame"]: bytes.fromhex(m["hex"])
    for m in json.loads((VECTORS / "strongswan-reference-messages.json").read_text())["messages"]
}
KEYS = json.loads((VECTORS / "strongswan-reference-ike-keys.json").read_text())


def test_every_encrypted_message_decrypts() -> None:
    """All 34 SK messages (AES-GCM-256 and AES-CBC-128 + HMAC-SHA2-256-128) decrypt and decode."""
    table = load_decryption_table(str(TABLE))
    decrypted = 0
    for raw in MESSAGES.values():
        message = decode_message(raw)
        if not isinstance(message.payloads[-1], SkPayload):
            continue
        result = decrypt_message(raw, message, table)
        assert result.error is None, result.error
        assert result.payloads is not None
        decrypted += 1
    assert decrypted == 34


def test_inner_payloads_are_the_ones_strongswan_sent() -> None:
    """Frame 3 (IKE_AUTH request of the PSK SA): IDi init-psk.sbase.test and the AUTH value the
    responder log computed (strongswan-reference-ike-keys.json, auth[0])."""
    table = load_decryption_table(str(TABLE))
    result = decrypt_message(MESSAGES[3], decode_message(MESSAGES[3]), table)
    assert result.payloads is not None
    auth = next(p for p in result.payloads if isinstance(p, AuthPayload))
    assert auth.data.hex() == KEYS["ike_sas"][0]["auth"][0]["auth_data"]
    assert any(isinstance(p, IdiPayload) for p in result.payloads)


@pytest.mark.parametrize("position", [23, 40, -1], ids=["message-id", "body", "icv"])
def test_tampering_reports_icv_failure(position: int) -> None:
    """A flipped bit in the header, the ciphertext or the ICV: "ICV check failed", no payloads."""
    table = load_decryption_table(str(TABLE))
    raw = bytearray(MESSAGES[37])  # AES-CBC + HMAC-SHA2-256-128 IKE_AUTH request
    raw[position] ^= 0x01
    result = decrypt_message(bytes(raw), decode_message(bytes(raw)), table)
    assert (result.payloads, result.error) == (None, ICV_FAILED)


def test_unknown_spis_and_bad_tables(tmp_path: Path) -> None:
    message = decode_message(MESSAGES[3])
    empty = tmp_path / "empty"
    empty.write_text("")
    result = decrypt_message(MESSAGES[3], message, load_decryption_table(str(empty)))
    assert result.payloads is None and "no keys" in (result.error or "")
    lines = TABLE.read_text().splitlines()
    for bad, reason in (
        (lines[0].replace("AES-GCM-256 with 16", "AES-GCM-256 with 10"), "encryption"),
        (lines[0].replace("9c82f7e8e9024c09", "9c82f7"), "SPIs"),
        (lines[4].replace("HMAC_SHA2_256_128", "HMAC_FOO"), "integrity"),
        (lines[4].replace(",6d3c98", ",3c98"), "needs"),
        ("a,b", "columns"),
    ):
        path = tmp_path / "bad"
        path.write_text(lines[1] + "\n" + bad + "\n")
        with pytest.raises(DecryptionTableError, match=rf":2: .*{reason}"):
            load_decryption_table(str(path))


def test_wireshark_algorithm_names() -> None:
    cases = {
        "AES-CBC-128 [RFC3602]": (EncrId.AES_CBC, 128),
        "AES-CBC-256 [RFC3602]": (EncrId.AES_CBC, 256),
        "AES-CTR-192 [RFC5930]": (EncrId.AES_CTR, 192),
        "AES-GCM-128 with 8 octet ICV [RFC5282]": (EncrId.AES_GCM_8, 128),
        "AES-GCM-256 with 16 octet ICV [RFC5282]": (EncrId.AES_GCM_16, 256),
        "AES-CCM-128 with 12 octet ICV [RFC5282]": (EncrId.AES_CCM_12, 128),
    }
    for name, (encr_id, bits) in cases.items():
        suite = encr_from_wireshark(name)
        assert (suite.id, suite.key_bits) == (encr_id, bits)
    assert integ_from_wireshark("NONE [RFC4306]") is None
    integ = integ_from_wireshark("HMAC_SHA2_256_128 [RFC4868]")
    assert integ is not None and integ.id == IntegId.HMAC_SHA2_256_128
    integ = integ_from_wireshark("HMAC_SHA1_96 [RFC2404]")
    assert integ is not None and integ.id == IntegId.HMAC_SHA1_96
