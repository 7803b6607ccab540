"""Reads the per-provider wire fixtures in ``tests/fixtures/<provider>.jsonl``.

Each line after the header is ``{"name", "dir", "frame", "note"}``: ``dir`` is "in" (server to
client) or "out" (client to server); a ``frame`` given as an object or array is the compact
JSON text of it, a string is the frame as is; a binary frame is ``{"hex": ...}`` or a hex
string with ``"binary": true`` (as tests/fixtures/intrinio.jsonl writes them). ``note``
starts with [cap], [doc] or [built] (a sample built by us from the documented schema).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
MARKS = ("[cap]", "[doc]", "[built]")


@dataclass(frozen=True)
class WireSample:
    name: str
    dir: str
    frame: str | bytes
    note: str
    value: Any  # the frame as JSON (None for raw text or binary)


def load_fixture(provider: str) -> dict[str, WireSample]:
    """Every sample of ``tests/fixtures/<provider>.jsonl`` by name (the header line skipped)."""
    lines = (FIXTURES / f"{provider}.jsonl").read_text(encoding="utf-8").splitlines()
    samples: dict[str, WireSample] = {}
    for line in lines[1:]:
        item = json.loads(line)
        raw = item["frame"]
        frame: str | bytes
        if item.get("binary"):
            frame, value = bytes.fromhex(raw), None
        elif isinstance(raw, str):
            frame, value = raw, None
        elif isinstance(raw, dict) and set(raw) == {"hex"}:
            frame, value = bytes.fromhex(raw["hex"]), None
        else:
            frame, value = json.dumps(raw, separators=(",", ":")), raw
        sample = WireSample(item["name"], item["dir"], frame, item["note"], value)
        assert sample.name not in samples, f"duplicate fixture name {sample.name!r}"
        samples[sample.name] = sample
    return samples
