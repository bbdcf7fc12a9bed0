"""Logs never carry secrets: redacted fields, and tracebacks without local variables (with
`rich` installed, structlog's default console formatter would print every frame's locals)."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from ikev2.log import configure_logging, get_logger

SECRET = "0123456789abcdef-secret-key-material"


def _fail_with_a_secret_local() -> None:
    sk_d = bytes.fromhex("00112233445566778899aabbccddeeff")  # noqa: F841 - a key in a frame
    psk_text = SECRET  # noqa: F841
    raise RuntimeError("boom")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_do_not_print_locals(fmt: str) -> None:
    out = io.StringIO()
    configure_logging(fmt, "debug", out)
    try:
        try:
            _fail_with_a_secret_local()
        except RuntimeError:
            get_logger("test").exception("internal error")
        text = out.getvalue()
        assert "RuntimeError: boom" in text
        assert SECRET not in text
        assert "00112233445566778899aabbccddeeff" not in text
        assert "psk_text" not in text
    finally:
        structlog.reset_defaults()


def test_secret_fields_are_redacted() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", out)
    try:
        get_logger("test").info("keys", sk_d=b"\x01" * 16, psk=SECRET, spi_i="00aa")
        line = json.loads(out.getvalue().splitlines()[-1])
        assert SECRET not in out.getvalue()
        assert line["spi_i"] == "00aa"
        assert line["psk"] != SECRET and line["sk_d"] != "01" * 16
    finally:
        structlog.reset_defaults()
