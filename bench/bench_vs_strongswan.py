"""Head to head: our responder daemon and strongSwan's charon as responders, same load, one run.

Topology (ikev2.testing.topology, the interop harness's): two network namespaces on a veth,
the generator's (10.99.0.1 plus GEN_ADDRS) and the responder's (10.99.0.2, port 500/4500).
This process moves into the generator's namespace and is the load generator for every
responder (bench/loadgen.py: one in-process Engine initiator, 8 UDP sockets on 8 addresses;
no INITIAL_CONTACT, so no responder replaces an older IKE SA of the same identity). The
responders run one at a time in the responder's namespace:

- `ours`: `ikev2 daemon`, one process, in-memory kernel (kernel = "memory"), log level warning;
- `sw6`: strongSwan 6.0.6 charon (built into .cache by ikev2.testing.strongswan_build) with the
  load-tester plugin's `fake_kernel = yes` (initiators = 0): its in-memory IPsec kernel, the
  counterpart of ours; kernel-netlink loaded for its network side only;
- `sw5`: Debian's charon 5.9.8. Debian packages no load-tester plugin, and this host's kernel
  has no ESP: its kernel-netlink allocates SPIs over XFRM, derives the child keys, then fails
  to install them (ENOSYS) and answers the child with NO_PROPOSAL_CHOSEN, keeping the IKE SA.
  So its row does all the IKE work and the child negotiation but stores no child: a little
  less work and memory than the other two (said beside its figures).
Both charons: file log off (default = -1; ours logs nothing per SA at warning either), DoS
protection and cookies off, `unique = never`, default rekey timers (ours too), openssl for
all crypto (ours: `cryptography`, the same OpenSSL).

Suites: `psk` (PSK, aes256gcm16-prfsha256-x25519, one aes256gcm16 child), `ecdsa` (the same
with ECDSA P-256 certificates from fixtures/pki/ecdsa, the generator `moon`, the responder
`sun`), `hybrid` (x25519 + ke1_mlkem768, RFC 9370; needs strongSwan 6 and our engine to parse
the proposal: skipped with the reason otherwise).

For each responder and suite, after WARMUP handshakes, measured on the responder process only
(/proc/<pid>/stat utime + stime of all its threads; our daemon's workers too if any):
- saturation: `--window` handshakes in flight for `--count` handshakes: responder CPU µs per
  handshake and handshakes per second (the generator shares the 2 cores: its own CPU per
  handshake is reported too);
- half load: `--latency-count` handshakes at half the saturation rate, open loop: setup latency
  (initiate -> IKE SA established at the generator) p50 / p99;
- memory: IKE SAs filled up to `--sas`; VmRSS after the warm-up against VmRSS at `--sas`.
The crypto floor (bench/crypto_floor.py: cryptography alone doing one handshake's asymmetric and
symmetric work) is measured in the same run, between the responders.

Each figure is the median over `--runs` runs (responders interleaved within each run); the
ratios ours/strongSwan are medians of the per-run ratios. The last line is one JSON object.

Usage (root: namespaces): .venv/bin/python bench/bench_vs_strongswan.py [--runs 3] [--sas 10000]
    [--count 3000] [--latency-count 1000] [--suites psk,ecdsa,hybrid] [--responders ours,sw5,sw6]
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crypto_floor import floor_us
from loadgen import (
    ConnFactory,
    Generator,
    cpu_seconds,
    median,
    netns_enter,
    own_cpu_seconds,
    percentile,
    rss_kib,
)

from ikev2.constants import IdType, ProtocolId
from ikev2.engine.config import (
    AuthMethodName,
    ChildConfig,
    ConnectionConfig,
    Credentials,
    Identity,
    Timers,
    TrafficSelectorSpec,
)
from ikev2.engine.credentials import load_certificate, load_private_key
from ikev2.engine.proposal_strings import ProposalSyntaxError, parse_proposals
from ikev2.log import configure_logging
from ikev2.service.control import request
from ikev2.testing import strongswan, strongswan_build
from ikev2.testing.daemon import render_toml
from ikev2.testing.topology import Topology, sh

REPO = Path(__file__).resolve().parents[1]
PKI = REPO / "fixtures" / "pki" / "ecdsa"
RESPONDER = "10.99.0.2"
GEN_ADDRS = tuple(f"10.99.0.{n}" for n in range(11, 19))
PSK = "bench secret, namespaces only 7c21"
WARMUP = 200
LOCAL_TS, REMOTE_TS = "10.2.0.0/16", "10.1.0.0/16"  # the responder's view
ESP = "aes256gcm16"
SUITES: dict[str, dict[str, str]] = {
    "psk": {"ike": "aes256gcm16-prfsha256-x25519", "auth": "psk"},
    "ecdsa": {"ike": "aes256gcm16-prfsha256-x25519", "auth": "pubkey"},
    "hybrid": {"ike": "aes256gcm16-prfsha256-x25519-ke1_mlkem768", "auth": "psk"},
}
RESPONDER_ID = {"psk": "responder.bench", "pubkey": "sun.ikev2.test"}
INITIATOR_ID = {"psk": b"initiator.bench", "pubkey": b"moon.ikev2.test"}
TREES: list[Path] = []  # --baseline's unpacked ikev2, removed at the end
PROFILE: list[str] = []  # --profile FILE: our daemon runs under cProfile


# --- the generator's connections ---------------------------------------------------------------


def initiator(suite: str) -> ConnFactory:
    spec = SUITES[suite]
    ike = parse_proposals(spec["ike"], ProtocolId.IKE)
    esp = parse_proposals(ESP, ProtocolId.ESP)
    if spec["auth"] == "psk":
        ours = theirs = Credentials(AuthMethodName.PSK, psk=PSK.encode())
    else:
        ours = Credentials(
            AuthMethodName.PUBKEY,
            certs=(load_certificate((PKI / "moon.crt").read_bytes()),),
            private_key=load_private_key((PKI / "moon.key").read_bytes()),
        )
        theirs = Credentials(
            AuthMethodName.PUBKEY, trust_anchors=(load_certificate((PKI / "ca.crt").read_bytes()),)
        )

    def conn(name: str, address: str, port: int) -> ConnectionConfig:
        return ConnectionConfig(
            name=name,
            local_addrs=(ipaddress.ip_address(address),),
            remote_addrs=(ipaddress.ip_address(RESPONDER),),
            local_id=Identity(IdType.FQDN, INITIATOR_ID[spec["auth"]]),
            local_auth=ours,
            remote_auth=theirs,
            ike_proposals=ike,
            children=(
                ChildConfig(
                    "bench",
                    (TrafficSelectorSpec(ipaddress.ip_network(REMOTE_TS)),),
                    (TrafficSelectorSpec(ipaddress.ip_network(LOCAL_TS)),),
                    esp,
                ),
            ),
            local_port=port,
            remote_port=500,
            timers=Timers(dpd_delay=0),
            send_initial_contact=False,
        )

    return conn


# --- responders ----------------------------------------------------------------------------


class Ours:
    label = "ours"

    def __init__(self, ns: str, workdir: Path, suite: str, src: Path | None = None) -> None:
        self.dir = workdir
        self.control = str(workdir / "ours.sock")
        spec = SUITES[suite]
        local: dict[str, Any] = {"id": RESPONDER_ID[spec["auth"]]}
        remote: dict[str, Any] = {"id": "%any"}
        if spec["auth"] == "pubkey":
            key = workdir / "sun.key"
            shutil.copy(PKI / "sun.key", key)
            key.chmod(0o600)
            local |= {"auth": "pubkey", "certs": [str(PKI / "sun.crt")], "key": str(key)}
            remote |= {"auth": "pubkey", "cacerts": [str(PKI / "ca.crt")]}
        config: dict[str, Any] = {
            "daemon": {
                "addresses": [RESPONDER], "port": 500, "nat_port": 4500,
                "control_socket": self.control, "kernel": "memory", "log_level": "warning",
                "cookie_threshold": 1_000_000, "max_half_open": 1_000_000, "block_threshold": 0,
            },
            "connections": {"bench": {
                "local_addrs": [RESPONDER], "proposals": spec["ike"], "dpd_delay": 0,
                "local": local, "remote": remote,
                "children": {"bench": {"local_ts": [LOCAL_TS], "remote_ts": [REMOTE_TS],
                                       "esp_proposals": ESP}},
            }},
        }  # fmt: skip
        if spec["auth"] == "psk":
            config["secrets"] = {"bench": {"secret": PSK}}
        path = workdir / "ours.toml"
        path.write_text(render_toml(config))
        self.log = workdir / "ours.log"
        env = dict(os.environ)
        if src is not None:  # another revision's ikev2 package (--baseline) comes first
            env["PYTHONPATH"] = str(src)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, *PROFILE, "-m", "ikev2.cli",
                 "daemon", "--config", str(path)],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                env=env, cwd=src or REPO,
            )  # fmt: skip
        for _ in range(400):
            if "listening on" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.05)
        raise RuntimeError(f"our daemon not ready:\n{self.log.read_text()}")

    def pids(self) -> list[int]:
        workers = request(self.control, {"cmd": "stats"}).get("workers", [])
        return [self.proc.pid] + [w["pid"] for w in workers]

    def ike_sas(self) -> int:
        return int(request(self.control, {"cmd": "stats"})["ike_sas"])

    def datagrams_in(self) -> int:
        """IKE datagrams received (retransmits included)."""
        sockets = request(self.control, {"cmd": "stats"})["sockets"]
        return sum(s["rx"] for s in sockets.values())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class StrongSwan:
    def __init__(self, label: str, install: strongswan.Install, fake_kernel: bool) -> None:
        self.label = label
        self.install = install
        self.fake_kernel = fake_kernel

    def __call__(self, ns: str, workdir: Path, suite: str) -> StrongSwan:
        self.dir = workdir
        spec = SUITES[suite]
        plugins = self.install.charon_plugins
        extra: dict[str, Any] = {}
        if self.fake_kernel:
            # the first IPsec backend registered wins: load-tester before kernel-netlink
            extra["load"] = f"{plugins} load-tester {self.install.tail_plugins}"
            extra["plugins"] = {
                "load-tester": {
                    "enable": True, "initiators": 0, "fake_kernel": True,
                    # its own PSK (no identities) would otherwise compete with ours
                    "preshared_key": f'"{PSK}"',
                }
            }  # fmt: skip
        silent = dict.fromkeys(
            ("default", "ike", "chd", "cfg", "knl", "net", "enc", "esp", "lib", "asn", "job",
             "mgr"), -1,
        )  # fmt: skip
        self.charon = strongswan.Charon(
            ns, workdir, kernel="netlink", extra=extra, log_levels=silent, install=self.install
        )
        local: dict[str, Any] = {"auth": spec["auth"], "id": RESPONDER_ID[spec["auth"]]}
        remote: dict[str, Any] = {"auth": spec["auth"]}
        certs, cacerts, keys = [], [], []
        if spec["auth"] == "pubkey":
            local["certs"] = "sun.crt"
            remote["cacerts"] = "ca.crt"
            certs, cacerts, keys = [PKI / "sun.crt"], [PKI / "ca.crt"], [PKI / "sun.key"]
        swanctl: dict[str, Any] = {
            "connections": {"bench": {
                "version": 2, "local_addrs": RESPONDER, "proposals": spec["ike"],
                "unique": "never", "mobike": False, "dpd_delay": "0s",
                "local": local, "remote": remote,
                "children": {"bench": {"local_ts": LOCAL_TS, "remote_ts": REMOTE_TS,
                                       "esp_proposals": ESP}},
            }},
        }  # fmt: skip
        if spec["auth"] == "psk":
            swanctl["secrets"] = {"ike-bench": {"secret": f'"{PSK}"'}}
        self.charon.configure(swanctl, certs=certs, cacerts=cacerts, keys=keys)
        self.charon.start()
        self.charon.load()
        self.pid = self._charon_pid()
        return self

    def _charon_pid(self) -> int:
        assert self.charon.proc is not None
        pid = self.charon.proc.pid  # ip netns exec and sh both exec: this becomes charon
        for _ in range(100):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "charon":
                return pid
            time.sleep(0.05)
        raise RuntimeError(f"pid {pid} is not charon")

    def pids(self) -> list[int]:
        return [self.pid]

    def ike_sas(self) -> int:
        out = self.charon.swanctl("--stats").output
        m = re.search(r"IKE_SAs:\s*(\d+) total", out)
        return int(m.group(1)) if m else -1

    def stop(self) -> None:
        self.charon.stop(30)


Responder = Callable[[str, Path, str], Any]


def git_rev(rev: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip() or rev


def baseline_tree(rev: str) -> Path:
    """The ikev2 package of git revision `rev`, unpacked into a temporary directory."""
    out = Path(tempfile.mkdtemp(prefix="bvs-base-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "ikev2"],
                             capture_output=True, check=True)  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def responders(
    names: list[str], baseline: str | None = None
) -> dict[str, tuple[Responder | None, str]]:
    """name -> (factory or None, why it is absent / what its kernel side is)."""
    out: dict[str, tuple[Responder | None, str]] = {}
    for name in names:
        if name == "ours":
            out[name] = (Ours, "in-memory kernel")
        elif name == "base":
            if baseline is None:
                out[name] = (None, "no --baseline revision")
                continue
            tree = baseline_tree(baseline)
            TREES.append(tree)
            factory = functools.partial(Ours, src=tree)
            out[name] = (factory, f"in-memory kernel, ikev2 of {baseline}")
        elif name == "sw5":
            why = strongswan.available(strongswan.DEBIAN)
            factory = StrongSwan("sw5", strongswan.DEBIAN, fake_kernel=False)
            out[name] = (None, why) if why else (factory, "no ESP kernel: child not installed")
        elif name == "sw6":
            why = strongswan.missing6()
            if why is None and not (strongswan_build.plugin_dir() /
                                    "libstrongswan-load-tester.so").exists():  # fmt: skip
                why = "strongSwan 6 built without the load-tester plugin"
            factory = StrongSwan("sw6", strongswan.STRONGSWAN6, fake_kernel=True)
            out[name] = (None, why) if why else (factory, "load-tester fake_kernel")
    return out


# --- one measurement -----------------------------------------------------------------------


def measure(factory: Responder, ns: str, suite: str, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bvs-{suite}-"))
    try:
        responder = factory(ns, workdir, suite)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    generator = Generator(initiator(suite), GEN_ADDRS, 8)
    try:
        generator.run(WARMUP, args.window, timeout=120)
        time.sleep(0.3)
        pids = responder.pids()
        rss_base = rss_kib(pids)
        sas_base = generator.established
        # saturation
        cpu0, own0, wall0 = cpu_seconds(pids), own_cpu_seconds(), time.monotonic()
        generator.run(args.count, args.window, timeout=args.count * 0.05 + 60)
        wall = time.monotonic() - wall0
        cpu, own = cpu_seconds(pids) - cpu0, own_cpu_seconds() - own0
        rate = args.count / wall
        # half load
        generator.record = True
        cpu1 = cpu_seconds(pids)
        generator.run_rate(args.latency_count, rate / 2, timeout=args.latency_count / rate * 4 + 60)
        cpu_half = cpu_seconds(pids) - cpu1
        generator.record = False
        latencies = generator.latencies
        # fill up to --sas
        remaining = args.sas - generator.established
        if remaining > 0:
            generator.run(remaining, args.window, timeout=remaining * 0.05 + 60)
        time.sleep(1.0)
        rss_end = rss_kib(pids)
        sas_end = responder.ike_sas()
        rx = responder.datagrams_in() if hasattr(responder, "datagrams_in") else None
        return {
            "cpu_us_per_handshake": round(cpu / args.count * 1e6, 1),
            "cpu_us_per_handshake_half_load": round(cpu_half / args.latency_count * 1e6, 1),
            "handshakes_per_second": round(rate, 1),
            "responder_cores_busy": round(cpu / wall, 2),
            "generator_cpu_us_per_handshake": round(own / args.count * 1e6, 1),
            "latency_ms_p50": round(percentile(latencies, 50) * 1e3, 2),
            "latency_ms_p99": round(percentile(latencies, 99) * 1e3, 2),
            "ike_sas": sas_end,
            "children_at_generator": generator.children,
            "rss_kib_base": rss_base,
            "rss_kib_end": rss_end,
            "rss_bytes_per_ike_sa": round(
                (rss_end - rss_base) * 1024 / max(1, generator.established - sas_base)
            ),
            "failed": generator.failed,
            **({"datagrams_in_per_ike_sa": round(rx / max(1, sas_end), 2)} if rx else {}),
        }
    finally:
        generator.close()
        responder.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def hybrid_unsupported() -> str | None:
    try:
        parse_proposals(SUITES["hybrid"]["ike"], ProtocolId.IKE)
    except ProposalSyntaxError as exc:
        return f"our engine cannot parse the hybrid proposal ({exc})"
    return None


METRICS = ("cpu_us_per_handshake", "handshakes_per_second", "latency_ms_p50", "latency_ms_p99",
           "rss_bytes_per_ike_sa")  # fmt: skip


def summarize(runs: list[dict[str, Any]], floors: list[dict[str, float]]) -> dict[str, Any]:
    """Medians over runs of every figure; ratios ours/strongSwan and ours/floor as medians
    of the per-run ratios."""
    table: dict[str, dict[str, Any]] = {}
    ratios: dict[str, dict[str, float]] = {}
    for suite in runs[0]:
        table[suite] = {}
        for name in runs[0][suite]:
            rows = [r[suite][name] for r in runs if isinstance(r[suite].get(name), Mapping)]
            if not rows:
                table[suite][name] = runs[0][suite][name]
                continue
            table[suite][name] = {k: round(median([row[k] for row in rows]), 2) for k in rows[0]}
        for theirs in ("sw5", "sw6", "base"):
            per_run = [r[suite] for r in runs]
            if not all(isinstance(p.get("ours"), Mapping) and isinstance(p.get(theirs), Mapping)
                       for p in per_run):  # fmt: skip
                continue
            ratios[f"{suite}_ours/{theirs}"] = {
                k: round(median([p["ours"][k] / p[theirs][k] for p in per_run if p[theirs][k]]), 3)
                for k in METRICS
            }
        if floors and all(isinstance(r[suite].get("ours"), Mapping) for r in runs):
            fl = [f[suite] for f in floors if suite in f]
            if fl:
                ratios[f"{suite}_ours/floor"] = {
                    "cpu_us_per_handshake": round(median(
                        [r[suite]["ours"]["cpu_us_per_handshake"] / f
                         for r, f in zip(runs, fl, strict=False)]), 2),
                }  # fmt: skip
    return {"table": table, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sas", type=int, default=10_000)
    parser.add_argument("--count", type=int, default=3000, help="saturation handshakes")
    parser.add_argument("--latency-count", type=int, default=1000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--suites", default="psk,ecdsa,hybrid")
    parser.add_argument(
        "--responders",
        default="ours,sw5,sw6",
        help="ours, sw5, sw6, base (our daemon at --baseline REV)",
    )
    parser.add_argument("--baseline", help="git revision for the `base` responder")
    parser.add_argument("--profile", help="run our daemon under cProfile, stats to this file")
    args = parser.parse_args()
    if args.profile:
        PROFILE[:] = ["-m", "cProfile", "-o", str(Path(args.profile).resolve())]
    if os.geteuid() != 0:
        sys.exit("root needed (network namespaces)")
    configure_logging("console", "warning")
    suites = args.suites.split(",")
    available = responders(args.responders.split(","), args.baseline)
    hybrid_why = hybrid_unsupported()
    load_before = os.getloadavg()
    topo = Topology.pair(prefix="bvs")
    runs: list[dict[str, Any]] = []
    floors: list[dict[str, float]] = []
    try:
        for address in GEN_ADDRS:
            sh("ip", "-n", topo.left.ns, "addr", "add", f"{address}/24", "dev", topo.left.dev)
        netns_enter(topo.left.ns)
        for run in range(args.runs):
            result: dict[str, Any] = {}
            floor: dict[str, float] = {}
            for suite in suites:
                result[suite] = {}
                if suite in ("psk", "ecdsa", "hybrid"):
                    floor[suite] = round(floor_us(suite), 1)
                for name, (factory, note) in available.items():
                    if factory is None:
                        result[suite][name] = f"skipped: {note}"
                        continue
                    if suite == "hybrid" and (hybrid_why or name == "sw5"):
                        # the generator is our engine: without the hybrid in it, no row runs
                        why = hybrid_why or "strongSwan 5.9.8 has no RFC 9370"
                        result[suite][name] = f"skipped: {why}"
                        continue
                    try:
                        row = measure(factory, topo.right.ns, suite, args)
                    except Exception as exc:  # a responder that fails is a row, not the end
                        result[suite][name] = f"failed: {str(exc)[:300]}"
                        continue
                    result[suite][name] = row
                    print(f"run {run} {suite:6s} {name:4s} ({note}): " + ", ".join(
                        f"{k}={row[k]}" for k in (*METRICS, "ike_sas", "failed")),
                        flush=True)  # fmt: skip
            print(f"run {run} crypto floor µs: {floor}", flush=True)
            runs.append(result)
            floors.append(floor)
    finally:
        topo.close()
        for tree in TREES:
            shutil.rmtree(tree, ignore_errors=True)
    summary = summarize(runs, floors)
    load_after = os.getloadavg()
    sw6 = strongswan.STRONGSWAN6
    sw6_version = strongswan.charon_version(sw6) if strongswan.missing6() is None else None
    out = {
        "bench": "vs_strongswan",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": args.runs,
        "sas": args.sas,
        "count": args.count,
        "latency_count": args.latency_count,
        "window": args.window,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "kernel_side": {name: note for name, (_, note) in available.items()},
        "versions": {
            "ours": git_rev("HEAD"),
            "base": git_rev(args.baseline) if args.baseline else None,
            "sw5": strongswan.charon_version(strongswan.DEBIAN),
            "sw6": sw6_version,
        },
        "crypto_floor_us": {s: median([f[s] for f in floors]) for s in floors[0]},
        **summary,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
