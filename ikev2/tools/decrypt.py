"""Decryption of SK / SKF payloads with a Wireshark IKEv2 decryption table (`ikev2 decode --keys`).

The table is Wireshark's `ikev2_decryption_table` UAT file, one IKE SA a line:

    spi_i,spi_r,sk_ei,sk_er,"encryption algorithm",sk_ai,sk_ar,"integrity algorithm"

hex without 0x, algorithm names as Wireshark writes them ("AES-GCM-256 with 16 octet ICV
[RFC5282]", "AES-CBC-128 [RFC3602]", "HMAC_SHA2_256_128 [RFC4868]", "NONE [RFC4306]"). Names
are parsed into our transform suites (ikev2.crypto.suites); lines we cannot use are reported
with their line number.

decrypt_message never raises: a missing key, a failed ICV ("ICV check failed") or an inner
chain that does not decode come back as DecryptResult.error.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

from ..constants import EncrId, IntegId
from ..crypto.sk import SkCipher
from ..crypto.suites import (
    EncrSuite,
    IntegSuite,
    UnsupportedTransform,
    encr_suite,
    integ_suite,
)
from ..errors import DecodeError, IntegrityError, UsageError
from ..wire import Message, Payload, SkfPayload, SkPayload, decode_payloads, sk_associated_data
from ..wire.message import encrypted_payload

ICV_FAILED = "ICV check failed"
_COLUMNS = 8

# Wireshark encryption names: "<CIPHER>-<MODE>-<bits>[ with <n> octet ICV] [RFC...]".
_ENCR_NAME = re.compile(
    r"^(?P<cipher>AES|NULL|CHACHA20-POLY1305)(?:-(?P<mode>CBC|CTR|GCM|CCM)-(?P<bits>\d+))?"
    r"(?: with (?P<icv>\d+) octet ICV)?$",
    re.IGNORECASE,
)
_ENCR_BY_MODE_ICV: dict[tuple[str, int | None], EncrId] = {
    ("CBC", None): EncrId.AES_CBC,
    ("CTR", None): EncrId.AES_CTR,
    ("GCM", 8): EncrId.AES_GCM_8,
    ("GCM", 12): EncrId.AES_GCM_12,
    ("GCM", 16): EncrId.AES_GCM_16,
    ("CCM", 8): EncrId.AES_CCM_8,
    ("CCM", 12): EncrId.AES_CCM_12,
    ("CCM", 16): EncrId.AES_CCM_16,
}


class DecryptionTableError(ValueError):
    """A decryption table line we cannot use (file, line number, reason)."""


def _strip_reference(name: str) -> str:
    """'AES-CBC-128 [RFC3602]' -> 'AES-CBC-128'."""
    return re.sub(r"\s*\[[^\]]*\]\s*$", "", name.strip())


def encr_from_wireshark(name: str) -> EncrSuite:
    match = _ENCR_NAME.match(_strip_reference(name))
    if match is None:
        raise UnsupportedTransform(f"encryption algorithm {name!r}")
    cipher = match["cipher"].upper()
    if cipher == "NULL":
        return encr_suite(EncrId.NULL)
    if cipher == "CHACHA20-POLY1305":
        return encr_suite(EncrId.CHACHA20_POLY1305)
    if match["mode"] is None:
        raise UnsupportedTransform(f"encryption algorithm {name!r}")
    icv = int(match["icv"]) if match["icv"] else None
    encr_id = _ENCR_BY_MODE_ICV.get((match["mode"].upper(), icv))
    if encr_id is None:
        raise UnsupportedTransform(f"encryption algorithm {name!r}")
    return encr_suite(encr_id, int(match["bits"]))


def integ_from_wireshark(name: str) -> IntegSuite | None:
    """'HMAC_SHA2_256_128 [RFC4868]' -> that suite; 'NONE [RFC4306]' -> None."""
    bare = _strip_reference(name).upper().replace("-", "_")
    if bare == "NONE":
        return None
    try:
        return integ_suite(IntegId[bare])
    except KeyError:
        raise UnsupportedTransform(f"integrity algorithm {name!r}") from None


@dataclass(frozen=True)
class TableEntry:
    """One IKE SA of the table; keys are secrets and stay out of repr()."""

    spi_i: bytes
    spi_r: bytes
    encr: EncrSuite
    integ: IntegSuite | None
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    line: int = 0

    def cipher(self, from_initiator: bool) -> SkCipher:
        """SK_ei/SK_ai protect what the original initiator sends, SK_er/SK_ar the rest."""
        if from_initiator:
            return SkCipher(self.encr, self.sk_ei, self.integ, self.sk_ai)
        return SkCipher(self.encr, self.sk_er, self.integ, self.sk_ar)


@dataclass
class DecryptionTable:
    """IKE SA keys by (SPIi, SPIr); SkCipher objects are made once per SA and direction."""

    entries: dict[tuple[bytes, bytes], TableEntry]
    _ciphers: dict[tuple[bytes, bytes, bool], SkCipher] = field(default_factory=dict, repr=False)

    def cipher(self, spi_i: bytes, spi_r: bytes, from_initiator: bool) -> SkCipher | None:
        key = (spi_i, spi_r, from_initiator)
        if key not in self._ciphers:
            entry = self.entries.get((spi_i, spi_r))
            if entry is None:
                return None
            self._ciphers[key] = entry.cipher(from_initiator)
        return self._ciphers[key]


@dataclass(frozen=True)
class DecryptResult:
    """The inner payloads, or why there are none. `plaintext` is the decrypted inner chain (for
    an SKF fragment of several: that fragment's part, which only decodes after reassembly)."""

    payloads: tuple[Payload, ...] | None
    error: str | None
    plaintext: bytes | None = field(default=None, repr=False)


def _hex(text: str, what: str) -> bytes:
    text = text.strip().removeprefix("0x")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise DecryptionTableError(f"{what} is not hex") from None


def _entry(row: list[str], line: int) -> TableEntry:
    if len(row) != _COLUMNS:
        raise DecryptionTableError(f"{len(row)} columns, expected {_COLUMNS}")
    spi_i, spi_r = _hex(row[0], "spi_i"), _hex(row[1], "spi_r")
    sk_ei, sk_er = _hex(row[2], "sk_ei"), _hex(row[3], "sk_er")
    sk_ai, sk_ar = _hex(row[5], "sk_ai"), _hex(row[6], "sk_ar")
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise DecryptionTableError("SPIs are 8 bytes")
    try:
        encr, integ = encr_from_wireshark(row[4]), integ_from_wireshark(row[7])
    except UnsupportedTransform as error:
        raise DecryptionTableError(str(error.args[0])) from None
    entry = TableEntry(spi_i, spi_r, encr, integ, sk_ei, sk_er, sk_ai, sk_ar, line)
    try:  # check the key sizes now rather than per message
        entry.cipher(True)
        entry.cipher(False)
    except UsageError as error:
        raise DecryptionTableError(str(error)) from None
    return entry


def load_decryption_table(path: str) -> DecryptionTable:
    """Read a Wireshark ikev2_decryption_table; DecryptionTableError names the bad line."""
    entries: dict[tuple[bytes, bytes], TableEntry] = {}
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            try:
                entry = _entry(row, number)
            except DecryptionTableError as error:
                raise DecryptionTableError(f"{path}:{number}: {error}") from None
            entries[(entry.spi_i, entry.spi_r)] = entry
    return DecryptionTable(entries)


def _associated_data(raw: bytes, message: Message, sk: SkPayload | SkfPayload) -> bytes:
    """RFC 7296 §3.14 / RFC 5282 §5.1 / RFC 7383 §2.5.3: header through the SK(F) header."""
    if len(message.payloads) == 1:
        fragment = (sk.fragment_number, sk.total_fragments) if isinstance(sk, SkfPayload) else None
        return sk_associated_data(message.header, sk.inner_next_payload, len(sk.body), fragment)
    # Unencrypted payloads before SK: the associated data is everything before the body.
    return raw[: message.header.length - len(sk.body)]


def decrypt_message(raw: bytes, message: Message, table: DecryptionTable) -> DecryptResult:
    """Verify and decrypt the SK/SKF payload of `message` (decoded from `raw`); never raises."""
    sk = encrypted_payload(message)
    if sk is None:
        return DecryptResult(None, "no SK or SKF payload")
    header = message.header
    if len(raw) == header.length + 4 and raw[:4] == bytes(4):
        raw = raw[4:]  # RFC 3948 §2.2 non-ESP marker
    cipher = table.cipher(header.spi_i, header.spi_r, header.is_initiator)
    if cipher is None:
        return DecryptResult(None, f"no keys for SPIs {header.spi_i.hex()}/{header.spi_r.hex()}")
    try:
        plaintext = cipher.unprotect(_associated_data(raw, message, sk), sk.body)
    except IntegrityError:
        return DecryptResult(None, ICV_FAILED)
    if isinstance(sk, SkfPayload) and sk.total_fragments > 1:
        return DecryptResult(
            None,
            f"fragment {sk.fragment_number}/{sk.total_fragments}: decodes after reassembly",
            plaintext,
        )
    try:
        payloads = decode_payloads(sk.inner_next_payload, plaintext, is_response=header.is_response)
    except DecodeError as error:
        return DecryptResult(None, f"inner payloads: {error}", plaintext)
    return DecryptResult(payloads, None, plaintext)
