"""EAP-TLS (RFC 5216): type 13, TLS 1.2 with certificates on both sides.

    Type-Data:  Flags (1: L 0x80 length included, M 0x40 more fragments, S 0x20 start)
                [TLS Message Length (4), when L]  TLS data

The TLS engine is OpenSSL's, through pyOpenSSL on memory BIOs (no socket): the stdlib `ssl`
module has MemoryBIO too, but no keying-material exporter (SSL_export_keying_material), and
EAP-TLS's MSK is exactly that: RFC 5216 §2.3 Key_Material = TLS-PRF-128(master_secret,
"client EAP encryption", client.random | server.random), MSK its first 64 octets - RFC 5705's
exporter with that label and no context. `cryptography` (PyCA's, as pyOpenSSL) has no TLS.
TLS 1.3 (RFC 9190) differs in keys and the end of the conversation: capped at 1.2 here.

Certificates are checked by our own chain code (credentials.verify_chain, the IKE rules) after
the handshake, through the `check_peer` callable the IKE task gives; OpenSSL only asks for one.
TLS draws its randomness from OpenSSL, not from the engine's Env.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from OpenSSL import SSL

from .base import EapType, Outcome, Step, fail

FLAG_L, FLAG_M, FLAG_S = 0x80, 0x40, 0x20
FRAGMENT = 1024  # TLS octets per EAP-TLS packet (strongSwan's default fragment_size)
MAX_MESSAGE = 64 * 1024  # refuse to reassemble more than this
MSK_LABEL = b"client EAP encryption"  # RFC 5216 §2.3
# (leaf, intermediates) -> None when acceptable, else the reason
PeerCheck = Callable[[x509.Certificate, list[x509.Certificate]], "str | None"]


@dataclass(frozen=True, slots=True)
class TlsSetup:
    """Our certificate chain (DER, end entity first) and key, and how the peer's is judged."""

    certs: tuple[bytes, ...] = field(repr=False)
    key: Any = field(repr=False)
    check: PeerCheck = field(repr=False)


def _context(certs: tuple[bytes, ...], key: Any, server: bool) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate(x509.load_der_x509_certificate(certs[0]))
    for der in certs[1:]:
        ctx.add_extra_chain_cert(x509.load_der_x509_certificate(der))
    ctx.use_privatekey(key)
    # ask for (and insist on) the peer's certificate; verify_chain judges it afterwards
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
    ctx.set_options(SSL.OP_NO_TICKET)  # no resumption: every conversation is a full one
    # we never renegotiate, so a server without RFC 5746's extension (strongSwan's libtls) is
    # no risk: OpenSSL 3 would refuse it ("unsafe legacy renegotiation disabled")
    ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_LEGACY_SERVER_CONNECT)
    if server:
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


class _Tls:
    """A TLS 1.2 endpoint on memory BIOs plus RFC 5216 §3.1 fragmentation both ways."""

    def __init__(self, certs: tuple[bytes, ...], key: Any, server: bool, check: PeerCheck) -> None:
        self.conn = SSL.Connection(_context(certs, key, server), None)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self._check = check
        self._in = b""
        self._in_total = 0
        self._out = b""
        self.handshake_done = False
        self.checked = False
        self._sending = False  # a fragmented message of ours is part sent

    # --- fragments in
    def take(self, data: bytes) -> tuple[bool, str]:
        """One packet's Type-Data: (complete message buffered?, error)."""
        if not data:
            return False, "EAP-TLS packet without flags"
        flags, body = data[0], data[1:]
        if flags & FLAG_L:
            if len(body) < 4:
                return False, "EAP-TLS length missing"
            (total,) = struct.unpack_from("!I", body)
            body = body[4:]
            if total > MAX_MESSAGE:
                return False, f"EAP-TLS message of {total} octets"
            if not self._in:
                self._in_total = total
        self._in += body
        if len(self._in) > MAX_MESSAGE:
            return False, "EAP-TLS message too long"
        return not flags & FLAG_M, ""

    # --- TLS
    def run(self) -> str:
        """Feed the buffered message to TLS, collect what it answers; '' or the error."""
        data, self._in = self._in, b""
        try:
            if data:
                self.conn.bio_write(data)
            if not self.handshake_done:
                try:
                    self.conn.do_handshake()
                    self.handshake_done = True
                except SSL.WantReadError:
                    pass
        except SSL.Error as exc:
            self._drain()
            return f"TLS: {exc}"
        self._drain()
        if self.handshake_done and not self.checked:
            self.checked = True
            chain = self.conn.get_peer_cert_chain(as_cryptography=True) or []
            leaf = self.conn.get_peer_certificate(as_cryptography=True)
            if leaf is None:
                return "TLS peer sent no certificate"
            others = [c for c in chain if c != leaf]
            problem = self._check(leaf, others)
            if problem:
                return problem
        return ""

    def _drain(self) -> None:
        while True:
            try:
                chunk = self.conn.bio_read(65536)
            except SSL.WantReadError:
                return
            if not chunk:
                return
            self._out += chunk

    # --- fragments out
    def pending(self) -> bool:
        return bool(self._out)

    def next_fragment(self, start: bool = False) -> bytes:
        """The next packet's Type-Data: L with the length on the first fragment of a message
        that needs several, M while more follow (§3.1)."""
        chunk, rest = self._out[:FRAGMENT], self._out[FRAGMENT:]
        flags = FLAG_S if start else 0
        head = b""
        if rest and not self._sending:
            flags |= FLAG_L
            head = struct.pack("!I", len(self._out))
        self._sending = bool(rest)
        if rest:
            flags |= FLAG_M
        self._out = rest
        return bytes([flags]) + head + chunk

    def msk(self) -> bytes:
        return bytes(self.conn.export_keying_material(MSK_LABEL, 64))


ACK = bytes([0])  # an EAP-TLS packet without data: acknowledges a fragment, or ends (§2.1.3)


class TlsServer:
    eap_type = EapType.TLS

    def __init__(self, identity: bytes, certs: tuple[bytes, ...], key: Any,
                 check: PeerCheck) -> None:  # fmt: skip
        self.identity = identity
        self._tls = _Tls(certs, key, True, check)
        self._msk: bytes | None = None
        self._finished = False  # our last flight went out: the peer's ACK ends it

    def start(self, identifier: int) -> bytes:
        return bytes([FLAG_S])

    def process(self, identifier: int, data: bytes) -> Step:
        tls = self._tls
        if tls.pending():  # the peer acknowledged a fragment of ours: the next one
            if data[:1] != ACK:
                return fail("EAP-TLS: expected an acknowledgement")
            return Step(Outcome.CONTINUE, tls.next_fragment())
        if self._finished:
            if data[:1] != ACK or not tls.handshake_done:
                return fail("EAP-TLS: expected the final acknowledgement")
            self._msk = tls.msk()
            return Step(Outcome.SUCCESS)
        complete, problem = tls.take(data)
        if problem:
            return fail(problem)
        if not complete:
            return Step(Outcome.CONTINUE, ACK)
        problem = tls.run()
        if problem:
            return fail(f"EAP-TLS: {problem}")
        if not tls.pending():
            return fail("EAP-TLS: TLS has nothing to answer")
        self._finished = tls.handshake_done
        return Step(Outcome.CONTINUE, tls.next_fragment())

    def msk(self) -> bytes | None:
        return self._msk

    def peer_name(self) -> bytes:
        return self.identity


class TlsPeer:
    eap_type = EapType.TLS
    mutual = True  # the server's certificate is checked (RFC 5998 §4 lists EAP-TLS)

    def __init__(self, certs: tuple[bytes, ...], key: Any, check: PeerCheck) -> None:
        self._tls = _Tls(certs, key, False, check)
        self._started = False

    def process(self, identifier: int, data: bytes) -> Step:
        tls = self._tls
        if not data:
            return fail("EAP-TLS request without flags")
        if not self._started:
            if not data[0] & FLAG_S:
                return fail("EAP-TLS: expected the Start packet")
            self._started = True
            problem = tls.run()  # the ClientHello
            return fail(problem) if problem else Step(Outcome.CONTINUE, tls.next_fragment())
        if tls.pending():  # the server acknowledged a fragment of ours
            if data[:1] != ACK:
                return fail("EAP-TLS: expected an acknowledgement")
            return Step(Outcome.CONTINUE, tls.next_fragment())
        complete, problem = tls.take(data)
        if problem:
            return fail(problem)
        if not complete:
            return Step(Outcome.CONTINUE, ACK)
        problem = tls.run()
        if problem:
            return fail(f"EAP-TLS: {problem}")
        if tls.pending():
            return Step(Outcome.CONTINUE, tls.next_fragment())
        if tls.handshake_done:  # the server's Finished verified: acknowledge, then Success
            return Step(Outcome.SUCCESS, ACK)
        return fail("EAP-TLS: TLS has nothing to answer")

    def msk(self) -> bytes | None:
        return self._tls.msk() if self._tls.handshake_done else None
