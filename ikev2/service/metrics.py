"""Prometheus metrics (`[daemon] metrics = "127.0.0.1:9507"`, off by default).

What is measured, and from where (never from engine internals):
- engine views (Engine.list_sas()): IKE SAs by connection and state, child SAs, and per
  configured connection/child a 0/1 "up" gauge (0 while configured but down: what to alert on);
- events the engine hands the service (Driver.apply): handshakes by result and role, failures by
  reason (the RFC 7296 §3.10.1 notify, or timeout), IKE and child rekeys, reauthentications;
- the datagrams we send (the IKE header and the first octets, read like a capture would):
  retransmits (a request sent again byte for byte, §2.1), liveness checks (an INFORMATIONAL
  request whose SK payload carries nothing, §1.4/§2.4), COOKIEs demanded (§2.6);
- the kernel adapter's SA counters (get_sa_counters): bytes and packets per child SA direction,
  unless `[daemon] metrics_per_child = false` (a gateway with many SAs: 400,000 series at
  100,000 children, seconds per scrape; without them a scrape only counts the SAs);
- the UDP sockets' rx/tx/dropped counters.

Workers: the lead process aggregates. Each process keeps its figures as a Snapshot (plain dicts of
label tuples to numbers); with `workers = N` the supervisor serves the endpoint and asks every
worker for its snapshot over the existing worker channel (the "metrics" command), then adds them
up. prometheus-client's multiprocess mode was not used: it shares only counters/gauges written
through mmap files, while most of ours are computed from engine views at scrape time (custom
collectors are not supported there), and it needs a directory cleaned at each start.

The HTTP server is prometheus-client's (a thread); its collector hands the work to the event
loop (run_coroutine_threadsafe), so engine state is only ever read on the loop's thread.
"""

from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..constants import ExchangeType, IpProto, NotifyType, PayloadType
from ..engine.config import ChildConfig, EngineConfig
from ..engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    Datagram,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
)
from ..engine.views import IkeSaView
from ..kernel import Kernel, KernelError
from ..log import get_logger
from .driver import Driver
from .udp import UdpTransport

log = get_logger("ikev2.metrics")
SCRAPE_WAIT = 5.0
REQUEST_CACHE = 65536  # IKE SAs whose last request we remember for retransmit detection
_HEADER = struct.Struct("!8s8sBBBBII")  # RFC 7296 §3.1
_RESPONSE = 0x20
# how each process's figures add up (the default is the sum): every worker has the whole pool
MERGE_MAX = frozenset({"pool_size"})
_EXCHANGES = {int(e): e.name.lower() for e in ExchangeType}
COOKIE = struct.pack("!H", NotifyType.COOKIE)  # the first notify's type, at offset 34 (§3.10)

Labels = tuple[str, ...]
Snapshot = dict[str, dict[Labels, float]]

# name -> (kind, help, label names); counters get "_total" in the exposition
METRICS: dict[str, tuple[str, str, Labels]] = {
    "ike_sas": ("gauge", "IKE SAs by connection and state", ("connection", "state")),
    "child_sas": ("gauge", "Installed child SAs by connection and child", ("connection", "child")),
    "connection_up": ("gauge", "1 if the configured connection has an established IKE SA, "
                      "else 0", ("connection",)),
    "child_up": ("gauge", "1 if the configured child has an installed child SA, else 0",
                 ("connection", "child")),
    "handshakes": ("counter", "IKE SA handshakes completed or failed",
                   ("connection", "role", "result")),
    "handshake_failures": ("counter", "Failed IKE SA setups by reason (notify or timeout)",
                           ("connection", "reason")),
    "child_failures": ("counter", "Child SAs refused or failed by reason", ("connection", "child",
                       "reason")),
    "ike_rekeys": ("counter", "IKE SAs rekeyed (RFC 7296 §2.18)", ("connection",)),
    "child_rekeys": ("counter", "Child SAs rekeyed (RFC 7296 §2.8)", ("connection", "child")),
    "reauths": ("counter", "IKE SAs reauthenticated (RFC 7296 §2.8.3)", ("connection",)),
    "ike_sas_deleted": ("counter", "IKE SAs deleted (rekeyed ones apart)", ("connection",)),
    "retransmits": ("counter", "Requests sent again (RFC 7296 §2.1)", ("exchange",)),
    "dpd_sent": ("counter", "Liveness checks sent (empty INFORMATIONAL, RFC 7296 §2.4)", ()),
    "dead_peers": ("counter", "IKE SAs deleted because the peer stopped answering (§2.4)",
                   ("connection",)),
    "cookies_sent": ("counter", "IKE_SA_INIT answered with a COOKIE demand (RFC 7296 §2.6)", ()),
    "requests_sent": ("counter", "IKE requests sent for the first time", ("exchange",)),
    "udp_datagrams": ("counter", "UDP datagrams by socket and direction", ("socket", "direction")),
    "child_bytes": ("counter", "Bytes through a child SA (kernel counters)",
                    ("connection", "child", "spi_in", "direction")),
    "child_packets": ("counter", "Packets through a child SA (kernel counters)",
                      ("connection", "child", "spi_in", "direction")),
    "pool_size": ("gauge", "Addresses in a virtual IP pool", ("pool",)),
    "pool_leases": ("gauge", "Leases of a pool: online (its client is connected) or offline "
                    "(reserved for its client during the grace time)", ("pool", "state")),
}  # fmt: skip


def failure_reason(reason: str, notify: NotifyType | None) -> str:
    """A small, fixed set of label values: the error notify's name, or timeout, or other."""
    if notify is not None:
        return notify.name.lower()
    text = reason.lower()
    if "retransmit" in text or "timeout" in text or "timed out" in text or "no response" in text:
        return "timeout"
    return "other"


class Meter:
    """One process's service counters: fed by the driver's events and our outgoing datagrams."""

    def __init__(self) -> None:
        self.counters: Snapshot = {
            name: {} for name, spec in METRICS.items() if spec[0] == "counter"
        }
        self._last_request: OrderedDict[bytes, tuple[int, set[int]]] = OrderedDict()
        # IKE SA id -> child name -> inbound SPIs; by IKE SA so that a rekey or a delete touches
        # only that SA's children (a scan of all of them per event was O(SAs): issue 17)
        self._live: dict[int, dict[str, set[int]]] = {}
        self._roles: dict[int, str] = {}

    def add(self, name: str, labels: Labels = (), value: float = 1) -> None:
        table = self.counters[name]
        table[labels] = table.get(labels, 0) + value

    # --- events (RFC 7296 §1.3, §2.8)
    def events(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, IkeSaEstablished):
                role = "initiator" if event.initiator else "responder"
                self._roles[event.ike_sa_id] = role
                if event.rekeyed_from is not None:  # its children move over (§2.18)
                    self.add("ike_rekeys", (event.connection,))
                    moved = self._live.pop(event.rekeyed_from, None)
                    if moved:
                        self._live.setdefault(event.ike_sa_id, {}).update(moved)
                else:
                    self.add("handshakes", (event.connection, role, "established"))
                    if event.reauth_of is not None:
                        self.add("reauths", (event.connection,))
            elif isinstance(event, IkeSaFailed):
                role = self._roles.pop(event.ike_sa_id, "responder")
                self.add("handshakes", (event.connection, role, "failed"))
                reason = failure_reason(event.reason, event.notify)
                self.add("handshake_failures", (event.connection, reason))
                self._forget(event.ike_sa_id)
            elif isinstance(event, IkeSaDeleted):
                self._roles.pop(event.ike_sa_id, None)
                if event.reason != "rekeyed":
                    self.add("ike_sas_deleted", (event.connection,))
                if "peer dead" in event.reason or "did not answer" in event.reason:
                    self.add("dead_peers", (event.connection,))
                self._forget(event.ike_sa_id)
            elif isinstance(event, ChildSaEstablished):
                live = self._live.setdefault(event.ike_sa_id, {}).setdefault(event.child, set())
                if live:  # another SA of the same child still in place: this one replaces it
                    self.add("child_rekeys", (event.connection, event.child))
                live.add(event.spi_in)
            elif isinstance(event, ChildSaDeleted):
                self._live.get(event.ike_sa_id, {}).get(event.child, set()).discard(event.spi_in)
            elif isinstance(event, ChildSaFailed):
                reason = failure_reason(event.reason, event.notify)
                self.add("child_failures", (event.connection, event.child, reason))

    def initiated(self, sa_id: int) -> None:
        """An IKE SA we start (`up`, start_action, a trap): its failures are an initiator's."""
        self._roles[sa_id] = "initiator"

    def _forget(self, sa_id: int) -> None:
        self._live.pop(sa_id, None)

    # --- datagrams we send (RFC 7296 §3.1 header; §3.10 notify; §3.14 SK)
    def sent(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            return
        spi_i, spi_r, first, _version, exchange, flags, mid, _length = _HEADER.unpack_from(data)
        name = _EXCHANGES.get(exchange) or str(exchange)
        if flags & _RESPONSE:
            cookie = exchange == ExchangeType.IKE_SA_INIT and first == PayloadType.NOTIFY
            if cookie and len(data) >= 36 and data[34:36] == COOKIE:
                self.add("cookies_sent")
            return
        key = spi_i + spi_r
        digest = hash(data)  # only compared with our own earlier sends: no adversary here
        # RFC 7383 §2.5: a fragmented message is several SKF datagrams; count it by its first
        later_fragment = first == PayloadType.SKF and data[32:34] != b"\x00\x01"
        last = self._last_request.get(key)
        if last is not None and last[0] == mid and digest in last[1]:
            if not later_fragment:
                self.add("retransmits", (name,))
            return
        if last is not None and last[0] == mid and later_fragment:
            last[1].add(digest)
            return
        self._last_request[key] = (mid, {digest})
        self._last_request.move_to_end(key)
        if len(self._last_request) > REQUEST_CACHE:
            self._last_request.popitem(last=False)
        self.add("requests_sent", (name,))
        empty_sk = first == PayloadType.SK and len(data) > _HEADER.size and data[28] == 0
        if exchange == ExchangeType.INFORMATIONAL and empty_sk:
            self.add("dpd_sent")


class MeteredTransport(UdpTransport):
    """The UDP transport, telling the meter about every datagram it sends."""

    meter: Meter

    def send(self, datagram: Datagram) -> bool:
        self.meter.sent(datagram.data)
        return super().send(datagram)


class MeteredDriver(Driver):
    """The driver, telling the meter about every batch of events before acting on them."""

    meter: Meter

    def apply(self, events: list[Event]) -> None:
        self.meter.events(events)
        super().apply(events)

    def initiate(self, name: str, children: tuple[ChildConfig, ...] | None = None) -> int:
        sa_id = super().initiate(name, children)
        self.meter.initiated(sa_id)
        return sa_id

    def initiate_child(self, name: str, child: str) -> int:
        known = set(self.engine.sas)
        sa_id = super().initiate_child(name, child)
        if sa_id not in known:  # a new IKE SA carries the child
            self.meter.initiated(sa_id)
        return sa_id


# --------------------------------------------------------------------------- snapshots


def child_traffic(kernel: Kernel, views: Iterable[IkeSaView]) -> Snapshot:
    """child_bytes and child_packets of every child SA direction the kernel has, by
    (connection, child, inbound SPI, "in"/"out"); SAs it does not know (yet) are left out."""
    nbytes: dict[Labels, float] = {}
    packets: dict[Labels, float] = {}
    for view in views:
        for child in view.children:
            proto = IpProto.ESP if child.protocol == "ESP" else IpProto.AH
            for direction, dst, spi in (
                ("in", view.local[0], child.spi_in),
                ("out", view.remote[0], child.spi_out),
            ):
                try:
                    counters = kernel.get_sa_counters(dst, spi, proto)
                except (KernelError, KeyError, OSError, NotImplementedError):
                    continue  # not installed (yet), or the adapter keeps no counters
                labels = (view.connection, child.name, f"{child.spi_in:08x}", direction)
                nbytes[labels] = float(counters.bytes)
                packets[labels] = float(counters.packets)
    return {"child_bytes": nbytes, "child_packets": packets}


def snapshot(
    meter: Meter, driver: Driver, transport: UdpTransport, per_child: bool = True
) -> Snapshot:
    """This process's figures now: the meter's counters plus gauges from the engine. With
    `per_child` (`[daemon] metrics_per_child`) also child_bytes/child_packets, one series per
    child SA direction from the kernel's counters; without, the SAs are only counted (no view per
    SA, no kernel call per child: issue 17, seconds per scrape at 100,000 SAs)."""
    out: Snapshot = {name: dict(table) for name, table in meter.counters.items()}
    if per_child:
        views = driver.engine.list_sas()
        out.update(child_traffic(driver.kernel, views))
        ike: dict[Labels, float] = {}
        children: dict[Labels, float] = {}
        for view in views:
            key = (view.connection, view.state)
            ike[key] = ike.get(key, 0) + 1
            if view.state == "established":
                for child in view.children:
                    ckey = (view.connection, child.name)
                    children[ckey] = children.get(ckey, 0) + 1
    else:
        counted_ike, counted_children = driver.engine.count_sas()
        ike = {key: float(n) for key, n in counted_ike.items()}
        children = {key: float(n) for key, n in counted_children.items()}
    out["ike_sas"], out["child_sas"] = ike, children
    out["pool_size"], out["pool_leases"] = {}, {}
    for pool in driver.engine.list_pools(driver.loop.time()):
        out["pool_size"][(pool.name,)] = float(pool.size)
        out["pool_leases"][(pool.name, "online")] = float(pool.online)
        out["pool_leases"][(pool.name, "offline")] = float(pool.offline)
    udp = out["udp_datagrams"] = {}
    for sock in transport.sockets:
        where = f"{sock.address or '*'}:{sock.port}"
        for direction, value in sock.stats.items():
            udp[(where, direction)] = float(value)
    return out


def to_json(snap: Snapshot) -> dict[str, list[list[Any]]]:
    return {name: [[*labels, value] for labels, value in table.items()] for name, table in
            snap.items()}  # fmt: skip


def from_json(data: dict[str, Any]) -> Snapshot:
    return {name: {tuple(row[:-1]): float(row[-1]) for row in rows} for name, rows in data.items()}


def merge(snaps: Iterable[Snapshot]) -> Snapshot:
    """Add up every process's figures (each IKE SA and child SA lives in exactly one)."""
    total: Snapshot = {}
    for snap in snaps:
        for name, table in snap.items():
            into = total.setdefault(name, {})
            for labels, value in table.items():
                if name in MERGE_MAX:
                    into[labels] = max(into.get(labels, value), value)
                else:
                    into[labels] = into.get(labels, 0) + value
    return total


def families(snap: Snapshot, config: EngineConfig) -> Iterator[Metric]:
    """The metric families of a (merged) snapshot, with the 0/1 gauges of every configured
    connection and child."""
    up: dict[Labels, float] = {}
    child_up: dict[Labels, float] = {}
    established = snap.get("ike_sas", {})
    children = snap.get("child_sas", {})
    for conn in config.connections:
        up[(conn.name,)] = 1.0 if established.get((conn.name, "established"), 0) > 0 else 0.0
        for child in conn.children:
            child_up[(conn.name, child.name)] = (
                1.0 if children.get((conn.name, child.name)) else 0.0
            )
    snap = {**snap, "connection_up": up, "child_up": child_up}
    for name, (kind, text, labels) in METRICS.items():
        family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = family_type(f"ikev2_{name}", text, labels=list(labels))
        for values, value in sorted(snap.get(name, {}).items()):
            family.add_metric(list(values), value)
        yield family


class _Collector(Collector):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        source: Callable[[], Awaitable[Snapshot]],
        config: Callable[[], EngineConfig],
    ) -> None:
        self.loop, self.source, self.config = loop, source, config

    def collect(self) -> Iterator[Metric]:  # runs on the HTTP server's thread
        future = asyncio.run_coroutine_threadsafe(_call(self.source), self.loop)
        try:
            snap = future.result(SCRAPE_WAIT)
        except Exception as exc:
            log.warning("metrics scrape failed", error=str(exc) or type(exc).__name__)
            future.cancel()
            return
        yield from families(snap, self.config())


async def _call(source: Callable[[], Awaitable[Snapshot]]) -> Snapshot:
    return await source()


class MetricsServer:
    """The endpoint: GET http://ADDRESS:PORT/metrics."""

    def __init__(
        self,
        address: tuple[str, int],
        source: Callable[[], Awaitable[Snapshot]],
        config: Callable[[], EngineConfig],
    ) -> None:
        self.address = address
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(asyncio.get_running_loop(), source, config))
        self._server: Any = None
        self._thread: Any = None

    def start(self) -> None:
        """Bind (OSError when the port is taken: a startup failure like the IKE ports)."""
        host, port = self.address
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        log.info("metrics endpoint", url=f"http://{_url_host(host)}:{port}/metrics")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
