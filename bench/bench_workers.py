"""`[daemon] workers`: does a second responder process double the capacity? (issue 17)

The load of bench_daemon.py (its config and its load generator, bench/loadgen.py: PSK + X25519
+ AES-GCM-256 handshakes with one child, in-memory kernel, WINDOW in flight, 8 source addresses
that `crc32(address) % 2` splits 4/4 over two workers) against the responder with workers = 1
and workers = 2, alternating in one run (ABBA order over `--rounds`, a fresh daemon for each
measurement), medians over the rounds.

On this 2-core machine the generator (Python too, about as much CPU per handshake as the
responder) shares the cores, so the wall-clock rate of 2 workers cannot double: the generator's
own core is not there. What can be measured honestly:

- responder CPU per handshake: utime + stime from /proc of the supervisor and every worker
  (their pids from the control socket's `stats`) over the measured handshakes; the generator's
  own CPU per handshake beside it (os.times of this process);
- capacity: handshakes per responder CPU second (1e6 / CPU µs per handshake);
- balance: each worker's share of the workers' CPU and of the new IKE SAs; `balance` = mean /
  max of the workers' CPU (1.0 = even);
- efficiency = CPU per handshake (workers=1) / CPU per handshake (workers=2): 1.0 means the
  second worker costs nothing per handshake (the hand-off of datagrams that reached the wrong
  worker, SO_REUSEPORT hashing the 4-tuple, is the expected cost);
- **scaling** (the answer to the issue) = projected rate (workers=2) / projected rate
  (workers=1), where the projected rate is the handshakes over the CPU seconds of the busiest
  process: the rate each configuration reaches when every process has a core of its own and
  the generator runs elsewhere, if CPU per handshake stays as measured. It is the generator's
  CPU subtracted: only the responder's CPU enters it. scaling = 2 x efficiency x balance
  (supervisor aside: it handles no IKE traffic). It assumes the CPU per handshake does not
  change with the rate: each worker sees half the datagrams per batch.
- the raw wall-clock ratio of handshakes/s, for the record (generator on the same cores).

`--pin` adds two pinned configurations (sched_setaffinity, inherited by the daemon and its
forked workers): the responder on cpu 0 and the generator alone on cpu 1, with workers = 1
("w1_pinned": a direct, generator-free measure of one core's rate, and a check of the
projection) and with both workers on cpu 0 ("w2_one_core": their overhead in wall-clock terms,
`one_core_ratio` = its rate / w1_pinned's). Two workers on two cores of their own with the
generator on a third need 3 cores: not measurable here, hence the projection.

`--rate R` replaces saturation by R new handshakes per second (open loop, loadgen's run_rate)
for every configuration: below saturation no process waits for a core, so CPU per handshake
and the efficiency are free of the contention of 3 busy processes on 2 cores.

Usage: .venv/bin/python bench/bench_workers.py [--count 3000] [--rounds 3] [--window 64]
       [--ports 8] [--pin] [--rate R]
The last line is one JSON object: medians per configuration over the rounds, and `ratios`:
the medians of the ratios taken within each round (`ratios_per_round`), which cancel the
machine's drift between rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

from bench_daemon import GENERATORS, WARMUP, psk_conn, write_config
from loadgen import Generator, _cpu_seconds, median, own_cpu_seconds, start_daemon, stop_daemon

from ikev2.log import configure_logging
from ikev2.service.control import request

ALL_CPUS = frozenset(os.sched_getaffinity(0))
# name -> (workers, the responder's cpus, the generator's cpus); None: unpinned
CONFIGS: dict[str, tuple[int, frozenset[int] | None, frozenset[int] | None]] = {
    "w1": (1, None, None),
    "w2": (2, None, None),
}
PINNED = {
    "w1_pinned": (1, frozenset({0}), frozenset({1})),
    "w2_one_core": (2, frozenset({0}), frozenset({1})),
}

WALL_CLOCK_RATIOS = ("wall_rate_ratio", "one_core_ratio", "w1_pinned_rate/w1_projected")


def _workers(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per worker (a workers = 1 daemon is its own single worker)."""
    return list(stats.get("workers", [stats]))


def run_once(
    workers: int,
    count: int,
    window: int = 64,
    ports: int = 8,
    responder_cpus: frozenset[int] | None = None,
    generator_cpus: frozenset[int] | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """A fresh daemon with `workers`, WARMUP then `count` measured handshakes (`window` in
    flight, or `rate` new ones per second); its figures."""
    workdir, config, control, port = write_config(workers)
    env = {**os.environ, "IKEV2_NO_UVLOOP": "1"}
    os.sched_setaffinity(0, responder_cpus or ALL_CPUS)  # the daemon and its forks inherit it
    try:
        daemon = start_daemon(config, workdir / "responder.log", env=env, timeout=15)
    finally:
        os.sched_setaffinity(0, generator_cpus or ALL_CPUS)
    generator = Generator(psk_conn(port), GENERATORS, ports)
    try:
        generator.run(WARMUP, window)
        time.sleep(0.3)
        before = request(control, {"cmd": "stats"})
        worker_pids = [w.get("pid", daemon.pid) for w in _workers(before)]
        pids = [daemon.pid] + [pid for pid in worker_pids if pid != daemon.pid]
        affinity = {pid: sorted(os.sched_getaffinity(pid)) for pid in pids}
        cpu_before = [_cpu_seconds(pid) for pid in pids]
        own_before = own_cpu_seconds()
        wall_before = time.monotonic()
        if rate is None:
            generator.run(count, window)
        else:
            generator.run_rate(count, rate, window)
        wall = time.monotonic() - wall_before
        own = own_cpu_seconds() - own_before
        cpu = [_cpu_seconds(pid) - b for pid, b in zip(pids, cpu_before, strict=True)]
        after = request(control, {"cmd": "stats"})
    finally:
        generator.close()
        stop_daemon(daemon)
        shutil.rmtree(workdir, ignore_errors=True)
    return figures(workers, count, wall, own, pids, cpu, before, after, affinity, generator)


def figures(
    workers: int,
    count: int,
    wall: float,
    own: float,
    pids: Sequence[int],
    cpu: Sequence[float],
    before: dict[str, Any],
    after: dict[str, Any],
    affinity: dict[int, list[int]],
    generator: Generator,
) -> dict[str, Any]:
    total = sum(cpu)
    # per worker: its CPU (a workers = 1 daemon: the one process) and the IKE SAs it set up
    worker_cpu = list(cpu[1:]) if workers > 1 else list(cpu)
    new_sas = [
        a["events"].get("established", 0) - b["events"].get("established", 0)
        for a, b in zip(_workers(after), _workers(before), strict=True)
    ]
    return {
        "workers": workers,
        "handshakes": count,
        "failed": generator.failed,
        "handshakes_per_second": round(count / wall, 1),
        "responder_cpu_us_per_handshake": round(total / count * 1e6, 1),
        "generator_cpu_us_per_handshake": round(own / count * 1e6, 1),
        "responder_cores_busy": round(total / wall, 2),
        "generator_cores_busy": round(own / wall, 2),
        "capacity_handshakes_per_cpu_s": round(count / total, 1),
        "projected_handshakes_per_second": round(count / max(worker_cpu), 1),
        "supervisor_cpu_s": round(cpu[0], 3) if workers > 1 else 0.0,
        "worker_cpu_share": [round(c / sum(worker_cpu), 3) for c in worker_cpu],
        "worker_ike_sa_share": [round(n / max(1, sum(new_sas)), 3) for n in new_sas],
        "balance": round(sum(worker_cpu) / len(worker_cpu) / max(worker_cpu), 3),
        "handed_off": after.get("handed_off", 0) - before.get("handed_off", 0),
        "handed_off_per_handshake": round(
            (after.get("handed_off", 0) - before.get("handed_off", 0)) / count, 3
        ),
        "handoff_dropped": after.get("handoff_dropped", 0) - before.get("handoff_dropped", 0),
        "pids": list(pids),
        "affinity": sorted({tuple(a) for a in affinity.values()}),
    }


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over the rounds (lists: the worst round's, by balance)."""
    out: dict[str, Any] = {"rounds": len(runs)}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = round(median([r[key] for r in runs]), 3)
    worst = min(runs, key=lambda r: r["balance"])
    out["worker_cpu_share_least_even"] = worst["worker_cpu_share"]
    out["worker_ike_sa_share_least_even"] = worst["worker_ike_sa_share"]
    out["affinity"] = runs[0]["affinity"]
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """w2 against w1 (and the pinned pair) from one figure per configuration."""
    one, two = summary["w1"], summary["w2"]
    projected, cpu = "projected_handshakes_per_second", "responder_cpu_us_per_handshake"
    out = {
        "scaling": two[projected] / one[projected],
        "efficiency": one[cpu] / two[cpu],
        "balance": two["balance"],
        "wall_rate_ratio": two["handshakes_per_second"] / one["handshakes_per_second"],
    }
    if "w1_pinned" in summary:
        pinned, shared = summary["w1_pinned"], summary["w2_one_core"]
        out["one_core_ratio"] = shared["handshakes_per_second"] / pinned["handshakes_per_second"]
        # the projection checked: one responder core, generator elsewhere, measured
        out["w1_pinned_rate/w1_projected"] = (
            pinned["handshakes_per_second"] / one["projected_handshakes_per_second"]
        )
    return {key: round(value, 3) for key, value in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="measured handshakes per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--ports", type=int, default=8, help="generator source ports")
    parser.add_argument("--pin", action="store_true", help="add the pinned configurations")
    parser.add_argument("--rate", type=float, help="new handshakes per second (open loop)")
    args = parser.parse_args()
    configure_logging("console", "warning")  # the generator's engine: quiet
    configs = dict(CONFIGS)
    if args.pin:
        if not {0, 1} <= ALL_CPUS:
            parser.error("--pin needs cpus 0 and 1")
        configs.update(PINNED)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # others' work on the same cores
    for round_ in range(args.rounds):
        order = list(configs) if round_ % 2 == 0 else list(reversed(configs))  # ABBA
        for name in order:
            workers, responder_cpus, generator_cpus = configs[name]
            run = run_once(workers, args.count, args.window, args.ports,
                           responder_cpus, generator_cpus, args.rate)  # fmt: skip
            runs[name].append(run)
            print(f"round {round_ + 1} {name:12} {run['handshakes_per_second']:8.1f}/s  "
                  f"responder {run['responder_cpu_us_per_handshake']:6.1f} µs/hs  "
                  f"generator {run['generator_cpu_us_per_handshake']:6.1f} µs/hs  "
                  f"cores {run['responder_cores_busy']}+{run['generator_cores_busy']}  "
                  f"worker CPU {run['worker_cpu_share']}  "
                  f"handed off/hs {run['handed_off_per_handshake']}  failed {run['failed']}",
                  flush=True)  # fmt: skip
    summary = {name: medians(found) for name, found in runs.items()}
    # the machine drifts (others' work, the host): ratios within a round, then their medians
    per_round = [
        ratios({name: found[r] for name, found in runs.items()}) for r in range(args.rounds)
    ]
    if args.rate is not None:  # every configuration ran at that rate: wall-clock ratios are 1
        for found in per_round:
            for key in WALL_CLOCK_RATIOS:
                found.pop(key, None)
    result = {
        "bench": "workers",
        "suite": "PSK/X25519/AES-GCM-256, one child, in-memory kernel, asyncio",
        "started": started,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": sorted(ALL_CPUS),
        "handshakes": args.count,
        "rounds": args.rounds,
        "window": args.window,
        "rate": args.rate,
        "generator_ports": args.ports,
        "configs": summary,
        "ratios": {key: round(median([r[key] for r in per_round]), 3) for key in per_round[0]},
        "ratios_per_round": per_round,
    }
    for key, value in result["ratios"].items():
        print(f"{key:28} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
