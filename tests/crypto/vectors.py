"""Loading of the vector files under fixtures/vectors (each file names its source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def h(text: str) -> bytes:
    return bytes.fromhex(text)
