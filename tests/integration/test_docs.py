"""The guides' ``python`` blocks run as written (docs cannot rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _python_blocks(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return "\n\n".join(re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL))


def run_example(
    code: str, folder: Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a guide's code as a script of its own in ``folder`` (with ``env`` added to the
    environment); its output, as text."""
    script = folder / "example.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=folder,
        env={**os.environ, **env} if env else None,
        check=False,
    )


def test_adding_a_provider_example_runs(tmp_path: Path) -> None:
    """The example provider of docs/adding_a_provider.md streams, and a bad key is refused."""
    script = tmp_path / "example.py"
    script.write_text(_python_blocks(ROOT / "docs" / "adding_a_provider.md"))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "ticker rows: True ['ABC', 'XYZ']" in out.stdout
    assert "Client ticker_example killed." in out.stdout
    assert "refused: ProviderAuthError" in out.stdout
    assert "k-123" not in out.stderr


@pytest.mark.parametrize("provider", ["tiingo", "fmp"])
def test_provider_guide_runs_against_the_fake_server(provider: str, tmp_path: Path) -> None:
    """docs/providers/<provider>.md's keyless example streams from the fake server."""
    script = tmp_path / "example.py"
    script.write_text(_python_blocks(ROOT / "docs" / "providers" / f"{provider}.md"))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert f"Client {provider}_fake killed." in out.stdout
    assert "BTCUSD" in out.stdout or "ETHUSD" in out.stdout
