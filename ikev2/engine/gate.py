"""The responder's door: IKE_SA_INIT requests and datagrams for no IKE SA (RFC 7296 §2.6, §2.21.4).

Everything here runs before a peer has proven anything but that it receives at its address:
retransmitted IKE_SA_INITs answered from the half-open SA's cache, the payload rules, the
per-source half-open cap (strongSwan's charon.block_threshold), COOKIEs over the cookie
threshold (§2.6), the global half-open cap (charon.init_limit_half_open), then the new half-open
IKE SA; and the rate-limited INVALID_IKE_SPI answer to requests for unknown SPIs (§2.21.4).
Every drop is logged through the engine's DropLog (dos.py). The Engine (manager.py) owns the
tables; these functions only decide and act on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import ExchangeType, HeaderFlag, NotifyType
from ..errors import CryptoError, NoProposalChosen, ProtocolError
from ..wire import (
    Header,
    Message,
    NoncePayload,
    NotifyPayload,
    encode_message,
    probe_init_request,
    validate_payloads,
)
from .events import Endpoint
from .state import IkeInput
from .tasks import ike_init, informational, redirect

if TYPE_CHECKING:
    from .manager import Engine

INVALID_IKE_SPI_INTERVAL = 1.0  # rate limit of unprotected INVALID_IKE_SPI answers (§2.21.4)


def _fmt(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}:{endpoint[1]}"


def cookie_first(
    engine: Engine, data: bytes, remote: Endpoint, local: Endpoint, now: float
) -> bool:
    """RFC 7296 §2.6 under attack, before the datagram is decoded: while COOKIEs are demanded,
    a new IKE_SA_INIT without one is answered with one from its SPIi and Ni alone, which the
    chain walk finds (wire.probe_init_request), so a forged flood costs no payload decoding.
    False (the full path decides) for anything else: a COOKIE first, a retransmit of a
    half-open SA, a source over block_threshold, a malformed or other message."""
    if len(engine.half_open) < engine.config.cookie_threshold:
        return False
    probe = probe_init_request(data)
    if probe is None or probe.cookie_first or (probe.spi_i, remote) in engine.half_open:
        return False
    limit = engine.config.block_threshold
    if limit > 0 and engine.half_open.count(remote[0]) >= limit:
        return False
    engine._drops.flush(now)
    fresh = engine.cookies.make(probe.nonce, remote[0], probe.spi_i, now)
    engine._gate_info(
        now,
        "half-open COOKIE threshold reached",
        "COOKIE demanded",
        peer=_fmt(remote),
        half_open=len(engine.half_open),
    )
    header = Header(probe.spi_i, bytes(8), 0, ExchangeType.IKE_SA_INIT, HeaderFlag.RESPONSE, 0, 0)
    answer = Message(header, (NotifyPayload(NotifyType.COOKIE, data=fresh),))
    engine._send_plain(encode_message(answer), remote, local)
    return True


def init_request(
    engine: Engine, raw: bytes, message: Message, remote: Endpoint, local: Endpoint, now: float
) -> None:
    engine._drops.flush(now)  # summaries of ended intervals, whatever this request's fate
    header = message.header
    existing = engine.half_open.get((header.spi_i, remote))
    if existing is not None:
        if raw == existing.init_request and existing.init_response:
            existing.log.debug("IKE_SA_INIT retransmit answered from cache")
            existing.send(existing.init_response)
        else:
            engine._gate_info(
                now, "SPI already in use by peer", "IKE_SA_INIT dropped", peer=_fmt(remote)
            )
        return
    try:
        validate_payloads(header.exchange, False, message.payloads, inner=False)
    except ProtocolError as exc:
        refuse(engine, message, remote, local, exc, now)
        return
    nonce = message.find(NoncePayload)
    if nonce is None:  # the rules table should have refused it
        refuse(engine, message, remote, local, ProtocolError("no Nonce"), now)
        return
    # a source that already holds block_threshold half-open IKE SAs (strongSwan's
    # charon.block_threshold) gets nothing, not even a COOKIE (§2.6): answering COOKIEs
    # is cheap for it, and without this cap one source fills max_half_open
    # (charon.init_limit_half_open) and locks every other peer out
    limit = engine.config.block_threshold
    if limit > 0 and engine.half_open.count(remote[0]) >= limit:
        engine._gate_info(
            now, "per-source half-open limit reached", "IKE_SA_INIT dropped", peer=_fmt(remote)
        )
        return
    if len(engine.half_open) >= engine.config.cookie_threshold:
        cookie = message.notify(NotifyType.COOKIE)
        if cookie is None or not engine.cookies.verify(
            cookie.data, nonce.data, remote[0], header.spi_i, now
        ):
            fresh = engine.cookies.make(nonce.data, remote[0], header.spi_i, now)
            engine._gate_info(
                now,
                "half-open COOKIE threshold reached",
                "COOKIE demanded",
                peer=_fmt(remote),
                half_open=len(engine.half_open),
            )
            engine._send_plain(
                ike_init.error_response(message, NotifyType.COOKIE, fresh), remote, local
            )
            return
    if len(engine.half_open) >= engine.config.max_half_open:
        engine._gate_info(now, "half-open limit reached", "IKE_SA_INIT dropped", peer=_fmt(remote))
        return
    candidates = tuple(engine._connections_for(local, remote))
    if not candidates:
        refuse(
            engine,
            message,
            remote,
            local,
            NoProposalChosen("no connection for these addresses"),
            now,
        )
        return
    redirected = redirect.init_redirect(candidates[0], message, local[0])  # RFC 5685 §3.3
    if redirected is not None:
        engine._gate_info(now, "redirected", "IKE_SA_INIT redirected", peer=_fmt(remote),
                          to=redirected[1])  # fmt: skip
        engine._send_plain(redirected[0], remote, local)
        return
    sa = engine._new_sa(
        candidates[0],
        initiator=False,
        local=local,
        remote=remote,
        spi_i=header.spi_i,
        spi_r=engine.new_ike_spi(),
        now=now,
    )
    sa.candidates = candidates
    try:
        ike_init.process_r(sa, raw, message)
    except (ProtocolError, CryptoError) as exc:
        engine._forget(sa)
        refusal = exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc))
        refuse(engine, message, remote, local, refusal, now)
        return
    except Exception:
        engine._forget(sa)  # our bug: an unanswered SA would stay without any deadline
        raise
    sa.bind_log()
    redirect.note_support(sa, message)
    try:
        packet = ike_init.build_r(sa)
    except Exception:
        engine._forget(sa)
        raise
    sa.transition(IkeInput.RESPOND_INIT)
    sa.half_open_key = (header.spi_i, remote)
    engine.half_open[sa.half_open_key] = sa
    sa.responses.answered(0, (packet,))
    sa.send(packet)
    sa.log.info("IKE_SA_INIT answered", suite=ike_init.suite_name(sa))
    engine._after(sa)


def refuse(
    engine: Engine,
    message: Message,
    remote: Endpoint,
    local: Endpoint,
    exc: ProtocolError,
    now: float,
) -> None:
    notify = getattr(exc.notify, "name", None)
    engine._gate_info(
        now,
        "IKE_SA_INIT refused",  # exc.reason may carry peer data: not a limiter key
        "IKE_SA_INIT refused",
        detail=exc.reason,
        notify=notify,
        peer=_fmt(remote),
    )
    if exc.notify is not None:
        packet = ike_init.error_response(message, exc.notify, exc.notify_data)
        engine._send_plain(packet, remote, local)


def unknown_spi(
    engine: Engine, message: Message, remote: Endpoint, local: Endpoint, now: float
) -> None:
    """§2.21.4: a request outside any IKE SA may get an unprotected INVALID_IKE_SPI."""
    header = message.header
    engine._gate_info(
        now, "unknown IKE SPI", "datagram dropped", peer=_fmt(remote), exchange=header.exchange
    )
    if (
        header.is_response
        or now - engine._invalid_spi_sent.get(remote, -1e9) < INVALID_IKE_SPI_INTERVAL
    ):
        return
    if len(engine._invalid_spi_sent) > 1024:
        engine._invalid_spi_sent.clear()
    engine._invalid_spi_sent[remote] = now
    engine._send_plain(informational.invalid_ike_spi_answer(header), remote, local)
