"""A cookie-answering IKE_SA_INIT flood against one responder engine, with a legitimate initiator
connecting all along (issue 20 item 6; RFC 7296 §2.6).

The attacker answers every COOKIE (it receives at its source address), 3,000 IKE_SA_INITs a
second of virtual time for 3.5 s: enough to fill `max_half_open` = 10,000 without a per-source
cap. A legitimate initiator starts a handshake every 50 ms of the same clock. Each scenario is
run with the per-source cap on (`block_threshold` = 5, our default and strongSwan's) and off (0,
as before), in the same run:

- one source: the whole flood from one IP, which the cap is for;
- many sources: every attempt from its own IP (a botnet), which only the global cap bounds.

Reported per scenario: legitimate handshakes completed / started, the half-open table's peak,
Python memory (tracemalloc) at the peak and after the half-open timeout has passed (returned or
not), and the log lines written (rate-limited: `drop_log_lines` per reason and interval). No
sockets; datagrams are handed across, so the clock is virtual and the figures are repeatable.

    .venv/bin/python bench/bench_flood.py [--rate 3000] [--seconds 3.5]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import sys
import tracemalloc
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikev2.constants import ExchangeType
from ikev2.engine import Engine, Env
from ikev2.engine.config import EngineConfig
from ikev2.engine.events import ChildSaEstablished
from ikev2.wire import decode_message
from tests.engine.pairing import ADDR_I, ADDR_R, psk_connections, with_

LEGIT_EVERY = 0.05  # s of virtual time between the legitimate initiator's handshakes


class LineCounter:
    """A structlog processor chain end that counts the responder's lines at info level and up
    (what the daemon writes by default) instead of printing them."""

    def __init__(self) -> None:
        self.lines = 0
        self.active = False  # True while the responder engine runs

    def __call__(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        if self.active and method != "debug":
            self.lines += 1
        raise structlog.DropEvent


def attacker_address(index: int, many: bool) -> ipaddress.IPv4Address:
    base = int(ipaddress.ip_address("198.18.0.0"))  # RFC 2544 benchmarking range
    return ipaddress.IPv4Address(base + (index if many else 0))


def run(rate: int, seconds: float, *, many_sources: bool, block_threshold: int) -> dict[str, Any]:
    conn_i, conn_r = psk_connections()
    gateway = with_(conn_r, remote_addrs=())  # any source, as a road-warrior gateway
    responder = Engine(
        EngineConfig((gateway,), block_threshold=block_threshold), Env(random_bytes=os.urandom)
    )
    legit = Engine(EngineConfig((conn_i,)), Env(random_bytes=os.urandom))
    counter = LineCounter()

    def to_responder(data: bytes, remote: Any, local: Any, now: float) -> None:
        counter.active = True
        responder.receive_datagram(data, remote, local, now)
        counter.active = False

    def attacker_for(address: ipaddress.IPv4Address) -> Engine:
        """A fresh engine per attempt, so the attacker's own memory stays out of the figure."""
        _ci, conn_a = psk_connections(addr_i=ADDR_R, addr_r=address)
        conn_a = with_(conn_a, local_addrs=(address,), remote_addrs=(ADDR_R,))
        return Engine(EngineConfig((conn_a,)), Env(random_bytes=os.urandom))

    def exchange(now: float, attacker: Engine | None, address: object) -> int:
        """Move datagrams until all three sides are quiet; returns legitimate children made.
        The attacker only ever resends IKE_SA_INIT (with the COOKIE); its IKE_AUTH is dropped."""
        made = 0
        for _round in range(8):
            moved = False
            for d in responder.datagrams_to_send():
                moved = True
                if d.remote[0] == ADDR_I:
                    for event in legit.receive_datagram(d.data, d.local, d.remote, now):
                        made += isinstance(event, ChildSaEstablished)
                elif attacker is not None and d.remote[0] == address:
                    attacker.receive_datagram(d.data, d.local, d.remote, now)
            outgoing = legit.datagrams_to_send()
            if attacker is not None:
                outgoing += [
                    d
                    for d in attacker.datagrams_to_send()
                    if decode_message(d.data).header.exchange == ExchangeType.IKE_SA_INIT
                ]
            for d in outgoing:
                moved = True
                to_responder(d.data, d.local, d.remote, now)
            if not moved:
                break
        return made

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    structlog.configure(processors=[counter])
    total = int(rate * seconds)
    step = 1.0 / rate
    now, next_legit = 0.0, 0.0
    started = completed = peak_half_open = 0
    for index in range(total):
        address = attacker_address(index, many_sources)
        attacker = attacker_for(address)
        attacker.initiate("net", now)
        completed += exchange(now, attacker, address)
        if now >= next_legit:
            legit.initiate("net", now)
            started += 1
            completed += exchange(now, None, None)
            next_legit += LEGIT_EVERY
        peak_half_open = max(peak_half_open, len(responder.half_open))
        now += step
        for engine in (responder, legit):
            deadline = engine.get_timer()
            if deadline is not None and deadline <= now:
                counter.active = engine is responder
                engine.handle_timer(now)
                counter.active = False
                completed += exchange(now, None, None)
    peak_bytes = tracemalloc.get_traced_memory()[0] - base
    # after the flood: the half-open timeout passes, the table empties
    after = now + gateway.timers.half_open_timeout + 1
    responder.handle_timer(after)
    del attacker
    gc.collect()
    after_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    structlog.reset_defaults()
    return {
        "sources": "many" if many_sources else "one",
        "block_threshold": block_threshold,
        "flood_inits": total,
        "legit_started": started,
        "legit_completed": completed,
        "half_open_peak": peak_half_open,
        "half_open_after": len(responder.half_open),
        "traced_mib_peak": round(peak_bytes / 2**20, 2),
        "traced_mib_after": round(after_bytes / 2**20, 2),
        "log_lines": counter.lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=3000, help="flood IKE_SA_INITs per second")
    parser.add_argument("--seconds", type=float, default=3.5)
    args = parser.parse_args()
    rows = []
    for many in (False, True):
        for threshold in (5, 0):
            row = run(args.rate, args.seconds, many_sources=many, block_threshold=threshold)
            rows.append(row)
            print(
                f"{row['sources']:>4} source(s), block_threshold={threshold}: legit "
                f"{row['legit_completed']}/{row['legit_started']}, half-open peak "
                f"{row['half_open_peak']} -> {row['half_open_after']}, traced MiB "
                f"{row['traced_mib_peak']} -> {row['traced_mib_after']}, "
                f"{row['log_lines']} log lines"
            )
    print(json.dumps({"rate": args.rate, "seconds": args.seconds, "rows": rows}))


if __name__ == "__main__":
    main()
