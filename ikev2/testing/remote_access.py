"""Remote-access configurations (RFC 7296 §2.19 virtual IPs, PSK) for both sides of the interop
rows: our gateway with pools and strongSwan road warriors asking for `vips`, or our road warrior
against a strongSwan gateway with swanctl `pools {}`. Used by tests/interop/test_remote_access.py
on the host and tests/interop/guest_remote_access.py in the QEMU guest (real XFRM).

The road warrior is on the left, the gateway on the right with BEHIND (10.2.0.0/24,
fd00:20::/64) behind it. Our pools: rw-v4 (given), rw-v6 fd03::/120; strongSwan's: rw4
10.4.0.0/28, rw6 fd04::/120; both hand out DNS servers 10.2.0.53 and fd00:20::53.
"""

from __future__ import annotations

from typing import Any

from .strongswan import ConfValue

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
PSK = "remote-access interop PSK 5c1f0e9d2b"
CAROL, DAVE = "carol@ikev2.test", "dave@ikev2.test"
GATEWAY_ID = "gateway.ikev2.test"
BEHIND = ["10.2.0.0/24", "fd00:20::/64"]
DNS = ("10.2.0.53", "fd00:20::53")


def ss_conn(addr: str, peer: str, local_id: str, remote_id: str, **extra: ConfValue
            ) -> dict[str, ConfValue]:  # fmt: skip
    """A strongSwan PSK connection with one child `net`; local_ts/remote_ts go to the child,
    everything else (vips, pools) to the connection."""
    child: dict[str, ConfValue] = {"esp_proposals": ESP, "rekey_time": "0", "life_time": "0",
                                   "start_action": "none"}  # fmt: skip
    for key in ("local_ts", "remote_ts"):
        if key in extra:
            child[key] = extra.pop(key)
    return {
        "version": 2, "local_addrs": addr, "remote_addrs": peer, "proposals": IKE,
        "rekey_time": "0", "reauth_time": "0", "unique": "never", "dpd_delay": "0",
        "local": {"id": local_id, "auth": "psk"}, "remote": {"id": remote_id, "auth": "psk"},
        "children": {"net": child}, **extra,
    }  # fmt: skip


def ours_gateway(addr: str, v4: str) -> dict[str, Any]:
    """Our gateway on `addr`: pools rw-v4 (`v4`) and rw-v6, any PSK-authenticated client."""
    child = {"local_ts": BEHIND, "esp_proposals": [ESP], "rekey_time": "0s"}
    return {
        "daemon": {"addresses": [addr], "port": 500, "nat_port": 4500},
        "pools": {
            "rw-v4": {"addrs": v4, "dns": [DNS[0]], "subnet": [BEHIND[0]]},
            "rw-v6": {"addrs": "fd03::/120", "dns": [DNS[1]]},
        },
        "connections": {
            "rw": {
                "local_addrs": [addr],
                "proposals": [IKE],
                "dpd_delay": "0s",
                "rekey_time": "0s",
                "pools": ["rw-v4", "rw-v6"],
                "local": {"id": GATEWAY_ID, "auth": "psk"},
                "remote": {"id": "%any", "auth": "psk"},
                "children": {"net": child},
            }
        },
        "secrets": {"rw": {"ids": [GATEWAY_ID], "secret": PSK}},
    }


def ss_road_warriors(addr: str, gateway: str) -> dict[str, ConfValue]:
    """carol (`rw`) and dave (`rw2`) in one charon, each asking for any IPv4 and IPv6 address."""
    conns: dict[str, ConfValue] = {}
    for name, ident in (("rw", CAROL), ("rw2", DAVE)):
        conns[name] = ss_conn(addr, gateway, ident, GATEWAY_ID, vips="0.0.0.0,::",
                              remote_ts=",".join(BEHIND))  # fmt: skip
    secrets = {"ike-rw": {"id-1": CAROL, "id-2": DAVE, "id-3": GATEWAY_ID, "secret": f'"{PSK}"'}}
    return {"connections": conns, "secrets": secrets}


def ours_client(addr: str, gateway: str, dns_hook: str = "") -> dict[str, Any]:
    """Our road warrior carol asking for any IPv4 and IPv6 address."""
    daemon: dict[str, Any] = {"addresses": [addr], "port": 500, "nat_port": 4500}
    if dns_hook:
        daemon["dns_hook"] = dns_hook
    child = {"remote_ts": BEHIND, "esp_proposals": [ESP], "rekey_time": "0s"}
    return {
        "daemon": daemon,
        "connections": {
            "rw": {
                "local_addrs": [addr],
                "remote_addrs": [gateway],
                "proposals": [IKE],
                "dpd_delay": "0s",
                "rekey_time": "0s",
                "vips": ["0.0.0.0", "::"],
                "local": {"id": CAROL, "auth": "psk"},
                "remote": {"id": GATEWAY_ID, "auth": "psk"},
                "children": {"net": child},
            }
        },
        "secrets": {"rw": {"ids": [CAROL, GATEWAY_ID], "secret": PSK}},
    }


def ss_gateway(addr: str, client: str) -> dict[str, ConfValue]:
    """A strongSwan gateway with swanctl pools rw4/rw6 (vici's in-memory pools)."""
    conn = ss_conn(addr, client, GATEWAY_ID, "%any", pools="rw4,rw6",
                   local_ts=",".join(BEHIND))  # fmt: skip
    return {
        "connections": {"rw": conn},
        "pools": {
            "rw4": {"addrs": "10.4.0.0/28", "dns": DNS[0]},
            "rw6": {"addrs": "fd04::/120", "dns": DNS[1]},
        },
        "secrets": {"ike-rw": {"id-1": CAROL, "id-2": GATEWAY_ID, "secret": f'"{PSK}"'}},
    }


def vips_of(raw: dict[str, Any], key: str = "local-vips") -> list[str]:
    """strongSwan's `local-vips` / `remote-vips` of one IKE SA from `swanctl --list-sas`."""
    value = raw.get(key) or []
    return [value] if isinstance(value, str) else list(value)
