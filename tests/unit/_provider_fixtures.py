"""Reads the recorded provider frames of ``tests/fixtures/<provider>.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load_frames(provider: str) -> dict[str, dict[str, Any]]:
    """name -> fixture line (``dir``, ``frame``, ``note``, and ``text``: the frame as sent)."""
    out: dict[str, dict[str, Any]] = {}
    with open(FIXTURES / f"{provider}.jsonl", encoding="utf-8") as file:
        for line in file:
            item = json.loads(line)
            if "name" not in item:  # the header line
                continue
            frame = item["frame"]
            item["text"] = frame if item.get("raw") else json.dumps(frame)
            out[item["name"]] = item
    return out
