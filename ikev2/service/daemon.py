"""`ikev2 daemon`: startup, control commands, SIGHUP reload and SIGTERM shutdown.

Startup: the config is loaded (ConfigError stops us before anything is opened), logging set up,
the kernel chosen (kernel_choice), state left by an earlier crash flushed (flush_owned), sockets
bound, the control socket opened, trap policies installed, start_action=start connections
initiated, and one line "ikev2: listening on ..." logged.

SIGHUP (or `ikev2 reload`): the file is read again; a broken file is refused and the running
config stays. New connections are added, the SAs of removed connections are deleted with the
peer, SAs of connections still present are left alone (RFC 7296 has no notion of reloading; the
engine keeps each SA's config for its lifetime). [daemon] changes need a restart (logged).

SIGTERM/SIGINT: every IKE SA is deleted with the peer (RFC 7296 §1.4.1), we wait at most
SHUTDOWN_WAIT for the answers, remove every kernel SA/policy we installed, close and exit 0.

With `[daemon] workers = N > 1` this class also runs each forked worker (a WorkerRole is given;
workers.py is the supervisor): the kernel was chosen and flushed by the supervisor, sockets are
bound with SO_REUSEPORT, SPIs and kernel reqids carry the worker's index, datagrams of another
worker's IKE SA are handed to it (handoff.py), control requests come over the supervisor's
channel instead of the control socket, and each connection is initiated (start_action, traps,
`up`) by the worker of its peer's address (handoff.py), where that peer's IKE SAs live.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

from ..config import ServiceConfig, load_config
from ..engine import Engine
from ..engine.config import Transport
from ..engine.env import Env
from ..engine.state import IkeState
from ..errors import ConfigError, UsageError
from ..kernel import KernelError
from ..kernel.links import make_links
from ..kernel.roaming import NetlinkRoaming
from ..log import LEVELS, configure_logging, get_logger
from .channel import WorkerChannel
from .child_waits import then_children, up_child
from .control import ControlServer
from .driver import Driver
from .eap_radius import RadiusBridge
from .handoff import TaggedSpis, WorkerRole
from .kernel_apply import TRAP_BASE, KernelApplier
from .kernel_choice import KernelChoice, choose_kernel
from .keylog import KeyLog
from .metrics import Meter, MeteredDriver, MeteredTransport, MetricsServer, snapshot, to_json
from .radius import RadiusClient
from .roaming import Roamer
from .systemd import Notifier
from .tcp import TcpTransport
from .udp import UdpTransport
from .vips import make_virtual_ips

log = get_logger("ikev2.daemon")
SHUTDOWN_WAIT = 2.0
DOWN_WAIT = 10.0
# an initiator's IKE SA on its way up (an `up` joins it rather than starting another)
_INITIATING = frozenset(s.value for s in (IkeState.CREATED, IkeState.INIT_SENT, IkeState.AUTH_SENT))
GC_THRESHOLD = 50_000  # young-generation allocations between collections (CPython default 700)


@dataclass(frozen=True)
class DaemonOptions:
    """Command-line overrides of the [daemon] table."""

    config: str
    control: str | None = None
    log_format: str | None = None
    log_level: str | None = None
    key_log: str | None = None
    kernel: str | None = None
    workers: int | None = None


def apply_options(config: ServiceConfig, options: DaemonOptions) -> ServiceConfig:
    changes = {
        "control_socket": options.control,
        "log_format": options.log_format,
        "log_level": options.log_level,
        "kernel": options.kernel,
        "workers": options.workers,
    }
    overrides: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
    daemon = replace(config.daemon, **overrides)
    return replace(config, daemon=daemon)


class Daemon:
    def __init__(
        self, options: DaemonOptions, config: ServiceConfig, role: WorkerRole | None = None
    ) -> None:
        self.options = options
        self.config = config
        self.role = role  # None: the one and only process (workers = 1)
        self.channel: WorkerChannel | None = None
        self.stopping = asyncio.Event()
        self.choice: KernelChoice | None = None
        self.driver: Driver | None = None
        self.transport: UdpTransport | None = None
        self.tcp: TcpTransport | None = None  # RFC 9329, when a connection may use TCP
        self.control: ControlServer | None = None
        self.key_log: KeyLog | None = None
        self.roamer: Roamer | None = None  # MOBIKE: our addresses come and go (roaming.py)
        # sd_notify to systemd (Type=notify): the one process it watches, never a worker
        self.notifier = Notifier() if role is None else Notifier({})
        # [daemon] metrics: counted in every process; served here only without workers
        self.meter = Meter() if config.daemon.metrics is not None else None
        self.metrics: MetricsServer | None = None

    # --- lifecycle
    async def _open_radius(self, loop: asyncio.AbstractEventLoop) -> None:
        server = self.config.daemon.radius_server
        if server is None or self.driver is None:
            return
        client = RadiusClient(server, self.config.radius_secret)
        await client.open()
        self.driver.radius = RadiusBridge(client, loop, self.driver.eap_backend_answer)
        log.info("RADIUS server for EAP", server=f"{server[0]}:{server[1]}")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        settings = self.config.daemon
        role = self.role
        if role is None:
            self.choice = choose_kernel(settings.kernel)
            log_kernel_choice(self.choice)
            flush_kernel(self.choice.kernel)
        else:  # the supervisor probed and flushed once; each worker has its own adapter
            chosen = choose_kernel(role.kernel)
            self.choice = KernelChoice(chosen.kernel, chosen.name, role.kernel_reason)
        kernel = self.choice.kernel
        if self.options.key_log:
            self.key_log = KeyLog(self.options.key_log)
            log.warning("key log is ON: every SA's keys are written in clear",
                        file=self.options.key_log)  # fmt: skip
        transport_class = UdpTransport if self.meter is None else MeteredTransport
        self.transport = transport_class(loop, self._on_datagram, self._on_batch)
        if role is None:
            engine = Engine(self.config.engine)
            applier = KernelApplier(kernel, links=make_links(self.choice.name))
        else:
            spis = TaggedSpis(role.index, role.workers)
            # worker i's engine reqid r becomes kernel reqid base + (r-1)*N + i + 1, kept below
            # the trap reqids (kernel_apply.TRAP_BASE)
            engine = Engine(
                self.config.engine, Env(spi_bytes=spis), max_reqid=(TRAP_BASE - 1) // role.workers
            )
            applier = KernelApplier(kernel, reqid_stride=role.workers, reqid_offset=role.index,
                                    links=make_links(self.choice.name))  # fmt: skip
        vips = make_virtual_ips(
            self.choice.name, settings.vip_interface, settings.dns_hook, loop,
            settings.install_routes,
        )  # fmt: skip
        driver_class = Driver if self.meter is None else MeteredDriver
        self.driver = driver_class(
            engine, kernel, self.transport, loop, self.key_log, applier, vips
        )
        if self.meter is not None:
            self.transport.meter = self.driver.meter = self.meter  # type: ignore[attr-defined]
        try:
            self.transport.open(settings.addresses, settings.port, settings.nat_port, kernel,
                                reuse_port=role is not None)  # fmt: skip
            self._open_tcp(loop, kernel)
            await self._open_radius(loop)  # EAP-RADIUS (RFC 3579), when configured
            if role is None:
                self.control = ControlServer(settings.control_socket, self._handlers(worker=False),
                                             settings.tunables.control_max_clients)  # fmt: skip
                await self.control.start()
                if settings.metrics is not None:
                    self.metrics = MetricsServer(settings.metrics, self._snapshot,
                                                 lambda: self.config.engine)  # fmt: skip
                    self.metrics.start()
            else:
                role.handoff.pin(self.config.engine.connections)
                role.handoff.start(loop, self._take_over, self._on_batch)
                self.channel = WorkerChannel(role.channel, self._handlers(worker=True))
                await self.channel.start(self.stopping.set)
        except OSError as exc:
            log.error("startup failed", error=str(exc))
            await self._close()
            return 1
        with contextlib.suppress(OSError, NotImplementedError):
            loop.add_reader(kernel.fileno(), self.driver.on_kernel_readable)
        if role is None:  # RFC 4555: the initiator moves when its address goes away
            try:
                self.roamer = Roamer(self.driver, NetlinkRoaming())
                loop.add_reader(self.roamer.roaming.fileno(), self.roamer.on_readable)
            except (KernelError, OSError, NotImplementedError) as exc:
                log.warning("no address monitor; MOBIKE moves only when told", error=str(exc))
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        if role is None:
            loop.add_signal_handler(signal.SIGINT, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self._sighup)
        else:  # a terminal's ^C or a group-wide HUP reaches the supervisor, which relays it
            loop.add_signal_handler(signal.SIGINT, lambda: None)
            loop.add_signal_handler(signal.SIGHUP, lambda: None)
        self.driver.start_keepalives(settings.tunables.keep_alive)  # [daemon] keep_alive
        self._install_traps()
        loop_name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        where = ", ".join(t.describe() for t in (self.transport, self.tcp) if t is not None)
        ready = f"ikev2: listening on {where} ({loop_name} event loop)"
        if self.channel is not None:  # the supervisor writes the one ready line
            self.channel.send({"event": "ready", "listening": self.transport.describe()})
        elif LEVELS.get(settings.log_level, 20) <= 20:
            log.info(ready, control=settings.control_socket,
                     connections=[c.name for c in self.config.engine.connections])  # fmt: skip
        else:  # the ready line is a contract: always one line, whatever the log level
            print(ready, file=sys.stderr, flush=True)
        self.notifier.ready(self.status())
        self.notifier.start_watchdog()
        self.notifier.start_status(self.status)
        for name in self.config.connections_to_start():
            if self.initiates(name):
                self._start(name)
        await self.stopping.wait()
        self.notifier.stopping()
        await self.shutdown()
        return 0

    def status(self) -> str:
        """systemd's STATUS= line: where we listen and what we hold."""
        assert self.transport is not None and self.driver is not None
        views = self.driver.engine.list_sas()
        up = sum(1 for v in views if v.state == IkeState.ESTABLISHED.value)
        return (
            f"listening on {self.transport.describe()}; "
            f"{len(self.config.engine.connections)} connections, {up} IKE SAs established"
        )

    def _open_tcp(self, loop: asyncio.AbstractEventLoop, kernel: Any) -> None:
        """RFC 9329: listen on [daemon] tcp_port when a connection may run over TCP; ESP goes
        into the streams through the kernel's espintcp when the kernel is XFRM (service/tcp.py)."""
        assert self.driver is not None and self.choice is not None
        if all(c.transport is Transport.UDP for c in self.config.engine.connections):
            return
        self.tcp = TcpTransport(loop, self.driver.on_tcp_message, self._on_batch,
                                self.driver.on_tcp_change, kernel=kernel,
                                espintcp=self.choice.name == "xfrm")  # fmt: skip
        self.driver.tcp = self.tcp
        self.tcp.listen(self.config.daemon.addresses, self.config.daemon.tcp_port)

    def initiates(self, name: str) -> bool:
        """Whether this process starts connection `name` (with workers: its owner only)."""
        if self.role is None:
            return True
        conn = next((c for c in self.config.engine.connections if c.name == name), None)
        return conn is not None and self.role.owns(conn)

    def _on_datagram(self, data: bytes, remote: Any, local: Any) -> None:
        assert self.driver is not None
        if self.role is not None:
            owner = self.role.handoff.owner(data, remote)
            if owner != self.role.index:  # another worker's IKE SA (handoff.py)
                self.role.handoff.forward(owner, data, remote, local)
                return
        self.driver.on_datagram(data, remote, local)

    def _take_over(self, data: bytes, remote: Any, local: Any) -> None:
        """A datagram of one of our IKE SAs that arrived on another worker's socket."""
        assert self.driver is not None
        self.driver.on_datagram(data, remote, local)

    def _on_batch(self) -> None:
        assert self.driver is not None
        self.driver.flush()

    def _start(self, name: str, no_child: bool = False) -> int | None:
        assert self.driver is not None
        try:
            sa_id = self.driver.initiate(name, () if no_child else None)
        except (KeyError, ValueError, IndexError) as exc:
            log.error("cannot initiate", conn=name, error=str(exc))
            return None
        log.info("initiating", conn=name, ike_sa=sa_id)
        return sa_id

    def _install_traps(self) -> None:
        assert self.driver is not None
        for index, (conn, child) in enumerate(self.config.trapped_children()):
            if not self.initiates(conn.name):  # policies are global: the owner holds its traps
                continue
            try:
                reqid = self.driver.applier.install_trap(index, conn, child)
            except Exception as exc:
                log.warning("trap policy not installed", conn=conn.name, child=child.name,
                            error=str(exc))  # fmt: skip
                continue
            log.info("trap policies installed", conn=conn.name, child=child.name, reqid=reqid)

    async def delete_all(self) -> int:
        """Delete every IKE SA with its peer (§1.4.1), waiting at most SHUTDOWN_WAIT; the count
        of those left."""
        assert self.driver is not None
        ids = {v.id for v in self.driver.engine.list_sas()}
        if ids or self.role is None:
            log.info("shutting down: deleting IKE SAs with their peers", count=len(ids))
        for sa_id in ids:
            self.driver.terminate(sa_id)
        if ids:
            done = self.driver.wait_for(ids, want_up=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), SHUTDOWN_WAIT)
        return len(self.driver.engine.list_sas())

    async def shutdown(self) -> None:
        assert self.driver is not None
        left = await self.delete_all()
        sas, policies = self.driver.applier.remove_all()
        log.info("kernel state removed", sas=sas, policies=policies, ike_sas_left=left)
        if self.driver.radius is not None:
            self.driver.radius.close()
        if self.driver.vips is not None:
            self.driver.vips.remove_all()
            await self.driver.vips.close()
        await self._close()

    async def _close(self) -> None:
        loop = asyncio.get_running_loop()
        if self.driver is not None:
            self.driver.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.control is not None:
            await self.control.close()
        if self.channel is not None:
            await self.channel.close()
        if self.transport is not None:
            self.transport.close()
        if self.tcp is not None:
            self.tcp.close()
        if self.role is not None:
            self.role.handoff.close()
        if self.choice is not None:
            with contextlib.suppress(OSError, NotImplementedError, Exception):
                loop.remove_reader(self.choice.kernel.fileno())
            self.choice.kernel.close()
        if self.key_log is not None:
            self.key_log.close()
        if self.roamer is not None:
            with contextlib.suppress(OSError, NotImplementedError, Exception):
                loop.remove_reader(self.roamer.roaming.fileno())
            self.roamer.roaming.close()
        self.notifier.close()

    # --- reload
    def _sighup(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> dict[str, Any]:
        """Re-read the file, between RELOADING=1 and READY=1 for systemd."""
        self.notifier.reloading()
        try:
            return await self._reload()
        finally:
            self.notifier.ready(self.status())

    async def _reload(self) -> dict[str, Any]:
        assert self.driver is not None
        try:
            fresh = apply_options(load_config(self.options.config), self.options)
        except ConfigError as exc:
            log.error("reload refused; the running configuration stays", error=str(exc))
            return {"ok": False, "error": str(exc)}
        if fresh.daemon != self.config.daemon:
            log.warning("[daemon] settings changed; they apply after a restart")
        old = {c.name for c in self.config.engine.connections}
        new = {c.name for c in fresh.engine.connections}
        engine_config = replace(
            fresh.engine,
            cookie_threshold=self.config.engine.cookie_threshold,
            max_half_open=self.config.engine.max_half_open,
            block_threshold=self.config.engine.block_threshold,
            drop_log_lines=self.config.engine.drop_log_lines,
            drop_log_interval=self.config.engine.drop_log_interval,
            max_packet=self.config.engine.max_packet,
        )
        self.driver.engine.update_config(engine_config)
        removed = sorted(old - new)
        doomed = [v.id for v in self.driver.engine.list_sas() if v.connection in removed]
        for sa_id in doomed:
            self.driver.terminate(sa_id)
        self.driver.applier.remove_traps()
        self.config = replace(fresh, daemon=self.config.daemon)
        if self.role is not None:
            self.role.handoff.pin(self.config.engine.connections)
        self._install_traps()
        added = sorted(new - old)
        for name in self.config.connections_to_start():
            if name in added and self.initiates(name):
                self._start(name)
        log.info("configuration reloaded", added=added, removed=removed, deleted_sas=len(doomed))
        return {"ok": True, "added": added, "removed": removed, "deleted_sas": len(doomed)}

    # --- control commands
    def _handlers(self, worker: bool) -> dict[str, Any]:
        """The control commands; "drain" (delete every IKE SA) only for the supervisor's channel
        to a worker, never on the public control socket."""
        handlers = {
            "up": self._cmd_up,
            "down": self._cmd_down,
            "rekey": self._cmd_rekey,
            "redirect": self._cmd_redirect,
            "list-sas": self._cmd_list,
            "list-pools": self._cmd_pools,
            "reload": self._cmd_reload,
            "stats": self._cmd_stats,
            "metrics": self._cmd_metrics,
        }
        if worker:
            handlers["drain"] = self._cmd_drain
        return handlers

    async def _snapshot(self) -> Any:
        assert self.meter is not None and self.driver is not None and self.transport is not None
        per_child = self.config.daemon.metrics_per_child
        return snapshot(self.meter, self.driver, self.transport, per_child)

    async def _cmd_metrics(self, request: dict[str, Any]) -> dict[str, Any]:
        """This process's figures (the supervisor adds up its workers' for the endpoint)."""
        if self.meter is None:
            return {"ok": False, "error": "metrics are off ([daemon] metrics)"}
        return {"ok": True, "metrics": to_json(await self._snapshot())}

    async def _cmd_drain(self, request: dict[str, Any]) -> dict[str, Any]:
        """The supervisor's first step of a shutdown: every worker deletes its IKE SAs while all
        sockets are still open, so answers that arrive on a sibling's socket are handed over."""
        return {"ok": True, "left": await self.delete_all()}

    async def _cmd_up(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver is not None
        name = str(request.get("name", ""))
        conn = next((c for c in self.driver.engine.config.connections if c.name == name), None)
        if conn is None:
            names = ", ".join(c.name for c in self.driver.engine.config.connections)
            return {"ok": False, "error": f"no connection {name!r} (known: {names})"}
        timeout, loop, waits = (
            float(request.get("timeout", 60)),
            self.driver.loop,
            self.driver.child_waits,
        )
        if request.get("child"):  # `up CONN --child NAME`: a child under the IKE SA we hold
            child = str(request["child"])
            if child not in [c.name for c in conn.children]:
                return {"ok": False, "error": f"connection {name!r} has no child {child!r}"}
            start = functools.partial(self.driver.initiate_child, name, child)
            return await up_child(start, waits, loop, child, self._views, timeout)
        # an `up` of a connection we are already initiating joins that IKE SA and answers with
        # its result instead of starting another (an `up` after it is established still adds
        # one: tests and users rely on that to run several IKE SAs of one connection)
        joined = self._joinable(name)
        no_child = bool(request.get("no_child"))  # RFC 6023: a childless IKE SA
        sa_id = joined if joined is not None else self._start(name, no_child)
        if sa_id is None:
            return {"ok": False, "error": f"cannot initiate {name!r} (see the daemon log)"}
        children = [] if joined is not None or no_child else [c.name for c in conn.children]
        wait = waits.wait(loop, sa_id, children) if children else None
        answer = then_children(self._ike_up(sa_id, timeout), wait, waits, self._views, timeout)
        result = await answer
        return {**result, "joined": True} if joined is not None else result

    async def _ike_up(self, sa_id: int, timeout: float) -> dict[str, Any]:
        assert self.driver is not None
        future = self.driver.wait_for({sa_id}, want_up=True)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return {"ok": False, "error": f"IKE SA {sa_id} not established in time"}

    def _views(self, ids: set[int]) -> list[dict[str, Any]]:
        assert self.driver is not None
        return [v for v in self.driver.list_sas() if v["id"] in ids]

    def _joinable(self, name: str) -> int | None:
        """The IKE SA of connection `name` we are initiating (not yet established), if any."""
        assert self.driver is not None
        for view in self.driver.engine.list_sas():
            if view.connection == name and view.initiator and view.state in _INITIATING:
                return view.id
        return None

    async def _cmd_down(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver is not None
        target = str(request.get("target", ""))
        views = self.driver.engine.list_sas()
        ids = {v.id for v in views if str(v.id) == target or v.connection == target}
        if not ids:
            return {"ok": False, "error": f"no IKE SA with id or connection {target!r}"}
        future = self.driver.wait_for(ids, want_up=False)
        for sa_id in ids:
            self.driver.terminate(sa_id)
        try:
            await asyncio.wait_for(future, float(request.get("timeout", DOWN_WAIT)))
        except TimeoutError:
            return {"ok": False, "error": "the peer did not confirm the delete in time"}
        return {"ok": True, "deleted": sorted(ids)}

    async def _cmd_rekey(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver is not None
        sa_id = int(request.get("id", 0))
        child = request.get("child")
        spi = int(str(child), 16) if child is not None else None
        if not self.driver.rekey(sa_id, spi, reauth=bool(request.get("reauth"))):
            return {"ok": False, "error": f"no IKE SA {sa_id}"}
        return {"ok": True}

    async def _cmd_redirect(self, request: dict[str, Any]) -> dict[str, Any]:
        """RFC 5685 §3.6: send the peer of an established IKE SA to another gateway."""
        assert self.driver is not None
        sa_id, target = int(request.get("id", 0)), str(request.get("to", ""))
        try:
            started = self.driver.redirect(sa_id, target)
        except UsageError as exc:
            return {"ok": False, "error": str(exc)}
        if not started:
            return {"ok": False, "error": f"no established IKE SA {sa_id}"}
        return {"ok": True}

    async def _cmd_list(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver is not None
        return {"ok": True, "sas": self.driver.list_sas()}

    async def _cmd_pools(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver is not None
        return {"ok": True, "pools": self.driver.list_pools()}

    async def _cmd_reload(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.reload()

    async def _cmd_stats(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.driver is not None and self.transport is not None
        return {
            "ok": True,
            "kernel": self.choice.name if self.choice else None,
            "kernel_reason": self.choice.reason if self.choice else None,
            "events": dict(self.driver.counts),
            "ike_sas": len(self.driver.engine.sas),
            "kernel_sas": len(self.driver.applier.sas),
            "kernel_policies": len(self.driver.applier.slots),
            "sockets": {f"{s.address}:{s.port}": dict(s.stats) for s in self.transport.sockets},
            **({"tcp": dict(self.tcp.stats)} if self.tcp is not None else {}),
            **(
                {"pid": os.getpid(), "worker": self.role.index, **self.role.handoff.stats}
                if self.role is not None
                else {}
            ),
        }


def tune_gc() -> None:
    """A responder holds many long-lived objects per IKE SA and creates few reference cycles:
    collect the young generation less often and keep startup objects out of every collection
    (measured in bench/bench_daemon.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 100)


def log_kernel_choice(choice: KernelChoice) -> None:
    log.log(
        30 if choice.name == "memory" else 20,
        f"kernel: {choice.name}",
        reason=choice.reason,
        note="child SAs are recorded in memory, not installed"
        if choice.name == "memory"
        else "child SAs are installed with NETLINK_XFRM",
    )


def flush_kernel(kernel: Any) -> None:
    flushed = kernel.flush_owned()
    if any(flushed):
        log.info("removed kernel state of an earlier run", sas=flushed[0], policies=flushed[1])


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """uvloop when installed (and IKEV2_NO_UVLOOP unset), else asyncio."""
    try:
        if os.environ.get("IKEV2_NO_UVLOOP"):
            raise ImportError("IKEV2_NO_UVLOOP is set")
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)  # type: ignore[no-any-return,unused-ignore]


def run_daemon(options: DaemonOptions) -> int:
    """Load, set up logging, run until SIGTERM. ConfigError propagates (the CLI prints it).
    `[daemon] workers` > 1 forks the workers and supervises them (workers.py)."""
    config = apply_options(load_config(options.config), options)
    configure_logging(config.daemon.log_format, config.daemon.log_level)
    tune_gc()
    if config.daemon.workers > 1:
        from .workers import run_workers

        return run_workers(options, config)
    return run_loop(Daemon(options, config).run())
