"""Protection of the Encrypted (SK) and Encrypted Fragment (SKF) payload bodies.

Body layout (RFC 7296 §3.14):  IV | ciphertext( inner payloads | Padding | Pad Length ) | ICV

- Encrypt-then-MAC ciphers (AES-CBC RFC 3602, AES-CTR RFC 5930): the ICV is the truncated MAC of
  associated_data | IV | ciphertext, where associated_data is the IKE header through the SK
  payload header (RFC 7296 §3.14; RFC 7383 §2.5 adds the SKF fragment fields to that header).
- AEAD ciphers (AES-GCM / AES-CCM RFC 5282, ChaCha20-Poly1305 RFC 7634): the nonce is the salt
  from the key tail followed by the 8-byte IV (RFC 5282 §4, RFC 7634 §2), the associated data is
  exactly associated_data (RFC 5282 §5.1), and the ICV is the AEAD tag.

The keyed MAC is made once per SA; AEAD contexts once per message (see _Aead).
The receiver checks the ICV before it decrypts, and every failure is IntegrityError.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from ..errors import IntegrityError, UsageError
from .mac import KeyedMac, make_mac
from .suites import CipherKind, EncrSuite, IntegSuite

RandomSource = Callable[[int], bytes]
_CTR_INITIAL_BLOCK_COUNTER = (1).to_bytes(4)  # RFC 3686 §4: the block counter starts at one
_FULL_GCM_TAG = 16


class _Aead:
    """An AEAD cipher on one key: seal/open (nonce, data, associated data).

    The `cryptography` AEAD object is made for each message, not kept: an OpenSSL AES-GCM context
    holds ~2.5 KB (measured here), two per IKE SA, which would be a third of a responder's memory
    per IKE SA; making one costs ~0.8 µs, and an IKE SA protects few messages.
    """

    __slots__ = ("_key", "_kind", "_tag")

    def __init__(self, kind: CipherKind, key: bytes, tag: int) -> None:
        self._kind = kind
        self._key = key
        self._tag = tag
        # a bad key fails here, when the SA is made, not at its first message
        if self._context() is None:
            algorithms.AES(key)  # truncated GCM: the cipher checks the key

    def _context(self) -> AESGCM | AESCCM | ChaCha20Poly1305 | None:
        if self._kind is CipherKind.CHACHA20_POLY1305:
            return ChaCha20Poly1305(self._key)
        if self._kind is CipherKind.CCM:
            return AESCCM(self._key, tag_length=self._tag)
        if self._tag == _FULL_GCM_TAG:
            return AESGCM(self._key)
        return None  # GCM with an 8- or 12-byte ICV (RFC 4106 §8): truncated tag

    def seal(self, nonce: bytes, data: bytes, associated: bytes) -> bytes:
        aead = self._context()
        if aead is not None:
            return aead.encrypt(nonce, data, associated)
        enc = Cipher(algorithms.AES(self._key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(associated)
        sealed = enc.update(data) + enc.finalize()
        return sealed + enc.tag[: self._tag]

    def open(self, nonce: bytes, sealed: bytes, associated: bytes) -> bytes:
        aead = self._context()
        try:
            if aead is not None:
                return aead.decrypt(nonce, sealed, associated)
            tag = sealed[-self._tag :]
            mode = modes.GCM(nonce, tag, min_tag_length=self._tag)
            dec = Cipher(algorithms.AES(self._key), mode).decryptor()
            dec.authenticate_additional_data(associated)
            return dec.update(sealed[: -self._tag]) + dec.finalize()
        except InvalidTag:
            raise IntegrityError("ICV check failed") from None


class SkCipher:
    """The SK payload cipher of one direction of one IKE SA (SK_ei/SK_ai or SK_er/SK_ar)."""

    __slots__ = ("_aead", "_cipher_key", "_mac", "_salt", "encr", "integ")

    def __init__(
        self, encr: EncrSuite, encr_key: bytes, integ: IntegSuite | None, integ_key: bytes
    ) -> None:
        if not encr.ike_allowed:
            raise UsageError(f"{encr.name} cannot protect IKE messages (RFC 7296 §3.3.2)")
        if len(encr_key) != encr.key_bytes:
            raise UsageError(f"{encr.name} needs {encr.key_bytes} key bytes, not {len(encr_key)}")
        if encr.aead == (integ is not None):
            raise UsageError("an AEAD cipher takes no INTEG transform, any other needs one")
        self.encr = encr
        self.integ = integ
        self._cipher_key = encr_key[: encr.cipher_key_bytes]
        self._salt = encr_key[encr.cipher_key_bytes :]
        self._aead: _Aead | None = None
        self._mac: KeyedMac | None = None
        if encr.aead:
            self._aead = _Aead(encr.cipher, self._cipher_key, encr.icv_bytes)
        elif integ is not None:
            if len(integ_key) != integ.key_bytes:
                raise UsageError(f"{integ.name} needs {integ.key_bytes} key bytes")
            self._mac = make_mac(integ.mac, integ.hash_name, integ_key)

    @property
    def icv_bytes(self) -> int:
        return self.encr.icv_bytes if self.integ is None else self.integ.icv_bytes

    def _padded_length(self, plaintext_len: int) -> int:
        block = self.encr.block_bytes
        return -(-(plaintext_len + 1) // block) * block  # + Pad Length octet, rounded up

    def body_length(self, plaintext_len: int) -> int:
        """Length of IV | ciphertext | ICV for plaintext_len bytes of inner payloads."""
        return self.encr.iv_bytes + self._padded_length(plaintext_len) + self.icv_bytes

    def _nonce(self, iv: bytes) -> bytes:
        return self._salt + iv

    def _crypt(self, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        """AES-CBC (RFC 3602) or AES-CTR (RFC 5930, counter block = nonce | IV | 1)."""
        mode: modes.Mode
        if self.encr.cipher is CipherKind.CBC:
            mode = modes.CBC(iv)
        else:
            mode = modes.CTR(self._salt + iv + _CTR_INITIAL_BLOCK_COUNTER)
        cipher = Cipher(algorithms.AES(self._cipher_key), mode)
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return ctx.update(data) + ctx.finalize()

    def protect(
        self, associated_data: bytes, plaintext: bytes, iv_or_random: RandomSource
    ) -> bytes:
        """The SK body for the inner payload chain `plaintext` (RFC 7296 §3.14).

        iv_or_random(n) gives the IV (an 8-byte counter or random for AEAD and CTR, random for
        CBC). Padding is zero bytes, the minimum the block size needs.
        """
        iv = iv_or_random(self.encr.iv_bytes)
        if len(iv) != self.encr.iv_bytes:
            raise UsageError(f"the IV source gave {len(iv)} bytes, not {self.encr.iv_bytes}")
        pad = self._padded_length(len(plaintext)) - len(plaintext) - 1
        padded = plaintext + bytes(pad) + pad.to_bytes(1)
        if self._aead is not None:
            return iv + self._aead.seal(self._nonce(iv), padded, associated_data)
        assert self._mac is not None and self.integ is not None
        ciphertext = self._crypt(iv, padded, encrypt=True)
        icv = self._mac.compute(associated_data, iv, ciphertext)[: self.integ.icv_bytes]
        return iv + ciphertext + icv

    def unprotect(self, associated_data: bytes, body: bytes) -> bytes:
        """Check and decrypt an SK body; return the inner payload chain without padding."""
        iv_len, icv_len = self.encr.iv_bytes, self.icv_bytes
        sealed_len = len(body) - iv_len - icv_len
        if sealed_len < 1 or sealed_len % self.encr.block_bytes:
            raise IntegrityError(f"SK body of {len(body)} bytes does not fit {self.encr.name}")
        iv = body[:iv_len]
        if self._aead is not None:
            padded = self._aead.open(self._nonce(iv), body[iv_len:], associated_data)
        else:
            assert self._mac is not None
            ciphertext, icv = body[iv_len:-icv_len], body[-icv_len:]
            expected = self._mac.compute(associated_data, body[:-icv_len])[:icv_len]
            if not hmac.compare_digest(expected, icv):  # encrypt-then-MAC: ICV first
                raise IntegrityError("ICV check failed")
            padded = self._crypt(iv, ciphertext, encrypt=False)
        pad = padded[-1]
        if pad + 1 > len(padded):
            raise IntegrityError(f"Pad Length {pad} exceeds the {len(padded)} decrypted bytes")
        return padded[: len(padded) - pad - 1]

    def __repr__(self) -> str:
        integ = self.integ.name if self.integ else "none"
        return f"SkCipher({self.encr.name}, {integ}, <keyed>)"

    __str__ = __repr__
