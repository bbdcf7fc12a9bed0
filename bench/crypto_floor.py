"""The crypto floor of one responder handshake: `cryptography` (OpenSSL) alone doing the
asymmetric and symmetric work an IKEv2 responder must do for IKE_SA_INIT + IKE_AUTH with one
child (RFC 7296 §2.13-2.17), nothing else (no parsing, no state, no I/O).

Per handshake, PSK + X25519 + AES-GCM-256 + PRF-HMAC-SHA256, one AES-GCM-256 child:
- IKE_SA_INIT: 32-byte nonce from os.urandom, X25519 key generation and exchange, four SHA-1
  NAT-detection hashes (two checked, two sent, §2.23), SKEYSEED (1 HMAC) and prf+ for SK_d,
  SK_e{i,r} (36 bytes each with the GCM salt), SK_p{i,r}: 168 bytes, 6 HMACs (§2.14);
- IKE_AUTH: AES-GCM open of the request (~300 bytes) and seal of the response (~250 bytes);
  AUTH (§2.15) checked and made: prf(SK_p, ID) twice and prf(prf(PSK, "Key Pad for
  IKEv2"), octets) twice (octets ~ 330 bytes); child keys prf+(SK_d, Ni | Nr) for 72 bytes,
  3 HMACs (§2.17).
ECDSA P-256 certificates instead of PSK: the two PSK AUTH MACs become one ECDSA-SHA256 sign
(our AUTH) and two verifies (the peer's AUTH and its certificate's signature by the CA).
The hybrid (x25519 + ke1_mlkem768, RFC 9370, PSK): plus one IKE_INTERMEDIATE, its request
(~1,250 bytes, the ML-KEM-768 encapsulation key) opened and its response (~1,150 bytes, the
ciphertext) sealed, the ML-KEM-768 encapsulation, the key update (SKEYSEED from SK_d, 1 HMAC,
then prf+ for 168 bytes, 6 HMACs; RFC 9370 §2.2.2) and the IntAuth MACs over both
intermediate messages (RFC 9242 §3.3: 2 HMACs).

`floor_us(suite)` is the median over rounds of the mean CPU time of one handshake's work.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import statistics
import time
import timeit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REQUEST, RESPONSE, OCTETS = os.urandom(300), os.urandom(250), os.urandom(330)
INTERMEDIATE_REQUEST, INTERMEDIATE_RESPONSE = os.urandom(1250), os.urandom(1150)
ASSOCIATED = os.urandom(32)


def _prf(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _prf_plus(key: bytes, seed: bytes, length: int) -> bytes:
    out, block, n = b"", b"", 1
    while len(out) < length:
        block = _prf(key, block + seed + bytes((n,)))
        out += block
        n += 1
    return out[:length]


class Floor:
    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.peer_public = X25519PrivateKey.generate().public_key()
        self.psk = os.urandom(32)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.our_key = ec.generate_private_key(ec.SECP256R1())
        peer_key = ec.generate_private_key(ec.SECP256R1())
        self.peer_pub = peer_key.public_key()
        self.ca_pub = self.ca_key.public_key()
        self.peer_auth = peer_key.sign(OCTETS, ec.ECDSA(hashes.SHA256()))
        self.cert_tbs = os.urandom(400)
        self.cert_sig = self.ca_key.sign(self.cert_tbs, ec.ECDSA(hashes.SHA256()))
        key, nonce = os.urandom(32), os.urandom(12)  # 4-byte salt + 8-byte IV (RFC 5282)
        self.request = (key, nonce, AESGCM(key).encrypt(nonce, REQUEST, ASSOCIATED))
        self.intermediate = (key, nonce, AESGCM(key).encrypt(nonce, INTERMEDIATE_REQUEST,
                                                             ASSOCIATED))  # fmt: skip
        self.mlkem_public = mlkem.MLKEM768PrivateKey.generate().public_key().public_bytes_raw()

    def handshake(self) -> None:
        # IKE_SA_INIT
        nr = os.urandom(32)
        ni = os.urandom(32)
        private = X25519PrivateKey.generate()
        private.public_key().public_bytes_raw()
        shared = private.exchange(self.peer_public)
        for _ in range(4):
            hashlib.sha1(nr + ni + b"\x00" * 6).digest()
        skeyseed = _prf(ni + nr, shared)
        keys = _prf_plus(skeyseed, ni + nr + os.urandom(16), 168)
        sk_d, _sk_ei, sk_er, sk_pi, sk_pr = (keys[:32], keys[32:68], keys[68:104],
                                            keys[104:136], keys[136:])  # fmt: skip
        if self.suite == "hybrid":  # IKE_INTERMEDIATE with ADDKE1 = ML-KEM-768
            key, nonce, body = self.intermediate
            AESGCM(key).decrypt(nonce, body, ASSOCIATED)
            peer = mlkem.MLKEM768PublicKey.from_public_bytes(self.mlkem_public)
            added, _ciphertext = peer.encapsulate()
            AESGCM(sk_er[:32]).encrypt(sk_er[32:] + os.urandom(8), INTERMEDIATE_RESPONSE,
                                       ASSOCIATED)  # fmt: skip
            skeyseed = _prf(sk_d, added + ni + nr)
            keys = _prf_plus(skeyseed, ni + nr + os.urandom(16), 168)
            sk_d, sk_er, sk_pi, sk_pr = keys[:32], keys[68:104], keys[104:136], keys[136:]
            _prf(sk_pi, INTERMEDIATE_REQUEST)
            _prf(sk_pr, INTERMEDIATE_RESPONSE)
        # IKE_AUTH: open the request (a key of our own: the timing is what counts), seal
        key, nonce, body = self.request
        AESGCM(key).decrypt(nonce, body, ASSOCIATED)
        _prf(sk_pi, OCTETS[:40])
        _prf(sk_pr, OCTETS[:40])
        if self.suite in ("psk", "hybrid"):
            pad = _prf(self.psk, b"Key Pad for IKEv2")
            _prf(pad, OCTETS)
            _prf(pad, OCTETS)
        else:
            self.ca_pub.verify(self.cert_sig, self.cert_tbs, ec.ECDSA(hashes.SHA256()))
            self.peer_pub.verify(self.peer_auth, OCTETS, ec.ECDSA(hashes.SHA256()))
            self.our_key.sign(OCTETS, ec.ECDSA(hashes.SHA256()))
        _prf_plus(sk_d, ni + nr, 72)
        AESGCM(sk_er[:32]).encrypt(sk_er[32:] + os.urandom(8), RESPONSE, ASSOCIATED)


def floor_us(suite: str, number: int = 300, rounds: int = 7) -> float:
    floor = Floor(suite)
    floor.handshake()
    # CPU time, as the responders are measured: on a loaded machine wall time counts the
    # moments this process waits for a core
    runs = timeit.repeat(floor.handshake, number=number, repeat=rounds, timer=time.process_time)
    return statistics.median(runs) / number * 1e6


if __name__ == "__main__":
    for name in ("psk", "ecdsa", "hybrid"):
        print(f"{name}: {floor_us(name):.1f} µs")
