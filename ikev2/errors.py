"""The error classes of the whole package.

- DecodeError: bytes from the network that are not a well-formed IKE message (wire/).
- ProtocolError and its subclasses: a well-formed message we must refuse; each carries the notify
  type the engine answers with (RFC 7296 §2.21), as h2 does with its error codes.
- CryptoError: key exchange, integrity and signature failures (crypto/).
- ConfigError: bad configuration; names the file, the key and the fix.
- UsageError: misuse of the API by our own code; the only kind allowed to escape the engine.
"""

from __future__ import annotations

from .constants import NotifyType


class Ikev2Error(Exception):
    """Base of every error this package raises on purpose."""


class DecodeError(Ikev2Error):
    """A datagram that cannot be decoded: carries the reason and the byte offset."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"{reason} (at offset {offset})")
        self.reason = reason
        self.offset = offset


class ProtocolError(Ikev2Error):
    """A decoded message we refuse; `notify` is what we answer with (None: drop silently)."""

    notify: NotifyType | None = NotifyType.INVALID_SYNTAX

    def __init__(self, reason: str, notify_data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify_data = notify_data


class UnsupportedCriticalPayload(ProtocolError):
    notify = NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD


class InvalidSyntax(ProtocolError):
    notify = NotifyType.INVALID_SYNTAX


class NoProposalChosen(ProtocolError):
    notify = NotifyType.NO_PROPOSAL_CHOSEN


class InvalidKePayload(ProtocolError):
    notify = NotifyType.INVALID_KE_PAYLOAD


class AuthenticationFailed(ProtocolError):
    notify = NotifyType.AUTHENTICATION_FAILED


class TsUnacceptable(ProtocolError):
    notify = NotifyType.TS_UNACCEPTABLE


class NoAdditionalSas(ProtocolError):
    notify = NotifyType.NO_ADDITIONAL_SAS


class TemporaryFailure(ProtocolError):
    notify = NotifyType.TEMPORARY_FAILURE


class ChildSaNotFound(ProtocolError):
    notify = NotifyType.CHILD_SA_NOT_FOUND


class InvalidSpi(ProtocolError):
    notify = NotifyType.INVALID_SPI


class CryptoError(Ikev2Error):
    """Base of crypto failures."""


class IntegrityError(CryptoError):
    """An ICV or AEAD tag did not verify: the message is dropped without an answer (§2.21.2)."""


class InvalidKeyExchange(CryptoError):
    """A peer's KE data is malformed or weak (RFC 7296 §3.4, RFC 6989)."""


class SignatureError(CryptoError):
    """A signature that does not verify, or a key that cannot be used."""


class ConfigError(Ikev2Error):
    """A configuration mistake: names the file, the key and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{file}: {key}: {problem} (fix: {fix})")
        self.file = file
        self.key = key
        self.problem = problem
        self.fix = fix


class UsageError(Ikev2Error):
    """Our own code called an API the wrong way."""
