"""strongSwan's proposal strings ("aes256gcm16-prfsha256-x25519") to ProposalSpec and back.

The keywords are those of strongSwan's proposal keyword list (the algorithm names of swanctl.conf
`proposals`/`esp_proposals`/`ah_proposals`), limited to algorithms with an IANA IKEv2 id.
As strongSwan does:
- an IKE proposal without PRF keywords derives its PRFs from its integrity algorithms;
- integrity algorithms are dropped from a proposal whose ciphers are all AEAD (after that
  derivation), so "aes256gcm16-sha256-ecp256" is "aes256gcm16-prfsha256-ecp256";
- an ESP/AH proposal without esn/noesn means noesn;
- "default" expands to our default proposals for the protocol;
- "keN_<method>" (N 1..7) adds <method> to ADDKEN, RFC 9370's additional key exchanges
  ("x25519-ke1_mlkem768"); "keN_none" makes that exchange optional.
format_proposal writes canonical keywords (x25519, x448, ...), leaving out a PRF list that equals
the derived one and a lone noesn, so parse_proposals(format_proposal(spec)) == (spec,).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

from ..constants import EncrId, EsnId, IntegId, KeId, PrfId, ProtocolId
from .config import ProposalSpec
from .proposals import is_aead

_T = TypeVar("_T")


class ProposalSyntaxError(ValueError):
    """A proposal string we cannot read; the message names the token and suggests keywords."""

    def __init__(self, message: str, token: str = "") -> None:
        super().__init__(message)
        self.token = token


def _encr_keywords() -> dict[str, tuple[int, int | None]]:
    """ENCR keywords, canonical name first for each (id, key bits)."""
    table: dict[str, tuple[int, int | None]] = {}
    for bits in (128, 192, 256):
        table[f"aes{bits}"] = (EncrId.AES_CBC, bits)
        table[f"aes{bits}ctr"] = (EncrId.AES_CTR, bits)
        for icv, gcm, ccm in ((8, EncrId.AES_GCM_8, EncrId.AES_CCM_8),
                              (12, EncrId.AES_GCM_12, EncrId.AES_CCM_12),
                              (16, EncrId.AES_GCM_16, EncrId.AES_CCM_16)):  # fmt: skip
            table[f"aes{bits}gcm{icv}"] = (gcm, bits)
            table[f"aes{bits}gcm{icv * 8}"] = (gcm, bits)  # strongSwan's ICV-in-bits aliases
            table[f"aes{bits}ccm{icv}"] = (ccm, bits)
            table[f"aes{bits}ccm{icv * 8}"] = (ccm, bits)
        table[f"aes{bits}gcm"] = (EncrId.AES_GCM_16, bits)
        table[f"aes{bits}ccm"] = (EncrId.AES_CCM_16, bits)
        table[f"aes{bits}gmac"] = (EncrId.NULL_AUTH_AES_GMAC, bits)
        table[f"camellia{bits}"] = (EncrId.CAMELLIA_CBC, bits)
        table[f"camellia{bits}ctr"] = (EncrId.CAMELLIA_CTR, bits)
        for icv, ccm in ((8, EncrId.CAMELLIA_CCM_8),
                         (12, EncrId.CAMELLIA_CCM_12),
                         (16, EncrId.CAMELLIA_CCM_16)):  # fmt: skip
            table[f"camellia{bits}ccm{icv}"] = (ccm, bits)
            table[f"camellia{bits}ccm{icv * 8}"] = (ccm, bits)
    table["aes"] = (EncrId.AES_CBC, 128)
    table["camellia"] = (EncrId.CAMELLIA_CBC, 128)
    table["3des"] = (EncrId.DES3, None)
    table["null"] = (EncrId.NULL, None)
    table["chacha20poly1305"] = (EncrId.CHACHA20_POLY1305, None)
    return table


ENCR_KEYWORDS = _encr_keywords()
INTEG_KEYWORDS: dict[str, int] = {
    "sha256": IntegId.HMAC_SHA2_256_128,
    "sha2_256": IntegId.HMAC_SHA2_256_128,
    "sha384": IntegId.HMAC_SHA2_384_192,
    "sha2_384": IntegId.HMAC_SHA2_384_192,
    "sha512": IntegId.HMAC_SHA2_512_256,
    "sha2_512": IntegId.HMAC_SHA2_512_256,
    "sha1": IntegId.HMAC_SHA1_96,
    "sha": IntegId.HMAC_SHA1_96,
    "sha1_160": IntegId.HMAC_SHA1_160,
    "md5": IntegId.HMAC_MD5_96,
    "md5_128": IntegId.HMAC_MD5_128,
    "aesxcbc": IntegId.AES_XCBC_96,
    "aescmac": IntegId.AES_CMAC_96,
}
PRF_KEYWORDS: dict[str, int] = {
    "prfsha256": PrfId.HMAC_SHA2_256,
    "prfsha384": PrfId.HMAC_SHA2_384,
    "prfsha512": PrfId.HMAC_SHA2_512,
    "prfsha1": PrfId.HMAC_SHA1,
    "prfmd5": PrfId.HMAC_MD5,
    "prfaesxcbc": PrfId.AES128_XCBC,
    "prfaescmac": PrfId.AES128_CMAC,
}
KE_KEYWORDS: dict[str, int] = {
    "x25519": KeId.CURVE25519,
    "curve25519": KeId.CURVE25519,
    "x448": KeId.CURVE448,
    "curve448": KeId.CURVE448,
    "ecp256": KeId.ECP256,
    "ecp384": KeId.ECP384,
    "ecp521": KeId.ECP521,
    "ecp192": KeId.ECP192,
    "ecp224": KeId.ECP224,
    "ecp224bp": KeId.BRAINPOOL224,
    "ecp256bp": KeId.BRAINPOOL256,
    "ecp384bp": KeId.BRAINPOOL384,
    "ecp512bp": KeId.BRAINPOOL512,
    "modp2048": KeId.MODP2048,
    "modp3072": KeId.MODP3072,
    "modp4096": KeId.MODP4096,
    "modp6144": KeId.MODP6144,
    "modp8192": KeId.MODP8192,
    "modp1536": KeId.MODP1536,
    "modp1024": KeId.MODP1024,
    "modp768": KeId.MODP768,
    "modp1024s160": KeId.MODP1024_160,
    "modp2048s224": KeId.MODP2048_224,
    "modp2048s256": KeId.MODP2048_256,
    "mlkem512": KeId.ML_KEM_512,
    "mlkem768": KeId.ML_KEM_768,
    "mlkem1024": KeId.ML_KEM_1024,
}
ESN_KEYWORDS: dict[str, int] = {"esn": EsnId.ESN, "noesn": EsnId.NO_ESN}

# strongSwan maps an integrity algorithm to the PRF on the same hash when an IKE proposal names
# no PRF.
PRF_FOR_INTEG: dict[int, int] = {
    IntegId.HMAC_MD5_96: PrfId.HMAC_MD5,
    IntegId.HMAC_MD5_128: PrfId.HMAC_MD5,
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA1_160: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
    IntegId.AES_XCBC_96: PrfId.AES128_XCBC,
    IntegId.AES_CMAC_96: PrfId.AES128_CMAC,
}

# The keyword groups a protocol accepts (RFC 7296 §3.3.3: no PRF in ESP/AH, no ENCR in AH,
# no ESN in IKE).
GROUPS_FOR_PROTOCOL: dict[ProtocolId, tuple[str, ...]] = {
    ProtocolId.IKE: ("encr", "integ", "prf", "ke"),
    ProtocolId.ESP: ("encr", "integ", "ke", "esn"),
    ProtocolId.AH: ("integ", "ke", "esn"),
}
ID_KEYWORDS: dict[str, dict[str, int]] = {
    "integ": INTEG_KEYWORDS,
    "prf": PRF_KEYWORDS,
    "ke": KE_KEYWORDS,
    "esn": ESN_KEYWORDS,
}
KEYWORD_GROUPS: dict[str, dict[str, int] | dict[str, tuple[int, int | None]]] = {
    "encr": ENCR_KEYWORDS,
    **ID_KEYWORDS,
}

# Our "default" proposals: strongSwan's defaults, trimmed to algorithms without known weaknesses,
# after a post-quantum hybrid first: X25519 in IKE_SA_INIT plus ML-KEM-768 as ADDKE1 in an
# IKE_INTERMEDIATE (RFC 9370), so the IKE SA's keys stay secret if either X25519 or ML-KEM holds
# (recorded traffic is safe from a later quantum computer). The classic proposals follow for peers
# without RFC 9370: they reject the hybrid proposal whole (RFC 7296 §3.3.6, unknown transform
# types) and take a classic one; a peer announcing RFC 9242 but preferring classic may too.
DEFAULT_HYBRID = (
    "aes128gcm16-aes192gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512"
    "-x25519-ke1_mlkem768"
)
DEFAULT_PROPOSALS: dict[ProtocolId, tuple[str, ...]] = {
    ProtocolId.IKE: (
        DEFAULT_HYBRID,
        "aes128-aes192-aes256-sha256-sha384-sha512-x25519-ecp256-ecp384-ecp521-x448-modp3072"
        "-modp4096",
        "aes128gcm16-aes192gcm16-aes256gcm16-chacha20poly1305-prfsha256-prfsha384-prfsha512"
        "-x25519-ecp256-ecp384-ecp521-x448-modp3072-modp4096",
    ),
    ProtocolId.ESP: (
        "aes128gcm16-aes256gcm16-chacha20poly1305",
        "aes128-aes256-sha256-sha384-sha512",
    ),
    ProtocolId.AH: ("sha256-sha384-sha512",),
}


def _canonical(table: dict[str, int] | dict[str, tuple[int, int | None]]) -> dict[object, str]:
    """The first keyword of each value: what format_proposal writes."""
    names: dict[object, str] = {}
    for keyword, value in table.items():
        names.setdefault(value, keyword)
    return names


CANONICAL = {group: _canonical(table) for group, table in KEYWORD_GROUPS.items()}


def _dedupe(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _unknown(token: str, text: str, protocol: ProtocolId) -> ProposalSyntaxError:
    keywords = [k for g in GROUPS_FOR_PROTOCOL[protocol] for k in KEYWORD_GROUPS[g]]
    close = difflib.get_close_matches(token, keywords, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ProposalSyntaxError(
        f"unknown {protocol.name} algorithm {token!r} in proposal {text!r}{hint}", token
    )


MAX_ADDKE = 7  # RFC 9370 §2.2.1: ADDKE1..ADDKE7
ADDKE_NONE_KEYWORD = "none"


def _addke_token(token: str) -> tuple[int, str] | None:
    """("ke3_mlkem768") -> (3, "mlkem768"); None when the token is not of that form."""
    head, sep, method = token.partition("_")
    if not sep or len(head) != 3 or not head.startswith("ke") or not head[2].isdigit():
        return None
    return int(head[2]), method


def _parse_addke(token: str, text: str, protocol: ProtocolId) -> tuple[int, int] | None:
    """(ADDKE index 0..6, method id) of a keN_ token, or None if it is no such token."""
    parsed = _addke_token(token)
    if parsed is None:
        return None
    number, method = parsed
    if not 1 <= number <= MAX_ADDKE:
        raise ProposalSyntaxError(
            f"{token!r}: additional key exchanges are ke1_ to ke{MAX_ADDKE}_ in {text!r}", token
        )
    if method == ADDKE_NONE_KEYWORD:
        return number - 1, KeId.NONE
    if method not in KE_KEYWORDS:
        close = difflib.get_close_matches(method, list(KE_KEYWORDS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(f'ke{number}_{c}' for c in close)}?" if close else ""
        raise ProposalSyntaxError(
            f"unknown key exchange {method!r} in {token!r} of {protocol.name} proposal "
            f"{text!r}{hint}",
            token,
        )
    return number - 1, KE_KEYWORDS[method]


def _parse_one(text: str, protocol: ProtocolId) -> ProposalSpec:
    encr_found: list[tuple[int, int | None]] = []
    ids_found: dict[str, list[int]] = {group: [] for group in KEYWORD_GROUPS}
    addke_found: list[list[int]] = [[] for _ in range(MAX_ADDKE)]
    for token in text.lower().split("-"):
        additional = _parse_addke(token, text, protocol)
        if additional is not None:
            addke_found[additional[0]].append(additional[1])
            continue
        group = next((g for g, table in KEYWORD_GROUPS.items() if token in table), None)
        if group is None:
            raise _unknown(token, text, protocol)
        if group not in GROUPS_FOR_PROTOCOL[protocol]:
            raise ProposalSyntaxError(
                f"{token!r} ({group}) is not allowed in an {protocol.name} proposal {text!r}", token
            )
        if group == "encr":
            encr_found.append(ENCR_KEYWORDS[token])
        else:
            ids_found[group].append(ID_KEYWORDS[group][token])
    encr = _dedupe(encr_found)
    integ, prf, ke, esn = (_dedupe(ids_found[g]) for g in ("integ", "prf", "ke", "esn"))

    def need(condition: bool, what: str) -> None:
        if not condition:
            raise ProposalSyntaxError(f"{protocol.name} proposal {text!r} needs {what}")

    only_aead = bool(encr) and all(is_aead(e[0]) for e in encr)
    if protocol == ProtocolId.IKE:
        if not prf:
            prf = _dedupe(PRF_FOR_INTEG[i] for i in integ)
        need(bool(encr), "an encryption algorithm")
        need(only_aead or bool(integ), "an integrity algorithm (or an AEAD cipher)")
        need(bool(prf), "a PRF (prf... or an integrity algorithm to derive it from)")
        need(bool(ke), "a key exchange method")
    elif protocol == ProtocolId.ESP:
        need(bool(encr), "an encryption algorithm")
        need(only_aead or bool(integ), "an integrity algorithm (or an AEAD cipher)")
    else:
        need(bool(integ), "an integrity algorithm")
    if only_aead:
        integ = ()
    if protocol != ProtocolId.IKE and not esn:
        esn = (EsnId.NO_ESN,)
    addke = tuple(_dedupe(found) for found in addke_found)
    while addke and not addke[-1]:
        addke = addke[:-1]
    if addke:
        need(bool(ke), "a key exchange method (KE) before additional ones (keN_)")
    return ProposalSpec(protocol, encr, prf, integ, ke, esn, addke)


def parse_proposals(text: str, protocol: ProtocolId) -> tuple[ProposalSpec, ...]:
    """A comma-separated list of strongSwan proposals, in preference order."""
    specs: list[ProposalSpec] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ProposalSyntaxError(f"empty proposal in {text!r}")
        if item.lower() == "default":
            specs += [_parse_one(d, protocol) for d in DEFAULT_PROPOSALS[protocol]]
        else:
            specs.append(_parse_one(item, protocol))
    return tuple(specs)


def format_proposal(spec: ProposalSpec) -> str:
    """The canonical strongSwan string of a spec; parse_proposals reads it back to the spec."""
    tokens: list[str] = []

    def name(group: str, value: object) -> str:
        try:
            return CANONICAL[group][value]
        except KeyError:
            raise ValueError(f"no strongSwan keyword for {group} {value!r}") from None

    tokens += [name("encr", e) for e in spec.encr]
    tokens += [name("integ", i) for i in spec.integ]
    derived = _dedupe(PRF_FOR_INTEG[i] for i in spec.integ if i in PRF_FOR_INTEG)
    if spec.prf != derived:
        tokens += [name("prf", p) for p in spec.prf]
    tokens += [name("ke", k) for k in spec.ke]
    for number, choices in enumerate(spec.addke, 1):
        tokens += [
            f"ke{number}_{ADDKE_NONE_KEYWORD if k == KeId.NONE else name('ke', k)}" for k in choices
        ]
    if spec.esn != (EsnId.NO_ESN,):
        tokens += [name("esn", e) for e in spec.esn]
    return "-".join(tokens)


def format_proposals(specs: Iterable[ProposalSpec]) -> str:
    return ",".join(format_proposal(spec) for spec in specs)
