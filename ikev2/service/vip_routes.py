"""A remote-access client's routes (RFC 7296 §2.19): what a strongSwan user expects once the
gateway leased a virtual IP and a tunnel-mode child covers it, so traffic to the networks behind
the gateway leaves from the virtual IP and the XFRM policy takes it into the tunnel:

    ip rule:   220: from all lookup 220
    ip route:  REMOTE_TS via NEXT_HOP dev IF proto static src VIP table 220

one route per remote selector network of the child whose family has a virtual IP inside the
child's local selectors; NEXT_HOP/IF are how the kernel reaches the gateway (kernel/routes.py).
A route is shared by every child that needs it (a rekeyed child is up before the old one goes)
and removed with the last; the rule of a family goes with its last route. Routes that were
there before (EEXIST) are left alone. `[daemon] install_routes = false` turns this off.
"""

from __future__ import annotations

from ..engine.config import IPAddress, Mode
from ..engine.events import ChildSaDeleted, ChildSaEstablished
from ..kernel import KernelError
from ..kernel.routes import ROUTING_TABLE, Route, RouteTable
from ..log import get_logger

log = get_logger("ikev2.service.routes")


class VipRoutes:
    def __init__(self, table: RouteTable, routing_table: int = ROUTING_TABLE) -> None:
        self.table = table
        self.routing_table = routing_table
        self.users: dict[Route, set[int]] = {}  # route -> inbound SPIs of the children using it
        self.ours: set[Route] = set()  # routes we added (removed again)
        self.rules: set[int] = set()  # address families whose rule we added

    def child_up(self, event: ChildSaEstablished, vips: list[IPAddress]) -> None:
        """Routes for a child of an IKE SA that holds virtual IPs (any IKE SA of ours: a child
        rekeyed onto a rekeyed IKE SA keeps the address)."""
        if event.mode is not Mode.TUNNEL or not vips:
            return
        local = [ts.network for ts in event.local_ts]
        sources = {v.version: v for v in vips if any(v in net for net in local)}
        wanted = [ts.network for ts in event.remote_ts if ts.network.version in sources]
        if not wanted:
            return
        try:
            gateway, interface = self.table.next_hop(event.outbound.dst)
        except KernelError as exc:
            log.warning("no routes: the gateway is unreachable", error=str(exc))
            return
        for network in dict.fromkeys(wanted):
            route = Route(network, sources[network.version], gateway, interface, self.routing_table)
            users = self.users.setdefault(route, set())
            if not users:
                self._add(route)
            users.add(event.spi_in)

    def child_down(self, event: ChildSaDeleted) -> None:
        for route, users in list(self.users.items()):
            users.discard(event.spi_in)
            if not users:
                del self.users[route]
                self._remove(route)

    def remove_all(self) -> int:
        """At shutdown: every route and rule we added goes."""
        count = len(self.ours)
        for route in sorted(self.ours, key=str):
            self._remove(route)
        self.users.clear()
        return count

    def _add(self, route: Route) -> None:
        version = route.dst.version
        try:
            if version not in self.rules and self.table.add_rule(version, self.routing_table):
                self.rules.add(version)
            if self.table.add(route):
                self.ours.add(route)
                log.info("route installed", dst=str(route.dst), src=str(route.src),
                         via=str(route.gateway or "-"), table=route.table)  # fmt: skip
        except KernelError as exc:
            log.warning("route not installed", dst=str(route.dst), error=str(exc))

    def _remove(self, route: Route) -> None:
        if route in self.ours:
            self.ours.discard(route)
            try:
                self.table.delete(route)
                log.info("route removed", dst=str(route.dst), src=str(route.src))
            except KernelError as exc:
                log.warning("route not removed", dst=str(route.dst), error=str(exc))
        version = route.dst.version
        if version in self.rules and not any(r.dst.version == version for r in self.ours):
            self.rules.discard(version)
            try:
                self.table.delete_rule(version, self.routing_table)
            except KernelError as exc:
                log.warning("routing rule not removed", table=self.routing_table, error=str(exc))
