"""`[daemon] metrics_per_child` (issue 17): on, a scrape reads a view of every IKE SA and the
kernel's counters of every child SA (child_bytes/child_packets, one series per SA direction); off,
it only counts the SAs: the aggregate series are the same, the per-child ones are gone, and no
view is built (at 100,000 SAs the views alone took seconds per scrape)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ikev2.config import parse_config
from ikev2.constants import IpProto
from ikev2.engine import Engine
from ikev2.engine.events import ChildSaEstablished
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.kernel_apply import KernelApplier
from ikev2.service.metrics import Meter, snapshot

from .daemons import side_config


def gateway() -> tuple[Engine, InMemoryKernel]:
    """moon initiates to sun twice (two IKE SAs with a child each); sun's children installed in
    an in-memory kernel that then carries traffic."""
    moon_cfg = parse_config(side_config("moon", 500, "/x.sock"), Path("/x/moon.toml")).engine
    sun_cfg = parse_config(side_config("sun", 500, "/x.sock"), Path("/x/sun.toml")).engine
    moon, sun = Engine(moon_cfg), Engine(sun_cfg)
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    for _ in range(2):
        moon.initiate("net", 0.0)
        for _ in range(4):
            for src, dst in ((moon, sun), (sun, moon)):
                for d in src.datagrams_to_send():
                    for event in dst.receive_datagram(d.data, d.local, d.remote, 0.0):
                        if dst is sun and isinstance(event, ChildSaEstablished):
                            applier.child_established(event)
    for view in sun.list_sas():
        kernel.add_traffic(view.local[0], view.children[0].spi_in, IpProto.ESP, 1400)
    return sun, kernel


def take(engine: Any, kernel: InMemoryKernel, per_child: bool) -> dict[str, Any]:
    driver: Any = SimpleNamespace(engine=engine, kernel=kernel, loop=SimpleNamespace(time=float))
    transport: Any = SimpleNamespace(sockets=[])
    return snapshot(Meter(), driver, transport, per_child)


class NoViews:
    """The engine, failing the test if a view of its SAs is asked for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list_sas(self) -> Any:
        raise AssertionError("a view of every SA built with metrics_per_child = false")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def test_the_switch_changes_the_exported_series() -> None:
    engine, kernel = gateway()
    full = take(engine, kernel, per_child=True)
    assert len(full["child_bytes"]) == 4  # 2 child SAs, in and out
    assert all(len(labels) == 4 for labels in full["child_bytes"])  # ..., spi_in, direction
    assert sorted(full["child_bytes"].values()) == [0, 0, 1400, 1400]
    aggregate = take(NoViews(engine), kernel, per_child=False)
    assert not aggregate.get("child_bytes") and not aggregate.get("child_packets")  # no series
    assert aggregate["ike_sas"] == full["ike_sas"] == {("net", "established"): 2}
    assert aggregate["child_sas"] == full["child_sas"] == {("net", "net"): 2}
    assert {k: v for k, v in full.items() if not k.startswith("child_")} == {
        k: v for k, v in aggregate.items() if not k.startswith("child_")
    }


def test_the_setting_is_read() -> None:
    path = Path("/x/ikev2.toml")
    assert parse_config("", path).daemon.metrics_per_child is True  # the default: as before
    off = parse_config("[daemon]\nmetrics_per_child = false\n", path)
    assert off.daemon.metrics_per_child is False
