"""A remote-access client's virtual IPs and DNS servers (RFC 7296 §2.19), from the engine's
VirtualIpsAssigned / VirtualIpsReleased events.

- Addresses: added to `[daemon] vip_interface` (default lo) as /32 or /128 through
  kernel/addresses.py (netlink RTM_NEWADDR) and removed when the last IKE SA holding them goes
  (a reauthentication's new IKE SA gets the same address before the old one is deleted, so they
  are counted per IKE SA). Addresses that were there before are never removed.
- DNS: ikev2 never writes /etc/resolv.conf. `[daemon] dns_hook` names an executable that is run
  (no shell, in order, one at a time, at most HOOK_TIMEOUT seconds each) with
      IKEV2_ACTION       up | down
      IKEV2_CONNECTION   the connection name          IKEV2_IKE_SA  the IKE SA id
      IKEV2_VIPS         virtual IPs, space-separated IKEV2_INTERFACE where they were added
      IKEV2_DNS          DNS servers, space-separated IKEV2_DNS_DOMAINS  INTERNAL_DNS_DOMAIN names
      IKEV2_SUBNETS      INTERNAL_IP4/6_SUBNET networks behind the gateway
  e.g. a script that feeds `resolvconf -a ikev2.$IKEV2_CONNECTION` or `resolvectl dns`.
- Routes: to each tunnel-mode child's remote selectors from the virtual IP, in table 220 as
  strongSwan does (vip_routes.py); `[daemon] install_routes = false` for none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from ..engine.config import IPAddress
from ..engine.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    VirtualIpsAssigned,
    VirtualIpsReleased,
)
from ..kernel import KernelError
from ..kernel.addresses import AddressTable, MemoryAddresses, NetlinkAddresses
from ..kernel.routes import MemoryRoutes, NetlinkRoutes, RouteTable
from ..log import get_logger
from .vip_routes import VipRoutes

log = get_logger("ikev2.service.vips")
HOOK_TIMEOUT = 10.0


def hook_environment(
    action: str, event: VirtualIpsAssigned | VirtualIpsReleased, interface: str
) -> dict[str, str]:
    subnets = event.subnets if isinstance(event, VirtualIpsAssigned) else ()
    domains = event.dns_domains if isinstance(event, VirtualIpsAssigned) else ()
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "IKEV2_ACTION": action,
        "IKEV2_CONNECTION": event.connection,
        "IKEV2_IKE_SA": str(event.ike_sa_id),
        "IKEV2_VIPS": " ".join(map(str, event.vips)),
        "IKEV2_DNS": " ".join(map(str, event.dns)),
        "IKEV2_DNS_DOMAINS": " ".join(domains),
        "IKEV2_SUBNETS": " ".join(map(str, subnets)),
        "IKEV2_INTERFACE": interface,
    }


class VirtualIps:
    def __init__(
        self,
        addresses: AddressTable,
        interface: str = "lo",
        dns_hook: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
        routes: VipRoutes | None = None,
    ) -> None:
        self.addresses = addresses
        self.routes = routes  # None: no routes (install_routes = false)
        self.interface = interface
        self.dns_hook = dns_hook
        self.loop = loop
        self.holders: dict[IPAddress, set[int]] = {}  # address -> IKE SAs holding it
        self.ours: set[IPAddress] = set()  # added by us (removed again)
        self._hooks: asyncio.Queue[dict[str, str]] | None = None
        self._runner: asyncio.Task[None] | None = None
        self.hook_runs = 0

    # --- events
    def assigned(self, event: VirtualIpsAssigned) -> None:
        for vip in event.vips:
            holders = self.holders.setdefault(vip, set())
            first = not holders
            holders.add(event.ike_sa_id)
            if first:
                self._add(vip)
        self._hook("up", event)

    def released(self, event: VirtualIpsReleased) -> None:
        for vip in event.vips:
            holders = self.holders.get(vip)
            if holders is None:
                continue
            holders.discard(event.ike_sa_id)
            if not holders:
                del self.holders[vip]
                self._remove(vip)
        self._hook("down", event)

    def child_established(self, event: ChildSaEstablished) -> None:
        if self.routes is not None:
            self.routes.child_up(event, list(self.holders))

    def child_deleted(self, event: ChildSaDeleted) -> None:
        if self.routes is not None:
            self.routes.child_down(event)

    def remove_all(self) -> int:
        """At shutdown: every route and address we added goes."""
        if self.routes is not None:
            self.routes.remove_all()
        count = 0
        for vip in sorted(self.ours, key=str):
            self._remove(vip)
            count += 1
        self.holders.clear()
        return count

    # --- addresses
    def _add(self, vip: IPAddress) -> None:
        try:
            if self.addresses.add(self.interface, vip):
                self.ours.add(vip)
                log.info("virtual IP installed", vip=str(vip), interface=self.interface)
            else:
                log.info("virtual IP was already present", vip=str(vip), interface=self.interface)
        except KernelError as exc:
            log.warning("virtual IP not installed", vip=str(vip), error=str(exc))

    def _remove(self, vip: IPAddress) -> None:
        if vip not in self.ours:
            return
        self.ours.discard(vip)
        try:
            self.addresses.delete(self.interface, vip)
            log.info("virtual IP removed", vip=str(vip), interface=self.interface)
        except KernelError as exc:
            log.warning("virtual IP not removed", vip=str(vip), error=str(exc))

    # --- the DNS hook, run in order by one task
    def _hook(self, action: str, event: VirtualIpsAssigned | VirtualIpsReleased) -> None:
        if not self.dns_hook or self.loop is None:
            return
        if self._hooks is None:
            self._hooks = asyncio.Queue()
            self._runner = self.loop.create_task(self._run_hooks())
        self._hooks.put_nowait(hook_environment(action, event, self.interface))

    async def _run_hooks(self) -> None:
        assert self._hooks is not None
        while True:
            env = await self._hooks.get()
            await self._run_one(self.dns_hook, env)
            self.hook_runs += 1
            self._hooks.task_done()

    async def _run_one(self, path: str, env: dict[str, str]) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                path,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.warning("dns hook did not start", hook=path, error=exc.strerror)
            return
        try:
            _, err = await asyncio.wait_for(proc.communicate(), HOOK_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("dns hook killed after timeout", hook=path, timeout=HOOK_TIMEOUT)
            return
        if proc.returncode:
            tail = err.decode(errors="replace").strip()[-200:]
            log.warning("dns hook failed", hook=path, status=proc.returncode, stderr=tail)
        else:
            log.info("dns hook ran", hook=path, action=env["IKEV2_ACTION"])

    async def drain(self) -> None:
        """Wait for the queued hook runs (shutdown, tests)."""
        if self._hooks is not None:
            await self._hooks.join()

    async def close(self) -> None:
        await self.drain()
        if self._runner is not None:
            self._runner.cancel()

    def view(self) -> Sequence[str]:
        return sorted(map(str, self.holders))


def make_virtual_ips(
    kernel_name: str,
    interface: str,
    dns_hook: str,
    loop: asyncio.AbstractEventLoop,
    install_routes: bool = True,
) -> VirtualIps:
    """Real interface addresses and routes with the XFRM kernel, recorded ones with the
    in-memory kernel."""
    table: AddressTable = MemoryAddresses()
    routes: RouteTable = MemoryRoutes()
    if kernel_name == "xfrm":
        try:
            table, routes = NetlinkAddresses(), NetlinkRoutes()
        except KernelError as exc:
            log.warning("virtual IPs are recorded only: no NETLINK_ROUTE", error=str(exc))
    return VirtualIps(
        table, interface, dns_hook, loop, VipRoutes(routes) if install_routes else None
    )
