"""`--key-log FILE`: every SA's keys in Wireshark's own UAT formats, appended as SAs come up.

- IKE SAs: `ikev2_decryption_table` lines
  `spi_i,spi_r,sk_ei,sk_er,"<encr>",sk_ai,sk_ar,"<integ>"` (hex without 0x; for AEAD the SK_e
  keys include the salt and the SK_a columns are empty with "NONE [RFC4306]").
- Child SAs: `esp_sa` lines
  `"IPv4","src","dst","0xSPI","<encr>","0xkey","<auth>","0xkey"`, one per direction.

Algorithm names are the strings Wireshark's UAT editors write (packet-isakmp.c, packet-ipsec.c),
as in the reference files under /work/shared/reference/keys. Off by default: a key log defeats the
whole point of IPsec for anyone who can read it, so the daemon logs a warning when it is on, the
file is created mode 0600 and an existing file is used only if it is ours alone
(open_private_append).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TextIO

from ..engine.events import ChildSaEstablished, SaDirection
from ..engine.views import KeyExport
from ..errors import ConfigError

# IKEv2 ENCR (name from the engine's EncrId, key bits) -> Wireshark's ikev2 UAT name
_GCM_CCM_ICV = {"8": 8, "12": 12, "16": 16}
IKE_ENCR_FIXED = {
    "NULL": "NULL [RFC2410]",
    "DES3": "3DES [RFC2451]",
    "CHACHA20_POLY1305": "CHACHA20-POLY1305 [RFC7634]",
}
IKE_ENCR_BY_MODE = {"AES_CBC": ("CBC", "RFC3602"), "AES_CTR": ("CTR", "RFC3686")}
IKE_INTEG = {
    None: "NONE [RFC4306]",
    "HMAC_MD5_96": "HMAC_MD5_96 [RFC2403]",
    "HMAC_SHA1_96": "HMAC_SHA1_96 [RFC2404]",
    "HMAC_MD5_128": "HMAC_MD5_128 [RFC4595]",
    "HMAC_SHA1_160": "HMAC_SHA1_160 [RFC4595]",
    "AES_XCBC_96": "AES_XCBC_96 [RFC3566]",
    "AES_CMAC_96": "AES_CMAC_96 [RFC4494]",
    "HMAC_SHA2_256_128": "HMAC_SHA2_256_128 [RFC4868]",
    "HMAC_SHA2_384_192": "HMAC_SHA2_384_192 [RFC4868]",
    "HMAC_SHA2_512_256": "HMAC_SHA2_512_256 [RFC4868]",
}
# ESP: (Linux XFRM algorithm, ICV bits for AEAD) -> Wireshark's esp_sa UAT name
ESP_ENCR = {
    ("ecb(cipher_null)", 0): "NULL",
    ("cbc(des3_ede)", 0): "TripleDES-CBC [RFC2451]",
    ("cbc(aes)", 0): "AES-CBC [RFC3602]",
    ("rfc3686(ctr(aes))", 0): "AES-CTR [RFC3686]",
    ("rfc4106(gcm(aes))", 128): "AES-GCM [RFC4106]",
    ("rfc4106(gcm(aes))", 96): "AES-GCM with 12 octet ICV [RFC4106]",
    ("rfc4106(gcm(aes))", 64): "AES-GCM with 8 octet ICV [RFC4106]",
    ("rfc7539esp(chacha20,poly1305)", 128): "ChaCha20 with Poly1305 [RFC7634]",
}
ESP_AUTH = {
    (None, 0): "NULL",
    ("hmac(sha1)", 96): "HMAC-SHA-1-96 [RFC2404]",
    ("hmac(sha256)", 96): "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]",
    ("hmac(sha256)", 128): "HMAC-SHA-256-128 [RFC4868]",
    ("hmac(sha384)", 192): "HMAC-SHA-384-192 [RFC4868]",
    ("hmac(sha512)", 256): "HMAC-SHA-512-256 [RFC4868]",
    ("hmac(md5)", 96): "HMAC-MD5-96 [RFC2403]",
}


class UnknownToWireshark(ValueError):
    """An algorithm Wireshark's tables have no name for."""


def ike_encr_name(encr: str, key_bits: int | None) -> str:
    """ "AES_GCM_16", 256 -> "AES-GCM-256 with 16 octet ICV [RFC5282]"."""
    if encr in IKE_ENCR_FIXED:
        return IKE_ENCR_FIXED[encr]
    if encr in IKE_ENCR_BY_MODE and key_bits:
        mode, rfc = IKE_ENCR_BY_MODE[encr]
        return f"AES-{mode}-{key_bits} [{rfc}]"
    prefix, _, icv = encr.rpartition("_")
    if prefix in ("AES_GCM", "AES_CCM") and icv in _GCM_CCM_ICV and key_bits:
        return f"AES-{prefix[4:]}-{key_bits} with {icv} octet ICV [RFC5282]"
    raise UnknownToWireshark(f"IKE encryption {encr} ({key_bits} bits)")


def ike_line(keys: KeyExport) -> str:
    """One ikev2_decryption_table line (without the newline)."""
    encr = ike_encr_name(keys.encr, keys.encr_key_bits)
    if keys.integ not in IKE_INTEG:
        raise UnknownToWireshark(f"IKE integrity {keys.integ}")
    integ = IKE_INTEG[keys.integ]
    return (
        f'{keys.spi_i.hex()},{keys.spi_r.hex()},{keys.sk_ei.hex()},{keys.sk_er.hex()},"{encr}",'
        f'{keys.sk_ai.hex()},{keys.sk_ar.hex()},"{integ}"'
    )


def esp_line(sa: SaDirection) -> str:
    """One esp_sa line for one direction of a child SA."""
    aead = bool(sa.icv_bits)
    encr = ESP_ENCR.get((sa.enc_alg or "ecb(cipher_null)", sa.icv_bits if aead else 0))
    auth = ESP_AUTH.get((None, 0) if aead else (sa.auth_alg, sa.auth_trunc_bits))
    if encr is None or auth is None:
        raise UnknownToWireshark(f"ESP {sa.enc_alg}/{sa.auth_alg}")
    family = "IPv4" if sa.src.version == 4 else "IPv6"
    auth_key = b"" if aead else sa.auth_key
    return (
        f'"{family}","{sa.src}","{sa.dst}","0x{sa.spi:08x}","{encr}","0x{sa.enc_key.hex()}",'
        f'"{auth}","0x{auth_key.hex()}"'
    )


class KeyLog:
    """Appends to two files: PATH (ikev2_decryption_table) and PATH.esp_sa (esp_sa)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.esp_path = path + ".esp_sa"
        self._ike = self._open(self.path)
        try:
            self._esp = self._open(self.esp_path)
        except BaseException:
            self._ike.close()
            raise

    @staticmethod
    def _open(path: str) -> TextIO:
        return os.fdopen(open_private_append(path), "a", buffering=1)  # line-buffered

    def ike_sa(self, keys: KeyExport) -> None:
        self._ike.write(ike_line(keys) + "\n")

    def child_sa(self, event: ChildSaEstablished) -> None:
        for direction in (event.outbound, event.inbound):
            self._esp.write(esp_line(direction) + "\n")

    def close(self) -> None:
        self._ike.close()
        self._esp.close()


def _refuse(path: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(path, "--key-log", problem, fix)


def open_private_append(path: str) -> int:
    """A descriptor appending to `path`, a regular file only we can read: created 0600 when
    missing; refused when it is a symbolic link (O_NOFOLLOW), not a regular file, has other
    hard links, is owned by another user, or grants group/other any access. The checks are
    made with fstat on the opened descriptor, so nothing can be swapped in between."""
    fix = f"remove {path} (or point --key-log at a new file) and let the daemon create it 0600"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(
                path, "is a symbolic link; the keys would go to its target", fix
            ) from None
        raise _refuse(path, f"cannot open: {exc.strerror}", "check the directory") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "is not a regular file", fix)
        if info.st_nlink != 1:
            raise _refuse(path, f"has {info.st_nlink} hard links", fix)
        if info.st_uid != os.geteuid():
            raise _refuse(path, f"is owned by uid {info.st_uid}, not by us ({os.geteuid()})", fix)
        if info.st_mode & 0o077:
            raise _refuse(
                path,
                f"has mode {stat.S_IMODE(info.st_mode):04o}: group/others may access the keys",
                f"chmod 600 {path} if it is really ours, or {fix}",
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
