"""A mutation fuzzer for the engine that reaches past the ICV check (issue 18).

Random mutations of an encrypted message stop at the integrity check, so they only ever test
one `if`. Here the fuzzer holds the keys of the peer it impersonates: it takes the plaintext of
real inner payload chains (recorded from two engines running IKE_AUTH, CREATE_CHILD_SA for a
child and for the IKE SA, liveness checks and deletes), mutates the plaintext, and protects it
again with the peer's SK_e/SK_a under the message ID the target expects, so that every mutated
chain is decoded, validated and acted on by the exchange code (RFC 7296 §1.3, §1.4, §2.1).

Targets (each datagram goes to one engine, which must never raise: the engines run strict, so
an internal error is an exception here):
- `auth`: the responder during IKE_AUTH (a fresh half-open IKE SA per input): identities,
  AUTH, SA, TS payloads of an unauthenticated peer;
- `request`: the responder of an established IKE SA: CREATE_CHILD_SA and INFORMATIONAL
  requests (a well-formed Delete may end the SA: the fuzzer then sets up a new one);
- `response`: the initiator of an established IKE SA, answered with mutated responses to its
  own CREATE_CHILD_SA / INFORMATIONAL requests;
- `wire`: the raw datagram (header included) against the responder, unprotected.

`Fuzzer.run(n)` returns the findings (input, target, traceback); `usable()` proves the IKE SAs
that survived still rekey.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ikev2.constants import ExchangeType
from ikev2.engine import Engine
from ikev2.engine.config import EngineConfig
from ikev2.engine.events import ChildSaEstablished, Datagram
from ikev2.engine.ike_sa import IkeSa
from ikev2.engine.state import IkeState
from ikev2.wire import Message, SkPayload, sk_associated_data

from ..engine.pairing import Pair, psk_connections, seeded_env, with_

IKE_AUTH = ExchangeType.IKE_AUTH


@dataclass(frozen=True, slots=True)
class InnerSeed:
    """The plaintext inside one real SK payload, and where it was seen."""

    exchange: int
    response: bool
    first: int  # the SK payload's Next Payload: the type of the first inner payload
    plain: bytes


@dataclass(slots=True)
class Finding:
    target: str
    data: bytes
    error: str


@contextmanager
def recording(seeds: list[InnerSeed]) -> Iterator[None]:
    """While active, every SK payload any engine decrypts is added to `seeds`."""
    original = IkeSa.unprotect

    def unprotect(self: IkeSa, raw: bytes, message: Message):  # type: ignore[no-untyped-def]
        payloads = original(self, raw, message)
        sk = message.payloads[-1]
        assert isinstance(sk, SkPayload) and self.sk_in is not None
        aad = raw[: len(raw) - len(sk.body)]
        plain = self.sk_in.unprotect(aad, sk.body)
        header = message.header
        seeds.append(InnerSeed(header.exchange, header.is_response, sk.inner_next_payload, plain))
        return payloads

    IkeSa.unprotect = unprotect  # type: ignore[method-assign]
    try:
        yield
    finally:
        IkeSa.unprotect = original  # type: ignore[method-assign]


def established_pair(seed: int, datagrams: list[bytes] | None = None) -> tuple[Pair, int]:
    conn_i, conn_r = psk_connections()
    # no fragmentation: each message is one SK payload (fragments have their own fuzz tests)
    conn_i, conn_r = with_(conn_i, fragmentation=False), with_(conn_r, fragmentation=False)
    pair = Pair(conn_i, conn_r, seed=seed)
    if datagrams is not None:

        def record(_side: object, d: Datagram) -> Datagram:
            datagrams.append(d.data)
            return d

        pair.tamper = record
    sa_id = pair.initiate()
    pair.run(until=pair.now + 5)
    return pair, sa_id


def collect_seeds(datagrams: list[bytes]) -> list[InnerSeed]:
    """Inner plaintexts of every exchange kind, both directions; every datagram into
    `datagrams`."""
    seeds: list[InnerSeed] = []
    with recording(seeds):
        pair, sa_id = established_pair(seed=11, datagrams=datagrams)
        i = pair.i.engine
        (child,) = pair.i.of(ChildSaEstablished)
        i.rekey_child(sa_id, child.spi_in, pair.now)
        pair.run(until=pair.now + 5)
        i.rekey_ike(sa_id, pair.now)
        pair.run(until=pair.now + 5)
        (new_id,) = list(i.sas)
        sa = i.sas[new_id]
        sa.last_heard = -1e9  # a liveness check (§2.4) on the next timer
        pair.run(until=pair.now + 200)
        for c in list(sa.children):
            i.terminate_child(new_id, c.spi_in, pair.now)
        pair.run(until=pair.now + 5)
        i.terminate(new_id, pair.now)
        pair.run(until=pair.now + 5)
    kinds = {(s.exchange, s.response) for s in seeds}
    assert {(ExchangeType.IKE_AUTH, False), (ExchangeType.CREATE_CHILD_SA, False)} <= kinds
    return seeds


class Mutator:
    """Byte-level mutations, biased toward the IKEv2 generic payload header (§3.2): the
    next-payload byte, the critical bit and the 16-bit payload length."""

    def __init__(self, rng: random.Random, corpus: list[bytes]) -> None:
        self.rng = rng
        self.corpus = corpus

    def mutate(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.choice((1, 1, 2, 3, 5))):
            self.rng.choice(self.OPS)(self, out)
        return bytes(out)

    def _flip(self, out: bytearray) -> None:
        if out:
            bit = self.rng.randrange(len(out) * 8)
            out[bit // 8] ^= 1 << (bit % 8)

    def _byte(self, out: bytearray) -> None:
        if out:
            out[self.rng.randrange(len(out))] = self.rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x21))

    def _length(self, out: bytearray) -> None:
        """Rewrite a payload length: walk the chain's headers, pick one, set a boundary value."""
        offsets, at = [], 0
        while at + 4 <= len(out) and len(offsets) < 32:
            offsets.append(at)
            length = int.from_bytes(out[at + 2 : at + 4], "big")
            if length < 4:
                break
            at += length
        if offsets:
            at = self.rng.choice(offsets)
            real = int.from_bytes(out[at + 2 : at + 4], "big")
            value = self.rng.choice((0, 3, 4, 5, real - 1, real + 1, real * 2, 0xFFFF))
            out[at + 2 : at + 4] = max(0, min(value, 0xFFFF)).to_bytes(2, "big")

    def _next_type(self, out: bytearray) -> None:
        if out:
            out[0] = self.rng.choice((0, 33, 35, 36, 37, 39, 40, 41, 44, 46, 47, 48, 53, 200))

    def _critical(self, out: bytearray) -> None:
        if len(out) > 1:
            out[1] ^= 0x80

    def _insert(self, out: bytearray) -> None:
        at = self.rng.randrange(len(out) + 1)
        out[at:at] = self.rng.randbytes(self.rng.choice((1, 2, 4, 8, 64)))

    def _delete(self, out: bytearray) -> None:
        if out:
            at = self.rng.randrange(len(out))
            del out[at : at + self.rng.choice((1, 2, 4, 16, 256))]

    def _splice(self, out: bytearray) -> None:
        other = self.rng.choice(self.corpus)
        if other:
            a = self.rng.randrange(len(other))
            piece = other[a : a + self.rng.randrange(1, 128)]
            at = self.rng.randrange(len(out) + 1)
            out[at:at] = piece

    OPS: tuple[Callable[[Mutator, bytearray], None], ...] = (
        _flip, _flip, _byte, _length, _length, _next_type, _critical, _insert, _delete, _splice,
    )  # fmt: skip


def forge(
    sa: IkeSa, exchange: int, message_id: int, response: bool, first: int, plain: bytes
) -> bytes:
    """A datagram from `sa` carrying `plain` as its SK payload's plaintext, correctly protected."""
    assert sa.sk_out is not None
    header = sa._header(exchange, message_id, response)
    aad = sk_associated_data(header, first, sa.sk_out.body_length(len(plain)))
    return aad + sa.sk_out.protect(aad, plain, sa.random_bytes)


@dataclass
class Fuzzer:
    seed: int = 1
    findings: list[Finding] = field(default_factory=list)
    executed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.datagrams: list[bytes] = []
        self.seeds = collect_seeds(self.datagrams)
        self.mutator = Mutator(self.rng, [s.plain for s in self.seeds])
        self.requests = [s for s in self.seeds if not s.response and s.exchange != IKE_AUTH]
        self.responses = [s for s in self.seeds if s.response and s.exchange != IKE_AUTH]
        self.auths = [s for s in self.seeds if not s.response and s.exchange == IKE_AUTH]
        self.pair, self.sa_id = established_pair(self.seed)

    # --- the established pair and its two IKE SAs
    def _sas(self) -> tuple[IkeSa, IkeSa] | None:
        i_sa = self.pair.i.engine.sas.get(self.sa_id)
        if i_sa is None or i_sa.state is not IkeState.ESTABLISHED or i_sa.requests.busy:
            return None
        if not i_sa.children or i_sa.queue:
            return None
        r_sa = self.pair.r.engine.by_spi.get(i_sa.spi_r)
        if r_sa is None or r_sa.state is not IkeState.ESTABLISHED or r_sa.requests.busy:
            return None
        return i_sa, r_sa

    def _fresh_pair(self) -> tuple[IkeSa, IkeSa]:
        """The fuzzed IKE SAs, or after a (legitimate) delete or rekey, new ones."""
        pair_sas = self._sas()
        if pair_sas is None:
            self._settle()
            pair_sas = self._sas()
        if pair_sas is None:
            self.pair, self.sa_id = established_pair(self.rng.randrange(1 << 30))
            pair_sas = self._sas()
        assert pair_sas is not None, "could not set up an IKE SA to fuzz"
        return pair_sas

    def _deliver(self, target: str, engine: Engine, data: bytes, sender: IkeSa) -> None:
        self.executed[target] = self.executed.get(target, 0) + 1
        try:
            engine.receive_datagram(data, sender.local, sender.remote, self.pair.now)
        except Exception:
            self.findings.append(Finding(target, data, traceback.format_exc()))

    # --- targets
    def fuzz_request(self) -> None:
        """A mutated CREATE_CHILD_SA / INFORMATIONAL request to the established responder."""
        i_sa, r_sa = self._fresh_pair()
        seed = self.rng.choice(self.requests)
        mid = r_sa.responses.expected_id
        data = forge(i_sa, seed.exchange, mid, False, seed.first, self.mutator.mutate(seed.plain))
        self._deliver("request", self.pair.r.engine, data, i_sa)
        # the forged request used the initiator's next message ID: keep its window in step
        i_sa.requests.next_id = max(i_sa.requests.next_id, r_sa.responses.expected_id)
        self._settle()

    def fuzz_response(self) -> None:
        """The initiator starts a child or IKE rekey; a mutated response answers it."""
        i_sa, r_sa = self._fresh_pair()
        i = self.pair.i.engine
        if self.rng.random() < 0.7:
            i.rekey_child(self.sa_id, next(iter(i_sa.children)).spi_in, self.pair.now)
        else:
            i.rekey_ike(self.sa_id, self.pair.now)
        i.datagrams_to_send()  # the real request never reaches the responder
        outstanding, pending = i_sa.requests.outstanding, i_sa.pending
        if outstanding is None or pending is None:
            return
        seed = self.rng.choice(self.responses)
        plain = self.mutator.mutate(seed.plain)
        data = forge(r_sa, pending.exchange_type, outstanding.message_id, True, seed.first, plain)
        self._deliver("response", i, data, r_sa)
        # the responder never saw the request: keep its window in step
        r_sa.responses.expected_id = max(r_sa.responses.expected_id, i_sa.requests.next_id)
        self._settle()

    def fuzz_auth(self) -> None:
        """A new half-open IKE SA at a fresh responder, and a mutated IKE_AUTH under its keys."""
        conn_i, conn_r = psk_connections()
        conn_i, conn_r = with_(conn_i, fragmentation=False), with_(conn_r, fragmentation=False)
        now = self.pair.now
        i = Engine(EngineConfig((conn_i,)), seeded_env(self.rng.randrange(1 << 30)), strict=True)
        r = Engine(EngineConfig((conn_r,)), seeded_env(self.rng.randrange(1 << 30)), strict=True)
        sa_id = i.initiate("net", now)
        for d in i.datagrams_to_send():
            r.receive_datagram(d.data, d.local, d.remote, now)
        for d in r.datagrams_to_send():
            i.receive_datagram(d.data, d.local, d.remote, now)
        i.datagrams_to_send()  # the real IKE_AUTH is dropped
        i_sa = i.sas[sa_id]
        seed = self.rng.choice(self.auths)
        data = forge(i_sa, IKE_AUTH, 1, False, seed.first, self.mutator.mutate(seed.plain))
        self._deliver("auth", r, data, i_sa)
        for d in r.datagrams_to_send():  # the answer (an error notify or IKE_AUTH's) to i
            self._deliver("auth-answer", i, d.data, r.by_spi.get(i_sa.spi_r) or i_sa)

    def fuzz_wire(self) -> None:
        """A mutated datagram of any exchange, most with the fuzzed IKE SA's SPIs."""
        i_sa, _r_sa = self._fresh_pair()
        data = bytearray(self.mutator.mutate(self.rng.choice(self.datagrams)))
        if len(data) >= 16 and self.rng.random() < 0.8:
            data[0:16] = i_sa.spi_i + i_sa.spi_r
        self._deliver("wire", self.pair.r.engine, bytes(data), i_sa)
        self._settle()

    TARGETS = ("request", "request", "response", "auth", "wire")

    def run(self, count: int) -> list[Finding]:
        handlers: dict[str, Callable[[], None]] = {
            "request": self.fuzz_request,
            "response": self.fuzz_response,
            "auth": self.fuzz_auth,
            "wire": self.fuzz_wire,
        }
        for _ in range(count):
            handlers[self.rng.choice(self.TARGETS)]()
        return self.findings

    def _settle(self) -> None:
        """Let both engines finish what the input started (timers included, 1 s of clock)."""
        for side in (self.pair.i, self.pair.r):
            side.events.clear()  # the harness's own record; would grow with the run
        try:
            self.pair.run(until=self.pair.now + 1, max_steps=2000)
        except Exception:
            self.findings.append(Finding("settle", b"", traceback.format_exc()))
            self.pair, self.sa_id = established_pair(self.rng.randrange(1 << 30))

    def usable(self) -> bool:
        """The fuzzed IKE SA (or its successor) still rekeys its child."""
        i_sa, _r_sa = self._fresh_pair()
        before = len(self.pair.i.of(ChildSaEstablished))
        self.pair.i.engine.rekey_child(self.sa_id, next(iter(i_sa.children)).spi_in, self.pair.now)
        self.pair.run(until=self.pair.now + 10)
        return len(self.pair.i.of(ChildSaEstablished)) == before + 1
