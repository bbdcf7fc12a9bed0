"""The gateway's RADIUS side of EAP-RADIUS (RFC 3579): each EapBackendRequest of the engine
(engine/tasks/eap_radius.py) goes to the RADIUS server through service/radius.py, and its
answer goes back into the engine with Engine.eap_backend_answer, which answers the IKE_AUTH
request that waited. One conversation per IKE SA (its State attribute); forgotten with the SA.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..engine.events import EapBackendRequest
from ..engine.tasks.eap_radius import BackendAnswer, BackendVerdict
from ..log import get_logger
from .radius import Answer, RadiusClient

log = get_logger("ikev2.service.eap_radius")


def to_engine(answer: Answer) -> BackendAnswer:
    return BackendAnswer(BackendVerdict(answer.verdict.value), answer.eap, answer.msk,
                         answer.reason)  # fmt: skip


class RadiusBridge:
    def __init__(
        self,
        client: RadiusClient,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[int, BackendAnswer], None],
    ) -> None:
        self.client = client
        self.loop = loop
        self.deliver = deliver  # the driver: engine.eap_backend_answer, then its usual output
        self._tasks: set[asyncio.Task[None]] = set()

    def forward(self, event: EapBackendRequest) -> None:
        task = self.loop.create_task(self._exchange(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _exchange(self, event: EapBackendRequest) -> None:
        answer = await self.client.exchange(event.ike_sa_id, event.identity, event.eap, event.peer)
        if answer.reason:
            log.warning("RADIUS refused", ike_sa=event.ike_sa_id, reason=answer.reason,
                        user=event.identity.decode("utf-8", "replace"))  # fmt: skip
        self.deliver(event.ike_sa_id, to_engine(answer))

    def ike_gone(self, sa_id: int) -> None:
        self.client.forget(sa_id)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.client.close()
