"""`ikev2 import-swanctl swanctl.conf [--secrets FILE ...] > ikev2.toml`: strongSwan's swanctl.conf
(connections, children, local/remote rounds, proposals, pools, secrets, includes) as our TOML.

Names mostly match already (config.py follows swanctl.conf). What differs is translated:
- credentials: swanctl finds files in x509/, x509ca/ and private/ beside swanctl.conf; we write
  absolute paths, and `key` = the private key (from private/, rsa/, ecdsa/, pkcs8/) whose public
  key is that of the local certificate. No `cacerts` on a pubkey remote: swanctl trusts every CA
  it loaded, so `cadir` = the x509ca/ folder;
- defaults that differ: swanctl has no DPD unless dpd_delay is set (ours: 30 s), so "0s" is
  written; a pubkey local without `id` is the certificate's subject DN in swanctl;
- yes/no become booleans, comma lists become arrays, secrets `0x..`/`0s..` are decoded.
Every setting that cannot be carried over is named on stderr, with why ("KEY: not carried over
(REASON)"); the output loads with our loader (check it with `ikev2 check-config`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)

from ..engine.identity import format_dn
from .swanctl_syntax import SwanctlSyntaxError, Tree, read_settings

KEY_DIRS = ("private", "rsa", "ecdsa", "pkcs8")
# settings with no counterpart here, and why (anything else unknown: "no equivalent setting")
WHY = {
    "encap": "UDP encapsulation is used only when a NAT is detected",
    "unique": "no uniqueness policy; INITIAL_CONTACT replaces old IKE SAs",
    "aggressive": "IKEv1 only",
    "pull": "IKEv1 only",
    "keyingtries": "retransmission is set per connection (retransmit_*), no retry loop",
    "dpd_timeout": "IKEv1 only",
    "if_id_in": "no XFRM interfaces", "if_id_out": "no XFRM interfaces",
    "mediation": "no mediation", "mediated_by": "no mediation", "mediation_peer": "no mediation",
    "rand_time": "no lifetime jitter", "rekey_bytes": "no volume-based rekeying (life_bytes only)",
    "rekey_packets": "no volume-based rekeying (life_packets only)",
    "dpd_action": "a dead peer's SAs are always cleared",
    "close_action": "no close action", "updown": "no updown script", "hostaccess": "no updown",
    "policies": "policies are always installed",
    "policies_fwd_out": "no outbound FWD policies", "inactivity": "no inactivity timeout",
    "reqid": "reqids are allocated", "priority": "policy priorities are computed",
    "mark_in": "no marks", "mark_out": "no marks", "set_mark_in": "no marks",
    "set_mark_out": "no marks", "interface": "no interface binding",
    "sha256_96": "no truncated SHA-256 (RFC 4868 lengths only)",
    "copy_df": "kernel defaults", "copy_ecn": "kernel defaults", "copy_dscp": "kernel defaults",
    "hw_offload": "no hardware offload", "label": "no security labels", "label_mode": "no labels",
    "cert_policy": "no certificate policies",
    "groups": "no group membership", "ca_id": "no CA constraint by identity",
    "pubkeys": "raw public keys are not supported (use certs)",
    "aaa_id": "no RADIUS", "xauth_id": "IKEv1 only",
}  # fmt: skip
CONN_KEYS = {"local_addrs", "remote_addrs", "local_port", "remote_port", "proposals", "dpd_delay",
             "rekey_time", "reauth_time", "over_time", "fragmentation", "send_certreq",
             "send_cert", "pools", "vips", "version", "children", "childless", "ppk_id",
             "ppk_required", "mobike"}  # fmt: skip
CHILD_KEYS = {"local_ts", "remote_ts", "esp_proposals", "ah_proposals", "mode", "start_action",
              "rekey_time", "life_time", "life_bytes", "life_packets", "replay_window",
              "ipcomp"}  # fmt: skip
POOL_KEYS = {"addrs": "addrs", "dns": "dns", "subnet": "subnet", "split_include": "subnet"}
EAP_REMOTE = {"eap-md5": "eap-md5", "eap-mschapv2": "eap-mschapv2", "eap-dynamic": "eap"}


@dataclass
class Import:
    """The imported configuration and what could not be carried over."""

    source: Path
    swanctl_dir: Path
    toml: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def drop(self, key: str, reason: str) -> None:
        self.dropped.append(f"{key}: not carried over ({reason})")


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "enabled", "1", "accept", "force")


def _addresses(imp: Import, key: str, value: str) -> list[str]:
    """IP addresses and %any stay; names, ranges and subnets cannot (we need exact addresses)."""
    out = []
    for item in _list(value):
        if item.lower() in ("%any", "%any4", "%any6"):
            out.append("%any")
            continue
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            wide = "/" in item or "-" in item
            imp.drop(f"{key} = {item}", "a subnet or range: the peer may be anywhere (%any)"
                     if wide else "host names are not resolved; give an IP address")  # fmt: skip
            if wide:
                out.append("%any")
    return sorted(set(out), key=out.index)


def _file(imp: Import, folder: str, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else imp.swanctl_dir / folder / name


def _cert_public(path: Path) -> tuple[x509.Certificate | None, bytes | None]:
    try:
        data = path.read_bytes()
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except (OSError, ValueError):
        return None, None
    return cert, cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _matching_key(imp: Import, public: bytes) -> Path | None:
    """The file in private/, rsa/, ecdsa/ or pkcs8/ holding the private half of `public`."""
    for folder in KEY_DIRS:
        directory = imp.swanctl_dir / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            try:
                data = path.read_bytes()
                load = load_pem_private_key if b"-----BEGIN" in data else load_der_private_key
                key = load(data, None)
            except (OSError, ValueError, TypeError):
                continue
            mine = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            if mine == public:
                return path
    return None


def _local(imp: Import, key: str, table: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    auth = table.get("auth", "pubkey").strip().lower()
    if auth in ("rsa", "ecdsa", "ed25519", "ed448") or auth.startswith(("pubkey-", "rsa-")):
        imp.drop(f"{key}.auth = {auth}", "signature scheme constraints: pubkey is used")
        auth = "pubkey"
    if auth.startswith("eap-") and auth not in EAP_REMOTE:
        imp.drop(f"{key}.auth = {auth}", "EAP methods here: md5, mschapv2; eap-md5 is written")
        auth = "eap-md5"
    if auth == "eap-dynamic":
        auth = "eap"
    if auth not in ("psk", "pubkey", "eap", "eap-md5", "eap-mschapv2"):
        imp.drop(f"{key}.auth = {auth}", "only psk, pubkey and EAP md5/mschapv2; psk is written")
        auth = "psk"
    out["auth"] = auth
    if "id" in table:
        out["id"] = table["id"]
    if "eap_id" in table:
        out["eap_id"] = table["eap_id"]
    if auth == "pubkey":
        certs = [_file(imp, "x509", c) for c in _list(table.get("certs", ""))]
        if not certs:
            imp.drop(f"{key}.certs", "pubkey without certs (swanctl would pick any): add certs")
        out["certs"] = [str(c) for c in certs]
        if certs:
            cert, public = _cert_public(certs[0])
            if cert is not None and "id" not in out:
                out["id"] = format_dn(cert.subject)  # swanctl's default: the subject DN
            found = _matching_key(imp, public) if public else None
            if found is None:
                imp.drop(f"{key}.key", f"no private key for {certs[0].name} in "
                         f"{'/'.join(KEY_DIRS)}/: add key = \"...\"")  # fmt: skip
            else:
                out["key"] = str(found)
    _rest(imp, key, table, {"auth", "id", "certs", "eap_id", "round"})
    return out


def _remote(imp: Import, key: str, table: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    auth = table.get("auth", "pubkey").strip().lower()
    if auth in ("rsa", "ecdsa", "ed25519", "ed448") or auth.startswith(("pubkey-", "rsa-")):
        imp.drop(f"{key}.auth = {auth}", "signature scheme constraints: pubkey is used")
        auth = "pubkey"
    if auth.startswith("eap-"):
        if auth not in EAP_REMOTE:
            imp.drop(f"{key}.auth = {auth}", "EAP methods here: md5, mschapv2 (eap-dynamic)")
        auth = EAP_REMOTE.get(auth, "eap")
    if auth not in ("psk", "pubkey", "eap", "eap-md5", "eap-mschapv2"):
        imp.drop(f"{key}.auth = {auth}", "only psk, pubkey and EAP; pubkey is written")
        auth = "pubkey"
    out["auth"] = auth
    if "id" in table:
        out["id"] = table["id"]
    if "eap_id" in table:
        out["eap_id"] = table["eap_id"]
    if auth == "pubkey":
        cacerts = [str(_file(imp, "x509ca", c)) for c in _list(table.get("cacerts", ""))]
        if cacerts:
            out["cacerts"] = cacerts
        else:  # swanctl trusts every CA certificate it loaded from x509ca/
            out["cadir"] = str(imp.swanctl_dir / "x509ca")
    if auth == "pubkey" and table.get("revocation") in ("strict", "ifuri", "relaxed"):
        out["revocation"] = table["revocation"]  # same names and meaning (engine/revocation.py)
    elif "revocation" in table:
        imp.drop(f"{key}.revocation = {table['revocation']}", "strict, ifuri or relaxed, pubkey")
    _rest(imp, key, table, {"auth", "id", "cacerts", "eap_id", "round", "revocation"})
    return out


def _rest(imp: Import, key: str, table: Tree, done: set[str]) -> None:
    for name, value in table.items():
        if name not in done:
            reason = WHY.get(name) or "no equivalent setting"
            shown = f"{key}.{name}" + ("" if isinstance(value, dict) else f" = {value}")
            imp.drop(shown, reason)


def _durations(out: dict[str, Any], table: Tree, names: Sequence[str]) -> None:
    for name in names:
        if name in table:
            out[name] = table[name] if table[name].strip() else "0s"


def _child(imp: Import, key: str, table: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("local_ts", "remote_ts", "esp_proposals", "ah_proposals"):
        if name in table:
            out[name] = _list(table[name])
    mode = table.get("mode", "tunnel").lower()
    if mode not in ("tunnel", "transport"):
        imp.drop(f"{key}.mode = {mode}", "only tunnel and transport; tunnel is written")
        mode = "tunnel"
    out["mode"] = mode
    action = table.get("start_action", "none").lower()
    words = set(action.replace("|", " ").split()) & {"none", "start", "trap"}
    if "start" in words and "trap" in words:
        imp.drop(f"{key}.start_action = {action}", "one action here: start is written")
    out["start_action"] = "start" if "start" in words else ("trap" if "trap" in words else "none")
    _durations(out, table, ("rekey_time", "life_time"))
    for name in ("life_bytes", "life_packets", "replay_window"):
        if name in table and table[name].strip().isdigit():
            out[name] = int(table[name])
    if "ipcomp" in table:  # RFC 3173, the same meaning (config_xfrm.py)
        out["ipcomp"] = _yes(table["ipcomp"])
    _rest(imp, key, table, CHILD_KEYS)
    return out


def _connection(imp: Import, name: str, table: Tree) -> dict[str, Any] | None:
    key = f"connections.{name}"
    if table.get("version", "0").strip() == "1":
        imp.drop(key, "IKEv1 (version = 1): this is an IKEv2 daemon")
        return None
    out: dict[str, Any] = {}
    for addr in ("local_addrs", "remote_addrs"):
        if addr in table:
            out[addr] = _addresses(imp, f"{key}.{addr}", table[addr])
    for port in ("local_port", "remote_port"):
        if port in table:
            out[port] = int(table[port])
    if "proposals" in table:
        out["proposals"] = _list(table["proposals"])
    out["dpd_delay"] = table.get("dpd_delay", "0s") or "0s"  # swanctl: no DPD unless set
    _durations(out, table, ("rekey_time", "reauth_time", "over_time"))
    for flag in ("fragmentation", "send_certreq", "mobike"):
        if flag in table:
            value = table[flag].strip().lower()
            if value in ("accept", "force"):
                imp.drop(f"{key}.{flag} = {value}", "on or off here: on is written")
            out[flag] = _yes(value)
    if table.get("childless", "").strip().lower() in ("allow", "prefer", "force", "never"):
        out["childless"] = table["childless"].strip().lower()  # RFC 6023, the same four values
    elif "childless" in table:
        imp.drop(f"{key}.childless = {table['childless']}", "allow, prefer, force or never")
    if table.get("send_cert", "").strip().lower() in ("always", "ifasked", "never"):
        out["send_cert"] = table["send_cert"].strip().lower()  # RFC 7296 §3.6, the same values
    elif "send_cert" in table:
        imp.drop(f"{key}.send_cert = {table['send_cert']}", "always, ifasked or never")
    for name_list in ("pools", "vips"):
        if name_list in table:
            out[name_list] = _list(table[name_list])
    if table.get("ppk_id", "").strip():  # RFC 8784 (config_ppk.py), the same names
        out["ppk_id"] = table["ppk_id"].strip()
    if "ppk_required" in table:
        out["ppk_required"] = _yes(table["ppk_required"])
    rounds = sorted(k for k in table if k == "local" or k.startswith("local-"))
    remotes = sorted(k for k in table if k == "remote" or k.startswith("remote-"))
    for extra in rounds[1:] + remotes[1:]:
        imp.drop(f"{key}.{extra}", "one authentication round per side (RFC 4739 is not here)")
    if rounds:
        out["local"] = _local(imp, f"{key}.{rounds[0]}", table[rounds[0]])
    if remotes:
        out["remote"] = _remote(imp, f"{key}.{remotes[0]}", table[remotes[0]])
    children = table.get("children", {})
    if children:
        out["children"] = {
            child: _child(imp, f"{key}.children.{child}", data)
            for child, data in children.items()
            if isinstance(data, dict)
        }
        _dynamic(imp, key, out)
    skip = CONN_KEYS | set(rounds) | set(remotes)
    _rest(imp, key, {k: v for k, v in table.items() if k not in skip}, set())
    return out


def _dynamic(imp: Import, key: str, conn: dict[str, Any]) -> None:
    """`dynamic` selectors need the address (or a pool) at load time here; swanctl fills them in
    per peer at run time. Without one, write any address of both families: the peer's proposal
    is then accepted as far as it narrows (RFC 7296 §2.9), which is wider than swanctl's."""
    known = {
        "local_ts": [a for a in conn.get("local_addrs", []) if a != "%any"] or conn.get("vips"),
        "remote_ts": [a for a in conn.get("remote_addrs", []) if a != "%any"] or conn.get("pools"),
    }
    for child_name, child in conn.get("children", {}).items():
        for side, have in known.items():
            if not have and child.get(side, ["dynamic"]) == ["dynamic"]:
                child[side] = ["0.0.0.0/0", "::/0"]
                imp.drop(f"{key}.children.{child_name}.{side} = dynamic",
                         "no address to make it of before a peer comes: 0.0.0.0/0 and ::/0 "
                         "written, narrowed to what the peer proposes")  # fmt: skip


def _secret_value(imp: Import, key: str, text: str) -> str | None:
    """swanctl's secret forms: plain, 0x<hex>, 0s<base64>; ours must be text."""
    raw: bytes | None = None
    try:
        if text.startswith("0x"):
            raw = bytes.fromhex(text[2:])
        elif text.startswith("0s"):
            raw = base64.b64decode(text[2:], validate=True)
    except (ValueError, binascii.Error):
        raw = None
    if raw is None:
        return text
    try:
        return raw.decode()
    except UnicodeDecodeError:
        imp.drop(f"{key}.secret", "a binary secret: write it to a file and use secret_file")
        return None


def ids_keys(data: Tree) -> set[str]:
    return {k for k in data if k == "id" or k.startswith("id-")}


def _secrets(imp: Import, table: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data in table.items():
        key = f"secrets.{name}"
        if not isinstance(data, dict):
            imp.drop(key, "not a section")
            continue
        kind = name.split("-", 1)[0].rstrip("0123456789")
        if kind not in ("ike", "eap", "ppk"):
            why = {"xauth": "IKEv1 only", "ntlm": "no NTLM", "token": "no smartcards"}.get(
                kind, "encrypted private keys are not supported: store the key decrypted, "
                "mode 0600")  # fmt: skip
            imp.drop(key, why)
            continue
        ids = [v for k, v in data.items() if k == "id" or k.startswith("id-")]
        if kind == "ppk":  # RFC 8784: our loader reads swanctl's 0x/0s forms itself
            out[name] = {"ids": ids, "secret": data.get("secret", "")}
            others = {k: v for k, v in data.items() if k != "secret" and k not in ids_keys(data)}
            _rest(imp, key, others, set())
            continue
        secret = _secret_value(imp, key, data.get("secret", ""))
        if secret is None:
            continue
        out[name] = {"ids": ids, "secret": secret}  # our loader reads eap* names as EAP users
        others = {k: v for k, v in data.items() if k != "secret" and k not in ids_keys(data)}
        _rest(imp, key, others, set())
    return out


def _pools(imp: Import, table: Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data in table.items():
        if not isinstance(data, dict):
            continue
        pool: dict[str, Any] = {}
        for key, value in data.items():
            ours = POOL_KEYS.get(key)
            if ours is None:
                imp.drop(f"pools.{name}.{key} = {value}", "attribute not served here")
            elif ours == "addrs":
                pool["addrs"] = _list(value)[0] if _list(value) else ""
                if len(_list(value)) > 1:
                    imp.drop(f"pools.{name}.addrs = {value}", "one range per pool: the first")
            else:
                pool[ours] = pool.get(ours, []) + _list(value)
        out[name] = pool
    return out


def import_swanctl(path: Path, secrets: Sequence[Path] = ()) -> Import:
    """Read swanctl.conf (and extra secrets files) into our TOML tree; SwanctlSyntaxError."""
    imp = Import(path, path.resolve().parent)
    tree = read_settings(path)
    for extra in secrets:
        more = read_settings(extra)
        into = tree.setdefault("secrets", {})
        into.update(more.get("secrets", more))
    connections: dict[str, Any] = {}
    for name, data in tree.get("connections", {}).items():
        if isinstance(data, dict):
            conn = _connection(imp, name, data)
            if conn is not None:
                connections[name] = conn
    if connections:
        imp.toml["connections"] = connections
    if tree.get("pools"):
        imp.toml["pools"] = _pools(imp, tree["pools"])
    if tree.get("secrets"):
        imp.toml["secrets"] = _secrets(imp, tree["secrets"])
    for section in tree:
        if section not in ("connections", "pools", "secrets"):
            imp.drop(section, "authorities and other sections have no equivalent here")
    return imp


# --------------------------------------------------------------------------- TOML out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key)


def render_toml(tree: dict[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    for key, value in tree.items():
        if not isinstance(value, dict):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tree.items():
        if isinstance(value, dict):
            name = f"{prefix}{_toml_key(key)}"
            scalars = any(not isinstance(v, dict) for v in value.values()) or not value
            body = render_toml(value, f"{name}.").rstrip("\n")
            lines.append(("\n" if lines else "") + (f"[{name}]\n" if scalars else "") + body)
    return "\n".join(line for line in lines if line.strip()).rstrip() + "\n"


def run_import(
    path: str, secrets: Sequence[str], out: Callable[[str], None], err: Callable[[str], None]
) -> int:
    try:
        imp = import_swanctl(Path(path), [Path(s) for s in secrets])
    except SwanctlSyntaxError as exc:
        err(f"ikev2: {exc}")
        return 1
    out(f"# imported from {imp.source} by `ikev2 import-swanctl`; check: ikev2 check-config FILE\n"
        + render_toml(imp.toml))  # fmt: skip
    for line in imp.dropped:
        err(f"{path}: {line}")
    if not imp.toml.get("connections"):
        err(f"{path}: no connection could be imported")
        return 1
    return 0
