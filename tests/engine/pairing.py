"""Two engines back to back over a simulated link and clock (aioquic's roundtrip idea).

No sockets: datagrams one engine sends are handed to the other with the addresses swapped. The
link can lose, duplicate and reorder datagrams from a seeded RNG, so every run reproduces.
"""

from __future__ import annotations

import collections
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from ikev2.constants import IdType, ProtocolId
from ikev2.engine import Engine, Env
from ikev2.engine.config import (
    AuthMethodName,
    ChildConfig,
    ConnectionConfig,
    Credentials,
    EngineConfig,
    Identity,
    Mode,
    Timers,
    TrafficSelectorSpec,
)
from ikev2.engine.credentials import (
    default_identity_for_cert,
    load_certificate,
    load_private_key,
)
from ikev2.engine.events import Datagram, Event
from ikev2.engine.identity import parse_identity
from ikev2.engine.proposal_strings import parse_proposals

FIXED_NOW = datetime(2027, 6, 1, tzinfo=UTC)
ADDR_I = ipaddress.ip_address("192.0.2.1")
ADDR_R = ipaddress.ip_address("192.0.2.2")
PSK = b"a long and hard to guess secret, for tests only"


def seeded_env(
    seed: int, when: datetime = FIXED_NOW, nonces: collections.deque[bytes] | None = None
) -> Env:
    """Reproducible randomness; nonces come from `nonces` first while it has any (tests put
    chosen nonces there to decide rekey collisions)."""
    rng = random.Random(seed)
    queue = nonces if nonces is not None else collections.deque()

    def nonce(size: int) -> bytes:
        return queue.popleft() if queue else rng.randbytes(size)

    return Env(random_bytes=rng.randbytes, utc_now=lambda: when, nonce=nonce)


def fqdn(name: str) -> Identity:
    return Identity(IdType.FQDN, name.encode())


def psk_connections(
    ike: str = "aes256gcm16-prfsha256-x25519",
    esp: str = "aes256gcm16",
    *,
    mode: Mode = Mode.TUNNEL,
    protocol: ProtocolId = ProtocolId.ESP,
    addr_i: ipaddress.IPv4Address | ipaddress.IPv6Address = ADDR_I,
    addr_r: ipaddress.IPv4Address | ipaddress.IPv6Address = ADDR_R,
    net_i: str = "10.1.0.0/24",
    net_r: str = "10.2.0.0/24",
    ike_r: str | None = None,
    esp_r: str | None = None,
    psk_r: bytes = PSK,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """An initiator and a responder config that agree (unless told otherwise)."""

    def child(name: str, local: str, remote: str, esp_text: str) -> ChildConfig:
        return ChildConfig(
            name=name,
            local_ts=(TrafficSelectorSpec(ipaddress.ip_network(local)),),
            remote_ts=(TrafficSelectorSpec(ipaddress.ip_network(remote)),),
            proposals=parse_proposals(esp_text, protocol),
            mode=mode,
        )

    def conn(local_addr, remote_addr, local_id, remote_id, ike_text, child_cfg, psk):  # type: ignore[no-untyped-def]
        return ConnectionConfig(
            name="net",
            local_addrs=(local_addr,),
            remote_addrs=(remote_addr,),
            local_id=local_id,
            remote_id=remote_id,
            local_auth=Credentials(AuthMethodName.PSK, psk=psk),
            remote_auth=Credentials(AuthMethodName.PSK, psk=psk),
            ike_proposals=parse_proposals(ike_text, ProtocolId.IKE),
            children=(child_cfg,),
        )

    initiator = conn(
        addr_i,
        addr_r,
        fqdn("moon.example"),
        fqdn("sun.example"),
        ike,
        child("net", net_i, net_r, esp),
        PSK,
    )
    responder = conn(
        addr_r,
        addr_i,
        fqdn("sun.example"),
        fqdn("moon.example"),
        ike_r or ike,
        child("net", net_r, net_i, esp_r or esp),
        psk_r,
    )
    return initiator, responder


@dataclass
class Side:
    engine: Engine
    events: list[Event] = field(default_factory=list)

    def of(self, cls: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, cls)]


class Pair:
    """Initiator `i` and responder `r`, a link between them, and one simulated clock."""

    def __init__(
        self,
        conn_i: ConnectionConfig,
        conn_r: ConnectionConfig,
        *,
        seed: int = 1,
        env_i: Env | None = None,
        env_r: Env | None = None,
        engine_r: EngineConfig | None = None,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
    ) -> None:
        self.now = 0.0
        self.nonces_i: collections.deque[bytes] = collections.deque()
        self.nonces_r: collections.deque[bytes] = collections.deque()
        env_i = env_i or seeded_env(seed, nonces=self.nonces_i)
        env_r = env_r or seeded_env(seed + 1000, nonces=self.nonces_r)
        self.i = Side(Engine(EngineConfig((conn_i,)), env_i, strict=True))
        self.r = Side(Engine(engine_r or EngineConfig((conn_r,)), env_r, strict=True))
        self.link = random.Random(seed * 7919)
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.in_flight: list[tuple[Side, Datagram]] = []
        self.delivered = 0
        self.tamper: Callable[[Side, Datagram], Datagram | None] | None = None

    def initiate(self, name: str = "net") -> int:
        sa_id = self.i.engine.initiate(name, self.now)
        return sa_id

    def _collect(self) -> None:
        for side, other in ((self.i, self.r), (self.r, self.i)):
            for d in side.engine.datagrams_to_send():
                if self.tamper is not None:
                    tampered = self.tamper(side, d)
                    if tampered is None:
                        continue
                    d = tampered
                if self.link.random() < self.loss:
                    continue
                copies = 2 if self.link.random() < self.duplicate else 1
                for _ in range(copies):
                    if self.in_flight and self.link.random() < self.reorder:
                        self.in_flight.insert(self.link.randrange(len(self.in_flight)), (other, d))
                    else:
                        self.in_flight.append((other, d))

    def step(self) -> bool:
        """Deliver one datagram, or advance the clock to the next timer. False when idle."""
        self._collect()
        if self.in_flight:
            target, d = self.in_flight.pop(0)
            # the receiver sees the sender's local endpoint as remote
            target.events += target.engine.receive_datagram(d.data, d.local, d.remote, self.now)
            self.delivered += 1
            return True
        timers = [
            t for t in (self.i.engine.get_timer(), self.r.engine.get_timer()) if t is not None
        ]
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        for side in (self.i, self.r):
            side.events += side.engine.handle_timer(self.now)
        return True

    def run(self, until: float = 60.0, max_steps: int = 10_000) -> None:
        """Run until both sides are idle, or the clock passes `until`."""
        for _ in range(max_steps):
            self._collect()
            if not self.in_flight:
                timers = [
                    t
                    for t in (self.i.engine.get_timer(), self.r.engine.get_timer())
                    if t is not None
                ]
                if not timers or min(timers) > until:
                    return
            if not self.step():
                return
        raise AssertionError("pair did not settle")


def with_(conn: ConnectionConfig, **changes: object) -> ConnectionConfig:
    return replace(conn, **changes)  # type: ignore[arg-type]


PKI = Path(__file__).resolve().parents[2] / "fixtures" / "pki"


def pki_credentials(chain: str, name: str, ca: str | None = None) -> Credentials:
    """Our certificate and key from fixtures/pki/<chain>/, trusting <ca or chain>/ca.crt."""
    cert = load_certificate((PKI / chain / f"{name}.crt").read_bytes())
    key = load_private_key((PKI / chain / f"{name}.key").read_bytes())
    anchor = load_certificate((PKI / (ca or chain) / "ca.crt").read_bytes())
    return Credentials(
        AuthMethodName.PUBKEY, certs=(cert,), private_key=key, trust_anchors=(anchor,)
    )


def cert_connections(
    chain: str,
    *,
    id_kind: str = "fqdn",
    chain_i: str | None = None,
    **kwargs: object,
) -> tuple[ConnectionConfig, ConnectionConfig]:
    """A PSK pair turned into certificate authentication from fixtures/pki/<chain>/."""
    conn_i, conn_r = psk_connections(**kwargs)  # type: ignore[arg-type]
    ids = {
        "fqdn": (parse_identity("moon.ikev2.test"), parse_identity("sun.ikev2.test")),
        "ip": (
            Identity(IdType.IPV4_ADDR, ADDR_I.packed),
            Identity(IdType.IPV4_ADDR, ADDR_R.packed),
        ),
        "dn": tuple(  # the subject DNs, as strongSwan sends by default
            default_identity_for_cert(
                x509.load_pem_x509_certificate((PKI / chain / f"{name}.crt").read_bytes())
            )
            for name in ("moon", "sun")
        ),
    }
    moon, sun = ids[id_kind]
    creds_i = pki_credentials(chain_i or chain, "moon", ca=chain)
    creds_r = pki_credentials(chain, "sun")
    trust = Credentials(AuthMethodName.PUBKEY, trust_anchors=creds_r.trust_anchors)
    conn_i = replace(conn_i, local_id=moon, remote_id=sun, local_auth=creds_i, remote_auth=trust)
    conn_r = replace(conn_r, local_id=sun, remote_id=moon, local_auth=creds_r, remote_auth=trust)
    return conn_i, conn_r


def lifetime_pair(
    timers: Timers,
    child_rekey: float,
    child_life: float,
    *,
    timers_i: Timers | None = None,
    seed: int = 1,
    loss: float = 0.0,
    duplicate: float = 0.0,
    reorder: float = 0.0,
) -> Pair:
    """psk_connections with these IKE timers (timers_i: the initiator's, when they differ) and
    child lifetimes, over a link with this loss, duplication and reordering."""
    conn_i, conn_r = psk_connections()
    child_i = replace(conn_i.children[0], rekey_time=child_rekey, life_time=child_life)
    child_r = replace(conn_r.children[0], rekey_time=child_rekey, life_time=child_life)
    return Pair(
        replace(conn_i, timers=timers_i or timers, children=(child_i,)),
        replace(conn_r, timers=timers, children=(child_r,)),
        seed=seed,
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
    )


def quiescent(pair: Pair) -> bool:
    """No datagram in flight and no exchange outstanding or queued on either side."""
    if pair.in_flight:
        return False
    return all(
        not sa.requests.busy and not sa.queue
        for side in (pair.i, pair.r)
        for sa in side.engine.sas.values()
    )


def settle(pair: Pair, limit: float = 3000.0) -> None:
    """Heal the link and run until both sides are quiet (retransmit back-off can be minutes)."""
    pair.loss = pair.duplicate = pair.reorder = 0.0
    deadline = pair.now + limit
    while pair.now < deadline:
        pair.step()
        pair._collect()
        if quiescent(pair):
            return
    raise AssertionError("pair did not become quiet")
