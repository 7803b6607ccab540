"""The notebooks and the README's ``python`` blocks run top to bottom against the offline providers.

Each notebook is executed in a fresh ``python3`` kernel with nbclient. Only what a cell prints
while it runs is captured (background updates after a cell ends are not), so the notebooks
wait in their cells and print Python-side values in their last cells; the tests parse those
``label: value`` lines.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import TIMEOUT
from tests.integration.test_docs import run_example

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 6 * TIMEOUT


def run_notebook(name: str, workdir: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` in ``workdir``; CellExecutionError on the first failing cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        startup_timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    assert not errors, errors
    return nb


def printed(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed to stdout."""
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "stream" and out.get("name") == "stdout"
    )


def value(text: str, label: str) -> str:
    """The value of the last ``label: value`` line in ``text``."""
    found = re.findall(rf"^{re.escape(label)}: (.*)$", text, re.MULTILINE)
    assert found, f"no {label!r} line in the notebook output:\n{text}"
    return found[-1].strip()


def test_quickstart(tmp_path: Path) -> None:
    """The quickstart runs every endpoint on a demo stream and cleans up."""
    out = printed(run_notebook("quickstart.ipynb", tmp_path))
    assert value(out, "received at least 100") == "True"
    assert int(value(out, "rows")) > 0
    assert value(out, "symbols") == "BTCUSD,ETHUSD"
    assert value(out, "date tz") == "America/New_York"
    assert value(out, "SOLUSD rows arrived") == "True"
    assert value(out, "running after stop") == "False"
    assert value(out, "running after restart") == "True"
    assert int(value(out, "stored since restart")) > 0
    assert value(out, "got 20 records") == "True"
    assert int(value(out, "listened records")) >= 20
    assert value(out, "still broadcasting") == "False"
    assert value(out, "ids continue after clear") == "True"
    assert "Client quickstart_demo killed." in out
    assert value(out, "results file deleted") == "True"


def test_broadcast_and_listen(tmp_path: Path) -> None:
    """The broadcast notebook listens in the background, replays, and enforces the token."""
    out = printed(run_notebook("broadcast_and_listen.ipynb", tmp_path))
    assert value(out, "connected") == "True"
    assert value(out, "got 50 records") == "True"
    assert int(value(out, "listened records")) >= 50
    assert value(out, "replayed ids strictly increasing") == "True"
    assert value(out, "with the token") == "True"
    assert int(value(out, "secure listened records")) >= 10
    assert value(out, "refused without token") == "UnauthorizedError"
    assert "Client bcast_demo killed." in out
    assert "Client bcast_secure killed." in out


def test_record_and_replay(tmp_path: Path) -> None:
    """A recorded demo stream replayed at full speed gives the same rows; the connections
    shown as a cell's value are widget views (with the text repr as fallback)."""
    nb = run_notebook("record_and_replay.ipynb", tmp_path)
    out = printed(nb)
    views = [
        o["data"]
        for cell in nb.cells
        if cell.cell_type == "code" and cell.source.strip().endswith(("live", "replay"))
        for o in cell.get("outputs", [])
        if o.output_type == "execute_result"
    ]
    assert len(views) == 2
    for data in views:
        assert "application/vnd.jupyter.widget-view+json" in data
        assert data["text/plain"].startswith("Connection(name=")
    live_rows = int(value(out, "live rows"))
    assert live_rows >= 300
    assert int(value(out, "replayed rows")) == live_rows
    assert value(out, "same symbols") == "True"
    assert value(out, "same rows") == "True"
    assert "Client rec_live killed." in out
    assert "Client rec_replay killed." in out


def test_dashboard(tmp_path: Path) -> None:
    """The dashboard notebook shows every visible connection and counts the hidden one."""
    out = printed(run_notebook("dashboard.ipynb", tmp_path))
    assert value(out, "visible") == "['dash_crypto', 'dash_fx', 'dash_stocks']"
    assert value(out, "hidden") == "1"
    assert value(out, "dashboard shows") == (
        "['dash_crypto', 'dash_fx', 'dash_stocks', 'dash_extra']"
    )
    assert value(out, "dashboard shows after kill") == "[]"
    assert "Client dash_secret killed." in out


def test_charts(tmp_path: Path) -> None:
    """The charts notebook draws live line, candle and band charts, OHLC and a static plot."""
    out = printed(run_notebook("charts.ipynb", tmp_path))
    assert value(out, "line kind") == "line"
    assert value(out, "line traces") == "BTCUSD,ETHUSD"
    assert value(out, "line has points") == "True"
    assert value(out, "candle traces") == "BTCUSD:candlestick,ETHUSD:candlestick"
    assert value(out, "candles have bars") == "True"
    assert value(out, "band traces") == "EURUSD bid,EURUSD ask,EURUSD mid"
    assert value(out, "band has points") == "True"
    assert int(value(out, "ohlc bars")) > 0
    assert value(out, "ohlc matches pandas") == "True"
    assert value(out, "quotes without price='mid'") == "InvalidParameterError"
    assert int(value(out, "static traces")) == 2
    assert value(out, "updates within the cadence") == "True"
    assert "Client charts_trades killed." in out
    assert "Client charts_quotes killed." in out
    assert value(out, "charts following after kill") == "False"


def test_notebooks_saved_without_outputs() -> None:
    """Committed notebooks carry no outputs, execution counts or widget state."""
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.name for p in paths} >= {
        "quickstart.ipynb",
        "dashboard.ipynb",
        "broadcast_and_listen.ipynb",
        "record_and_replay.ipynb",
        "charts.ipynb",
    }
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        assert "widgets" not in nb.metadata, path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


def readme_python_blocks() -> list[str]:
    """The README's fenced code blocks marked ```python (other fences are illustrations)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_readme_python_blocks(tmp_path: Path) -> None:
    """The README's ```python blocks run as one script with the offline demo provider."""
    blocks = readme_python_blocks()
    assert blocks, "README.md has no ```python block"
    result = run_example("\n\n".join(blocks), tmp_path, CELL_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Client readme_demo killed." in result.stdout
    assert "Client readme_broadcast killed." in result.stdout
    assert "Client readme_charts killed." in result.stdout


def test_providers(tmp_path: Path) -> None:
    """The providers notebook streams each real provider from its fake server (typed columns,
    tz-aware dates) and shows the missing-key error naming all three places."""
    out = printed(run_notebook("providers.ipynb", tmp_path))
    assert value(out, "providers") == (
        "['binance', 'coinbase', 'demo', 'fmp', 'intrinio', 'polygon', 'replay', 'tiingo']"
    )
    for name in ("poly", "tiingo", "fmp", "intrinio", "binance", "coinbase"):
        assert re.search(rf"^{name}: \d+ rows, columns \['id', 'received_at', 'date'", out, re.M)
        assert value(out, f"{name} date dtype") == "datetime64[us, America/New_York]"
        assert f"Client {name} killed." in out
    assert "XT.SOL-USD" in value(out, "polygon subscribed")
    assert value(out, "coinbase sequence gaps") == "0"
    assert value(out, "missing key") == "MissingCredentialsError"
    assert "POLYGON_API_KEY" in out and "polygon_api_key" in out
    assert value(out, "nothing started") == "UnknownConnectionError"


def _calls(source: str, name: str) -> list[str]:
    """The text of every ``name(...)`` call in ``source`` (balanced parentheses)."""
    calls = []
    for match in re.finditer(rf"{name}\(", source):
        end, depth = match.end(), 1
        while depth:
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        calls.append(source[match.start() : end])
    return calls


def test_notebooks_open_unmodified_on_the_kernel_make_installs() -> None:
    """The kernelspec the Makefile installs has the name and display name the notebooks
    record, so JupyterLab does not mark every notebook modified on opening it."""
    install = re.search(
        r'ipykernel install .*--name (\S+) --display-name "([^"]+)"',
        (ROOT / "Makefile").read_text(),
    )
    assert install, "the Makefile installs no kernelspec"
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        spec = nbformat.read(path, as_version=4).metadata.kernelspec
        assert (spec.name, spec.display_name) == install.groups(), path.name


def test_every_notebook_connection_can_be_re_run() -> None:
    """Each create_connection in a notebook passes if_exists="replace" (re-running a cell
    works), except inside a cell that shows the error a call raises."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "except" in cell.source:
                continue
            for call in _calls(cell.source, "create_connection"):
                assert 'if_exists="replace"' in call, f"{path.name}: {call}"
