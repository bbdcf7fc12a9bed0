"""`ikev2 list-conns` and `ikev2 list-certs`: what a configuration file sets up, read offline.

Both load the file with the daemon's own loader (config.py), so what they show is what the daemon
would run with; neither opens a socket. Each listing has a text form for people and a JSON form
(`--json`) for scripts. Secrets never appear: a PSK connection says "psk", nothing more.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ..config import ServiceConfig
from ..engine.config import ChildConfig, ConnectionConfig, TrafficSelectorSpec
from ..engine.identity import format_dn, identity_to_str
from ..engine.proposal_strings import format_proposals

_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}


def _selector(ts: TrafficSelectorSpec) -> str:
    """swanctl's notation back: 10.1.0.0/24, 10.1.0.0/24[tcp/80]."""
    text = str(ts.network)
    whole = (ts.start_port, ts.end_port) == (0, 65535)
    if ts.ip_protocol == 0 and whole:
        return text
    proto = _PROTOCOLS.get(ts.ip_protocol, str(ts.ip_protocol)) if ts.ip_protocol else "any"
    if whole:
        return f"{text}[{proto}]"
    ports = str(ts.start_port) if ts.start_port == ts.end_port else f"{ts.start_port}-{ts.end_port}"
    return f"{text}[{proto}/{ports}]"


def _child(child: ChildConfig, start_action: str) -> dict[str, Any]:
    return {
        "name": child.name,
        "mode": child.mode.value,
        "local_ts": [_selector(ts) for ts in child.local_ts],
        "remote_ts": [_selector(ts) for ts in child.remote_ts],
        "proposals": format_proposals(child.proposals).split(","),
        "start_action": start_action,
        "rekey_time": child.rekey_time,
        "life_time": child.life_time,
    }


def connection_json(config: ServiceConfig, conn: ConnectionConfig) -> dict[str, Any]:
    return {
        "name": conn.name,
        "local_addrs": [str(a) for a in conn.local_addrs] or ["%any"],
        "remote_addrs": [str(a) for a in conn.remote_addrs] or ["%any"],
        "local_port": conn.local_port,
        "remote_port": conn.remote_port,
        "local_id": identity_to_str(conn.local_id),
        "remote_id": identity_to_str(conn.remote_id) if conn.remote_id else "%any",
        "local_auth": conn.local_auth.method.value,
        "remote_auth": "eap-radius"
        if conn.remote_auth.eap_radius
        else conn.remote_auth.method.value,
        "childless": conn.childless.value,  # RFC 6023
        "proposals": format_proposals(conn.ike_proposals).split(","),
        "rekey_time": conn.timers.ike_rekey_time,
        "reauth_time": conn.timers.reauth_time,
        "dpd_delay": conn.timers.dpd_delay,
        "pools": list(conn.pools),
        "vips": [str(v) for v in conn.vips],
        "children": [
            _child(c, config.start_actions.get((conn.name, c.name), "none")) for c in conn.children
        ],
    }


def list_conns(config: ServiceConfig) -> list[dict[str, Any]]:
    return [connection_json(config, conn) for conn in config.engine.connections]


def format_conns(conns: list[dict[str, Any]]) -> str:
    """swanctl --list-conns style text."""
    lines = []
    for c in conns:
        lines.append(
            f"{c['name']}: IKEv2, {','.join(c['local_addrs'])}...{','.join(c['remote_addrs'])}"
            f" (port {c['local_port']}/{c['remote_port']}), rekey {c['rekey_time']:g}s,"
            f" dpd {c['dpd_delay']:g}s"
        )
        lines.append(f"  proposals: {', '.join(c['proposals'])}")
        lines.append(f"  local:  {c['local_auth']} authentication, id {c['local_id']}")
        lines.append(f"  remote: {c['remote_auth']} authentication, id {c['remote_id']}")
        if c["pools"]:
            lines.append(f"  pools: {', '.join(c['pools'])}")
        if c["vips"]:
            lines.append(f"  vips: {', '.join(c['vips'])}")
        for child in c["children"]:
            lines.append(
                f"  {child['name']}: {child['mode'].upper()}, start_action {child['start_action']}"
                f", rekey {child['rekey_time']:g}s"
            )
            lines.append(f"    proposals: {', '.join(child['proposals'])}")
            lines.append(f"    local:  {', '.join(child['local_ts'])}")
            lines.append(f"    remote: {', '.join(child['remote_ts'])}")
    return "\n".join(lines) if lines else "no connections"


# --------------------------------------------------------------------------- certificates


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _alt_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [str(name.value) for name in ext]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def certificate_json(der: bytes, now: datetime) -> dict[str, Any]:
    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    return {
        "subject": format_dn(cert.subject),
        "issuer": format_dn(cert.issuer),
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": (not_after - now).days,
        "valid_now": cert.not_valid_before_utc <= now <= not_after,
        "ca": _is_ca(cert),
        "key": _key_text(cert),
        "alt_names": _alt_names(cert),
        "sha256": hashlib.sha256(der).hexdigest(),
        "used_by": [],
    }


def list_certs(config: ServiceConfig, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every certificate the connections use, once each, with who uses it how: "CONN local"
    (our chain), "CONN trust" (an anchor for the peer's chain)."""
    now = now or datetime.now(UTC)
    found: dict[str, dict[str, Any]] = {}
    for conn in config.engine.connections:
        uses = [(der, "local") for der in conn.local_auth.certs]
        uses += [(der, "trust") for der in conn.remote_auth.trust_anchors]
        for der, use in uses:
            digest = hashlib.sha256(der).hexdigest()
            entry = found.setdefault(digest, certificate_json(der, now))
            tag = f"{conn.name} {use}"
            if tag not in entry["used_by"]:
                entry["used_by"].append(tag)
    return list(found.values())


def format_certs(certs: list[dict[str, Any]]) -> str:
    lines = []
    for c in certs:
        state = "valid" if c["valid_now"] else "NOT VALID NOW"
        lines.append(f"subject:  {c['subject']}{'  (CA)' if c['ca'] else ''}")
        lines.append(f"  issuer:   {c['issuer']}")
        lines.append(f"  serial:   {c['serial']}    key: {c['key']}")
        lines.append(
            f"  validity: {c['not_before']} .. {c['not_after']}"
            f" ({state}, {c['days_left']} days left)"
        )
        if c["alt_names"]:
            lines.append(f"  altNames: {', '.join(c['alt_names'])}")
        lines.append(f"  sha256:   {c['sha256']}")
        lines.append(f"  used by:  {', '.join(c['used_by'])}")
    return "\n".join(lines) if lines else "no certificates"
