"""The control socket: a unix stream socket, mode 0600, newline-delimited JSON both ways.

Requests are one JSON object a line, `{"cmd": "...", ...}`; each gets one JSON object a line back,
always with "ok" (and "error" when not ok). Commands:

  {"cmd": "up", "name": CONN, "timeout": s}   initiate; answer when established or failed
     + "child": NAME (that child under the IKE SA we hold) or "no_child": true (RFC 6023)
  {"cmd": "down", "target": CONN|ID}          delete with the peer; answer when gone
  {"cmd": "rekey", "id": ID, "child": SPI?, "reauth": bool?}   rekey an IKE SA or a child, or
                                               reauthenticate the IKE SA
  {"cmd": "redirect", "id": ID, "to": ADDR}    send the peer of an established IKE SA to ADDR (an
                                               IP address or FQDN; RFC 5685 §3.6)
  {"cmd": "list-sas"}                          {"ok": true, "sas": [...]} (see driver.view_to_json)
  {"cmd": "list-pools"}                        {"ok": true, "pools": [...]} (driver.pool_to_json)
  {"cmd": "reload"}                            re-read the config file (as SIGHUP)
  {"cmd": "stats"}                             counters

A request line is at most MAX_REQUEST bytes (64 KiB) and nests at most MAX_DEPTH arrays/objects;
a longer line is answered `request too large` and the connection closed, a deeper one is refused.
("drain", the supervisor's shutdown step, is only served to workers, never on this socket.)

At most `max_clients` connections are served at once ([daemon] control_max_clients, 32): one
more is answered `too many control clients` and closed; the connected ones are not disturbed.

Only the socket's owner (root for the default /run/ikev2/control.sock) can connect: the socket
is chmod 0600 before it accepts and its directory is created 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..log import get_logger

log = get_logger("ikev2.service.control")
MAX_REQUEST = 65536
MAX_DEPTH = 32  # nesting of arrays/objects in one request; real requests use 1
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")
TOO_LARGE = f"request too large (limit {MAX_REQUEST // 1024} KiB)"
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(Exception):
    """The daemon cannot be reached, or answered something unreadable."""


def _socket_in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _depth(line: bytes) -> int:
    """How deeply arrays/objects nest in `line`, brackets inside strings ignored (cheap: no
    recursion, so a 30000-deep request cannot exhaust the stack before it is refused)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub(b'""', line)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


async def answer_line(handlers: dict[str, Handler], line: bytes) -> dict[str, Any]:
    """One request line -> its answer; a failing handler is logged and answered, never raised."""
    if len(line) > MAX_REQUEST:
        return {"ok": False, "error": TOO_LARGE}
    if _depth(line) > MAX_DEPTH:
        return {"ok": False, "error": f"request nests too deeply (limit {MAX_DEPTH} levels)"}
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        return {"ok": False, "error": "request is not JSON"}
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": 'request needs {"cmd": ...}'}
    handler = handlers.get(request["cmd"])
    if handler is None:
        known = ", ".join(sorted(handlers))
        return {"ok": False, "error": f"unknown command {request['cmd']!r} (known: {known})"}
    try:
        return await handler(request)
    except Exception as exc:
        log.exception("control command failed", cmd=request["cmd"])
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler], max_clients: int = 32) -> None:
        self.path = Path(path)
        self.handlers = handlers
        self.max_clients = max_clients
        self.refused = 0  # connections turned away over max_clients
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True)
        if self.path.exists() or self.path.is_symlink():
            if _socket_in_use(self.path):
                raise OSError(f"control socket {self.path} is in use: is another daemon running?")
            self.path.unlink()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others connect
        try:
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self.max_clients:
            await self._refuse(reader, writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_REQUEST: answer, then hang up
                    writer.write(json.dumps({"ok": False, "error": TOO_LARGE}).encode() + b"\n")
                    await writer.drain()
                    break
                if not line:
                    break
                response = await self._answer(line)
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.refused += 1
        if self.refused & (self.refused - 1) == 0:  # the 1st, 2nd, 4th, 8th...: bounded lines
            fix = "raise control_max_clients in [daemon] or close idle clients"
            log.warning("control client refused", limit=self.max_clients, refused=self.refused,
                        fix=fix)  # fmt: skip
        error = f"too many control clients (limit {self.max_clients})"
        with contextlib.suppress(ConnectionError, ValueError, TimeoutError):
            writer.write(json.dumps({"ok": False, "error": error}).encode() + b"\n")
            await writer.drain()
            # read the request the client already sent: closing over unread data would reset
            # the connection before the client reads the answer
            await asyncio.wait_for(reader.readline(), 1.0)
        writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        return await answer_line(self.handlers, line)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: str, message: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One blocking request/response (the CLI side)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise ControlError(
                f"no daemon: {path} does not exist (is `ikev2 daemon` running?)"
            ) from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path} (the control socket is 0600)"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = bytearray()  # appended in place: `bytes +=` copied the whole answer per chunk,
        chunk = b""  # quadratic in its size (list-sas of 100,000 SAs is ~60 MB: issue 17)
        while not chunk.endswith(b"\n"):
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                raise ControlError(f"no answer from the daemon within {timeout:g} s") from None
            if not chunk:
                raise ControlError("the daemon closed the connection without an answer")
            data += chunk
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError("the daemon's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ControlError("the daemon's answer is not a JSON object")
    return answer
