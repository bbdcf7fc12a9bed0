"""`[daemon] workers = N` (N > 1): one responder process per core on the same UDP ports.

A Python responder is bound by one core (DESIGN.md §4), so the daemon forks N workers that each
bind port and nat_port with SO_REUSEPORT; the kernel spreads incoming datagrams over their
sockets by a hash of the 4-tuple. Each worker is a whole Daemon (daemon.py) with its own engine,
kernel adapter and timers; an IKE SA lives in the worker that allocated its SPI, and datagrams
that land on another worker are handed over (handoff.py).

The parent (this module's Supervisor) handles no IKE traffic. Before forking it loads the config,
probes the kernel once (kernel_choice.py) and flushes what an earlier run left (flush_owned), and
creates the hand-off sockets and one control channel per worker (channel.py). Then it serves the
control socket and routes:

  up NAME          the connection's worker: the one of its peer's address, which also makes
                   its start_action and trap SAs and gets that peer's own IKE_SA_INIT requests
  down ID          the owner of the IKE SA; `down NAME`: every worker, merged
  rekey ID         the owner
  redirect ID      the owner (RFC 5685 §3.6)
  list-sas, stats  every worker, merged ("worker" names the owner of each IKE SA)
  reload, SIGHUP   every worker re-reads the file

IKE SA ids are made unique across workers: worker i's local id n is shown as (n-1)*N + i + 1,
so ids stay small integers and `down ID` finds its owner as (ID-1) % N.

SIGTERM/SIGINT: every worker first deletes its IKE SAs with the peers (RFC 7296 §1.4.1) while
all sockets are still open ("drain": a Delete's answer may arrive on a sibling's socket), then
its channel is closed and it removes its kernel state and exits; the parent exits 0 when all
exited 0 (a SIGTERM sent to the whole process group, as systemd does, ends the same way). A
worker that dies on its own (non-zero status or a signal) is logged and the daemon stops with
exit status 1: its
IKE SAs are gone and the kernel now hashes its peers onto the other sockets, so a restart would
not bring them back; the service manager (systemd Restart=on-failure) restarts the daemon.
If the parent dies, the workers see end of file on their channel and shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import replace
from typing import Any

import structlog

from ..config import ServiceConfig, load_config
from ..log import LEVELS, get_logger
from .channel import SupervisorChannel
from .control import ControlServer
from .daemon import SHUTDOWN_WAIT, Daemon, DaemonOptions, flush_kernel, log_kernel_choice, run_loop
from .handoff import HandOff, WorkerRole, connection_worker, make_channels
from .kernel_choice import KernelChoice, choose_kernel
from .metrics import MetricsServer, Snapshot, from_json, merge
from .systemd import Notifier

log = get_logger("ikev2.workers")
READY_WAIT = 30.0
EXIT_WAIT = 10.0


def global_id(local: int, index: int, workers: int) -> int:
    return (local - 1) * workers + index + 1


def split_id(number: int, workers: int) -> tuple[int, int]:
    """(worker index, local id) of a daemon-wide IKE SA id."""
    return (number - 1) % workers, (number - 1) // workers + 1


def run_workers(options: DaemonOptions, config: ServiceConfig) -> int:
    """Fork the workers, then supervise them until SIGTERM; the exit status."""
    count = config.daemon.workers
    choice = choose_kernel(config.daemon.kernel)
    log_kernel_choice(choice)
    flush_kernel(choice.kernel)
    choice.kernel.close()  # a netlink socket must not be shared across fork: each worker opens one
    handoffs = make_channels(count)
    controls = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
    pids: dict[int, int] = {}
    for index in range(count):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _worker_main(index, options, config, choice, handoffs, controls)
        pids[pid] = index
    for send, receive in handoffs:
        send.close()
        receive.close()
    for _ours, theirs in controls:
        theirs.close()
    supervisor = Supervisor(options, config, pids, [ours for ours, _ in controls])
    return run_loop(supervisor.run())


def _worker_main(
    index: int,
    options: DaemonOptions,
    config: ServiceConfig,
    choice: KernelChoice,
    handoffs: list[tuple[socket.socket, socket.socket]],
    controls: list[tuple[socket.socket, socket.socket]],
) -> None:
    """The forked child: never returns."""
    code = 1
    try:
        structlog.contextvars.bind_contextvars(worker=index)
        for number, (ours, theirs) in enumerate(controls):
            ours.close()
            if number != index:
                theirs.close()
        role = WorkerRole(
            index, len(controls), choice.name, choice.reason, controls[index][1],
            HandOff.for_worker(index, handoffs),
        )  # fmt: skip
        code = run_loop(Daemon(options, config, role).run())
    except BaseException:
        with contextlib.suppress(Exception):
            log.exception("worker failed")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Supervisor:
    def __init__(
        self,
        options: DaemonOptions,
        config: ServiceConfig,
        pids: dict[int, int],
        sockets: list[socket.socket],
    ) -> None:
        self.options = options
        self.config = config
        self.pids = dict(pids)  # live workers: pid -> index
        self.workers = len(sockets)
        self.links = [SupervisorChannel(i, sock) for i, sock in enumerate(sockets)]
        self.stopping = asyncio.Event()
        self.all_exited = asyncio.Event()
        self.closing = False
        self.code = 0
        self.control: ControlServer | None = None
        self.pidfds: dict[int, int] = {}  # pid -> pidfd, while the worker lives
        self.notifier = Notifier()  # systemd watches the supervisor (the main PID)
        self.metrics: MetricsServer | None = None
        self.listening = "?"

    # --- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # a pidfd per worker becomes readable when it exits: works on asyncio and uvloop alike
        # (uvloop keeps SIGCHLD for itself)
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                fd = os.pidfd_open(pid)
                self.pidfds[pid] = fd
                loop.add_reader(fd, self._reap)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        self._reap()  # a worker may have died before the handler was installed
        for link in self.links:
            await link.start()
        readies = [link.ready for link in self.links if link.ready is not None]
        try:
            answers = await asyncio.wait_for(asyncio.gather(*readies), READY_WAIT)
        except TimeoutError:
            log.error("workers did not start in time", wait=READY_WAIT)
            answers = []
            self.code = 1
        if self.code == 0 and all(a.get("event") == "ready" for a in answers):
            await self._serve(answers[0].get("listening", "?"))
        else:
            self.code = 1
        await self.shutdown()
        return self.code

    async def _serve(self, listening: str) -> None:
        settings = self.config.daemon
        try:
            self.control = ControlServer(settings.control_socket, self._handlers(),
                                         settings.tunables.control_max_clients)  # fmt: skip
            await self.control.start()
            if settings.metrics is not None:  # one endpoint: the workers' figures added up
                self.metrics = MetricsServer(settings.metrics, self._metrics,
                                             lambda: self.config.engine)  # fmt: skip
                self.metrics.start()
        except OSError as exc:
            log.error("startup failed", error=str(exc))
            self.code = 1
            return
        ready = (
            f"ikev2: listening on {listening} ({self.workers} workers, SO_REUSEPORT, "
            f"pids {' '.join(str(p) for p in sorted(self.pids))})"
        )
        if LEVELS.get(settings.log_level, 20) <= 20:
            log.info(ready, control=settings.control_socket)
        else:  # the ready line is a contract: always one line, whatever the log level
            print(ready, file=sys.stderr, flush=True)
        self.listening = listening
        self.notifier.ready(self.status())
        self.notifier.start_watchdog()
        self.notifier.start_status(self.status)
        await self.stopping.wait()
        self.notifier.stopping()

    def status(self) -> str:
        """systemd's STATUS= line."""
        return (
            f"listening on {self.listening}; {len(self.config.engine.connections)} connections, "
            f"{len(self.pids)} of {self.workers} workers running"
        )

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self.pids.pop(pid, None)
            fd = self.pidfds.pop(pid, None)
            if fd is not None:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if not self.closing and code == 0:  # an orderly stop: SIGTERM sent to the whole group
                log.warning("worker stopped; stopping the daemon", worker=index, pid=pid)
                self.stopping.set()
            elif not self.closing:
                log.error("worker exited; stopping the daemon", worker=index, pid=pid,
                          status=code)  # fmt: skip
                self.code = 1
                self.stopping.set()
            elif code != 0:
                log.warning("worker exited with an error", worker=index, pid=pid, status=code)
                self.code = 1
        if not self.pids:
            self.all_exited.set()

    async def shutdown(self) -> None:
        """Drain every worker (delete IKE SAs with peers), then let them exit (end of file)."""
        self.closing = True
        live = [link for link in self.links if link.alive]
        log.info("stopping workers", count=len(live))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(link.call({"cmd": "drain"}) for link in live)),
                SHUTDOWN_WAIT + 3.0,
            )
        for link in self.links:
            await link.close()
        try:
            await asyncio.wait_for(self.all_exited.wait(), EXIT_WAIT)
        except TimeoutError:
            for pid, index in list(self.pids.items()):
                log.error("worker did not exit; killed", worker=index, pid=pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.code = 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_exited.wait(), 2.0)
        if self.metrics is not None:
            self.metrics.close()
        if self.control is not None:
            await self.control.close()
        self.notifier.close()
        log.info("all workers stopped", status=self.code)

    def _sighup(self) -> None:
        asyncio.get_running_loop().create_task(self._cmd_reload({"cmd": "reload"}))

    # --- control commands
    def _handlers(self) -> dict[str, Any]:
        return {
            "up": self._cmd_up,
            "down": self._cmd_down,
            "rekey": self._cmd_rekey,
            "redirect": self._cmd_rekey,  # the same routing: the owner of the IKE SA
            "list-sas": self._cmd_list,
            "reload": self._cmd_reload,
            "stats": self._cmd_stats,
        }

    async def _all(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(link.call(request) for link in self.links)))

    def _sas(self, index: int, sas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {**sa, "id": global_id(sa["id"], index, self.workers), "worker": index} for sa in sas
        ]

    async def _cmd_up(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("name", ""))
        conn = next((c for c in self.config.engine.connections if c.name == name), None)
        index = connection_worker(conn, self.workers) if conn is not None else 0
        answer = await self.links[index].call(request)
        if "sas" in answer:
            answer["sas"] = self._sas(index, answer["sas"])
        return answer

    async def _cmd_down(self, request: dict[str, Any]) -> dict[str, Any]:
        target = str(request.get("target", ""))
        if target.isdigit() and int(target) > 0:
            index, local = split_id(int(target), self.workers)
            answer = await self.links[index].call({**request, "target": str(local)})
            if "deleted" in answer:
                answer["deleted"] = [global_id(i, index, self.workers) for i in answer["deleted"]]
            if not answer.get("ok") and "no IKE SA" in str(answer.get("error")):
                answer["error"] = f"no IKE SA with id or connection {target!r}"
            return answer
        answers = await self._all(request)
        deleted = sorted(
            global_id(i, index, self.workers)
            for index, answer in enumerate(answers)
            for i in answer.get("deleted", [])
        )
        failed = [a for a in answers if not a.get("ok") and "no IKE SA" not in str(a.get("error"))]
        if failed:
            return {"ok": False, "error": failed[0].get("error"), "deleted": deleted}
        if not deleted:
            return answers[0]
        return {"ok": True, "deleted": deleted}

    async def _cmd_rekey(self, request: dict[str, Any]) -> dict[str, Any]:
        number = int(request.get("id", 0))
        if number < 1:
            return {"ok": False, "error": f"no IKE SA {number}"}
        index, local = split_id(number, self.workers)
        answer = await self.links[index].call({**request, "id": local})
        error = str(answer.get("error", ""))
        if not answer.get("ok") and error.endswith(f"IKE SA {local}"):
            # the id the user gave, not the worker's
            answer["error"] = error.removesuffix(str(local)) + str(number)
        return answer

    async def _cmd_list(self, request: dict[str, Any]) -> dict[str, Any]:
        sas = []
        for index, answer in enumerate(await self._all(request)):
            if not answer.get("ok"):
                return answer
            sas += self._sas(index, answer.get("sas", []))
        return {"ok": True, "sas": sorted(sas, key=lambda sa: sa["id"])}

    async def _cmd_reload(self, request: dict[str, Any]) -> dict[str, Any]:
        """Every worker re-reads the file, between RELOADING=1 and READY=1 for systemd."""
        self.notifier.reloading()
        try:
            return await self._reload(request)
        finally:
            self.notifier.ready(self.status())

    async def _reload(self, request: dict[str, Any]) -> dict[str, Any]:
        answers = await self._all(request)
        bad = [a for a in answers if not a.get("ok")]
        if bad:  # every worker read the same file: they refuse it alike
            return bad[0]
        first = answers[0]
        try:  # the workers read it fine; `up` routes by it
            fresh = load_config(self.options.config)
            self.config = replace(fresh, daemon=self.config.daemon)
        except Exception as exc:  # changed again since the workers read it
            log.warning("supervisor kept its configuration: `up` routes by the old one",
                        error=str(exc))  # fmt: skip
        return {**first, "deleted_sas": sum(a.get("deleted_sas", 0) for a in answers)}

    async def _metrics(self) -> Snapshot:
        """Every live worker's snapshot over its channel, added up (service/metrics.py)."""
        answers = await asyncio.gather(
            *(link.call({"cmd": "metrics"}) for link in self.links if link.alive)
        )
        return merge(from_json(a["metrics"]) for a in answers if a.get("ok"))

    async def _cmd_stats(self, request: dict[str, Any]) -> dict[str, Any]:
        answers = await self._all(request)
        total: dict[str, Any] = {"ok": all(a.get("ok") for a in answers), "pid": os.getpid()}
        total["kernel"] = answers[0].get("kernel")
        total["kernel_reason"] = answers[0].get("kernel_reason")
        events: dict[str, int] = {}
        for answer in answers:
            for key, value in answer.get("events", {}).items():
                events[key] = events.get(key, 0) + value
        total["events"] = events
        for key in ("ike_sas", "kernel_sas", "kernel_policies", "handed_off", "taken_over",
                    "handoff_dropped"):  # fmt: skip
            total[key] = sum(a.get(key, 0) for a in answers)
        total["workers"] = answers
        return total
