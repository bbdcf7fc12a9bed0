"""One IKE SA: its keys, message windows, child SAs and queue of exchanges to start.

The IKE SA owns SK protection of its messages (RFC 7296 §3.14): every message after IKE_SA_INIT
is one SK payload whose associated data is the IKE header and the SK payload header. Exchange
logic lives in tasks/; state changes go through state.next_state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ..constants import ExchangeType, HeaderFlag, ProtocolId
from ..crypto.keymat import IkeKeys, Prf
from ..crypto.sk import SkCipher
from ..wire import (
    Header,
    Message,
    Payload,
    Proposal,
    SkfPayload,
    SkPayload,
    decode_payloads,
    encode_payloads,
    sk_associated_data,
)
from .config import ChildConfig, ConnectionConfig, Identity, Mode
from .env import Env
from .events import Datagram, Endpoint, Event, IkeSaEstablished
from .fragments import Reassembler, fragment_message, max_ike_size
from .spis import CpiRegistry, SpiRegistry
from .state import IkeInput, IkeState, next_state
from .window import RequestWindow, ResponseWindow

if TYPE_CHECKING:
    from ..crypto.dh import KeyExchange
    from .pools import Pools
    from .proposals import NegotiatedSuite
    from .revocation import RevocationCache
    from .tasks.config_payload import CpState
    from .tasks.followup_ke import Pending
    from .tasks.intermediate import IntermediateState
    from .tasks.mobike import MobikeState
    from .tasks.ppk import PpkState
    from .tcp import TcpLink


NONCE_BYTES = 32


class Outbox:
    """Where IKE SAs put what the service must act on; the manager drains it."""

    def __init__(self) -> None:
        self.datagrams: list[Datagram] = []
        self.events: list[Event] = []


class Exchange(Protocol):
    """An exchange we initiate (strongSwan's task pair build_i / process_i). build_i returns
    None when the exchange is no longer needed by the time it would start (its SA went away)."""

    exchange_type: ExchangeType

    def build_i(self, sa: IkeSa, now: float) -> list[Payload] | None: ...

    def process_i(self, sa: IkeSa, payloads: tuple[Payload, ...], now: float) -> None: ...

    def give_up(self, sa: IkeSa, now: float) -> None: ...


class ChildState(enum.Enum):
    """Where a child SA is in its life (RFC 7296 §2.8, §2.25.1 name these situations)."""

    INSTALLED = "installed"
    REKEYING = "rekeying"  # our CREATE_CHILD_SA with REKEY_SA for it is out
    REKEYED = "rekeyed"  # replaced; its Delete is queued or expected from the peer
    DELETING = "deleting"  # our Delete for it is out


@dataclass(slots=True)
class ChildSa:
    """A child SA of this IKE SA (RFC 7296 §1.3); `spi_*` are the ESP/AH SPIs as integers."""

    config: ChildConfig
    reqid: int
    protocol: ProtocolId
    spi_in: int
    spi_out: int = 0
    mode: Mode = Mode.TUNNEL
    state: ChildState = ChildState.INSTALLED
    rekey_at: float | None = None  # soft lifetime (with jitter)
    expire_at: float | None = None  # hard lifetime
    # A child we made as responder is unconfirmed until a later request shows the peer has our
    # answer (§2.3: a request `window` IDs later); -1 when we initiated its exchange.
    created_by_request: int = -1
    made_by_peer: bool = False  # the peer initiated the exchange that created it
    not_found_answers: int = 0  # CHILD_SA_NOT_FOUND answers to our rekeys of it so far
    # IPComp (RFC 3173; tasks/ipcomp.py): our CPI (offered or answered) and the peer's; the
    # child compresses only when both are set
    cpi_in: int = 0
    cpi_out: int = 0
    event: Any = field(default=None, repr=False)  # the ChildSaEstablished handed out


@dataclass(slots=True)
class Collision:
    """The peer's rekey of the same SA we are rekeying (§2.8.1, §2.8.2): its nonces and what
    answering it created, kept until our own exchange ends and the lowest nonce decides."""

    nonce_i: bytes = field(repr=False)
    nonce_r: bytes = field(repr=False)
    created: Any = field(repr=False)  # the ChildSa or IkeSa our answer created


class ExchangeQueue(list["Exchange"]):
    """The exchanges waiting for the request window: a list (a deque's first block alone is
    ~600 bytes per IKE SA, and this queue rarely holds more than two)."""

    __slots__ = ()

    def appendleft(self, exchange: Exchange) -> None:
        self.insert(0, exchange)

    def popleft(self) -> Exchange:
        return self.pop(0)


class SaHost(Protocol):
    """What an IKE SA asks of the manager that owns it (one object for all its SAs)."""

    pools: Pools  # address pools for CP (RFC 7296 §2.19)
    revocation: RevocationCache  # CRLs / OCSP answers the service fetched (revocation.py)
    spis: SpiRegistry  # inbound child SPIs no other child holds (spis.py)
    cpis: CpiRegistry  # inbound IPComp CPIs likewise

    @property
    def max_packet(self) -> int: ...  # the longest message reassembled (RFC 7383 §2.6)

    @property
    def window_size(self) -> int: ...  # our message ID window (RFC 7296 §2.3)

    def spawn_sa(
        self,
        parent: IkeSa,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        now: float,
        conn: ConnectionConfig | None = None,
    ) -> IkeSa: ...

    def touch_sa(self, sa: IkeSa) -> None: ...

    def new_ike_spi(self) -> bytes: ...

    def current_connection(self, name: str) -> ConnectionConfig | None: ...


class IkeSa:
    # slots: an IKE SA lives long and a responder holds many (an instance dict of these ~60
    # attributes costs ~1.5 KB per SA against ~0.5 KB of slots)
    __slots__ = (
        "candidates",
        "child_collisions",
        "children",
        "chosen_proposal",
        "conn",
        "cookie",
        "cp",
        "created_at",
        "dpd_due",
        "eap",
        "env",
        "established_at",
        "expire_at",
        "followup",
        "fragments_in",
        "half_open_key",
        "host",
        "id",
        "ike_collision",
        "init_request",
        "init_response",
        "init_retries",
        "initiator",
        "intermediate",
        "ke",
        "ke_group",
        "keys",
        "last_heard",
        "local",
        "log",
        "mobike",
        "nat_local",
        "nat_remote",
        "nonce_i",
        "nonce_r",
        "outbox",
        "peer_asked_cert",
        "peer_certreq",
        "peer_childless",
        "peer_fragmentation",
        "peer_hash_algorithms",
        "pending_close",
        "ppk",
        "prf_id",
        "queue",
        "random_bytes",
        "reauth_at",
        "reauth_by",
        "reauth_of",
        "redirect",
        "rekey_at",
        "rekeyed_at",
        "remote",
        "remote_identity",
        "reply_path",
        "requests",
        "responses",
        "sk_in",
        "sk_out",
        "spi_i",
        "spi_r",
        "state",
        "successor",
        "suite",
        "tcp",
    )

    def __init__(
        self,
        sa_id: int,
        conn: ConnectionConfig,
        *,
        initiator: bool,
        local: Endpoint,
        remote: Endpoint,
        spi_i: bytes,
        spi_r: bytes,
        outbox: Outbox,
        env: Env,
        now: float,
    ) -> None:
        self.id = sa_id
        self.conn = conn
        self.initiator = initiator
        self.local = local
        self.remote = remote
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.outbox = outbox
        self.env = env
        self.random_bytes: Callable[[int], bytes] = env.random_bytes
        self.state = IkeState.CREATED
        self.created_at = now
        self.established_at: float | None = None
        self.last_heard = now
        self.requests = RequestWindow(conn.timers)
        self.responses = ResponseWindow()
        self.queue = ExchangeQueue()
        self.children: list[ChildSa] = []
        context = {"ike_sa": sa_id, "conn": conn.name, "peer": f"{remote[0]}:{remote[1]}"}
        if any(spi_r):  # a responder knows both SPIs now: one bind instead of two
            context.update(spi_i=spi_i.hex(), spi_r=spi_r.hex())
        self.log = structlog.get_logger("ikev2.engine").bind(**context)
        # IKE_SA_INIT material (RFC 7296 §1.2, §2.15)
        self.nonce_i = b""
        self.nonce_r = b""
        self.ke: KeyExchange | None = None
        self.ke_group = 0
        self.cookie = b""
        self.init_request = b""
        self.init_response = b""
        self.init_retries = 0
        # RFC 9242/9370: the IKE_INTERMEDIATE rounds before IKE_AUTH (tasks/intermediate.py)
        self.intermediate: IntermediateState | None = None
        # RFC 9370 §2.2.4: a peer's CREATE_CHILD_SA waiting for its IKE_FOLLOWUP_KE exchanges
        self.followup: Pending | None = None
        self.ppk: PpkState | None = None  # RFC 8784 (tasks/ppk.py)
        self.chosen_proposal: Proposal | None = None
        self.suite: NegotiatedSuite | None = None
        self.keys: IkeKeys | None = None
        self.prf_id = 0
        self.sk_out: SkCipher | None = None
        self.sk_in: SkCipher | None = None
        self.nat_local = False
        self.nat_remote = False
        self.mobike: MobikeState | None = None  # RFC 4555 (tasks/mobike.py)
        # RFC 7296 §2.11: answers go where the request came from (remote, local)
        self.reply_path: tuple[Endpoint, Endpoint] | None = None
        self.peer_fragmentation = False
        self.peer_childless = False  # RFC 6023 §3: CHILDLESS_IKEV2_SUPPORTED in its IKE_SA_INIT
        # RFC 7383 §2.6: reassembly, one per direction (False: requests, True: responses),
        # made when the first fragment arrives (most IKE SAs never see one)
        self.fragments_in: dict[bool, Reassembler] = {}
        self.peer_hash_algorithms: tuple[int, ...] = ()
        self.peer_certreq: tuple[bytes, ...] = ()  # CA hashes of the peer's CERTREQs (§3.7)
        self.peer_asked_cert = False  # any CERTREQ at all: send_cert = ifasked sends the chain
        self.remote_identity: Identity | None = None
        self.candidates: tuple[ConnectionConfig, ...] = (conn,)
        self.half_open_key: tuple[bytes, Endpoint] | None = None
        self.pending_close: str | None = None  # set by a peer's IKE SA Delete
        self.dpd_due: float | None = None
        # lifetimes (RFC 7296 §2.8) and rekeying
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        self.rekeyed_at: float | None = None  # replaced by a rekeyed IKE SA; waits for its Delete
        self.child_collisions: dict[int, Collision] = {}  # by the old child's spi_in
        self.ike_collision: Collision | None = None
        self.host: SaHost | None = None  # set by the manager
        self.successor: IkeSa | None = None  # the IKE SA our children moved to (§2.18)
        # reauthentication (§2.8.3, reauth.py): when to start (or check on) one, the new IKE SA
        # under way for this one, and on that new SA the id of the one it replaces, until it has
        # (an id: a reference would keep every closed predecessor alive)
        self.reauth_at: float | None = None
        self.reauth_by: IkeSa | None = None
        self.reauth_of: int | None = None
        self.eap: Any = None  # tasks/eap.py: the responder's EAP rounds (RFC 7296 §2.16)
        self.cp: CpState | None = None  # virtual IPs from CP (tasks/config_payload.py)
        self.redirect: Any = None  # tasks/redirect.py (RFC 5685)
        self.tcp: TcpLink | None = None  # over TCP, RFC 9329 (tcp.py); None: UDP

    # --- identity and roles
    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def nonce_local(self) -> bytes:
        return self.nonce_i if self.initiator else self.nonce_r

    @property
    def nonce_remote(self) -> bytes:
        return self.nonce_r if self.initiator else self.nonce_i

    @property
    def pending(self) -> Exchange | None:
        """The exchange of our oldest request in flight (the only one at window size 1)."""
        out = self.requests.outstanding
        return out.exchange if out is not None else None

    def in_flight(self) -> tuple[Exchange, ...]:
        """The exchanges of all our requests in flight (§2.3), oldest first."""
        return self.requests.exchanges()

    @property
    def closed(self) -> bool:
        return self.state is IkeState.CLOSED

    def transition(self, event: IkeInput) -> None:
        new = next_state(self.state, event)
        if new is not self.state:
            self.log.debug("state", old=self.state.value, new=new.value)
        self.state = new

    def bind_log(self) -> None:
        """Add the SPIs to the log context once the responder's is known."""
        context = structlog.get_context(self.log)
        spi_i, spi_r = self.spi_i.hex(), self.spi_r.hex()
        if context.get("spi_i") != spi_i or context.get("spi_r") != spi_r:
            self.log = self.log.bind(spi_i=spi_i, spi_r=spi_r)

    # --- RFC 7296 §3.14: SK protection
    def install_keys(self, keys: IkeKeys, sk_i: SkCipher, sk_r: SkCipher) -> None:
        self.keys = keys
        self.sk_out, self.sk_in = (sk_i, sk_r) if self.initiator else (sk_r, sk_i)

    def prf_local(self) -> Prf:
        assert self.keys is not None
        key = self.keys.sk_pi if self.initiator else self.keys.sk_pr
        return Prf(self.prf_id, key)

    def prf_remote(self) -> Prf:
        assert self.keys is not None
        key = self.keys.sk_pr if self.initiator else self.keys.sk_pi
        return Prf(self.prf_id, key)

    def _header(self, exchange: int, message_id: int, response: bool) -> Header:
        flags = (HeaderFlag.INITIATOR if self.initiator else 0) | (
            HeaderFlag.RESPONSE if response else 0
        )
        return Header(
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            next_payload=0,
            exchange=exchange,
            flags=flags,
            message_id=message_id,
            length=0,
        )

    def protect_all(
        self, exchange: int, message_id: int, response: bool, payloads: Sequence[Payload]
    ) -> tuple[bytes, ...]:
        """The message as datagrams: one SK message, or RFC 7383 fragments when both sides
        announced fragmentation and it does not fit (each fragment protected on its own)."""
        if not self.peer_fragmentation:
            return (self.protect(exchange, message_id, response, payloads),)
        assert self.sk_out is not None
        family = 6 if self.remote[0].version == 6 else 4
        limit = self.conn.fragment_size or max_ike_size(family, self.local[1])
        header = self._header(exchange, message_id, response)
        return tuple(fragment_message(header, payloads, self.sk_out, self.random_bytes, limit))

    def protect(
        self, exchange: int, message_id: int, response: bool, payloads: Sequence[Payload]
    ) -> bytes:
        assert self.sk_out is not None
        header = self._header(exchange, message_id, response)
        first, plain = encode_payloads(list(payloads))
        body_length = self.sk_out.body_length(len(plain))
        aad = sk_associated_data(header, first, body_length)
        return aad + self.sk_out.protect(aad, plain, self.random_bytes)

    def open(self, raw: bytes, message: Message, now: float) -> tuple[Payload, ...] | None:
        """The inner payloads of an SK message, or of a reassembled set of SKF fragments
        (RFC 7383 §2.6; None while fragments are missing). Raises IntegrityError/DecodeError."""
        last = message.payloads[-1] if message.payloads else None
        if isinstance(last, SkfPayload):
            assert self.sk_in is not None
            reassembler = self.fragments_in.get(message.header.is_response)
            if reassembler is None:  # strongSwan's max_packet bounds a reassembled message too
                limit = self.host.max_packet if self.host is not None else 65535
                reassembler = Reassembler(max_bytes=limit)
                self.fragments_in[message.header.is_response] = reassembler
            payloads = reassembler.add(raw, message, self.sk_in, now)
            if payloads is not None and self.intermediate is not None:
                assert reassembler.completed is not None
                self.intermediate.received(message.header, *reassembler.completed)
            return payloads
        return self.unprotect(raw, message)

    def unprotect(self, raw: bytes, message: Message) -> tuple[Payload, ...]:
        """Verify and decrypt the SK payload; raises IntegrityError or DecodeError."""
        assert self.sk_in is not None
        sk = message.payloads[-1] if message.payloads else None
        if not isinstance(sk, SkPayload):
            from ..errors import DecodeError

            raise DecodeError("message has no SK payload as its last payload", len(raw))
        aad = raw[: len(raw) - len(sk.body)]
        plain = self.sk_in.unprotect(aad, sk.body)
        if self.intermediate is not None:  # RFC 9242 §3.3.2 authenticates this plaintext
            self.intermediate.received(message.header, sk.inner_next_payload, plain)
        return decode_payloads(sk.inner_next_payload, plain, len(aad))

    # --- sending
    def send(self, data: bytes) -> None:
        self.outbox.datagrams.append(Datagram(data, self.remote, self.local, self.tcp is not None))

    def emit(self, event: Event) -> None:
        self.outbox.events.append(event)

    def start_exchange(self, exchange: Exchange, now: float) -> None:
        """Queue an exchange; it starts when the request window has room for it (§2.3)."""
        self.queue.append(exchange)
        self.pump(now)
        self.touch()

    def pump(self, now: float) -> None:
        """Start queued exchanges, in order, while the window takes the first of them."""
        while (
            self.queue
            and self.requests.can_start(self.queue[0])
            and self.keys is not None
            and self.state in (IkeState.INIT_SENT, IkeState.ESTABLISHED)
        ):
            exchange = self.queue.popleft()
            payloads = exchange.build_i(self, now)
            if self.closed:
                return
            if payloads is None:
                continue
            message_id = self.requests.allocate()
            packets = self.protect_all(exchange.exchange_type, message_id, False, payloads)
            self.requests.sent(message_id, packets, now, exchange)
            for packet in packets:
                self.send(packet)

    def respond(
        self, exchange: int, message_id: int, payloads: Sequence[Payload]
    ) -> tuple[bytes, ...]:
        packets = self.protect_all(exchange, message_id, True, payloads)
        self.responses.answered(message_id, packets)
        self.send_reply(packets)
        return packets

    def send_reply(self, packets: Sequence[bytes]) -> None:
        """§2.11: a response goes to the address and port its request came from."""
        remote, local = self.reply_path or (self.remote, self.local)
        for packet in packets:
            self.outbox.datagrams.append(Datagram(packet, remote, local, self.tcp is not None))

    # --- timers
    def deadline(self) -> float | None:
        """The next instant a timer of this SA can act. Lifetimes and liveness only count while
        they can act (an established SA not yet replaced): a deadline the timer handler would
        not consume must never be returned, or the manager would spin on it."""
        candidates = [d for d in (self.requests.deadline(), self.rekeyed_at) if d is not None]
        if self.state is IkeState.ESTABLISHED and self.rekeyed_at is None:
            candidates += [
                d
                for d in (self.dpd_due, self.rekey_at, self.reauth_at, self.expire_at)
                if d is not None
            ]
            for child in self.children:
                candidates += [d for d in (child.rekey_at, child.expire_at) if d is not None]
        if self.state in (IkeState.INIT_DONE, IkeState.CREATED):
            candidates.append(self.created_at + self.conn.timers.half_open_timeout)
        return min(candidates) if candidates else None

    def home(self) -> IkeSa:
        """Where this SA's children live now: itself, or the IKE SA a rekey moved them to. An
        exchange that ends on a replaced IKE SA puts its result there (RFC 7296 §2.18)."""
        sa = self
        while sa.successor is not None:
            sa = sa.successor
        return sa

    def touch(self) -> None:
        """Ask the manager to re-arm this SA's timer (when another SA's input changed it)."""
        if self.host is not None:
            self.host.touch_sa(self)

    def spawn(
        self,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        now: float,
        conn: ConnectionConfig | None = None,
    ) -> IkeSa:
        """A new IKE SA to this one's endpoints, of its connection unless `conn` is given (an
        IKE rekey, §2.18, or a reauthentication, §2.8.3), registered with the manager."""
        assert self.host is not None
        return self.host.spawn_sa(self, initiator, spi_i, spi_r, now, conn)

    def forget_handshake(self) -> None:
        """Once established, drop what only IKE_SA_INIT and IKE_AUTH needed (§2.15: the
        messages AUTH signs; the DH private key, which also holds OpenSSL memory)."""
        self.init_request = self.init_response = self.cookie = b""
        self.ke = None
        self.intermediate = None
        self.chosen_proposal = None

    def new_nonce(self) -> bytes:
        """A fresh nonce (RFC 7296 §2.10: at least 128 bits, half the PRF key size)."""
        source = self.env.nonce or self.random_bytes
        return source(NONCE_BYTES)

    def jitter(self, span: float) -> float:
        """A random share (0–10 %) of span, so both peers do not rekey at the same instant."""
        return span * 0.1 * int.from_bytes(self.random_bytes(2), "big") / 65535

    def child_by_spi_in(self, spi: int) -> ChildSa | None:
        return next((c for c in self.children if c.spi_in == spi), None)

    def child_by_spi_out(self, protocol: int, spi: int) -> ChildSa | None:
        return next((c for c in self.children if c.spi_out == spi and c.protocol == protocol), None)

    def arm_lifetimes(self, now: float) -> None:
        """RFC 7296 §2.8: the soft lifetime (with jitter) rekeys the IKE SA, the hard one ends.
        §2.8.3: reauth_time (with jitter) reauthenticates it; the rekey is only armed when
        rekey_time is shorter (a reauthentication makes fresh keys too; strongSwan: the earlier
        wins, and equal times reauthenticate)."""
        timers = self.conn.timers
        self.rekey_at = self.reauth_at = None
        if timers.reauth_time > 0:
            self.reauth_at = now + timers.reauth_time - self.jitter(timers.reauth_time)
        if timers.ike_rekey_time > 0 and (
            timers.reauth_time <= 0 or timers.ike_rekey_time < timers.reauth_time
        ):
            self.rekey_at = now + timers.ike_rekey_time - self.jitter(timers.ike_rekey_time)
        if timers.ike_life_time > 0:
            self.expire_at = now + timers.ike_life_time

    def inherit_reauth(self, old: IkeSa) -> None:
        """§2.8.3: rekeying the IKE SA does not reauthenticate it, so its successor keeps the
        old one's reauthentication deadline (and a reauthentication under way), and its hard
        lifetime when that lies beyond the deadline (it counts from the last authentication,
        as strongSwan's inherit_post keeps it past the reauth time): a reauthentication that
        keeps failing still ends the IKE SA, rekeys or not."""
        if old.reauth_at is None and old.reauth_by is None:
            return
        self.reauth_at, self.reauth_by = old.reauth_at, old.reauth_by
        expire = old.expire_at
        if expire is not None and (self.reauth_at is None or expire > self.reauth_at):
            self.expire_at = min(expire, self.expire_at or expire)
        rekey_later = (
            self.rekey_at is not None
            and self.reauth_at is not None
            and self.rekey_at >= self.reauth_at
        )
        if self.reauth_by is not None or rekey_later:
            self.rekey_at = None

    def established_event(
        self, remote_id: str, suite: str, rekeyed_from: int | None = None
    ) -> IkeSaEstablished:
        return IkeSaEstablished(
            ike_sa_id=self.id,
            connection=self.conn.name,
            initiator=self.initiator,
            local=self.local,
            remote=self.remote,
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            local_id=str(self.conn.local_id),
            remote_id=remote_id,
            suite=suite,
            nat_local=self.nat_local,
            nat_remote=self.nat_remote,
            rekeyed_from=rekeyed_from,
            reauth_of=self.reauth_of,
        )

    def schedule_dpd(self, now: float) -> None:
        delay = self.conn.timers.dpd_delay
        self.dpd_due = now + delay if delay > 0 and self.state is IkeState.ESTABLISHED else None
