"""IKEv2 key derivation: prf, prf+, SKEYSEED, SK_*, rekey SKEYSEED, Child SA KEYMAT.

RFC 7296 §2.13 (prf+), §2.14 (SKEYSEED and SK_* for the IKE SA), §2.17 (Child SA KEYMAT, with
and without PFS), §2.18 (SKEYSEED of a rekeyed IKE SA); RFC 9370 §2.2.2 (the key update after each
additional key exchange) and §2.2.4 (child KEYMAT and rekeyed SKEYSEED with several shared
secrets: the additional ones follow the nonces, `additional`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from ..errors import UsageError
from .mac import KeyedMac, aes_prf_key, make_mac
from .suites import EncrSuite, IntegSuite, MacKind, PrfSuite, prf_suite

PRF_PLUS_MAX_ROUNDS = 255  # RFC 7296 §2.13: the counter is one octet, 0x01..0xff
_COUNTER_OCTETS = [bytes((n,)) for n in range(256)]


class Prf:
    """A PRF transform keyed once (RFC 7296 §2.13).

    HMAC PRFs take keys of any length (RFC 2104). AES128-XCBC and AES128-CMAC map other key
    lengths to 128 bits as RFC 4434 §2 and RFC 4615 §3 say.
    """

    __slots__ = ("_mac", "suite")

    def __init__(self, prf_id: int, key: bytes) -> None:
        self.suite: PrfSuite = prf_suite(prf_id)
        if self.suite.mac is not MacKind.HMAC:
            key = aes_prf_key(self.suite.mac, key)
        self._mac: KeyedMac = make_mac(self.suite.mac, self.suite.hash_name, key)

    @property
    def output_bytes(self) -> int:
        return self.suite.output_bytes

    def compute(self, data: bytes) -> bytes:
        return self._mac.compute(data)

    def compute_parts(self, *parts: bytes) -> bytes:
        """prf(K, parts[0] | parts[1] | ...) without building the concatenation."""
        return self._mac.compute(*parts)

    def __repr__(self) -> str:
        return f"Prf({self.suite.name}, <keyed>)"


def prf_plus(prf: Prf, seed: bytes, length: int) -> bytes:
    """prf+ (K, S) = T1 | T2 | ... with Tn = prf(K, Tn-1 | S | n) (RFC 7296 §2.13)."""
    rounds = -(-length // prf.suite.output_bytes)
    if rounds > PRF_PLUS_MAX_ROUNDS:
        raise UsageError(f"prf+ cannot produce {length} bytes with {prf.suite.name}")
    compute = prf.compute
    block = compute(seed + b"\x01")
    out = [block]
    for counter in range(2, rounds + 1):
        block = compute(block + seed + _COUNTER_OCTETS[counter])
        out.append(block)
    return b"".join(out)[:length]


def _secret_field() -> bytes:
    return field(repr=False)  # type: ignore[no-any-return]


def _lengths_repr(obj: object) -> str:
    parts = ", ".join(f"{f.name}=<{len(getattr(obj, f.name))} bytes>" for f in fields(obj))  # type: ignore[arg-type]
    return f"{type(obj).__name__}({parts})"


@dataclass(frozen=True, slots=True)
class IkeKeys:
    """The seven IKE SA keys of RFC 7296 §2.14 (SK_ai/SK_ar empty with an AEAD cipher)."""

    sk_d: bytes = _secret_field()
    sk_ai: bytes = _secret_field()
    sk_ar: bytes = _secret_field()
    sk_ei: bytes = _secret_field()
    sk_er: bytes = _secret_field()
    sk_pi: bytes = _secret_field()
    sk_pr: bytes = _secret_field()

    def __repr__(self) -> str:
        return _lengths_repr(self)

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ChildKeys:
    """Child SA keys (RFC 7296 §2.17). "i" keys protect initiator -> responder traffic.

    For AEAD and CTR the encryption keys include the salt/nonce (RFC 4106 §8.1, RFC 3686 §5.1),
    which is what XFRM wants as the key of rfc4106(gcm(aes)) etc. The integ keys are empty when
    there is no INTEG transform.
    """

    encr_i: bytes = _secret_field()
    integ_i: bytes = _secret_field()
    encr_r: bytes = _secret_field()
    integ_r: bytes = _secret_field()

    def __repr__(self) -> str:
        return _lengths_repr(self)

    __str__ = __repr__


def _integ_key_bytes(encr: EncrSuite | None, integ: IntegSuite | None) -> int:
    if encr is None:  # AH (RFC 4302): integrity only
        if integ is None:
            raise UsageError("AH needs an INTEG transform")
        return integ.key_bytes
    if integ is None:
        if not encr.aead:
            raise UsageError(f"{encr.name} needs an INTEG transform")
        return 0
    if encr.aead:
        # RFC 5282 §8: an AEAD cipher with an INTEG transform is not a valid proposal.
        raise UsageError(f"{encr.name} is AEAD and takes no INTEG transform")
    return integ.key_bytes


def _split_ike_keys(
    skeyseed_prf: Prf, encr: EncrSuite, integ: IntegSuite | None, seed: bytes
) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, seed) (§2.14).

    SK_d, SK_pi and SK_pr have the preferred key length of the PRF (§2.14).
    """
    prf_key = skeyseed_prf.suite.key_bytes
    integ_key = _integ_key_bytes(encr, integ)
    sizes = (prf_key, integ_key, integ_key, encr.key_bytes, encr.key_bytes, prf_key, prf_key)
    keymat = prf_plus(skeyseed_prf, seed, sum(sizes))
    parts: list[bytes] = []
    offset = 0
    for size in sizes:
        parts.append(keymat[offset : offset + size])
        offset += size
    return IkeKeys(*parts)


def _skeyseed_key(suite: PrfSuite, ni: bytes, nr: bytes) -> bytes:
    """The key of SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14).

    For a PRF with a fixed-length key, half of the key comes from the first bytes of Ni and half
    from the first bytes of Nr (§2.14); we apply this to AES128-XCBC and AES128-CMAC (RFC 3664
    fixed-key semantics, as strongSwan and libreswan do).
    """
    if suite.fixed_key:
        half = suite.key_bytes // 2
        return ni[:half] + nr[:half]
    return ni + nr


def derive_ike_keys(
    prf_id: int,
    encr: EncrSuite,
    integ: IntegSuite | None,
    ni: bytes,
    nr: bytes,
    shared_secret: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> tuple[bytes, IkeKeys]:
    """SKEYSEED and the SK_* of a new IKE SA (RFC 7296 §2.14)."""
    skeyseed = Prf(prf_id, _skeyseed_key(prf_suite(prf_id), ni, nr)).compute(shared_secret)
    keys = _split_ike_keys(Prf(prf_id, skeyseed), encr, integ, ni + nr + spi_i + spi_r)
    return skeyseed, keys


def derive_rekeyed_ike_keys(
    old_prf_id: int,
    old_sk_d: bytes,
    new_prf_id: int,
    encr: EncrSuite,
    integ: IntegSuite | None,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    additional: Sequence[bytes] = (),
) -> tuple[bytes, IkeKeys]:
    """Keys of the IKE SA made by rekeying (RFC 7296 §2.18).

    SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the old IKE SA's PRF; the SK_* then
    come from prf+ of the new PRF with the new nonces and the new SPIs. With RFC 9370 additional
    key exchanges (IKE_FOLLOWUP_KE, §2.2.4): prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n)).
    """
    skeyseed = Prf(old_prf_id, old_sk_d).compute_parts(shared_secret, ni, nr, *additional)
    new_prf = Prf(new_prf_id, skeyseed)
    return skeyseed, _split_ike_keys(new_prf, encr, integ, ni + nr + spi_i + spi_r)


def update_ike_keys_additional_ke(
    prf_id: int,
    sk_d: bytes,
    encr: EncrSuite,
    integ: IntegSuite | None,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> tuple[bytes, IkeKeys]:
    """The IKE SA keys after an additional key exchange (RFC 9370 §2.2.2).

    SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr); {SK_d(n) | ... | SK_pr(n)} =
    prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr), Ni/Nr being the IKE_SA_INIT nonces. During an IKE SA
    rekey with additional exchanges (§2.2.4) pass the new nonces and SPIs.
    """
    skeyseed = Prf(prf_id, sk_d).compute_parts(shared_secret, ni, nr)
    keys = _split_ike_keys(Prf(prf_id, skeyseed), encr, integ, ni + nr + spi_i + spi_r)
    return skeyseed, keys


def derive_child_keys(
    prf_id: int,
    sk_d: bytes,
    encr: EncrSuite | None,
    integ: IntegSuite | None,
    ni: bytes,
    nr: bytes,
    shared_secret: bytes | None = None,
    additional: Sequence[bytes] = (),
) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) split as RFC 7296 §2.17 says.

    Initiator-to-responder keys first, then responder-to-initiator; within a direction the
    encryption key comes before the integrity key. With RFC 9370 additional key exchanges
    (§2.2.4) KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)): `additional` holds
    SK(1)..SK(n), after the nonces (as strongSwan 6 derives them).
    """
    integ_key = _integ_key_bytes(encr, integ)
    encr_key = encr.key_bytes if encr is not None else 0  # None: AH has no encryption key
    seed = (shared_secret or b"") + ni + nr + b"".join(additional)
    keymat = prf_plus(Prf(prf_id, sk_d), seed, 2 * (encr_key + integ_key))
    mid = encr_key + integ_key
    return ChildKeys(
        encr_i=keymat[:encr_key],
        integ_i=keymat[encr_key:mid],
        encr_r=keymat[mid : mid + encr_key],
        integ_r=keymat[mid + encr_key :],
    )
