"""1,000 road warriors against one gateway engine: responder CPU per handshake with the
configuration payload (a virtual IPv4 and IPv6 address per client, RFC 7296 §2.19) against the
PSK baseline without it, in the same run; every client must get a distinct lease and none may
be left once they have all disconnected. The last line is one JSON object.

Two engines in one process, datagrams handed across directly (as bench_engine.py): the
initiator engine holds one connection per client identity (c0.example, c1.example, ...), the
gateway one connection with remote id %any (and, for CP, pools rw4 10.8.0.0/20, rw6 fd08::/116).

    .venv/bin/python bench/bench_remote_access.py [--clients N] [--runs R]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
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

from ikev2.constants import IdType
from ikev2.engine import Engine, Env
from ikev2.engine.config import (
    ConnectionConfig,
    EngineConfig,
    Identity,
    PoolConfig,
    TrafficSelectorSpec,
)
from ikev2.engine.events import VirtualIpsAssigned
from tests.engine.pairing import psk_connections

ip = ipaddress.ip_address
POOLS = (
    PoolConfig("rw4", ip("10.8.0.1"), ip("10.8.15.254"), dns=(ip("10.2.0.53"),)),
    PoolConfig("rw6", ip("fd08::1"), ip("fd08::fff")),
)


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def engines(clients: int, cp: bool) -> tuple[Engine, Engine, list[str]]:
    conn_i, conn_r = psk_connections()
    any_net = tuple(TrafficSelectorSpec(ipaddress.ip_network(n)) for n in ("0.0.0.0/0", "::/0"))
    behind = tuple(
        TrafficSelectorSpec(ipaddress.ip_network(n)) for n in ("10.2.0.0/24", "fd02::/64")
    )
    child_i = replace(conn_i.children[0], local_ts=any_net, remote_ts=behind)
    pool_nets = tuple(
        TrafficSelectorSpec(ipaddress.ip_network(n)) for n in ("10.8.0.0/20", "fd08::/116")
    )
    child_r = replace(conn_r.children[0], local_ts=behind, remote_ts=pool_nets)
    vips = (ip("0.0.0.0"), ip("::")) if cp else ()
    conns: list[ConnectionConfig] = []
    for n in range(clients):
        conns.append(
            replace(
                conn_i,
                name=f"c{n}",
                local_id=Identity(IdType.FQDN, f"c{n}.example".encode()),
                children=(child_i,),
                vips=vips,
            )
        )
    gateway = replace(
        conn_r,
        remote_id=None,
        children=(child_r,),
        pools=tuple(p.name for p in POOLS) if cp else (),
    )
    limits = {"cookie_threshold": clients + 1, "max_half_open": clients + 1, "block_threshold": 0}
    initiator = Engine(EngineConfig(tuple(conns)), Env(random_bytes=os.urandom))
    responder = Engine(
        EngineConfig((gateway,), pools=POOLS if cp else (), **limits),  # type: ignore[arg-type]
        Env(random_bytes=os.urandom),
    )
    return initiator, responder, [c.name for c in conns]


def deliver(initiator: Engine, responder: Engine, now: float) -> tuple[float, list[object]]:
    """Hand datagrams across until both are quiet; the responder's CPU seconds and the
    initiator's events."""
    spent, events = 0.0, []
    while True:
        sent = initiator.datagrams_to_send()
        if not sent:
            return spent, events
        for d in sent:
            start = time.process_time()
            responder.receive_datagram(d.data, d.local, d.remote, now)
            spent += time.process_time() - start
        for d in responder.datagrams_to_send():
            events += initiator.receive_datagram(d.data, d.local, d.remote, now)


def run(clients: int, cp: bool) -> dict[str, float]:
    initiator, responder, names = engines(clients, cp)
    gc.collect()
    spent = 0.0
    vips: list[tuple[object, ...]] = []
    for name in names:
        initiator.initiate(name, 0.0)
        cpu, events = deliver(initiator, responder, 0.0)
        spent += cpu
        vips += [e.vips for e in events if isinstance(e, VirtualIpsAssigned)]
    up = sum(1 for v in responder.list_sas() if v.children)
    result = {"cpu_us": spent / clients * 1e6, "established": float(up)}
    if cp:
        flat = [a for pair in vips for a in pair]
        assert len(vips) == clients and len(set(flat)) == 2 * clients, "leases not distinct"
        online = sum(p.online for p in responder.list_pools(0.0))
        assert online == 2 * clients, online
        result["distinct_leases"] = float(len(set(flat)))
    for sa_id in list(initiator.sas):
        initiator.terminate(sa_id, 1.0)
    deliver(initiator, responder, 1.0)
    assert not responder.sas, f"{len(responder.sas)} IKE SAs left on the gateway"
    if cp:
        left = sum(len(p.leases) for p in responder.list_pools(1.0))
        assert left == 0, f"{left} leases leaked"
        result["leases_left"] = float(left)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    quiet_logs()
    run(50, cp=True)  # warm up caches and imports
    psk, cp = [], []
    last: dict[str, float] = {}
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        psk.append(run(args.clients, cp=False)["cpu_us"])
        last = run(args.clients, cp=True)
        cp.append(last["cpu_us"])
    psk_us, cp_us = statistics.median(psk), statistics.median(cp)
    print(f"road warriors per run:                {args.clients}")
    print(f"gateway CPU per handshake, PSK (µs):  {psk_us:.1f}  ({len(psk)} runs)")
    print(f"  with CP, v4+v6 virtual IPs (µs):    {cp_us:.1f}")
    print(f"handshakes/s on one core: PSK {1e6 / psk_us:.0f}, with CP {1e6 / cp_us:.0f}")
    print(f"distinct leases: {last['distinct_leases']:.0f}, left after disconnect: "
          f"{last['leases_left']:.0f}")  # fmt: skip
    print(
        json.dumps(
            {
                "clients": args.clients,
                "psk_cpu_us_per_handshake": round(psk_us, 1),
                "cp_cpu_us_per_handshake": round(cp_us, 1),
                "psk_handshakes_per_s": round(1e6 / psk_us),
                "cp_handshakes_per_s": round(1e6 / cp_us),
                "distinct_leases": int(last["distinct_leases"]),
                "leases_left": int(last["leases_left"]),
            }
        )
    )


if __name__ == "__main__":
    main()
