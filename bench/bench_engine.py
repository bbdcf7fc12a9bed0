"""Two engines in one process: responder CPU per handshake and memory per established IKE SA.

PSK + x25519 + AES-GCM-256, one child, no sockets: datagrams are handed across directly, so the
figure is the engine's own cost (wire + crypto + state machine). Targets (issue 4): <= 350 µs per
responder handshake, <= 8 KiB per IKE SA with one child. The last line is one JSON object.

CPU is the median of 5 runs, each on fresh engines after a gc.collect(); it includes the cyclic
GC as the process runs it by default (reported apart: its share grows with the live objects of
both engines). Memory is what tracemalloc sees, i.e. Python objects, not OpenSSL's own
allocations (bench_daemon.py reports RSS).

    .venv/bin/python bench/bench_engine.py [--handshakes N]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikev2.engine import Engine, Env
from ikev2.engine.config import EngineConfig
from ikev2.engine.events import ChildSaEstablished
from tests.engine.pairing import psk_connections


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def handshakes(count: int, *, measure_cpu: bool) -> tuple[list[float], Engine, Engine]:
    conn_i, conn_r = psk_connections()
    initiator = Engine(EngineConfig((conn_i,)), Env(random_bytes=os.urandom))
    responder = Engine(
        EngineConfig(
            (conn_r,), cookie_threshold=count + 1, max_half_open=count + 1, block_threshold=0
        ),
        Env(random_bytes=os.urandom),
    )
    per_handshake: list[float] = []
    now = 0.0
    established = 0
    for _ in range(count):
        initiator.initiate("net", now)
        spent = 0.0
        for _round in range(2):  # IKE_SA_INIT, IKE_AUTH
            for d in initiator.datagrams_to_send():
                start = time.process_time() if measure_cpu else 0.0
                responder.receive_datagram(d.data, d.local, d.remote, now)
                out = responder.datagrams_to_send()
                if measure_cpu:
                    spent += time.process_time() - start
                for reply in out:
                    events = initiator.receive_datagram(reply.data, reply.local, reply.remote, now)
                    established += sum(isinstance(e, ChildSaEstablished) for e in events)
        per_handshake.append(spent)
        now += 0.001
    assert established == count, f"only {established} of {count} handshakes completed"
    return per_handshake, initiator, responder


RUNS = 5


class GcClock:
    """Wall time spent in the cyclic garbage collector while active (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start

    def __enter__(self) -> GcClock:
        self.seconds = 0.0
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handshakes", type=int, default=2000)
    args = parser.parse_args()
    quiet_logs()

    handshakes(100, measure_cpu=False)  # warm up caches and imports
    runs, gc_runs = [], []
    gc_clock = GcClock()
    for _ in range(RUNS):
        # the engines of the previous run are garbage (reference cycles through their SAs):
        # collect them now, or this run's handshakes would pay for it
        gc.collect()
        with gc_clock:
            samples, _i, _r = handshakes(args.handshakes, measure_cpu=True)
        runs.append(sum(samples) / len(samples) * 1e6)
        gc_runs.append(gc_clock.seconds / args.handshakes * 1e6)
        del samples, _i, _r
    cpu_us = statistics.median(runs)
    gc_us = statistics.median(gc_runs)

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _samples, initiator, responder = handshakes(args.handshakes, measure_cpu=False)
    del initiator, _samples
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_sa = used / len(responder.sas)

    print(f"handshakes per run:                {args.handshakes}")
    spread = ", ".join(f"{r:.1f}" for r in runs)
    print(f"responder CPU per handshake (µs):  {cpu_us:.1f}  (runs: {spread})")
    print(f"  of which cyclic GC, both engines: {gc_us:.1f}")
    print(f"responder bytes per IKE SA+child:  {per_sa:.0f}")
    print(
        json.dumps(
            {
                "handshakes": args.handshakes,
                "responder_cpu_us_per_handshake": round(cpu_us, 1),
                "responder_cpu_us_runs": [round(r, 1) for r in runs],
                "gc_us_per_handshake": round(gc_us, 1),
                "responder_bytes_per_ike_sa": round(per_sa),
            }
        )
    )


if __name__ == "__main__":
    main()
