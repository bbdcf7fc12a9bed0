"""The Prometheus endpoint, scraped for real over HTTP from running daemons: gauges from engine
views (IKE SAs, child SAs, 0/1 per configured connection and child), counters from events and
from the datagrams sent (handshakes, failures by reason, rekeys, retransmits, liveness checks,
COOKIEs), kernel SA counters per child, and with workers one endpoint adding up every process."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ikev2.config import load_config, parse_config
from ikev2.constants import IpProto, NotifyType
from ikev2.engine import Engine
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished
from ikev2.errors import ConfigError
from ikev2.kernel.memory import InMemoryKernel
from ikev2.service.control import request
from ikev2.service.kernel_apply import KernelApplier
from ikev2.service.metrics import (
    METRICS,
    Meter,
    child_traffic,
    failure_reason,
    from_json,
    merge,
    to_json,
)
from ikev2.service.udp import free_port_pair

from .daemons import MOON, PSK, SUN, Daemon, side_config, wait_until
from .test_remote_access import CLIENT, GATEWAY

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


LOST = """
[connections.lost]
local_addrs = ["127.0.0.1"]
remote_addrs = ["127.0.0.3"]
local_port = {port}
remote_port = {port}
retransmit_timeout = "0.2s"
retransmit_base = 1.5
retransmit_tries = 2
[connections.lost.local]
auth = "psk"
id = "moon.example"
[connections.lost.remote]
auth = "psk"
id = "sun.example"
[connections.lost.children.lost]
local_ts = ["10.9.1.0/24"]
remote_ts = ["10.9.2.0/24"]
"""


@contextlib.asynccontextmanager
async def metered_pair(sun_extra: str = "") -> AsyncIterator[tuple[Daemon, Daemon, int, int, int]]:
    workdir = Path(tempfile.mkdtemp(prefix="ikev2m-"))
    port = free_port_pair((MOON, SUN))
    ports = {"moon": free_tcp_port(), "sun": free_tcp_port()}
    daemons = {}
    for side in ("sun", "moon"):
        control = str(workdir / f"{side}.sock")
        text = side_config(side, port, control, extra=LOST.format(port=port) if side == "moon"
                           else "")  # fmt: skip
        daemon_lines = f'metrics = "127.0.0.1:{ports[side]}"\n'
        if side == "sun":
            text = text.replace("cookie_threshold = 1000", "cookie_threshold = 0")  # COOKIEs
            daemon_lines += sun_extra
            if sun_extra:  # responders for initiators from several addresses (workers test)
                text = text.replace(f'remote_addrs = ["{MOON}"]', 'remote_addrs = ["%any"]')
        else:
            # liveness checks after 1 s of quiet, a dead peer declared after 2 quick retransmits
            text = text.replace(
                'dpd_delay = "30s"',
                'dpd_delay = "1s"\nretransmit_timeout = '
                '"0.3s"\nretransmit_base = 1.5\nretransmit_tries = 2',
            )
        config = workdir / f"{side}.toml"
        config.write_text(text.replace("[daemon]\n", f"[daemon]\n{daemon_lines}", 1))
        daemons[side] = Daemon(side, config, control, workdir / f"{side}.log")
    try:
        await daemons["sun"].start()
        await daemons["moon"].start()
        yield daemons["moon"], daemons["sun"], ports["moon"], ports["sun"], port
    finally:
        for daemon in daemons.values():
            with contextlib.suppress(Exception):
                await daemon.stop(5)
            daemon.kill()


async def test_scrape_through_a_connection_lifetime() -> None:
    async with metered_pair() as (moon, _sun, moon_port, sun_port, _ike):
        before = scrape(sun_port)
        assert value(before, "ikev2_connection_up", connection="net") == 0
        assert value(before, "ikev2_child_up", connection="net", child="net") == 0
        before_moon = scrape(moon_port)
        assert value(before_moon, "ikev2_connection_up", connection="lost") == 0

        code, _out, err = await moon.cli("up", "net")
        assert code == 0, err
        m, s = scrape(moon_port), scrape(sun_port)
        for samples in (m, s):
            assert value(samples, "ikev2_connection_up", connection="net") == 1
            assert value(samples, "ikev2_child_up", connection="net", child="net") == 1
            assert value(samples, "ikev2_ike_sas", connection="net", state="established") == 1
            assert value(samples, "ikev2_child_sas", connection="net", child="net") == 1
        labels = {"connection": "net", "result": "established"}
        assert value(m, "ikev2_handshakes_total", role="initiator", **labels) == 1
        assert value(s, "ikev2_handshakes_total", role="responder", **labels) == 1
        # sun demanded a COOKIE (cookie_threshold = 0): moon sent IKE_SA_INIT twice, neither
        # a retransmit (RFC 7296 §2.6: the second carries the COOKIE)
        assert value(s, "ikev2_cookies_sent_total") == 1
        assert value(m, "ikev2_requests_sent_total", exchange="ike_sa_init") == 2
        assert value(m, "ikev2_requests_sent_total", exchange="ike_auth") == 1
        assert total(m, "ikev2_retransmits_total") == 0
        # kernel counters of both directions of the child (the in-memory kernel: zero)
        [sa] = await moon.sas()
        [child] = sa["children"]
        for direction in ("in", "out"):
            got = value(m, "ikev2_child_bytes_total", connection="net", child="net",
                        spi_in=child["spi_in"], direction=direction)  # fmt: skip
            assert got == 0
        assert total(m, "ikev2_udp_datagrams_total", direction="tx") >= 3

        # moon checks liveness after 1 s of quiet (RFC 7296 §2.4): an empty INFORMATIONAL
        async def dpd() -> float:
            return total(scrape(moon_port), "ikev2_dpd_sent_total")

        assert await wait_until(dpd, timeout=8), "no liveness check counted"

        # a child rekey (§2.8) counted on both ends
        code, _out, err = await moon.cli("rekey", str(sa["id"]), "--child", child["spi_in"])
        assert code == 0, err

        async def rekeyed() -> bool:
            return all(
                value(scrape(p), "ikev2_child_rekeys_total", connection="net", child="net") == 1
                for p in (moon_port, sun_port)
            )

        assert await wait_until(rekeyed), "child rekey not counted"

        # a peer that never answers: retransmits, then a timeout failure
        code, _out, _err = await moon.cli("up", "lost", "--timeout", "10")
        assert code != 0
        m = scrape(moon_port)
        assert value(m, "ikev2_retransmits_total", exchange="ike_sa_init") == 2
        assert value(m, "ikev2_handshake_failures_total", connection="lost", reason="timeout") == 1
        assert value(m, "ikev2_handshakes_total", connection="lost", role="initiator",
                     result="failed") == 1  # fmt: skip
        assert value(m, "ikev2_connection_up", connection="lost") == 0

        code, _out, err = await moon.cli("down", "net")
        assert code == 0, err

        async def down() -> bool:
            return value(scrape(sun_port), "ikev2_connection_up", connection="net") == 0

        assert await wait_until(down)
        assert value(scrape(moon_port), "ikev2_ike_sas_deleted_total", connection="net") == 1


async def test_a_dead_peer_is_counted() -> None:
    async with metered_pair() as (moon, sun, moon_port, _sun_port, _ike):
        code, _out, err = await moon.cli("up", "net")
        assert code == 0, err
        sun.kill()  # gone without a Delete: moon's liveness checks go unanswered

        async def dead() -> Samples | None:
            samples = scrape(moon_port)
            return samples if value(samples, "ikev2_dead_peers_total", connection="net") else None

        samples = await wait_until(dead, timeout=15)
        assert samples, "no dead peer counted"
        assert value(samples, "ikev2_connection_up", connection="net") == 0
        assert value(samples, "ikev2_retransmits_total", exchange="informational") == 2
        assert value(samples, "ikev2_ike_sas_deleted_total", connection="net") == 1


def ike_sa_from(config_path: Path, source: str) -> tuple[Engine, socket.socket]:
    """An engine of our own as initiator over a plain UDP socket from address `source`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    source_port = sock.getsockname()[1]
    config = load_config(config_path).engine
    address = ipaddress.ip_address(source)
    conn = replace(config.connection("net"), local_addrs=(address,), local_port=source_port,
                   send_initial_contact=False)  # fmt: skip
    engine = Engine(replace(config, connections=(conn,)))
    engine.initiate("net", time.monotonic())
    local = (address, source_port)
    for _ in range(8):
        for datagram in engine.datagrams_to_send():
            sock.sendto(datagram.data, (str(datagram.remote[0]), datagram.remote[1]))
        data, (host, port) = sock.recvfrom(65535)
        events = engine.receive_datagram(data, (ipaddress.ip_address(host), port), local,
                                         time.monotonic())  # fmt: skip
        if any(isinstance(e, IkeSaEstablished) for e in events):
            return engine, sock
    raise AssertionError("no IKE SA")


async def test_workers_add_up_on_one_endpoint() -> None:
    async with metered_pair("workers = 2\n") as (moon, sun, _moon_port, sun_port, _ike):
        held = []
        per_worker: list[int] = [0, 0]
        # initiators from several addresses until both workers hold IKE SAs (the worker of an
        # IKE_SA_INIT is the one of the peer's address: service/handoff.py)
        while len(held) < 40 and (min(per_worker) == 0 or len(held) < 4):
            source = f"127.0.{len(held) // 200 + 1}.{len(held) % 200 + 3}"
            held.append(await asyncio.to_thread(ike_sa_from, moon.config, source))
            stats = request(sun.control, {"cmd": "stats"})
            per_worker = [w["ike_sas"] for w in stats["workers"]]
        assert min(per_worker) > 0, per_worker
        samples = scrape(sun_port)
        count = len(held)
        assert sum(per_worker) == count
        assert value(samples, "ikev2_ike_sas", connection="net", state="established") == count
        assert value(samples, "ikev2_child_sas", connection="net", child="net") == count
        assert value(samples, "ikev2_handshakes_total", connection="net", role="responder",
                     result="established") == count  # fmt: skip
        assert value(samples, "ikev2_connection_up", connection="net") == 1  # not 2
        for _engine, sock in held:
            sock.close()


async def test_pool_usage_on_a_gateway(tmp_path: Path) -> None:
    port = free_port_pair((MOON, SUN))
    metrics = free_tcp_port()
    values = {"moon": MOON, "sun": SUN, "port": port, "nat": port + 1, "psk": PSK, "hook": ""}
    gw_conf, rw_conf = tmp_path / "gw.toml", tmp_path / "rw.toml"
    gateway_text = GATEWAY.format(control=tmp_path / "gw.sock", **values)
    gw_conf.write_text(
        gateway_text.replace("[daemon]\n", f'[daemon]\nmetrics = "127.0.0.1:{metrics}"\n')
    )
    rw_conf.write_text(CLIENT.format(control=tmp_path / "rw.sock", **values))
    gateway = Daemon("gw", gw_conf, str(tmp_path / "gw.sock"), tmp_path / "gw.log")
    client = Daemon("rw", rw_conf, str(tmp_path / "rw.sock"), tmp_path / "rw.log")
    try:
        await gateway.start()
        before = scrape(metrics)
        assert value(before, "ikev2_pool_size", pool="rw-v4") == 254
        assert value(before, "ikev2_pool_size", pool="rw-v6") == 255
        assert value(before, "ikev2_pool_leases", pool="rw-v4", state="online") == 0
        await client.start()
        code, text, err = await client.cli("up", "rw")
        assert code == 0, err + text
        during = scrape(metrics)
        for pool in ("rw-v4", "rw-v6"):
            assert value(during, "ikev2_pool_leases", pool=pool, state="online") == 1
        assert value(during, "ikev2_connection_up", connection="rw") == 1
    finally:
        for daemon in (client, gateway):
            with contextlib.suppress(Exception):
                await daemon.stop(5)
            daemon.kill()


def test_metrics_setting_is_checked() -> None:
    base = "[daemon]\nmetrics = {}\n"
    path = Path("/x/ikev2.toml")
    assert parse_config(base.format('"127.0.0.1:9507"'), path).daemon.metrics == ("127.0.0.1",
                                                                                 9507)  # fmt: skip
    assert parse_config(base.format('"[::1]:9507"'), path).daemon.metrics == ("::1", 9507)
    assert parse_config("", path).daemon.metrics is None  # off by default
    wrong = "not ADDRESS:PORT"
    for bad, words in (('"localhost:9507"', wrong), ('"127.0.0.1"', wrong),
                       ('"127.0.0.1:99999"', "no port")):  # fmt: skip
        try:
            parse_config(base.format(bad), path)
        except ConfigError as exc:
            assert "daemon.metrics" in str(exc) and words in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")


def test_reasons_snapshots_and_merge() -> None:
    assert failure_reason("x", NotifyType.AUTHENTICATION_FAILED) == "authentication_failed"
    assert failure_reason("x", NotifyType.NO_PROPOSAL_CHOSEN) == "no_proposal_chosen"
    assert failure_reason("no IKE_SA_INIT response (retransmits exhausted)", None) == "timeout"
    assert failure_reason("peer deleted it", None) == "other"
    one, two = Meter(), Meter()
    one.add("retransmits", ("ike_auth",))
    two.add("retransmits", ("ike_auth",), 2)
    two.add("dpd_sent")
    merged = merge(from_json(to_json(m.counters)) for m in (one, two))
    assert merged["retransmits"] == {("ike_auth",): 3} and merged["dpd_sent"] == {(): 1}
    # every worker has the whole pool: its size is not added up, its leases are
    pools = merge([{"pool_size": {("p",): 254}, "pool_leases": {("p", "online"): 2}},
                   {"pool_size": {("p",): 254}, "pool_leases": {("p", "online"): 3}}])  # fmt: skip
    assert pools == {"pool_size": {("p",): 254}, "pool_leases": {("p", "online"): 5}}


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name, (kind, _help, labels) in METRICS.items():
        exposed = f"ikev2_{name}" + ("_total" if kind == "counter" else "")
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{exposed}` |")), None)
        assert row is not None, f"{exposed} is not in docs/operations.md"
        assert f"| {kind} | {', '.join(labels) or '-'} |" in row, row


def test_child_traffic_from_the_kernel_counters() -> None:
    """Two engines back to back, the responder's child installed in an in-memory kernel that
    then carries traffic: the figures are the kernel's, per direction."""
    moon_cfg = parse_config(side_config("moon", 500, "/x.sock"), Path("/x/moon.toml")).engine
    sun_cfg = parse_config(side_config("sun", 500, "/x.sock"), Path("/x/sun.toml")).engine
    moon, sun = Engine(moon_cfg), Engine(sun_cfg)
    kernel = InMemoryKernel()
    applier = KernelApplier(kernel)
    moon.initiate("net", 0.0)
    for _ in range(4):
        for src, dst in ((moon, sun), (sun, moon)):
            for d in src.datagrams_to_send():
                for event in dst.receive_datagram(d.data, d.local, d.remote, 0.0):
                    if dst is sun and isinstance(event, ChildSaEstablished):
                        applier.child_established(event)
    [view] = sun.list_sas()
    [child] = view.children
    kernel.add_traffic(view.local[0], child.spi_in, IpProto.ESP, 1400)
    kernel.add_traffic(view.local[0], child.spi_in, IpProto.ESP, 600)
    kernel.add_traffic(view.remote[0], child.spi_out, IpProto.ESP, 100)
    figures = child_traffic(kernel, [view])
    labels = ("net", "net", f"{child.spi_in:08x}")
    assert figures["child_bytes"] == {(*labels, "in"): 2000, (*labels, "out"): 100}
    assert figures["child_packets"] == {(*labels, "in"): 2, (*labels, "out"): 1}
    # seen from moon, the same two kernel SAs with in and out swapped
    [moon_view] = moon.list_sas()
    mirrored = ("net", "net", f"{moon_view.children[0].spi_in:08x}")
    assert child_traffic(kernel, [moon_view])["child_bytes"] == {
        (*mirrored, "in"): 100,
        (*mirrored, "out"): 2000,
    }
    # a kernel that never had the SAs: no figures rather than zeros
    empty = child_traffic(InMemoryKernel(), [view])
    assert empty == {"child_bytes": {}, "child_packets": {}}


def test_the_meter_never_scans_every_child_per_event() -> None:
    """Issue 17: an IKE rekey or delete touches only that IKE SA's children in the meter (it
    scanned every live child: O(SAs) per event, O(SAs^2) for a SIGTERM of a gateway)."""
    from tests.engine.pairing import Pair, psk_connections
    from tests.engine.test_scaling import Unscannable

    pair = Pair(*psk_connections())
    for _ in range(3):
        pair.initiate()
        pair.run(until=pair.now + 5)
    ids = [view.id for view in pair.i.engine.list_sas()]
    child = pair.i.engine.list_sas()[0].children[0]
    pair.i.events += pair.i.engine.rekey_child(ids[0], child.spi_in, pair.now)
    pair.run(until=pair.now + 5)
    pair.i.events += pair.i.engine.rekey_ike(ids[1], pair.now)
    pair.run(until=pair.now + 5)
    for view in pair.i.engine.list_sas():
        pair.i.events += pair.i.engine.terminate(view.id, pair.now)
    pair.run(until=pair.now + 30)
    meter = Meter()
    meter._live = Unscannable()  # type: ignore[assignment]
    meter.events(pair.r.events)
    counters = meter.counters
    assert counters["handshakes"] == {("net", "responder", "established"): 3}
    assert counters["child_rekeys"] == {("net", "net"): 1}
    assert counters["ike_rekeys"] == {("net",): 1}
    assert counters["ike_sas_deleted"] == {("net",): 3}
    assert not dict.__len__(meter._live), "the meter kept children of deleted IKE SAs"
