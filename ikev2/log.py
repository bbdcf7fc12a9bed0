"""structlog setup for the daemon: readable console lines or JSON lines, secrets always redacted.

Every logger the engine and the service use is a structlog logger; the engine binds each IKE SA's
context (ike_sa, conn, peer, spi_i, spi_r) and the service binds the same for its own lines.
`redact_secrets` runs before rendering, on every line: a value whose key looks secret (key, psk,
secret, password, sk_*, *_key, keymat, nonce...) or any bytes value is replaced by "<redacted>",
in nested dicts and lists too. So even a careless `log.info("x", key=k)` cannot leak a key
(DESIGN.md §4, "Secrets").
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(
    r"^(sk_\w*|skeyseed|psk|secret\w*|password|passphrase|keymat|private_key|"
    r"key|keys|\w+_key|\w+_keys|shared_secret|dh_secret|nonce\w*)$",
    re.IGNORECASE,
)
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def is_secret_key(name: str) -> bool:
    return _SECRET_KEY.match(name) is not None


def _scrub(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: secret-looking keys and bytes values become "<redacted>"."""
    for key in list(event_dict):
        if key == "event":
            continue
        if is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(
    fmt: str = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """Route every structlog logger to `stream` (stderr) as console text or JSON lines."""
    out = stream or sys.stderr
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        # plain tracebacks: with `rich` installed the default formatter prints every frame's
        # local variables, and those hold keys, nonces and PSKs
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(),
            sort_keys=False,
            exception_formatter=structlog.dev.plain_traceback,
        )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
        renderer,
    ]
    if fmt != "json":
        processors.remove(structlog.processors.format_exc_info)  # ConsoleRenderer formats them
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: Any) -> Any:
    """A logger for `name` with `context` bound (for an IKE SA: ike_sa, conn, peer, spi_i...).
    Lazy: a module-level logger made before configure_logging() still follows it."""
    return structlog.get_logger(name, **context)
