"""The supervisor <-> worker channel (`[daemon] workers = N`): the control protocol over a
stream socketpair made before the fork.

The same newline-delimited JSON as the control socket (control.py), with two additions so that
one slow command (an `up` waits for its IKE SA) never holds up another (`list-sas`):
every request carries a "rid" that its answer echoes, and the worker answers each request in its
own task. A line without "rid" from the worker is an event; the first one is
`{"event": "ready", "listening": "..."}` once its sockets are bound.

End of file on either side means the other process is gone: the worker then shuts down (its
supervisor died or is stopping it), the supervisor fails the pending requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import Callable
from typing import Any

from ..log import get_logger
from .control import MAX_REQUEST, Handler, answer_line

log = get_logger("ikev2.service.channel")
LIMIT = 64 << 20  # a list-sas answer of many thousand IKE SAs is one line


class WorkerChannel:
    """The worker's end: serves the supervisor's requests, sends events."""

    def __init__(self, sock: socket.socket, handlers: dict[str, Handler]) -> None:
        self.sock = sock
        self.handlers = handlers
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader_task: asyncio.Task[None] | None = None

    async def start(self, on_close: Callable[[], None]) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self.sock, limit=LIMIT)
        self._reader_task = asyncio.get_running_loop().create_task(self._serve(reader, on_close))

    def send(self, message: dict[str, Any]) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(json.dumps(message).encode() + b"\n")

    async def _serve(self, reader: asyncio.StreamReader, on_close: Callable[[], None]) -> None:
        try:
            while line := await reader.readline():
                if len(line) > MAX_REQUEST:
                    continue
                task = asyncio.get_running_loop().create_task(self._answer(line))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        on_close()

    async def _answer(self, line: bytes) -> None:
        rid = None
        with contextlib.suppress(ValueError, AttributeError):
            rid = json.loads(line).get("rid")
        answer = await answer_line(self.handlers, line)
        self.send({**answer, "rid": rid})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)


class SupervisorChannel:
    """The supervisor's end of worker `index`: call() a command, wait for `ready`."""

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.alive = True
        self.ready: asyncio.Future[dict[str, Any]] | None = None
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        reader, self._writer = await asyncio.open_unix_connection(sock=self.sock, limit=LIMIT)
        self._reader_task = loop.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                future = self._pending.pop(message.pop("rid", None) or 0, None)
                if future is not None:
                    if not future.done():
                        future.set_result(message)
                elif message.get("event") == "ready" and self.ready and not self.ready.done():
                    self.ready.set_result(message)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        self._gone()

    def _gone(self) -> None:
        self.alive = False
        gone = {"ok": False, "error": f"worker {self.index} is gone"}
        for future in self._pending.values():
            if not future.done():
                future.set_result(dict(gone))
        self._pending.clear()
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(dict(gone))

    async def call(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self.alive or self._writer is None:
            return {"ok": False, "error": f"worker {self.index} is gone"}
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            self._writer.write(json.dumps({**message, "rid": rid}).encode() + b"\n")
        except (ConnectionError, RuntimeError):
            self._gone()
        return await future

    async def close(self) -> None:
        """End of file for the worker: it shuts down (deleting what IKE SAs it still has)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
