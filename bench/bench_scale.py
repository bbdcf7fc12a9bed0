"""A gateway at scale: 100,000 concurrent IKE SAs, each with a child, rekeys and DPD flowing.

The responder is `ikev2 daemon` (one process, in-memory kernel, metrics on), the load generator
this process (bench/loadgen.py: one in-process initiator Engine, UDP sockets on 8 loopback
addresses standing for 8 peers). The responder's child SAs rekey every `--rekey` seconds (with
strongSwan's default rand_time, 10 % of it) and its DPD fires every `--dpd` seconds of silence
(the in-memory kernel carries no traffic, so every IKE SA is silent). The generator answers both.

Checkpoints at each `--steps` count of SAs (default 10,000 and 100,000). At each:
- RSS per IKE SA: the responder's VmRSS growth since the warm-up, per SA added;
- a hold of `--hold` seconds in which no new SA is started: the child rekeys and DPD exchanges
  the responder's own timers run (from its metrics counters) and its CPU per event;
- a burst: the generator rekeys `--burst` children picked at random (CREATE_CHILD_SA, the
  responder answering), responder CPU per event (the burst's rekeys plus its own meanwhile).
  Flat from 10k to 100k means no O(n) step per event (timers, queues, lookups);
- `ikev2 list-sas --json`: wall time and size of the answer.

At the last checkpoint also: SIGHUP-equivalent reload (`ikev2 reload`, the same path) wall time,
and SIGTERM: time until the daemon has exited, having deleted every IKE SA with its peer (the
generator counts the DELETEs it answered) and removed its kernel state. Plus the time to start
(the daemon's exec to "listening on") and the time to establish all SAs.

Usage: .venv/bin/python bench/bench_scale.py [--steps 10000,100000] [--rekey 300] [--dpd 600]
       [--hold 20] [--burst 3000] [--window 64]
The last line is one JSON object; the `*_ratio` figures are last step / first step.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench_daemon import GENERATORS, PSK, RESPONDER, psk_conn
from loadgen import ConnFactory, Generator, _cpu_seconds, rss_kib, start_daemon

from ikev2.log import configure_logging
from ikev2.service.control import request
from ikev2.service.udp import free_port_pair

WARMUP = 500
T = TypeVar("T")

CONFIG = """
[daemon]
addresses = ["{addr}"]
port = {port}
nat_port = {nat_port}
control_socket = "{control}"
kernel = "memory"
log_level = "warning"
cookie_threshold = 10000000
max_half_open = 10000000
block_threshold = 0  # 8 addresses stand for all peers
metrics = "127.0.0.1:{metrics_port}"

[connections.bench]
local_addrs = ["{addr}"]
proposals = "aes256gcm16-prfsha256-x25519"
dpd_delay = "{dpd}s"
rekey_time = 0
[connections.bench.local]
id = "responder.bench"
[connections.bench.remote]
id = "%any"
[connections.bench.children.bench]
local_ts = ["10.2.0.0/16"]
remote_ts = ["10.1.0.0/16"]
esp_proposals = "aes256gcm16"
rekey_time = "{rekey}s"

[secrets.bench]
secret = "{psk}"
"""


def generator_conn(port: int) -> ConnFactory:
    """bench_daemon's PSK initiator without INITIAL_CONTACT: all SAs share one identity, and a
    responder replaces the older SAs of a peer that says it has none (RFC 7296 §2.4)."""
    base = psk_conn(port)

    def conn(name: str, address: str, local_port: int) -> Any:
        return dataclasses.replace(base(name, address, local_port), send_initial_contact=False)

    return conn


def counters(control: str) -> dict[str, float]:
    """child rekeys and DPD exchanges so far, from the responder's metrics snapshot."""
    metrics = request(control, {"cmd": "metrics"}, timeout=60)["metrics"]
    wanted = {"child_rekeys": 0.0, "dpd_sent": 0.0}
    for name in wanted:  # {name: [[label, ..., value], ...]} (service/metrics.to_json)
        wanted[name] = float(sum(row[-1] for row in metrics.get(name, [])))
    return wanted


def while_answering(generator: Generator, call: Callable[[], T]) -> T:
    """Run a blocking call (the control socket, the CLI) in a thread while the generator keeps
    answering the responder: a generator that stops for a minute makes its peers dead (DPD)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        while not future.done():
            generator._poll(0.02)
        return future.result()


def hold(generator: Generator, seconds: float) -> None:
    """Answer the responder's rekeys and DPDs, start nothing new."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        generator._poll(0.05)


def list_sas(control: str) -> tuple[float, float, int, int]:
    """The daemon's answer to list-sas (seconds, entries), then `ikev2 list-sas --json` as a
    user runs it (seconds, bytes of output: the CLI's own start included)."""
    t0 = time.monotonic()
    entries = len(request(control, {"cmd": "list-sas"}, timeout=600)["sas"])
    t1 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "ikev2.cli", "list-sas", "--json", "--control", control],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return t1 - t0, time.monotonic() - t1, len(out), entries


def rekey_burst(generator: Generator, count: int, window: int) -> int:
    """The generator rekeys `count` children picked at random (with `window` in flight): each a
    CREATE_CHILD_SA the responder answers. Returns how many were replaced."""
    views = [v for v in generator.engine.list_sas() if v.children]
    picks = random.Random(count).sample(views, min(count, len(views)))
    todo = [(v.id, v.children[0].spi_in) for v in picks]
    inflight: list[tuple[int, int]] = []
    done = 0
    deadline = time.monotonic() + 600
    while (todo or inflight) and time.monotonic() < deadline:
        while todo and len(inflight) < window:
            sa_id, spi = todo.pop()
            generator.engine.rekey_child(sa_id, spi, time.monotonic())
            inflight.append((sa_id, spi))
        generator._poll(0.02)
        still = []
        for sa_id, spi in inflight:  # replaced once no child of that SA has the old SPI
            sa = generator.engine.sas.get(sa_id)
            if sa is not None and any(child.spi_in == spi for child in sa.children):
                still.append((sa_id, spi))
            else:
                done += 1
        inflight = still
    return done


def checkpoint(
    generator: Generator, pid: int, control: str, rss0: int, args: argparse.Namespace
) -> dict[str, Any]:
    time.sleep(0.5)
    generator._poll(0.0)
    rss = rss_kib([pid])
    # the responder's own timers at work: child rekeys and DPDs while nothing else happens
    ask = functools.partial(while_answering, generator)
    before = ask(lambda: counters(control))
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    hold(generator, args.hold)
    cpu = _cpu_seconds(pid) - cpu0
    after = ask(lambda: counters(control))
    wall = time.monotonic() - t0
    rekeys = after["child_rekeys"] - before["child_rekeys"]
    dpds = after["dpd_sent"] - before["dpd_sent"]
    # the same kind of event on demand: the generator rekeys --burst children
    b0 = ask(lambda: counters(control))
    bcpu0, bt0 = _cpu_seconds(pid), time.monotonic()
    done = rekey_burst(generator, args.burst, args.window)
    bcpu, burst_s = _cpu_seconds(pid) - bcpu0, time.monotonic() - bt0
    b1 = ask(lambda: counters(control))
    burst_events = b1["child_rekeys"] - b0["child_rekeys"] + b1["dpd_sent"] - b0["dpd_sent"]
    answer_s, cli_s, size, listed = ask(lambda: list_sas(control))
    t_metrics = time.monotonic()
    ask(lambda: counters(control))
    metrics_s = time.monotonic() - t_metrics
    stats = ask(lambda: request(control, {"cmd": "stats"}))
    return {
        "ike_sas": stats["ike_sas"],
        "kernel_sas": stats["kernel_sas"],
        "rss_kib": rss,
        "rss_bytes_per_ike_sa": round((rss - rss0) * 1024 / max(1, stats["ike_sas"] - WARMUP)),
        "hold_s": round(wall, 1),
        "hold_child_rekeys": int(rekeys),
        "hold_dpds": int(dpds),
        "hold_responder_cpu_s": round(cpu, 2),
        "hold_cpu_us_per_event": round(cpu / (rekeys + dpds) * 1e6, 1) if rekeys + dpds else None,
        "burst_rekeys_done": done,
        "burst_s": round(burst_s, 1),
        "burst_events": int(burst_events),  # ours plus the responder's own meanwhile
        "burst_cpu_us_per_event": round(bcpu / burst_events * 1e6, 1) if burst_events else None,
        "list_sas_answer_s": round(answer_s, 2),
        "list_sas_cli_s": round(cli_s, 2),
        "list_sas_bytes": size,
        "list_sas_entries": listed,
        "metrics_snapshot_s": round(metrics_s, 2),
        "sockets": stats["sockets"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10000,100000")
    parser.add_argument("--rekey", type=float, default=300.0, help="child rekey_time, s")
    parser.add_argument("--dpd", type=float, default=600.0, help="dpd_delay, s")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds per hold")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--burst", type=int, default=3000, help="child rekeys per checkpoint")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    configure_logging("console", "warning")

    workdir = Path(tempfile.mkdtemp(prefix="ikev2-scale-"))
    port = free_port_pair((RESPONDER,))
    control = str(workdir / "responder.sock")
    config = workdir / "responder.toml"
    config.write_text(CONFIG.format(addr=RESPONDER, port=port, nat_port=port + 1,
                      control=control, psk=PSK, rekey=args.rekey, dpd=args.dpd,
                      metrics_port=free_port_pair(("127.0.0.1",)) + 2))  # fmt: skip
    log_path = workdir / "responder.log"
    t_exec = time.monotonic()
    daemon = start_daemon(config, log_path, timeout=600)
    result: dict[str, Any] = {"bench": "scale", "rekey_time_s": args.rekey, "dpd_s": args.dpd}
    try:
        result["start_s"] = round(time.monotonic() - t_exec, 2)
        generator = Generator(generator_conn(port), GENERATORS, 8)
        generator.run(WARMUP, args.window)
        time.sleep(0.3)
        rss0 = rss_kib([daemon.pid])
        points = []
        t_up = time.monotonic()
        for step in steps:
            generator.run(step - generator.established, args.window, timeout=3600)
            up = time.monotonic() - t_up
            point = checkpoint(generator, daemon.pid, control, rss0, args)
            point["establish_s_cumulative"] = round(up, 1)
            print(json.dumps(point), flush=True)
            points.append(point)
            t_up += time.monotonic() - t_up - up  # establishment time only
        result["points"] = points
        result["failed"] = generator.failed
        t0 = time.monotonic()
        answer = while_answering(
            generator, lambda: request(control, {"cmd": "reload"}, timeout=600)
        )
        result["reload_s"] = round(time.monotonic() - t0, 2)
        result["reload_ok"] = bool(answer.get("ok"))
        # SIGTERM: the daemon deletes every IKE SA with its peer; keep answering the DELETEs
        sas_before = len(generator.engine.sas)
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        while daemon.poll() is None and time.monotonic() - t0 < 900:
            generator._poll(0.05)
        result["sigterm_exit_s"] = round(time.monotonic() - t0, 2)
        result["sigterm_returncode"] = daemon.returncode
        hold(generator, 1.0)
        result["generator_sas_before_sigterm"] = sas_before
        result["generator_sas_left_after_sigterm"] = len(generator.engine.sas)
        text = log_path.read_text()
        result["responder_log_errors"] = sum(
            1 for line in text.splitlines() if "error" in line.lower()
        )
        first, last = points[0], points[-1]
        for key in ("burst_cpu_us_per_event", "hold_cpu_us_per_event"):
            if first[key] and last[key]:
                result[f"{key}_ratio"] = round(last[key] / first[key], 2)
        result["list_sas_answer_us_per_sa_ratio"] = round(
            (last["list_sas_answer_s"] / last["list_sas_entries"])
            / (first["list_sas_answer_s"] / first["list_sas_entries"]),
            2,
        )
        result["load_average"] = os.getloadavg()
        print(json.dumps(result))
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


if __name__ == "__main__":
    main()
