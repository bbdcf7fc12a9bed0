"""Read-only views of the engine's SAs for the service: `list-sas` and the Wireshark key log.

Views are plain frozen dataclasses built on demand; nothing here changes engine state. Keys appear
only in KeyExport, which the service asks for only when the user turned key export on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..constants import EncrId, IntegId, enum_name
from .events import Endpoint
from .ike_sa import IkeSa


@dataclass(frozen=True, slots=True)
class ChildView:
    name: str
    reqid: int
    protocol: str
    mode: str
    spi_in: int
    spi_out: int
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    suite: str
    cpi_in: int = 0  # IPComp CPIs (RFC 3173), 0 without IPComp
    cpi_out: int = 0


@dataclass(frozen=True, slots=True)
class IkeSaView:
    id: int
    connection: str
    state: str
    initiator: bool
    local: Endpoint
    remote: Endpoint
    spi_i: str
    spi_r: str
    local_id: str
    remote_id: str
    suite: str
    nat_local: bool
    nat_remote: bool
    established_at: float | None
    children: tuple[ChildView, ...]
    # virtual IPs from CP (RFC 7296 §2.19): ours as a client, the peer's as a gateway
    local_vips: tuple[str, ...] = ()
    remote_vips: tuple[str, ...] = ()
    ppk: bool = False  # RFC 8784: a post-quantum preshared key is in the keys
    # RFC 7296 §2.3: (requests we may have in flight, requests we take at once), and the most
    # of ours that were ever in flight at once
    window: tuple[int, int] = (1, 1)
    peak_outstanding: int = 0


@dataclass(frozen=True, slots=True)
class KeyExport:
    """One line of Wireshark's ikev2_decryption_table (SPIs, SK_e*, SK_a*, algorithm names)."""

    spi_i: bytes
    spi_r: bytes
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    encr: str
    encr_key_bits: int | None
    integ: str | None


Counts = dict[tuple[str, str], int]


def sa_counts(sas: Iterable[IkeSa]) -> tuple[Counts, Counts]:
    """IKE SAs by (connection, state) and the child SAs of established IKE SAs by (connection,
    child): the aggregate metrics, without building a view per SA (100,000 views take seconds)."""
    ike: Counts = {}
    children: Counts = {}
    for sa in sas:
        key = (sa.conn.name, sa.state.value)
        ike[key] = ike.get(key, 0) + 1
        if key[1] == "established":
            for child in sa.children:
                ckey = (key[0], child.config.name)
                children[ckey] = children.get(ckey, 0) + 1
    return ike, children


def child_view(sa: IkeSa) -> tuple[ChildView, ...]:
    views = []
    for child in sa.children:
        event = child.event
        views.append(
            ChildView(
                name=child.config.name,
                reqid=child.reqid,
                protocol=child.protocol.name,
                mode=child.mode.value,
                spi_in=child.spi_in,
                spi_out=child.spi_out,
                local_ts=tuple(str(ts.network) for ts in event.local_ts) if event else (),
                remote_ts=tuple(str(ts.network) for ts in event.remote_ts) if event else (),
                suite=event.suite if event else "",
                cpi_in=event.cpi_in if event else 0,
                cpi_out=event.cpi_out if event else 0,
            )
        )
    return tuple(views)


def ike_sa_view(sa: IkeSa) -> IkeSaView:
    from .support import describe_suite

    return IkeSaView(
        id=sa.id,
        connection=sa.conn.name,
        state=sa.state.value,
        initiator=sa.initiator,
        local=sa.local,
        remote=sa.remote,
        spi_i=sa.spi_i.hex(),
        spi_r=sa.spi_r.hex(),
        local_id=str(sa.conn.local_id),
        remote_id=str(sa.remote_identity) if sa.remote_identity else "",
        suite=describe_suite(sa.suite) if sa.suite else "",
        nat_local=sa.nat_local,
        nat_remote=sa.nat_remote,
        established_at=sa.established_at,
        children=child_view(sa),
        local_vips=tuple(map(str, sa.cp.local_vips)) if sa.cp else (),
        remote_vips=tuple(map(str, sa.cp.remote_vips)) if sa.cp else (),
        ppk=sa.ppk is not None and sa.ppk.used,
        window=(sa.requests.size, sa.responses.size),
        peak_outstanding=sa.requests.peak,
    )


def key_export(sa: IkeSa) -> KeyExport | None:
    if sa.keys is None or sa.suite is None or sa.suite.encr is None:
        return None
    keys = sa.keys
    return KeyExport(
        spi_i=sa.spi_i,
        spi_r=sa.spi_r,
        sk_ei=keys.sk_ei,
        sk_er=keys.sk_er,
        sk_ai=keys.sk_ai,
        sk_ar=keys.sk_ar,
        encr=enum_name(EncrId, sa.suite.encr),
        encr_key_bits=sa.suite.encr_key_bits,
        integ=enum_name(IntegId, sa.suite.integ) if sa.suite.integ else None,
    )
