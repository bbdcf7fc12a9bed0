"""docs/engine.md is executable: its python blocks run in order in one namespace (their asserts
check that two engines really establish, back to back and over UDP on loopback), and its API and
event lists match the real signatures and dataclass fields."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import structlog

from ikev2.engine import Engine, events

DOC = Path(__file__).resolve().parents[1] / "docs" / "engine.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
METHOD = re.compile(r"^- `Engine\.(\w+)(\(.*\)(?: -> .+)?)`:", re.M)
EVENT = re.compile(r"^- `(\w+)\(([^)]*)\)`:", re.M)


def blocks() -> list[str]:
    found = BLOCK.findall(DOC.read_text())
    assert len(found) >= 3, "docs/engine.md lost its examples"
    return found


def test_the_examples_run() -> None:
    namespace: dict[str, object] = {"__name__": "docs_engine"}
    saved = structlog.get_config()  # the example quiets the engine's logging: put it back
    try:
        for number, code in enumerate(blocks(), 1):
            exec(compile(code, f"docs/engine.md block {number}", "exec"), namespace)
    finally:
        structlog.configure(**saved)
    # the last block left its results behind: both sides saw an IKE SA come up over UDP
    up = namespace["up"]
    assert isinstance(up, list) and len(up) == 2
    assert {e.initiator for e in up} == {True, False}  # type: ignore[attr-defined]


def _signature(name: str) -> str:
    text = str(inspect.signature(getattr(Engine, name))).replace("'", "")
    return text.replace("(self, ", "(").replace("(self)", "()")


def test_every_listed_method_has_the_documented_signature() -> None:
    listed = dict(METHOD.findall(DOC.read_text()))
    assert len(listed) >= 15
    for name, documented in listed.items():
        assert _signature(name) == documented, name
    public = {n for n, v in vars(Engine).items() if callable(v) and not n.startswith("_")}
    internal = {"current_connection", "new_ike_spi", "spawn_sa", "touch_sa"}  # used by tasks/
    missing = public - internal - set(listed)
    assert not missing, f"document Engine.{', Engine.'.join(sorted(missing))} in docs/engine.md"


@pytest.mark.parametrize("kind", [c for c in vars(events).values()
                                  if isinstance(c, type) and issubclass(c, events.Event)
                                  and c is not events.Event])  # fmt: skip
def test_every_event_is_documented_with_its_fields(kind: type) -> None:
    documented = {name: fields for name, fields in EVENT.findall(DOC.read_text())}
    assert kind.__name__ in documented, f"{kind.__name__} is not in docs/engine.md"
    names = [f.strip() for f in documented[kind.__name__].split(",")]
    assert names == [f.name for f in dataclasses.fields(kind)]
