"""docs/http_api.md runs as written: its Python blocks (serve_api and an HTTP client) and
each of its curl commands against a live server."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

import obbws_jupyter as obbws
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "http_api.md"
ENV = {"$OBBWS_API_KEY": "doc-key-123456", "$TOKEN": "doc-token"}


def _blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_python_blocks_run(tmp_path: Path) -> None:
    """The guide's Python code serves the API, creates, pages and kills through HTTP."""
    script = tmp_path / "guide.py"
    script.write_text("\n\n".join(_blocks("python")))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("http://127.0.0.1:")
    assert lines[1:] == ["True", "5 True", "Client demo killed."]


def _curl(command: str) -> tuple[str, dict[str, str], bool]:
    for name, value in ENV.items():
        command = command.replace(name, value)
    words = shlex.split(command)
    headers = dict(
        tuple(part.strip() for part in words[i + 1].split(":", 1))  # type: ignore[misc]
        for i, word in enumerate(words)
        if word == "-H"
    )
    url = next(w for w in words if w.startswith("http://"))
    return url, headers, "-sN" in words


def test_curl_examples_answer(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every curl command of the guide, in order, gets a 200 from a live server (the stream
    example gets events)."""
    monkeypatch.chdir(tmp_path)
    commands = [line for block in _blocks("bash") for line in block.splitlines() if line]
    assert len(commands) >= 6 and all(c.startswith("curl ") for c in commands)
    with obbws.serve_api(port=0) as server:
        for command in commands:
            url, headers, stream = _curl(command.replace("http://127.0.0.1:8000", server.url))
            if stream:
                with httpx.stream("GET", url, headers=headers, timeout=TIMEOUT) as response:
                    assert response.status_code == 200
                    assert any(line.startswith("data: {") for line in response.iter_lines())
                continue
            response = httpx.get(url, headers=headers, timeout=TIMEOUT)
            assert response.status_code == 200, (command, response.text)
