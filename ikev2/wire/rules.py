"""Which payloads each exchange carries: ONE table, (exchange, request/response) -> rule.

Sources: RFC 7296 §1.2-§1.5 (exchanges), §2.16 (EAP rounds: IKE_AUTH without AUTH, then EAP, then
AUTH alone), §2.21 (error responses carry the error Notify alone), §2.6 (COOKIE first), §3.14 (SK
last); RFC 6023 (childless IKE_AUTH: SA, TSi, TSr all or none); RFC 7383 (SKF); RFC 9242
(IKE_INTERMEDIATE); RFC 9370 (IKE_FOLLOWUP_KE).

RFC 7296 §3.2 forbids rejecting a message for the order of its payloads, so order is checked only
where an RFC fixes it: SK/SKF last, and COOKIE first in an IKE_SA_INIT request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ..constants import ExchangeType, NotifyType, PayloadType
from ..errors import InvalidSyntax, UnsupportedCriticalPayload
from .payloads import NotifyPayload, Payload, UnknownPayload

MANY: Final = 1 << 16
_T = PayloadType


@dataclass(frozen=True)
class Shape:
    """One allowed form of a message: per payload type its (min, max) count. Types absent from
    `counts` are not allowed. `together` lists groups that come all or none; `terminal`, when set,
    makes the shape apply only if the message has an error Notify or one of these types."""

    name: str
    counts: Mapping[int, tuple[int, int]]
    together: tuple[frozenset[int], ...] = ()
    terminal: frozenset[int] | None = None


@dataclass(frozen=True)
class ExchangeRule:
    encrypted: bool  # payloads travel inside exactly one SK or SKF, the last payload
    shapes: tuple[Shape, ...]
    first_notify: int | None = None  # a Notify type that must be the first payload if present


_OPTIONAL_ALWAYS: Final[dict[int, tuple[int, int]]] = {
    _T.NOTIFY: (0, MANY),
    _T.VENDOR: (0, MANY),
}
_ONE, _OPT, _ANY = (1, 1), (0, 1), (0, MANY)
_CHILD_SA_GROUP: Final = (frozenset({_T.SA, _T.TSi, _T.TSr}),)
_TS_PAIR: Final = (frozenset({_T.TSi, _T.TSr}),)


def _shape(
    name: str,
    counts: Mapping[int, tuple[int, int]],
    together: tuple[frozenset[int], ...] = (),
    terminal: frozenset[int] | None = None,
) -> Shape:
    # plain int keys: an IntEnum key costs a Python-level __eq__ on every lookup
    merged = {int(t): c for t, c in {**_OPTIONAL_ALWAYS, **counts}.items()}
    groups = tuple(frozenset(int(t) for t in group) for group in together)
    return Shape(name, merged, groups, terminal)


# §2.21: a response that refuses the request carries an error Notify and nothing else needed.
_ERROR_ONLY: Final = _shape("error notify", {_T.NOTIFY: (1, MANY)}, terminal=frozenset())
# §2.6 COOKIE and RFC 5685 REDIRECT also end an IKE_SA_INIT exchange early.
_INIT_NOTIFY_ONLY: Final = _shape(
    "notify only",
    {_T.NOTIFY: (1, MANY)},
    terminal=frozenset({NotifyType.COOKIE, NotifyType.REDIRECT}),
)

RULES: Final[dict[tuple[int, bool], ExchangeRule]] = {
    # §1.2: HDR, SAi1, KEi, Ni  -->  <--  HDR, SAr1, KEr, Nr, [CERTREQ]
    (ExchangeType.IKE_SA_INIT, False): ExchangeRule(
        encrypted=False,
        shapes=(_shape("request", {_T.SA: _ONE, _T.KE: _ONE, _T.NONCE: _ONE}),),
        first_notify=NotifyType.COOKIE,
    ),
    (ExchangeType.IKE_SA_INIT, True): ExchangeRule(
        encrypted=False,
        shapes=(
            _shape(
                "response",
                {_T.SA: _ONE, _T.KE: _ONE, _T.NONCE: _ONE, _T.CERTREQ: _ANY},
            ),
            _INIT_NOTIFY_ONLY,
        ),
    ),
    # §1.2: HDR, SK {IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, [CP,] SAi2, TSi, TSr}; §2.16 EAP rounds
    (ExchangeType.IKE_AUTH, False): ExchangeRule(
        encrypted=True,
        shapes=(
            _shape(
                "authentication",
                {
                    _T.IDi: _ONE,
                    _T.CERT: _ANY,
                    _T.CERTREQ: _ANY,
                    _T.IDr: _OPT,
                    _T.AUTH: _OPT,  # absent: the initiator asks for EAP (§2.16)
                    _T.CP: _OPT,
                    _T.SA: _OPT,
                    _T.TSi: _OPT,
                    _T.TSr: _OPT,
                },
                _CHILD_SA_GROUP,
            ),
            _shape("EAP round", {_T.EAP: _ONE}),
            _shape("final EAP AUTH", {_T.AUTH: _ONE}),
        ),
    ),
    # §1.2: HDR, SK {IDr, [CERT,] AUTH, [CP,] SAr2, TSi, TSr}; §2.16 EAP rounds
    (ExchangeType.IKE_AUTH, True): ExchangeRule(
        encrypted=True,
        shapes=(
            _shape(
                "authentication",
                {
                    _T.IDr: _ONE,
                    _T.CERT: _ANY,
                    _T.AUTH: _ONE,
                    _T.EAP: _OPT,
                    _T.CP: _OPT,
                    _T.SA: _OPT,
                    _T.TSi: _OPT,
                    _T.TSr: _OPT,
                },
                _CHILD_SA_GROUP,
            ),
            _shape("EAP round", {_T.EAP: _ONE}),
            # RFC 5998 §3: EAP-only, the responder proves itself only through the EAP method
            _shape("EAP-only first answer", {_T.IDr: _ONE, _T.CERT: _ANY, _T.EAP: _ONE}),
            _shape(
                "final EAP AUTH",
                {_T.AUTH: _ONE, _T.CP: _OPT, _T.SA: _OPT, _T.TSi: _OPT, _T.TSr: _OPT},
                _CHILD_SA_GROUP,
            ),
            _ERROR_ONLY,
        ),
    ),
    # §1.3.1-§1.3.3: HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi], [TSi, TSr]} (no TS: IKE SA rekey)
    (ExchangeType.CREATE_CHILD_SA, False): ExchangeRule(
        encrypted=True,
        shapes=(
            _shape(
                "request",
                {_T.SA: _ONE, _T.NONCE: _ONE, _T.KE: _OPT, _T.TSi: _OPT, _T.TSr: _OPT},
                _TS_PAIR,
            ),
        ),
    ),
    (ExchangeType.CREATE_CHILD_SA, True): ExchangeRule(
        encrypted=True,
        shapes=(
            _shape(
                "response",
                {_T.SA: _ONE, _T.NONCE: _ONE, _T.KE: _OPT, _T.TSi: _OPT, _T.TSr: _OPT},
                _TS_PAIR,
            ),
            _ERROR_ONLY,
        ),
    ),
    # §1.4: HDR, SK {[N,] [D,] [CP,] ...}, both ways; empty is a liveness check (§2.4)
    (ExchangeType.INFORMATIONAL, False): ExchangeRule(
        encrypted=True, shapes=(_shape("request", {_T.DELETE: _ANY, _T.CP: _OPT}),)
    ),
    (ExchangeType.INFORMATIONAL, True): ExchangeRule(
        encrypted=True, shapes=(_shape("response", {_T.DELETE: _ANY, _T.CP: _OPT}),)
    ),
    # RFC 9242 §3, RFC 9370 §2.2.2: HDR, SK {KEi(n)}  <-->  HDR, SK {KEr(n)}
    (ExchangeType.IKE_INTERMEDIATE, False): ExchangeRule(
        encrypted=True, shapes=(_shape("request", {_T.KE: _OPT}),)
    ),
    (ExchangeType.IKE_INTERMEDIATE, True): ExchangeRule(
        encrypted=True, shapes=(_shape("response", {_T.KE: _OPT}),)
    ),
    # RFC 9370 §2.2.4: HDR, SK {KEi(n), N(ADDITIONAL_KEY_EXCHANGE)}  <-->  HDR, SK {KEr(n)}
    (ExchangeType.IKE_FOLLOWUP_KE, False): ExchangeRule(
        encrypted=True, shapes=(_shape("request", {_T.KE: _ONE}),)
    ),
    (ExchangeType.IKE_FOLLOWUP_KE, True): ExchangeRule(
        encrypted=True, shapes=(_shape("response", {_T.KE: _ONE}), _ERROR_ONLY)
    ),
}

_ENCRYPTED: Final = frozenset({int(_T.SK), int(_T.SKF)})


def validate_payloads(
    exchange: int, is_response: bool, payloads: Sequence[Payload], *, inner: bool
) -> None:
    """Check a message's payloads against the table.

    inner=False: the outer payload list (for IKE_SA_INIT the only list; for the others it must be
    exactly one SK or SKF, last). inner=True: the decrypted payloads of SK.
    Raises UnsupportedCriticalPayload (RFC 7296 §2.5) or InvalidSyntax.
    """
    types: list[int] = []  # of the payloads we know, in order
    counts: dict[int, int] = {}
    notify_types: set[int] = set()
    for payload in payloads:
        if type(payload) is UnknownPayload:
            if payload.critical:
                raise UnsupportedCriticalPayload(
                    f"unsupported critical payload type {payload.payload_type}",
                    notify_data=bytes([payload.payload_type & 0xFF]),
                )
            continue
        payload_type = int(payload.payload_type)
        types.append(payload_type)
        counts[payload_type] = counts.get(payload_type, 0) + 1
        if type(payload) is NotifyPayload:
            notify_types.add(payload.notify_type)
    rule = RULES.get((exchange, is_response))
    if rule is None:
        raise InvalidSyntax(f"no payload rules for exchange {_exchange_name(exchange)}")
    if rule.encrypted and not inner:
        _check_envelope(types, _where(exchange, is_response))
        return
    if inner and not rule.encrypted:
        raise InvalidSyntax(f"{_exchange_name(exchange)} carries no encrypted payloads")
    if _ENCRYPTED.intersection(types):
        where = _where(exchange, is_response)
        raise InvalidSyntax(f"encrypted payload not allowed in the payloads of {where}")
    # the common case first: some shape fits, and no message text is built
    if not any(_fits(shape, counts, notify_types) for shape in rule.shapes):
        problems = [(_shape_problems(shape, counts, notify_types), shape) for shape in rule.shapes]
        # report against the main form; name the others the message did not fit either
        found = problems[0][0]
        others = ", ".join(other.name for _, other in problems[1:])
        also = f" (nor a {others})" if others else ""
        raise InvalidSyntax(f"{_where(exchange, is_response)}: {'; '.join(found)}{also}")
    if rule.first_notify is not None and rule.first_notify in notify_types:
        first = payloads[0]
        if not (isinstance(first, NotifyPayload) and first.notify_type == rule.first_notify):
            name = NotifyType(rule.first_notify).name
            where = _where(exchange, is_response)
            raise InvalidSyntax(f"{where}: Notify {name} must be the first payload")


def _where(exchange: int, is_response: bool) -> str:
    return f"{_exchange_name(exchange)} {'response' if is_response else 'request'}"


def _fits(shape: Shape, counts: dict[int, int], notify_types: set[int]) -> bool:
    """Does a message with these payload counts have this shape? (no strings built)"""
    if shape.terminal is not None and not any(
        t < 16384 or t in shape.terminal for t in notify_types
    ):
        return False
    allowed = shape.counts
    if any(t not in allowed for t in counts):
        return False
    for payload_type, (low, high) in allowed.items():
        if not low <= counts.get(payload_type, 0) <= high:
            return False
    for group in shape.together:
        present = sum(1 for t in group if counts.get(t, 0))
        if present and present != len(group):
            return False
    return True


def _check_envelope(types: list[int], where: str) -> None:
    """RFC 7296 §3.14 / RFC 7383 §2.5: exactly one SK or SKF, the last payload, nothing else."""
    encrypted = [t for t in types if t in _ENCRYPTED]
    if len(encrypted) != 1 or types[-1] not in _ENCRYPTED:
        raise InvalidSyntax(f"{where} must carry exactly one SK or SKF payload, last")
    outside = [PayloadType(t).name for t in types if t not in _ENCRYPTED]
    if outside:
        raise InvalidSyntax(f"{where}: {', '.join(outside)} must be inside the SK payload")


def _shape_problems(shape: Shape, counts: dict[int, int], notify_types: set[int]) -> list[str]:
    problems = []
    if shape.terminal is not None and not any(
        t < 16384 or t in shape.terminal for t in notify_types
    ):
        problems.append("no error notify")
    for payload_type in counts:
        if payload_type not in shape.counts:
            problems.append(f"{PayloadType(payload_type).name} not allowed")
    for payload_type, (low, high) in shape.counts.items():
        count = counts.get(payload_type, 0)
        if count < low:
            problems.append(f"{PayloadType(payload_type).name} missing")
        elif count > high:
            problems.append(f"{count} {PayloadType(payload_type).name} payloads, at most {high}")
    for group in shape.together:
        present = sorted(PayloadType(t).name for t in group if counts.get(t, 0))
        if present and len(present) != len(group):
            names = ", ".join(sorted(PayloadType(t).name for t in group))
            problems.append(f"{names} must come together, got only {', '.join(present)}")
    return problems


def _exchange_name(exchange: int) -> str:
    try:
        return ExchangeType(exchange).name
    except ValueError:
        return f"exchange {exchange}"
