"""Initiators that stand for many peers in load generators and tests: UDP sockets spread over
several loopback addresses (a workers daemon sends a peer's new IKE SAs to the worker of its
address, service/handoff.py), each on an ephemeral port unique among them (ports name
connections), and the PSK road-warrior connection each of them initiates."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from ..constants import IdType, ProtocolId
from ..engine.config import (
    AuthMethodName,
    ChildConfig,
    ConnectionConfig,
    Credentials,
    Identity,
    Timers,
    TrafficSelectorSpec,
)
from ..engine.proposal_strings import parse_proposals


def spread_sockets(
    addresses: Sequence[str], count: int, rcvbuf: int | None = None
) -> dict[int, tuple[socket.socket, str]]:
    """`count` non-blocking UDP sockets, round-robin over `addresses`: port -> (socket, address)."""
    made: dict[int, tuple[socket.socket, str]] = {}
    while len(made) < count:
        address = addresses[len(made) % len(addresses)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((address, 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        if port in made:  # that number is taken on another address: draw again
            sock.close()
            continue
        made[port] = (sock, address)
    return made


def psk_initiator(
    name: str,
    local: str,
    remote: str,
    psk: bytes,
    *,
    local_id: bytes,
    child: str = "net",
    local_port: int = 500,
    remote_port: int = 500,
    nets: tuple[str, str] = ("10.1.0.0/16", "10.2.0.0/16"),
    timers: Timers | None = None,
) -> ConnectionConfig:
    """A PSK initiator (FQDN id, any responder id) with one tunnel child from nets[0] to
    nets[1]: aes256gcm16-prfsha256-x25519, esp aes256gcm16."""
    credentials = Credentials(AuthMethodName.PSK, psk=psk)
    return ConnectionConfig(
        name=name,
        local_addrs=(ipaddress.ip_address(local),),
        remote_addrs=(ipaddress.ip_address(remote),),
        local_id=Identity(IdType.FQDN, local_id),
        local_auth=credentials,
        remote_auth=credentials,
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE),
        children=(
            ChildConfig(
                child,
                (TrafficSelectorSpec(ipaddress.ip_network(nets[0])),),
                (TrafficSelectorSpec(ipaddress.ip_network(nets[1])),),
                parse_proposals("aes256gcm16", ProtocolId.ESP),
            ),
        ),
        local_port=local_port,
        remote_port=remote_port,
        timers=timers or Timers(),
    )
