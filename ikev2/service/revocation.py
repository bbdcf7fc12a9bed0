"""Fetching what the engine's revocation checks ask for (engine/revocation.py): CRLs over HTTP
(RFC 5280 §4.2.1.13 distribution points) and OCSP over HTTP (RFC 6960 Appendix A.1: a POST of
the DER request, Content-Type application/ocsp-request).

The engine emits a RevocationFetch event and holds the IKE_AUTH it concerns; this fetches in a
worker thread (urllib; a fetch never blocks the event loop) with a timeout and a size cap, and
hands the bytes, or None on any failure, back through `done` on the loop thread, where the
driver calls Engine.revocation_fetched. One fetch per URI (and certificate, for OCSP) at a time.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ..engine.revocation import RevocationFetch
from ..log import get_logger

log = get_logger("ikev2.service")
FETCH_TIMEOUT = 5.0  # s per HTTP fetch (the engine counts an unanswered one failed after 10 s)
MAX_BYTES = 4 << 20  # a CRL or OCSP answer larger than this is refused
USER_AGENT = "ikev2-revocation/1"

Done = Callable[[RevocationFetch, bytes | None], None]


def ocsp_request(request: RevocationFetch) -> bytes:
    """The DER OCSP request about request.cert (CertID with SHA-1, RFC 6960 §4.1.1)."""
    cert = x509.load_der_x509_certificate(request.cert)
    issuer = x509.load_der_x509_certificate(request.issuer)
    built = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    return built.public_bytes(serialization.Encoding.DER)


def http_fetch(request: RevocationFetch, timeout: float = FETCH_TIMEOUT) -> bytes | None:
    """Blocking: the body of a 200 answer, or None (logged). Runs in a worker thread."""
    headers = {"User-Agent": USER_AGENT}
    body = None
    if request.kind == "ocsp":
        body = ocsp_request(request)
        headers["Content-Type"] = "application/ocsp-request"
    http = urllib.request.Request(request.uri, data=body, headers=headers)
    try:
        with urllib.request.urlopen(http, timeout=timeout) as answer:
            data: bytes = answer.read(MAX_BYTES + 1)
            status = answer.status
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("revocation fetch failed", kind=request.kind, uri=request.uri,
                    error=type(exc).__name__, detail=str(exc)[:200])  # fmt: skip
        return None
    if status != 200 or len(data) > MAX_BYTES:
        log.warning("revocation fetch refused", kind=request.kind, uri=request.uri,
                    status=status, size=len(data))  # fmt: skip
        return None
    log.info("revocation fetched", kind=request.kind, uri=request.uri, size=len(data))
    return data


class RevocationFetcher:
    """Runs fetches off the loop and reports each on it (`done`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fetch: Callable[[RevocationFetch], bytes | None] = http_fetch,
    ) -> None:
        self.loop = loop
        self.fetch = fetch
        self.in_flight: set[tuple[str, ...]] = set()
        self.fetched = 0  # answers handed back (tests, metrics)

    def start(self, request: RevocationFetch, done: Done) -> None:
        key = request.key
        if key in self.in_flight:
            return
        self.in_flight.add(key)
        future = self.loop.run_in_executor(None, self.fetch, request)

        def finished(f: asyncio.Future[bytes | None]) -> None:
            self.in_flight.discard(key)
            self.fetched += 1
            data = None if f.cancelled() or f.exception() is not None else f.result()
            done(request, data)

        future.add_done_callback(finished)
