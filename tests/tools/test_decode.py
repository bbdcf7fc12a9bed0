"""`ikev2 decode`: JSON lines for the reference capture, error objects for bad input, exit codes,
and the --keys path when ikev2.tools.decrypt exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ikev2.cli import main
from ikev2.constants import NotifyType
from ikev2.tools.decode import payload_to_json
from ikev2.wire import KePayload, NotifyPayload, Proposal, SaPayload, Transform, decode_payloads

CAPTURES = Path(__file__).resolve().parents[2] / "fixtures" / "captures"
REFERENCE = CAPTURES / "ikev2-reference.pcapng"
# the reference capture's keys, copied into fixtures/ (a clone needs nothing outside itself)
REFERENCE_KEYS = (
    Path(__file__).resolve().parents[2]
    / "fixtures"
    / "vectors"
    / "strongswan-ikev2_decryption_table"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict], str]:  # type: ignore[type-arg]
    code = main(["decode", *argv])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_reference_capture(capsys: pytest.CaptureFixture[str]) -> None:
    code, objects, _ = run(capsys, str(REFERENCE))
    assert code == 0
    assert len(objects) == 46  # 52 packets minus 6 ESP-in-UDP
    assert not [o for o in objects if "error" in o]
    first = objects[0]
    assert (
        first["frame"] == 1 and first["src"] == "10.99.0.1:500" and first["dst"] == "10.99.0.2:500"
    )
    assert (first["exchange"], first["flags"], first["message_id"]) == (
        "IKE_SA_INIT",
        ["INITIATOR"],
        0,
    )
    assert first["spi_i"] == "9c82f7e8e9024c09" and first["length"] == 232
    sa = first["payloads"][0]
    assert sa["type"] == "SA"
    assert [t["id"] for t in sa["proposals"][0]["transforms"]] == [
        "AES_GCM_16",
        "HMAC_SHA2_256",
        "CURVE25519",
    ]
    assert sa["proposals"][0]["transforms"][0]["key_length"] == 256
    assert first["payloads"][1]["group"] == "CURVE25519"
    notify_types = [p["notify_type"] for p in first["payloads"] if p["type"] == "NOTIFY"]
    assert notify_types[:2] == ["NAT_DETECTION_SOURCE_IP", "NAT_DETECTION_DESTINATION_IP"]
    auth = objects[2]
    assert auth["src"] == "10.99.0.1:4500" and auth["exchange"] == "IKE_AUTH"
    assert (
        auth["payloads"][0]["type"] == "SK" and auth["payloads"][0]["inner_next_payload"] == "IDi"
    )
    assert objects[3]["flags"] == ["RESPONSE"]
    expected = [
        json.loads(line) for line in (CAPTURES / "ikev2-reference.jsonl").read_text().splitlines()
    ]
    assert objects == expected


def test_broken_hex_yields_error_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = (CAPTURES / "ikev2-reference.hex").read_text().split()[0]
    bad_length = good[:-2]  # one octet short: header length no longer matches
    hexfile = tmp_path / "broken.hex"
    hexfile.write_text(f"{good}\n{bad_length}\nnot-hex\n")
    code, objects, _ = run(capsys, str(hexfile))
    assert code == 0
    assert objects[0]["exchange"] == "IKE_SA_INIT" and "src" not in objects[0]
    assert objects[1] == {
        "frame": 2,
        "error": "header length 232 != datagram length 231",
        "offset": 24,
    }
    assert objects[2]["frame"] == 3 and "invalid hex" in objects[2]["error"]


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, objects, err = run(capsys, str(tmp_path / "missing.pcap"))
    assert code == 1 and objects == [] and "cannot read" in err and "missing.pcap" in err


def test_payload_to_json_names_and_numbers() -> None:
    sa = SaPayload((Proposal(1, 3, b"\x01\x02\x03\x04", (Transform(1, 999), Transform(5, 0))),))
    assert payload_to_json(sa)["proposals"][0] == {
        "number": 1,
        "protocol": "ESP",
        "spi": "01020304",
        "transforms": [
            {"type": "ENCR", "id": 999, "id_number": 999},
            {"type": "ESN", "id": "NO_ESN", "id_number": 0},
        ],
    }
    assert payload_to_json(KePayload(31, b"\xab")) == {
        "type": "KE", "group": "CURVE25519", "group_number": 31, "data": "ab"
    }  # fmt: skip
    notify = payload_to_json(NotifyPayload(NotifyType.REKEY_SA, 3, b"\x00\x00\x00\x01"))
    assert notify["notify_type"] == "REKEY_SA" and notify["protocol"] == "ESP"


def test_keys_decrypt_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, objects, _ = run(capsys, str(REFERENCE), "--keys", str(REFERENCE_KEYS))
    assert code == 0
    encrypted = [o for o in objects if o["payloads"] and o["payloads"][-1]["type"] == "SK"]
    assert len(encrypted) == 34
    assert all("decrypted" in o for o in encrypted), [o.get("decrypt_error") for o in encrypted]
    idi = encrypted[0]["decrypted"][0]
    assert idi["type"] == "IDi" and idi["value"] == "init-psk.sbase.test"
    # the same inner payloads tshark decrypted (fixtures/captures/ikev2-reference-inner.txt)
    for line in (CAPTURES / "ikev2-reference-inner.txt").read_text().splitlines()[1:]:
        frame, first, _, hexdata = line.split()
        inner = decode_payloads(int(first), b"" if hexdata == "-" else bytes.fromhex(hexdata))
        (decoded,) = [o for o in encrypted if o["frame"] == int(frame)]
        assert decoded["decrypted"] == [payload_to_json(p) for p in inner], frame
