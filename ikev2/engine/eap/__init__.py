"""EAP inside IKEv2 (RFC 7296 §2.16): pure, no IO. One module per method behind base.py's
interface (identity, md5, mschapv2, tls), the authenticator's conversation in server.py and the
peer's in peer.py. EAP-TLS runs OpenSSL's TLS on memory BIOs through pyOpenSSL (tls.py says
why not the stdlib `ssl`, which the import contract keeps out of ikev2.engine anyway).
"""

from __future__ import annotations

from .base import EapCode, EapError, EapPacket, EapType, Outcome, parse_packet
from .peer import EapPeer, PeerResult
from .server import EapServer, ServerResult

# swanctl's auth = eap-NAME -> the EAP method type
METHODS: dict[str, EapType] = {
    "md5": EapType.MD5_CHALLENGE,
    "mschapv2": EapType.MSCHAPV2,
    "tls": EapType.TLS,
}
# methods that work from a password (secrets.eap*); EAP-TLS works from certificates
PASSWORD_METHODS = frozenset({EapType.MD5_CHALLENGE, EapType.MSCHAPV2})

__all__ = [
    "METHODS",
    "PASSWORD_METHODS",
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
