"""EAP handshakes against the PSK baseline, in the same run: responder (gateway) CPU per IKE SA
with a child, for PSK, for ECDSA-P256 gateway certificate + EAP-MSCHAPv2 and + EAP-MD5 clients
(RFC 7296 §2.16: 4 and 3 IKE_AUTH rounds instead of 1), and the same with the EAP-Identity
round first (remote.eap_id = %any). Every handshake must establish on both sides.

Two engines in one process, datagrams handed across directly (as bench_engine.py), fresh
nonces and keys from os.urandom; CPU is the median over runs of the mean per handshake, counted
only while the gateway engine works. The last line is one JSON object.

    .venv/bin/python bench/bench_eap.py [--handshakes N] [--runs R]
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
from dataclasses import replace
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikev2.engine import Engine, Env
from ikev2.engine.config import ConnectionConfig, EngineConfig
from ikev2.engine.events import ChildSaEstablished
from tests.engine.pairing import psk_connections
from tests.engine.test_eap_auth import eap_connections


def scenario(name: str) -> tuple[ConnectionConfig, ConnectionConfig]:
    if name == "psk":
        return psk_connections()
    method, _, ask = name.removeprefix("eap-").partition("+")
    if ask:
        conn_i, conn_r = eap_connections(method, eap_id=b"carol", user=b"carol", ask_identity=True)
    else:
        conn_i, conn_r = eap_connections(method)
    return conn_i, conn_r


def run(name: str, count: int) -> tuple[float, int]:
    """(mean gateway CPU seconds per handshake, IKE_AUTH round trips per handshake)."""
    conn_i, conn_r = scenario(name)
    conn_i = replace(conn_i, send_initial_contact=False)
    initiator = Engine(EngineConfig((conn_i,)), Env(random_bytes=os.urandom))
    responder = Engine(
        EngineConfig((conn_r,), cookie_threshold=count + 1, max_half_open=count + 1,
                     block_threshold=0),
        Env(random_bytes=os.urandom),
    )  # fmt: skip
    spent, trips, now, established = 0.0, 0, 0.0, 0
    gc.collect()
    for _ in range(count):
        initiator.initiate("net", now)
        while True:
            out = initiator.datagrams_to_send()
            if not out:
                break
            trips += 1
            for d in out:
                start = time.process_time()
                responder.receive_datagram(d.data, d.local, d.remote, now)
                back = responder.datagrams_to_send()
                spent += time.process_time() - start
                for b in back:
                    events = initiator.receive_datagram(b.data, b.local, b.remote, now)
                    established += sum(isinstance(e, ChildSaEstablished) for e in events)
        now += 0.001
    if established != count:
        raise SystemExit(f"{name}: {established} of {count} handshakes established")
    return spent / count, trips // count - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    names = ["psk", "eap-mschapv2", "eap-md5", "eap-mschapv2+identity", "eap-md5+identity"]
    result: dict[str, object] = {"handshakes": args.handshakes, "runs": args.runs}
    samples: dict[str, list[float]] = {name: [] for name in names}
    rounds: dict[str, int] = {}
    for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits all alike
        for name in names:
            cpu, rounds[name] = run(name, args.handshakes)
            samples[name].append(cpu)
    for name in names:
        us = statistics.median(samples[name]) * 1e6
        print(f"{name:24} {us:8.1f} µs gateway CPU per handshake, {rounds[name]} IKE_AUTH "
              f"round(s), "
              f"{1e6 / us:8.0f} handshakes/s per core")  # fmt: skip
        result[name] = {"gateway_us": round(us, 1), "ike_auth_rounds": rounds[name],
                        "per_second": round(1e6 / us)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
