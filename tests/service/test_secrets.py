"""Secrets never reach the logs; with --key-log they are in the key log files and only there.

A real pair runs with JSON logs at debug level and the key log on for moon. The key log lines are
read back with the same parser `ikev2 decode --keys` uses, so the names are ones Wireshark (and
our decoder) understand, and the keys found there are searched for in both daemons' logs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ikev2.log import REDACTED, redact_secrets
from ikev2.tools.decrypt import encr_from_wireshark, integ_from_wireshark

from .daemons import PSK, daemon_pair

ESP_LINE = re.compile(
    r'^"IPv4","127\.0\.0\.[12]","127\.0\.0\.[12]","0x[0-9a-f]{8}","([^"]+)","0x([0-9a-f]+)",'
    r'"([^"]+)","0x([0-9a-f]*)"$'
)


async def test_json_debug_logs_hold_no_secret_and_the_key_log_holds_them(tmp_path: Path) -> None:
    key_log = tmp_path / "keys.txt"
    args = ("--log-format", "json", "--log-level", "debug", "--key-log", str(key_log))
    async with daemon_pair(moon_args=args) as pair:
        code, _out, err = await pair.moon.cli("up", "net")
        assert code == 0, err
        [sa] = await pair.moon.sas()
        code, _out, err = await pair.moon.cli("down", "net")
        assert code == 0, err
        await pair.moon.stop()
        await pair.sun.stop()

    moon_log = pair.moon.log.read_text()
    sun_log = pair.sun.log.read_text()
    lines = moon_log.strip().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r.get("level") == "debug" for r in records)
    assert any("key log is ON" in r["event"] for r in records if r.get("level") == "warning")
    assert any(r.get("spi_i") == sa["spi_i"] for r in records)  # lines are bound to the SA

    [ike_line] = key_log.read_text().splitlines()
    fields = ike_line.split(",")
    assert (fields[0], fields[1]) == (sa["spi_i"], sa["spi_r"])
    encr = encr_from_wireshark(fields[4].strip('"'))
    assert encr.key_bits == 256 and encr.aead
    assert integ_from_wireshark(fields[7].strip('"')) is None
    sk_ei, sk_er = fields[2], fields[3]
    assert len(sk_ei) == len(sk_er) == 72  # 32-byte AES key + 4-byte salt, hex

    esp_lines = Path(str(key_log) + ".esp_sa").read_text().splitlines()
    assert len(esp_lines) == 2
    esp_keys = []
    for line in esp_lines:
        match = ESP_LINE.match(line)
        assert match, line
        assert (match[1], match[3], match[4]) == ("AES-GCM [RFC4106]", "NULL", "")
        esp_keys.append(match[2])
    spis = {line.split(",")[3].strip('"')[2:] for line in esp_lines}
    child = sa["children"][0]
    assert spis == {child["spi_in"], child["spi_out"]}

    for secret in (PSK, PSK.encode().hex(), sk_ei, sk_er, *esp_keys):
        for log in (moon_log, sun_log):
            assert secret not in log
            assert secret[:24] not in log  # no fragment either
    assert PSK not in key_log.read_text()


def test_redaction_processor_covers_names_and_bytes() -> None:
    event = {
        "event": "x",
        "psk": "hunter2",
        "sk_ei": "00ff",
        "enc_key": "abcd",
        "secret_file": "/etc/x",
        "raw": b"\x01\x02",
        "nested": {"private_key": "k", "ok": 1, "blob": bytearray(b"z")},
        "items": [b"a", "b"],
        "spi_i": "0011223344556677",
        "peer": "192.0.2.1:500",
    }
    out = redact_secrets(None, "info", dict(event))
    for key in ("psk", "sk_ei", "enc_key", "secret_file", "raw"):
        assert out[key] == REDACTED
    assert out["nested"] == {"private_key": REDACTED, "ok": 1, "blob": REDACTED}
    assert out["items"] == [REDACTED, "b"]
    assert (out["spi_i"], out["peer"], out["event"]) == (
        "0011223344556677", "192.0.2.1:500", "x"
    )  # fmt: skip
