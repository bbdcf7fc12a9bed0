"""The control socket's limits and its `up`: a hostile or clumsy client gets an answer, never a
silent hang-up or a crashed handler; concurrent `up`s of one connection make one IKE SA."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ikev2.service.control import MAX_DEPTH, MAX_REQUEST, ControlServer, answer_line, request

from .daemons import daemon_pair


async def _echo(req: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "echo": req.get("arg")}


@pytest.fixture
async def server() -> AsyncIterator[str]:
    path = str(Path(tempfile.mkdtemp(prefix="ikev2c-")) / "c.sock")
    control = ControlServer(path, {"echo": _echo})
    await control.start()
    try:
        yield path
    finally:
        await control.close()


async def _exchange(path: str, data: bytes) -> list[dict[str, Any]]:
    """Send `data`, read answers until the server closes or goes quiet."""
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
    writer.write(data)
    await writer.drain()
    answers = []
    try:
        while line := await asyncio.wait_for(reader.readline(), 5):
            answers.append(json.loads(line))
    except TimeoutError:
        pass
    writer.close()
    return answers


async def test_a_line_over_64k_is_answered_before_the_connection_closes(server: str) -> None:
    big = json.dumps({"cmd": "echo", "arg": "x" * (MAX_REQUEST + 10)}).encode() + b"\n"
    answers = await _exchange(server, big)
    assert answers == [{"ok": False, "error": "request too large (limit 64 KiB)"}]


async def test_a_line_just_under_the_limit_is_served(server: str) -> None:
    line = json.dumps({"cmd": "echo", "arg": "y" * (MAX_REQUEST - 100)}).encode() + b"\n"
    answers = await _exchange(server, line + b'{"cmd": "echo", "arg": 2}\n')
    assert [a["ok"] for a in answers] == [True, True]


@pytest.mark.parametrize("opener,closer,depth", [(b"[", b"]", 30000), (b'{"a":', b"}", 10000)])
async def test_a_deep_request_within_64k_is_refused_and_the_connection_lives(
    server: str, opener: bytes, closer: bytes, depth: int
) -> None:
    deep = opener * depth + b"1" + closer * depth
    answers = await _exchange(server, deep + b"\n" + b'{"cmd": "echo", "arg": 7}\n')
    assert answers[0]["ok"] is False and "nests too deeply" in answers[0]["error"]
    assert answers[1] == {"ok": True, "echo": 7}


async def test_depth_limit_ignores_brackets_inside_strings() -> None:
    line = json.dumps({"cmd": "echo", "arg": "[" * 1000 + "{" * 1000}).encode()
    assert await answer_line({"echo": _echo}, line) == {"ok": True, "echo": "[" * 1000 + "{" * 1000}
    nested: Any = 1
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    ok = json.dumps({"cmd": "echo", "arg": nested}).encode()
    assert (await answer_line({"echo": _echo}, ok))["ok"] is True
    too_deep = json.dumps({"cmd": "echo", "arg": [nested]}).encode()
    assert "nests too deeply" in (await answer_line({"echo": _echo}, too_deep))["error"]


async def test_concurrent_ups_of_one_connection_make_one_ike_sa() -> None:
    async with daemon_pair() as pair:
        message = json.dumps({"cmd": "up", "name": "net", "timeout": 20}).encode() + b"\n"

        async def up() -> dict[str, Any]:
            reader, writer = await asyncio.open_unix_connection(pair.moon.control)
            writer.write(message)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
            writer.close()
            result: dict[str, Any] = json.loads(line)
            return result

        answers = await asyncio.gather(*(up() for _ in range(20)))
        assert all(a["ok"] for a in answers), answers
        assert sum(1 for a in answers if a.get("joined")) == 19
        assert len(await pair.moon.sas()) == 1
        assert len(await pair.sun.sas()) == 1
        # once established, a further `up` adds an IKE SA, as before (others rely on it)
        again = request(pair.moon.control, {"cmd": "up", "name": "net"})
        assert again["ok"] is True and "joined" not in again, again
        assert len(await pair.moon.sas()) == 2


async def test_drain_is_not_a_public_control_command() -> None:
    async with daemon_pair() as pair:
        code, _, err = await pair.moon.cli("up", "net")
        assert code == 0, err
        answer = request(pair.moon.control, {"cmd": "drain"})
        assert answer["ok"] is False and "unknown command 'drain'" in answer["error"]
        assert len(await pair.moon.sas()) == 1


async def test_a_client_over_the_limit_is_answered_and_closed_and_the_others_are_served() -> None:
    path = str(Path(tempfile.mkdtemp(prefix="ikev2c-")) / "c.sock")
    control = ControlServer(path, {"echo": _echo}, max_clients=3)
    await control.start()
    held = []
    try:
        for _ in range(3):  # three idle clients hold every slot
            held.append(await asyncio.open_unix_connection(path))
        await asyncio.sleep(0.05)
        answers = await _exchange(path, b'{"cmd": "echo", "arg": 1}\n')
        assert answers == [{"ok": False, "error": "too many control clients (limit 3)"}]
        assert control.refused == 1
        reader, writer = held[0]  # a connected client is not disturbed
        writer.write(b'{"cmd": "echo", "arg": 2}\n')
        assert json.loads(await asyncio.wait_for(reader.readline(), 5)) == {"ok": True, "echo": 2}
        writer.close()  # a freed slot serves the next client
        await asyncio.sleep(0.05)
        assert await _exchange(path, b'{"cmd": "echo", "arg": 3}\n') == [{"ok": True, "echo": 3}]
    finally:
        for _, writer in held[1:]:
            writer.close()
        await control.close()
