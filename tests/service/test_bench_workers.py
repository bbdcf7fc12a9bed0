"""A short run of bench/bench_workers.py against the real daemon over loopback: with 2 workers
the 8 generator addresses split the new IKE SAs evenly (crc32(address) % 2 puts 4 on each),
every handshake completes, datagrams reaching the wrong worker are handed off and none is
dropped, CPU is read for the supervisor and both workers. Counts only, never times. And the
figures' arithmetic: scaling = 2 x efficiency x balance when the supervisor takes no CPU."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from bench_workers import figures, medians, ratios, run_once  # noqa: E402

from ikev2.log import configure_logging  # noqa: E402


def test_two_workers_share_the_handshakes_evenly() -> None:
    configure_logging("console", "error")  # the generator's engine: quiet
    run = run_once(workers=2, count=200, window=16)
    assert run["failed"] == 0
    assert len(run["pids"]) == 3  # the supervisor and its 2 workers
    assert run["worker_ike_sa_share"] == [0.5, 0.5]  # 4 addresses each, round-robin ports
    assert run["handed_off"] > 0  # SO_REUSEPORT hashes the 4-tuple, the owner goes by SPI
    assert run["handoff_dropped"] == 0
    assert sum(run["worker_cpu_share"]) == pytest.approx(1.0, abs=0.01)
    single = run_once(workers=1, count=100, window=16)
    assert single["failed"] == 0 and single["handed_off"] == 0
    assert single["worker_ike_sa_share"] == [1.0] and len(single["pids"]) == 1


def _run(workers: int, cpu: list[float], rate: float) -> dict[str, object]:
    new = [{"events": {"established": 500 * (i + 1)}} for i in range(workers)]
    old = [{"events": {}} for _ in range(workers)]
    stats = ({"workers": new}, {"workers": old}) if workers > 1 else (new[0], old[0])
    return figures(workers, 1000, 1000 / rate, 0.5, list(range(len(cpu))), cpu, stats[1],
                   stats[0], {}, SimpleNamespace(failed=0))  # type: ignore[arg-type]  # fmt: skip


def test_scaling_is_efficiency_times_balance_times_two() -> None:
    one = _run(1, [0.5], 900.0)  # 500 µs per handshake, one process
    two = _run(2, [0.0, 0.25, 0.375], 1200.0)  # 625 µs, workers 40 % / 60 %
    summary = {"w1": medians([one]), "w2": medians([two])}
    found = ratios(summary)
    assert found["efficiency"] == pytest.approx(0.8)
    assert found["balance"] == pytest.approx(0.3125 / 0.375, abs=1e-3)
    assert found["scaling"] == pytest.approx(2 * 0.8 * 0.3125 / 0.375, abs=1e-3)
    assert found["wall_rate_ratio"] == pytest.approx(1200 / 900, abs=1e-3)
    assert two["worker_cpu_share"] == [0.4, 0.6]
    assert two["worker_ike_sa_share"] == [0.333, 0.667]
