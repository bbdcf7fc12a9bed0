"""EAP inside IKEv2 (RFC 7296 §2.16): pure, no IO. One module per method behind base.py's
interface (identity, md5, mschapv2), the authenticator's conversation in server.py and the
peer's in peer.py. EAP-TLS (RFC 5216) is not here: a TLS engine in the sans-IO core would need
the `ssl` module, which the import contract keeps out of ikev2.engine.
"""

from __future__ import annotations

from .base import EapCode, EapError, EapPacket, EapType, Outcome, parse_packet
from .peer import EapPeer, PeerResult
from .server import EapServer, ServerResult

# swanctl's auth = eap-NAME -> the EAP method type
METHODS: dict[str, EapType] = {
    "md5": EapType.MD5_CHALLENGE,
    "mschapv2": EapType.MSCHAPV2,
}

__all__ = [
    "METHODS",
    "EapCode",
    "EapError",
    "EapPacket",
    "EapPeer",
    "EapServer",
    "EapType",
    "Outcome",
    "PeerResult",
    "ServerResult",
    "parse_packet",
]
