"""Responder CPU per handshake: the post-quantum hybrid (x25519 + ML-KEM-768 in one
IKE_INTERMEDIATE, RFC 9370) next to classic x25519, in the same run (issue 15).

Two engines in one process, PSK, AES-GCM-256, one child, no sockets, as bench_engine.py does:
the figure is the engine's own cost. Runs alternate between the suites so both see the same
machine load; each figure is the median of the runs. The last line is one JSON object.

    .venv/bin/python bench/bench_hybrid.py [--handshakes N] [--runs R]
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
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikev2.engine import Engine, Env
from ikev2.engine.config import EngineConfig
from ikev2.engine.events import ChildSaEstablished
from tests.engine.pairing import psk_connections

SUITES = {
    "classic": "aes256gcm16-prfsha256-x25519",
    "hybrid": "aes256gcm16-prfsha256-x25519-ke1_mlkem768",
}


def handshakes(ike: str, count: int) -> float:
    """Mean responder CPU seconds per handshake over `count` handshakes."""
    conn_i, conn_r = psk_connections(ike)
    initiator = Engine(EngineConfig((conn_i,)), Env(random_bytes=os.urandom))
    limits = {"cookie_threshold": count + 1, "max_half_open": count + 1, "block_threshold": 0}
    responder = Engine(EngineConfig((conn_r,), **limits), Env(random_bytes=os.urandom))
    spent, established, now = 0.0, 0, 0.0
    for _ in range(count):
        initiator.initiate("net", now)
        pending = initiator.datagrams_to_send()
        while pending:  # IKE_SA_INIT, [IKE_INTERMEDIATE,] IKE_AUTH
            out = []
            for d in pending:
                start = time.process_time()
                responder.receive_datagram(d.data, d.local, d.remote, now)
                replies = responder.datagrams_to_send()
                spent += time.process_time() - start
                for reply in replies:
                    events = initiator.receive_datagram(reply.data, reply.local, reply.remote, now)
                    established += sum(isinstance(e, ChildSaEstablished) for e in events)
                out += initiator.datagrams_to_send()
            pending = out
        now += 0.001
    assert established == count, f"{ike}: only {established} of {count} handshakes completed"
    return spent / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for ike in SUITES.values():
        handshakes(ike, 50)  # warm up caches and imports
    runs: dict[str, list[float]] = {name: [] for name in SUITES}
    for _ in range(args.runs):
        for name, ike in SUITES.items():
            gc.collect()
            runs[name].append(handshakes(ike, args.handshakes) * 1e6)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for name, ike in SUITES.items():
        spread = ", ".join(f"{r:.1f}" for r in runs[name])
        print(f"{name:8} {ike:45} {medians[name]:7.1f} µs  (runs: {spread})")
    ratio = medians["hybrid"] / medians["classic"]
    print(f"hybrid / classic: {ratio:.2f}")
    print(
        json.dumps(
            {
                "handshakes": args.handshakes,
                "responder_cpu_us": {k: round(v, 1) for k, v in medians.items()},
                "runs": {k: [round(r, 1) for r in v] for k, v in runs.items()},
                "hybrid_over_classic": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
