"""Key exchange methods behind one interface: MODP, ECP, X25519/X448 and ML-KEM.

One object per key exchange and per side:

    initiator                                   responder
    ke = create_key_exchange(g, rnd)            ke = create_key_exchange(g, rnd)
    send ke.public_bytes          ── KEi ──►    secret = ke.respond(KEi data)
    secret = ke.compute(KEr data) ◄── KEr ──    send ke.public_bytes

For Diffie-Hellman methods respond() is compute() and public_bytes is known at once. For ML-KEM
(FIPS 203, draft-ietf-ipsecme-ikev2-mlkem) the initiator's public_bytes is its encapsulation key
and compute() decapsulates the responder's ciphertext; the responder never makes a key pair:
respond() encapsulates to the initiator's key, and its public_bytes is then the ciphertext.

Private keys come from the injected random source where `cryptography` allows it: X25519/X448
(from_private_bytes), ECP (derive_private_key), MODP (the private exponent), ML-KEM (the 64-byte
seed d||z, from_seed_bytes). The ML-KEM encapsulation randomness is drawn inside OpenSSL; there
is no API to inject it.

Peer KE data is checked as RFC 7296 §3.4 and RFC 6989 ask: exact length, ECP points on the
curve (RFC 5903 §7 x||y, no 0x04 prefix), MODP values in (1, p-1), no all-zero X25519/X448
result (RFC 7748 §6); failures are InvalidKeyExchange with the reason.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import cache

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dh, ec, mlkem, x448, x25519

from ..constants import KeId
from ..errors import InvalidKeyExchange, UsageError
from .suites import KeSuite, ke_suite

RandomSource = Callable[[int], bytes]

# --------------------------------------------------------------------------------------------
# RFC 3526 MODP primes: p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + k), generator 2.
# The RFC defines each prime by that formula and k; we compute them from pi instead of copying
# the hex (tests check the RFC's first and last words and that p is a safe prime).

_RFC3526_K: dict[int, int] = {2048: 124476, 3072: 1690314, 4096: 240904, 6144: 929484,
                              8192: 4743158}  # fmt: skip
MODP_GENERATOR = 2


def _pi_fixed_point(bits: int) -> int:
    """floor(pi * 2^bits) by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239)."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inverse(x: int) -> int:
        total = term = one // x
        x_squared, n, sign = x * x, 3, -1
        while term:
            term //= x_squared
            total += sign * (term // n)
            n, sign = n + 2, -sign
        return total

    return (16 * arctan_inverse(5) - 4 * arctan_inverse(239)) >> guard


@cache
def modp_prime(bits: int) -> int:
    """The RFC 3526 prime of the given size."""
    floor_pi = _pi_fixed_point(bits - 130)
    prime: int = 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (floor_pi + _RFC3526_K[bits])
    return prime


@cache
def _modp_parameters(bits: int) -> dh.DHParameterNumbers:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography deprecates FFDH, RFC 7296 still has it
        return dh.DHParameterNumbers(modp_prime(bits), MODP_GENERATOR)


_ECP_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}


class KeyExchange(ABC):
    """One side of one key exchange. Secrets never appear in repr()."""

    def __init__(self, suite: KeSuite) -> None:
        self.suite = suite
        self.group: KeId = suite.id

    @property
    @abstractmethod
    def public_bytes(self) -> bytes:
        """Our KE payload data (ML-KEM responder: the ciphertext, after respond())."""

    @abstractmethod
    def compute(self, peer_public: bytes) -> bytes:
        """The shared secret from the peer's KE data (initiator side; DH: either side)."""

    def respond(self, peer_public: bytes) -> bytes:
        """Responder side: the shared secret from the initiator's KE data."""
        return self.compute(peer_public)

    @property
    def is_kem(self) -> bool:
        """A KEM (ML-KEM): the two sides' KE data differ in kind and size (encapsulation key
        one way, ciphertext the other), so the roles may never be swapped."""
        return self.suite.kind == "mlkem"

    def _check_length(self, peer_public: bytes, expected: int) -> None:
        if len(peer_public) != expected:
            raise InvalidKeyExchange(
                f"{self.suite.name}: KE data of {len(peer_public)} bytes, expected {expected}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.suite.name}, <private>)"

    __str__ = __repr__


class ModpKeyExchange(KeyExchange):
    """Finite-field DH over an RFC 3526 group; secrets left-padded to the prime length."""

    def __init__(self, suite: KeSuite, random_bytes: RandomSource) -> None:
        super().__init__(suite)
        assert suite.modp_bits is not None
        self._size = suite.modp_bits // 8
        self._params = _modp_parameters(suite.modp_bits)
        p = self._params.p
        exponent = int.from_bytes(random_bytes(suite.private_bytes))
        if exponent < 2:
            raise UsageError("the random source gave a degenerate MODP exponent")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # OpenSSL computes g^x: derive with the generator as the "peer" under a placeholder
            # public value, then build the real key. Python's pow() would take ~1.8 ms here.
            placeholder = dh.DHPrivateNumbers(exponent, dh.DHPublicNumbers(2, self._params))
            generator = dh.DHPublicNumbers(MODP_GENERATOR, self._params).public_key()
            public = int.from_bytes(placeholder.private_key().exchange(generator))
            self._private = dh.DHPrivateNumbers(
                exponent, dh.DHPublicNumbers(public, self._params)
            ).private_key()
        self._public = public.to_bytes(self._size)
        self._p = p

    @property
    def public_bytes(self) -> bytes:
        return self._public

    def compute(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, self._size)
        value = int.from_bytes(peer_public)
        if not 1 < value < self._p - 1:  # RFC 6989 §2.1: reject 0, 1, p-1 and anything >= p
            raise InvalidKeyExchange(f"{self.suite.name}: public value not in (1, p-1)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = dh.DHPublicNumbers(value, self._params).public_key()
            try:
                shared = self._private.exchange(peer)
            except ValueError as exc:
                raise InvalidKeyExchange(f"{self.suite.name}: {exc}") from None
        return shared.rjust(self._size, b"\x00")  # RFC 7296 §2.14: as long as the prime


_SCALAR_ATTEMPTS = 64


def _random_scalar_key(
    curve: ec.EllipticCurve, random_bytes: RandomSource
) -> ec.EllipticCurvePrivateKey:
    """A private key with a uniform scalar in [1, n-1]: draw key_size bits, retry when OpenSSL
    finds it out of range (FIPS 186-5 A.2.2 rejection sampling; rare for these curves)."""
    size = (curve.key_size + 7) // 8
    mask = (1 << curve.key_size) - 1  # P-521: the top 7 bits of 66 bytes are dropped
    for _ in range(_SCALAR_ATTEMPTS):
        scalar = int.from_bytes(random_bytes(size)) & mask
        if scalar == 0:
            continue
        try:
            return ec.derive_private_key(scalar, curve)
        except ValueError:
            continue
    raise UsageError("the random source gave no valid ECP scalar")


class EcpKeyExchange(KeyExchange):
    """ECDH over a NIST curve (RFC 5903): KE data x||y, shared secret the x coordinate."""

    def __init__(self, suite: KeSuite, random_bytes: RandomSource) -> None:
        super().__init__(suite)
        assert suite.curve is not None
        self._curve = _ECP_CURVES[suite.curve]()
        self._coordinate = suite.public_bytes_initiator // 2
        self._private = _random_scalar_key(self._curve, random_bytes)
        numbers = self._private.public_key().public_numbers()
        self._public = numbers.x.to_bytes(self._coordinate) + numbers.y.to_bytes(self._coordinate)

    @property
    def public_bytes(self) -> bytes:
        return self._public

    def compute(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, 2 * self._coordinate)
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer_public)
        except ValueError:
            raise InvalidKeyExchange(f"{self.suite.name}: point not on the curve") from None
        return self._private.exchange(ec.ECDH(), peer)


class MontgomeryKeyExchange(KeyExchange):
    """X25519 / X448 (RFC 7748, RFC 8031)."""

    def __init__(self, suite: KeSuite, random_bytes: RandomSource) -> None:
        super().__init__(suite)
        self._size = suite.public_bytes_initiator
        self._private: x25519.X25519PrivateKey | x448.X448PrivateKey
        if suite.id == KeId.CURVE25519:
            self._private = x25519.X25519PrivateKey.from_private_bytes(random_bytes(32))
        else:
            self._private = x448.X448PrivateKey.from_private_bytes(random_bytes(56))
        self._public = self._private.public_key().public_bytes_raw()

    @property
    def public_bytes(self) -> bytes:
        return self._public

    def compute(self, peer_public: bytes) -> bytes:
        self._check_length(peer_public, self._size)
        try:
            if isinstance(self._private, x25519.X25519PrivateKey):
                shared = self._private.exchange(
                    x25519.X25519PublicKey.from_public_bytes(peer_public)
                )
            else:
                shared = self._private.exchange(x448.X448PublicKey.from_public_bytes(peer_public))
        except ValueError:
            # OpenSSL refuses a low-order point (all-zero result, RFC 7748 §6.1 / §6.2)
            raise InvalidKeyExchange(f"{self.suite.name}: all-zero shared secret") from None
        if not any(shared):
            raise InvalidKeyExchange(f"{self.suite.name}: all-zero shared secret")
        return shared


_MlKemPrivate = mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey
_MlKemPublic = mlkem.MLKEM768PublicKey | mlkem.MLKEM1024PublicKey
_MLKEM_KEYS_FROM_SEED: dict[int, Callable[[bytes], _MlKemPrivate]] = {
    KeId.ML_KEM_768: mlkem.MLKEM768PrivateKey.from_seed_bytes,
    KeId.ML_KEM_1024: mlkem.MLKEM1024PrivateKey.from_seed_bytes,
}
_MLKEM_PUBLIC_FROM_BYTES: dict[int, Callable[[bytes], _MlKemPublic]] = {
    KeId.ML_KEM_768: mlkem.MLKEM768PublicKey.from_public_bytes,
    KeId.ML_KEM_1024: mlkem.MLKEM1024PublicKey.from_public_bytes,
}
MLKEM_SEED_BYTES = 64  # FIPS 203 §7.1: d || z


class MlKemKeyExchange(KeyExchange):
    """ML-KEM-768/1024 as a key exchange; see the module docstring for the two roles."""

    def __init__(self, suite: KeSuite, random_bytes: RandomSource) -> None:
        super().__init__(suite)
        self._random_bytes = random_bytes
        self._private: _MlKemPrivate | None = None
        self._ciphertext: bytes | None = None

    @property
    def public_bytes(self) -> bytes:
        if self._ciphertext is not None:
            return self._ciphertext
        if self._private is None:  # initiator: make the key pair on first use
            from_seed = _MLKEM_KEYS_FROM_SEED[self.group]
            self._private = from_seed(self._random_bytes(MLKEM_SEED_BYTES))
        return self._private.public_key().public_bytes_raw()

    def compute(self, peer_public: bytes) -> bytes:
        if self._private is None:
            raise UsageError("ML-KEM compute() needs our encapsulation key sent first")
        self._check_length(peer_public, self.suite.public_bytes_responder)
        # FIPS 203 decapsulation never fails: a bad ciphertext gives an unrelated secret.
        shared: bytes = self._private.decapsulate(peer_public)
        return shared

    def respond(self, peer_public: bytes) -> bytes:
        if self._private is not None or self._ciphertext is not None:
            raise UsageError("ML-KEM respond() is for a fresh responder-side object")
        self._check_length(peer_public, self.suite.public_bytes_initiator)
        try:
            # FIPS 203 §7.2 encapsulation key check (the modulus check) happens on loading.
            peer = _MLKEM_PUBLIC_FROM_BYTES[self.group](peer_public)
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidKeyExchange(f"{self.suite.name}: invalid encapsulation key") from None
        shared, self._ciphertext = peer.encapsulate()
        return shared


_KINDS: dict[str, Callable[[KeSuite, RandomSource], KeyExchange]] = {
    "modp": ModpKeyExchange,
    "ecp": EcpKeyExchange,
    "montgomery": MontgomeryKeyExchange,
    "mlkem": MlKemKeyExchange,
}


def create_key_exchange(group: int, random_bytes: RandomSource) -> KeyExchange:
    """A key exchange object for a KE transform id (UnsupportedTransform if not implemented)."""
    suite = ke_suite(group)
    return _KINDS[suite.kind](suite, random_bytes)


def respond_key_exchange(
    group: int, peer_public: bytes, random_bytes: RandomSource
) -> tuple[KeyExchange, bytes]:
    """The responder's half of any key exchange (IKE_SA_INIT, CREATE_CHILD_SA, IKE rekey,
    IKE_INTERMEDIATE, IKE_FOLLOWUP_KE): a fresh object that answers the initiator's KE data,
    and the shared secret. The one entry point for a responder, so a KEM method always takes
    its encapsulation path (a responder never holds an ML-KEM key pair). Raises
    InvalidKeyExchange for bad peer data."""
    exchange = create_key_exchange(group, random_bytes)
    return exchange, exchange.respond(peer_public)
