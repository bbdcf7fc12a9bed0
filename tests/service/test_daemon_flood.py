"""A short, bounded run of bench/bench_daemon_flood.py against the real daemon over loopback:
forged IKE_SA_INITs from a raw socket (many source addresses, 2 s), then oversized datagrams,
then a half-open IKE_AUTH flood, each while a legitimate initiator connects. Asserted are counts,
never times: COOKIEs switch on at cookie_threshold and then answer the flood, the half-open table
stays bounded, every legitimate handshake completes, oversized datagrams are dropped unread,
the daemon's RSS stays bounded, and its log stays short (rate-limited drop lines)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from bench_daemon_flood import Responder, phase  # noqa: E402

from ikev2.log import configure_logging  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets (forged sources) need root"),
]


def args(**changes: object) -> argparse.Namespace:
    base = dict(rate=10000.0, seconds=2.0, size=60000, sources=40, window=40, message=30000,
                legit_rate=10.0, legit_wait=60.0, settle=0.0)  # fmt: skip
    base.update(changes)
    return argparse.Namespace(**base)


def test_floods_against_the_real_daemon_stay_bounded() -> None:
    configure_logging("console", "error")  # the legitimate initiator's engine: quiet
    responder = Responder('half_open_timeout = "30s"')
    try:
        init = phase("init", args(), responder)
        big = phase("big", args(rate=2000.0), responder)
        auth = phase("auth", args(), responder)
        cookie_at = responder.first_cookie_at()
        log = responder.log_path.read_text()
    finally:
        responder.stop()
    print(init, big, auth, sep="\n", file=sys.stderr)

    assert init["attacker"]["sent"] >= 5000
    assert cookie_at == 30  # [daemon] cookie_threshold, the default
    assert init["cookies_sent"] >= 1000  # the flood was answered with COOKIEs, not SAs
    # forged sources never return a COOKIE: the table holds the first 30 and legitimate ones
    assert init["half_open_at_end_of_flood"] <= 30 + 10
    for result in (init, big, auth):
        assert result["legit_established"] == result["legit_started"] > 0, result
    assert big["attacker"]["sent"] >= 1000 and big["daemon_rx"] > 0
    assert "datagram over max_packet" in log
    # the IKE_AUTH flood holds at most block_threshold (5) half-open SAs per source
    assert 0 < auth["half_open_at_end_of_flood"] - init["half_open_after_settle"] <= 40 * 5 + 10
    assert auth["attacker"]["reached_auth"] > 0
    for result in (init, big, auth):
        before, peak, _after = result["rss_kib"]
        assert peak - before < 32 * 1024, result
    # rate-limited drop lines: tens of thousands of datagrams, a few hundred lines at most
    assert len(log.splitlines()) < 1000
