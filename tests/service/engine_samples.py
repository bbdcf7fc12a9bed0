"""Real IKE messages from an in-process engine, for tests that mutate them."""

from __future__ import annotations

import ipaddress

from ikev2.constants import IdType, ProtocolId
from ikev2.engine import Engine
from ikev2.engine.config import (
    AuthMethodName,
    ChildConfig,
    ConnectionConfig,
    Credentials,
    EngineConfig,
    Identity,
    TrafficSelectorSpec,
)
from ikev2.engine.proposal_strings import parse_proposals


def init_request() -> bytes:
    """An IKE_SA_INIT request (x25519, AES-GCM) as a throwaway initiator sends it."""
    psk = Credentials(AuthMethodName.PSK, psk=b"throwaway")
    conn = ConnectionConfig(
        name="x",
        local_addrs=(ipaddress.ip_address("127.0.0.3"),),
        remote_addrs=(ipaddress.ip_address("127.0.0.2"),),
        local_id=Identity(IdType.FQDN, b"x.example"),
        local_auth=psk,
        remote_auth=psk,
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE),
        children=(
            ChildConfig(
                "x",
                (TrafficSelectorSpec(ipaddress.ip_network("10.9.0.0/24")),),
                (TrafficSelectorSpec(ipaddress.ip_network("10.8.0.0/24")),),
                parse_proposals("aes256gcm16", ProtocolId.ESP),
            ),
        ),
    )
    engine = Engine(EngineConfig((conn,)))
    engine.initiate("x", 0.0)
    [datagram] = engine.datagrams_to_send()
    return datagram.data
