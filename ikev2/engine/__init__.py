"""The sans-IO IKEv2 engine: datagrams, time and commands in; datagrams, events and the next
deadline out. No sockets, clocks, randomness or kernel calls inside (see manager.Engine)."""

from __future__ import annotations

from .env import Env
from .manager import Engine

__all__ = ["Engine", "Env"]
