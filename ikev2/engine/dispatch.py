"""How the engine handles one datagram (RFC 7296 §2.1-§2.3): the SPI demux, IKE_SA_INIT
responses, and SK-protected requests and responses, dispatched to the exchange tasks.

Functions of the `Engine` (engine/manager.py) they are given, kept apart so that the engine's
surface (commands, timers, indexes) and its message path each stay one readable module.
Peer input never raises out of here: see manager.py's docstring.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import structlog

from ..constants import ExchangeType, NotifyType
from ..errors import (
    DecodeError,
    IntegrityError,
    ProtocolError,
)
from ..wire import (
    Message,
    NotifyPayload,
    Payload,
    SaPayload,
    SkfPayload,
    SkPayload,
    decode_message,
    validate_payloads,
)
from . import fragments, gate, tcp, unique
from .events import Endpoint, IkeSaFailed
from .ike_sa import IkeSa
from .state import ALLOWED_REQUESTS, IkeInput, IkeState
from .tasks import (
    create_child,
    followup_ke,
    ike_auth,
    ike_init,
    ike_rekey,
    informational,
    intermediate,
    mobike,
    redirect,
    revocation_wait,
    window_size,
)
from .window import RequestClass

NEW = RequestClass.NEW

if TYPE_CHECKING:
    from .manager import Engine

log = structlog.get_logger("ikev2.engine")


def _fmt(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}:{endpoint[1]}"


def receive(engine: Engine, data: bytes, remote: Endpoint, local: Endpoint, now: float) -> None:
    if len(data) > engine.config.max_packet:  # strongSwan's charon.max_packet
        engine._gate_info(now, "datagram over max_packet", "datagram dropped", size=len(data))
        return
    if gate.cookie_first(engine, data, remote, local, now):  # RFC 7296 §2.6, undecoded
        return
    try:
        message = decode_message(data)
    except DecodeError as exc:
        engine._gate_info(
            now,
            "undecodable datagram",
            "datagram dropped",
            detail=exc.reason,
            offset=exc.offset,
            peer=_fmt(remote),
        )
        return
    header = message.header
    if header.exchange == ExchangeType.IKE_SA_INIT:
        if not header.is_response and header.is_initiator and header.spi_r == bytes(8):
            gate.init_request(engine, data, message, remote, local, now)
            return
        if header.is_response and not header.is_initiator:
            sa = engine.by_spi.get(header.spi_i)
            if sa is None or not sa.initiator or sa.state is not IkeState.INIT_SENT:
                engine._gate_info(now, "no such half-open SA", "IKE_SA_INIT response dropped")
                return
            init_response(engine, sa, data, message, now)
            return
    our_spi = header.spi_r if header.is_initiator else header.spi_i
    sa = engine.by_spi.get(our_spi)
    if sa is None or sa.spi_i != header.spi_i or sa.initiator == header.is_initiator:
        gate.unknown_spi(engine, message, remote, local, now)
        return
    if sa.keys is None or sa.state is IkeState.CLOSED:
        engine._gate_info(now, "IKE SA has no keys yet", "message dropped", sa.log)
        return
    if not message.payloads or not isinstance(message.payloads[-1], SkPayload | SkfPayload):
        informational.unprotected(sa, header, [n.notify_type for n in message.notifies])
        engine._after(sa)
        return
    if header.is_response:
        response(engine, sa, data, message, remote, local, now)
    else:
        request(engine, sa, data, message, remote, local, now)
    engine._after(sa)


def init_response(engine: Engine, sa: IkeSa, raw: bytes, message: Message, now: float) -> None:
    if message.header.message_id != 0:
        engine._gate_info(now, "message ID is not 0", "IKE_SA_INIT response dropped", sa.log)
        return
    if ike_init.process_i(sa, raw, message, now):
        if sa.tcp is None:
            mobike.natd_seen(sa, message)
        if mobike.floats(sa) and sa.remote[1] == 500 and sa.tcp is None:
            # RFC 7296 §2.23 (and RFC 4555 §3.3): move to port 4500 from IKE_AUTH on
            sa.local = (sa.local[0], 4500)
            sa.remote = (sa.remote[0], 4500)
        engine.by_spi[sa.local_spi] = sa
        sa.pump(now)
    engine._after(sa)


# --- SK-protected requests and responses
def request(
    engine: Engine,
    sa: IkeSa,
    raw: bytes,
    message: Message,
    remote: Endpoint,
    local: Endpoint,
    now: float,
) -> None:
    header = message.header
    kind = sa.responses.classify(header.message_id)
    if kind is RequestClass.RETRANSMIT:
        last = message.payloads[-1] if message.payloads else None
        if isinstance(last, SkfPayload) and last.fragment_number != 1:
            return  # RFC 7383 §2.6.1: answer a retransmitted set once, on its first fragment
        if sa.tcp is not None:
            return tcp.replay(sa, remote, local, header.message_id)  # RFC 9329 §6.2
        sa.log.debug("retransmitted request answered from cache", mid=header.message_id)
        # §2.11: to where the request came from; §2.3: never processed again
        for packet in sa.responses.cached(header.message_id):
            engine._send_plain(packet, remote, local)
        return
    if kind is RequestClass.INVALID:
        engine._gate_info(
            now, "unexpected message ID", "request dropped", sa.log, mid=header.message_id
        )
        return
    # Before our IKE_AUTH answer arrives (AUTH_SENT) the peer may already send requests:
    # drop them, it retransmits, and by then the IKE SA is established here too.
    allowed = ALLOWED_REQUESTS.get(sa.state, frozenset())
    if header.exchange not in allowed:
        engine._gate_info(
            now,
            "exchange not allowed now",
            "request dropped",
            sa.log,
            detail=f"exchange {header.exchange} not allowed now",
        )
        return
    try:
        opened = sa.open(raw, message, now)
    except IntegrityError:
        engine._gate_info(now, "request ICV check failed", "request dropped", sa.log)
        return
    except DecodeError as exc:
        refuse_request(engine, sa, message, ProtocolError(f"inner payloads: {exc.reason}"))
        return
    if opened is None:  # more fragments to come, or one dropped (RFC 7383 §2.6)
        fragments.log_drop(engine, sa, header.is_response, now)
        return
    inner = opened
    sa.last_heard = now
    if sa.tcp:
        tcp.follow(sa, remote, local, engine._tcp_in)
    else:
        mobike.observe(sa, remote, local, header.message_id, True)
    # a new request: the peer has our answers up to `window` IDs before it (§2.3)
    for child in sa.children:
        if 0 <= child.created_by_request <= header.message_id - sa.responses.size:
            child.created_by_request = -1
    try:
        validate_payloads(header.exchange, False, inner, inner=True)
    except ProtocolError as exc:
        refuse_request(engine, sa, message, exc)
        return
    if header.exchange == ExchangeType.IKE_AUTH:
        window_size.learn(sa, inner)  # §2.3: the initiator's window
    if header.exchange == ExchangeType.IKE_AUTH and sa.eap is None:
        chosen = ike_auth.select_connection(sa, inner)
        if revocation_wait.hold(sa, chosen, inner, now, header.message_id):
            return  # answered once the revocation status is in (revocation_fetched)
    engine._answer(sa, header.exchange, header.message_id, inner, now)


def respond(
    engine: Engine, sa: IkeSa, exchange: int, inner: tuple[Payload, ...], now: float
) -> list[Payload]:
    reqids = functools.partial(engine.peers.reqid_for, sa, engine._reqids)
    if exchange == ExchangeType.IKE_AUTH:
        chosen = ike_auth.select_connection(sa, inner)
        refused = unique.refuse_duplicate(engine.peers, sa, chosen, inner)
        answer = refused or ike_auth.respond(sa, inner, reqids, now)
        engine._dirty += unique.enforce(engine.peers, sa, inner, now)  # INITIAL_CONTACT
        if sa.half_open_key is not None:
            engine.half_open.pop(sa.half_open_key, None)
            sa.half_open_key = None
        sa.schedule_dpd(now)
        return answer
    if exchange == ExchangeType.INFORMATIONAL:
        redirect.informational(sa, inner, now)  # RFC 5685 §3.6
        return informational.respond(sa, inner) + mobike.respond(sa, inner)
    if exchange == ExchangeType.IKE_INTERMEDIATE:
        return intermediate.respond(sa, inner, now)
    if exchange == ExchangeType.IKE_FOLLOWUP_KE:
        return followup_ke.respond(sa, inner, now)
    # CREATE_CHILD_SA: an IKE SA proposal means an IKE rekey (§1.3.2), else a child (§1.3.1)
    sa_payload = next((p for p in inner if isinstance(p, SaPayload)), None)
    if sa_payload and sa_payload.proposals and sa_payload.proposals[0].protocol == 1:
        return ike_rekey.respond(sa, inner, now)
    return create_child.respond(sa, inner, reqids, now)


def refuse_request(engine: Engine, sa: IkeSa, message: Message, exc: ProtocolError) -> None:
    """§2.21.2: an authenticated but malformed request is answered with the notify."""
    sa.log.info("request refused", reason=exc.reason, notify=getattr(exc.notify, "name", None))
    notify = exc.notify or NotifyType.INVALID_SYNTAX
    header = message.header
    sa.respond(header.exchange, header.message_id, [NotifyPayload(notify, data=exc.notify_data)])
    if sa.state is IkeState.INIT_DONE:
        sa.emit(IkeSaFailed(sa.id, sa.conn.name, exc.reason, notify))
        sa.transition(IkeInput.CLOSE)


def response(
    engine: Engine,
    sa: IkeSa,
    raw: bytes,
    message: Message,
    remote: Endpoint,
    local: Endpoint,
    now: float,
) -> None:
    header = message.header
    out = sa.requests.find(header.message_id)
    exchange = out.exchange if out is not None else None
    if exchange is None:
        engine._gate_info(now, "no request with this message ID", "response dropped", sa.log)
        return
    if header.exchange != exchange.exchange_type:
        engine._gate_info(now, "exchange type differs from the request", "response dropped", sa.log)
        return
    try:
        opened = sa.open(raw, message, now)
    except IntegrityError:
        engine._gate_info(now, "response ICV check failed", "response dropped", sa.log)
        return
    except DecodeError as exc:
        sa.log.info("response unreadable", reason=exc.reason)
        opened = ()
    if opened is None:  # more fragments to come, or one dropped (RFC 7383 §2.6)
        fragments.log_drop(engine, sa, header.is_response, now)
        return
    inner = opened
    sa.last_heard = now
    if sa.tcp:
        tcp.follow(sa, remote, local, engine._tcp_in)
    else:
        mobike.observe(sa, remote, local, header.message_id, False)
    try:
        validate_payloads(header.exchange, True, inner, inner=True)
    except ProtocolError as exc:
        sa.log.info("response malformed; exchange ends", reason=exc.reason)
        inner = ()
    if isinstance(exchange, ike_auth.IkeAuthExchange) and revocation_wait.hold(
        sa, sa.conn, inner, now
    ):
        return  # our request stays outstanding; resent once the status is in
    if header.exchange == ExchangeType.IKE_AUTH:
        window_size.learn(sa, inner)  # §2.3: the responder's window
    sa.requests.done(header.message_id)
    exchange.process_i(sa, inner, now)
    if sa.state is not IkeState.CLOSED:
        sa.pump(now)
