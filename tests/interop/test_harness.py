"""The harness tests itself: strongSwan <-> strongSwan on this host through the same scenario
descriptions the matrix uses (ikev2.testing.interop), and the parsers the key comparison relies
on. If these fail, an interop failure says nothing about our daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikev2.testing import interop
from ikev2.testing.keycompare import compare_child, compare_ike, parse_key_log
from ikev2.testing.strongswan import (
    Charon,
    ChildKeys,
    IkeKeys,
    child_keys,
    log_dumps,
    parse_pretty,
    render_conf,
    sas_from_pretty,
)
from ikev2.testing.topology import Topology

SELF_SPECS = [
    interop.Spec("psk-fqdn"),
    interop.Spec("ecdsa-dn", auth="ecdsa", id_kind="dn"),
    interop.Spec("rsa-ip", auth="rsa", id_kind="ip"),
    interop.Spec("ed25519-fqdn", auth="ed25519"),
    interop.Spec(
        "modp2048-cbc",
        ours_ike=("aes128-sha256-modp2048",),
        ss_ike=("aes128-sha256-modp2048",),
        children=(
            interop.ChildSpec(ours_proposals=("aes128-sha256",), ss_proposals=("aes128-sha256",)),
        ),
    ),
    interop.Spec(
        "curve448-chacha",
        ours_ike=("chacha20poly1305-prfsha512-curve448",),
        ss_ike=("chacha20poly1305-prfsha512-curve448",),
        children=(
            interop.ChildSpec(
                ours_proposals=("chacha20poly1305",), ss_proposals=("chacha20poly1305",)
            ),
        ),
    ),
]


def start_pair(
    spec: interop.Spec, topo: Topology, tmp: Path, made: list[Charon]
) -> tuple[Charon, Charon]:
    """moon (left, initiator) and sun (right, responder), both strongSwan."""
    moon = Charon(topo.left.ns, tmp / "moon")
    sun = Charon(topo.right.ns, tmp / "sun")
    made += [moon, sun]
    for charon, who, local, remote, lnet, rnet, init in (
        (moon, "moon", topo.left.addr, topo.right.addr, interop.LEFT_NET, interop.RIGHT_NET, True),
        (sun, "sun", topo.right.addr, topo.public_left, interop.RIGHT_NET, interop.LEFT_NET, False),
    ):
        files = interop.swanctl_config(
            spec, who, local, remote, lnet, rnet, init, is_ours_side=(who == "moon")
        )
        charon.configure(files.conf, certs=files.certs, cacerts=files.cacerts, keys=files.keys)
        charon.start()
        charon.load()
    return moon, sun


@pytest.mark.interop
@pytest.mark.parametrize("spec", SELF_SPECS, ids=lambda s: s.name)
def test_strongswan_pair(
    spec: interop.Spec, pair: Topology, tmp_path: Path, charons: list[Charon]
) -> None:
    moon, sun = start_pair(spec, pair, tmp_path, charons)
    result = moon.initiate(child="net")
    assert result.ok, result.output
    (m_sa,) = moon.list_sas()
    (s_sa,) = sun.list_sas()
    assert m_sa.state == s_sa.state == "ESTABLISHED"
    assert (m_sa.spi_i, m_sa.spi_r) == (s_sa.spi_i, s_sa.spi_r)
    assert m_sa.initiator and not s_sa.initiator
    assert m_sa.remote_id == spec.identity("sun") and s_sa.remote_id == spec.identity("moon")
    (m_child,) = m_sa.installed_children
    (s_child,) = s_sa.installed_children
    assert (m_child.spi_in, m_child.spi_out) == (s_child.spi_out, s_child.spi_in)
    assert m_child.local_ts == s_child.remote_ts == (interop.LEFT_NET,)
    # the log tooling: both charons derived the same child and IKE keys
    (m_keys,) = moon.child_keys()
    (s_keys,) = sun.child_keys()
    assert m_keys.by_spi(True) == s_keys.by_spi(False)
    assert len(m_keys.encr_i) >= 16 and m_keys.encr_i != m_keys.encr_r
    (m_ike,) = moon.ike_keys()
    (s_ike,) = sun.ike_keys()
    assert m_ike.sk_d == s_ike.sk_d and m_ike.sk_ei == s_ike.sk_ei and m_ike.sk_pr == s_ike.sk_pr
    moon.terminate(ike=spec.name)
    sun.wait_for(lambda sas: not sas, timeout=5)


@pytest.mark.interop
def test_strongswan_pair_wrong_psk(pair: Topology, tmp_path: Path, charons: list[Charon]) -> None:
    spec = interop.Spec("wrong-psk", ours_psk="the-wrong-secret-0123456789")
    moon, sun = start_pair(spec, pair, tmp_path, charons)
    result = moon.initiate(child="net", timeout=5)
    assert not result.ok
    assert "AUTHENTICATION_FAILED" in result.output
    assert "MAC mismatched" in sun.log()
    assert sun.sent("IKE_AUTH response", "AUTH_FAILED")
    assert sun.list_sas() == [] and moon.list_sas() == []


# --- the parsers, without strongSwan ------------------------------------------------------------


def test_render_conf() -> None:
    text = render_conf({"a": {"b": ["x", "y"], "c": True, "d": 3}})
    assert text == "a {\n  b = x, y\n  c = yes\n  d = 3\n}"


PRETTY = """list-sa event {
  c {
    uniqueid = 7
    state = ESTABLISHED
    initiator = yes
    local-id = C=CH, O=ikev2 test, CN=moon
    initiator-spi = 0123456789abcdef
    responder-spi = fedcba9876543210
    child-sas {
      net-9 {
        name = net
        state = INSTALLED
        spi-in = c0ffee01
        spi-out = c0ffee02
        local-ts = [
          10.1.0.0/24
        ]
      }
    }
  }
}
"""


def test_parse_pretty() -> None:
    assert parse_pretty(PRETTY)["list-sa event"]["c"]["uniqueid"] == "7"
    (sa,) = sas_from_pretty(PRETTY)
    assert sa.local_id == "C=CH, O=ikev2 test, CN=moon" and sa.initiator
    (child,) = sa.installed_children
    assert (child.spi_in, child.spi_out, child.local_ts) == (
        "c0ffee01",
        "c0ffee02",
        ("10.1.0.0/24",),
    )


def test_two_ike_sas_of_one_connection_stay_apart() -> None:
    """swanctl prints one event per IKE SA; two of connection `c` must not merge into one SA
    carrying both children (unique = no, a second IKE SA of the same peer)."""
    second = PRETTY.replace("uniqueid = 7", "uniqueid = 8").replace("c0ffee01", "c0ffee03")
    first, other = sas_from_pretty(PRETTY + second)
    assert (first.uniqueid, other.uniqueid) == ("7", "8")
    assert [c.spi_in for c in first.children] == ["c0ffee01"]
    assert [c.spi_in for c in other.children] == ["c0ffee03"]


LOG = """12:00:00.000 01[CHD] <c|1> seed => 4 bytes @ 0x1
12:00:00.000 01[CHD] <c|1>    0: 00 01 02 03                                      ....
12:00:00.000 01[CHD] <c|1> encryption initiator key => 20 bytes @ 0x2
12:00:00.000 01[CHD] <c|1>    0: 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E 1F  ................
12:00:00.000 01[CHD] <c|1>   16: 20 21 22 23                                       !"#
12:00:00.000 01[CHD] <c|1> encryption responder key => 2 bytes @ 0x3
12:00:00.000 01[CHD] <c|1>    0: AA BB                                            ..
12:00:00.000 01[IKE] <c|1> CHILD_SA net{1} established with SPIs c0ffee01_i c0ffee02_o and TS
"""


def test_child_keys_from_log() -> None:
    assert [d.label for d in log_dumps(LOG)] == [
        "seed",
        "encryption initiator key",
        "encryption responder key",
    ]
    (keys,) = child_keys(LOG)
    assert keys.encr_i == bytes(range(0x10, 0x24)) and keys.encr_r == b"\xaa\xbb"
    assert (keys.spi_in, keys.spi_out, keys.child) == ("c0ffee01", "c0ffee02", "net{1}")
    # charon initiated: it sends with encr_i on its outbound SPI
    assert keys.by_spi(True)["c0ffee02"] == (keys.encr_i, b"")


def test_compare_keys() -> None:
    theirs = ChildKeys(
        "c|1", "net{1}", "c0ffee01", "c0ffee02", b"\x01" * 20, b"\x02" * 20, b"", b""
    )
    ours = parse_key_log(
        '"IPv4","10.99.0.1","10.99.0.2","0xc0ffee01","AES-GCM [RFC4106]","0x'
        + "01" * 20
        + '","NULL","0x"\n'
        '"IPv4","10.99.0.2","10.99.0.1","0xc0ffee02","AES-GCM [RFC4106]","0x'
        + "02" * 20
        + '","NULL","0x"\n'
        + "0123456789abcdef,fedcba9876543210,"
        + "aa" * 36
        + ","
        + "bb" * 36
        + ',"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"\n'
    )
    # charon did not initiate: its inbound SA (spi_in) carries initiator->responder keys
    assert compare_child(ours, theirs, they_initiated=False) == []
    assert compare_child(ours, theirs, they_initiated=True) != []
    assert ours.ike[("0123456789abcdef", "fedcba9876543210")].sk_ei == b"\xaa" * 36
    assert compare_ike(ours, _ike_keys(), "0123456789abcdef", "fedcba9876543210") == [
        "IKE SA 0123456789abcdef_i fedcba9876543210_r: sk_er differs"
    ]


def _ike_keys() -> IkeKeys:
    return IkeKeys("c|1", b"", b"", b"\xaa" * 36, b"\xcc" * 36, b"", b"", b"", b"")
