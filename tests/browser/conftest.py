"""Shared browser-test fixtures: JupyterLab in headless Chromium (Debian's, installed by
`make test`), driven by Playwright. See shared NOTES (browser tests) for the flags and settings.

Fixtures, for any browser test module (``test_lab.py``, ``test_widget.py``, ``test_charts.py``):

- ``lab`` (session): a JupyterLab server on 127.0.0.1 (free port, random token) whose root is
  a temporary folder holding a copy of ``notebooks/``; isolated user settings (no windowing,
  the default kernel starts by itself, no news). Yields a :class:`Lab` (``base``, ``token``,
  ``root``, ``url(path)``, ``kernel_states()``, ``shutdown_sessions()``).
- ``browser`` (module): the headless Chromium (closed after each module: while Playwright's
  sync API is open, ``asyncio.run`` fails on the main thread).
- ``page`` (function): a fresh 1400x1000 page; on teardown a full-page screenshot goes to
  ``build/screenshots/<test name>.png`` (``build/`` is git-ignored) and every kernel session
  of the server is shut down, so the next test starts with none.
- ``widget_page`` (function): ``run_notebook_in_lab`` on a notebook whose cell shows a live
  demo connection ("browser_demo", 40 events/s); asserts no error output at the end.
- ``run_notebook_in_lab`` (function): ``run_notebook_in_lab(cells_or_path, name=None)``
  opens a notebook in ``page`` and runs all its cells, then returns the page. Pass a list of
  code-cell sources (written as ``<name>.ipynb`` in the lab root) or a path relative to the lab
  root (``"notebooks/quickstart.ipynb"``). It returns once the first cell has executed; wait
  for what you check with Playwright locators (e.g. ``page.locator(".obbws-conn")``). Look
  for output text inside ``.jp-OutputArea-output``.

``screenshot(page_or_locator, name)`` saves a PNG under ``build/screenshots/`` and returns
its path. ``start_lab(home)`` and ``open_and_run(page, lab, notebook)`` are the plain forms of
the ``lab`` and ``run_notebook_in_lab`` fixtures (the browser benchmark uses them).
``ERROR_OUTPUTS`` is the selector of error outputs (assert it matches nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.conftest import TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
ERROR_OUTPUTS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Lab settings that keep a scripted run deterministic (see shared NOTES: browser tests).
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
MS = int(TIMEOUT * 1000)  # Playwright counts in milliseconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


class Lab:
    """A running JupyterLab server (see the module docstring)."""

    def __init__(self, base: str, token: str, root: Path) -> None:
        self.base, self.token, self.root = base, token, root

    def url(self, path: str) -> str:
        """The notebook at ``path``, alone: ``reset`` drops the workspace, which would
        otherwise reopen (and start kernels for) the notebooks of earlier tests."""
        return f"{self.base}/lab/tree/{path}?reset&token={self.token}"

    def sessions(self) -> list[dict[str, Any]]:
        try:
            return list(_get(f"{self.base}/api/sessions?token={self.token}"))
        except OSError:
            return []

    def kernel_states(self) -> list[str]:
        """Execution states of the kernels of this server's sessions (REST API)."""
        return [s["kernel"].get("execution_state", "?") for s in self.sessions() if s.get("kernel")]

    def wait_kernel_idle(self, timeout: float = 6 * TIMEOUT) -> None:
        """The notebook's kernel is started and idle (the server's own view, not the UI's)."""
        pause = threading.Event()
        for _ in range(int(timeout / 0.2)):
            if self.kernel_states() == ["idle"]:
                return
            pause.wait(0.2)  # another process: poll its REST API
        raise AssertionError(f"kernel not idle: {self.kernel_states()}")

    def shutdown_sessions(self, timeout: float = 3 * TIMEOUT) -> None:
        """Shut down every kernel session (their connections die with them) and wait until
        the server lists none."""
        for session in self.sessions():
            request = urllib.request.Request(
                f"{self.base}/api/sessions/{session['id']}",
                method="DELETE",
                headers={"Authorization": f"token {self.token}"},
            )
            with contextlib.suppress(OSError):
                urllib.request.urlopen(request, timeout=timeout).close()
        pause = threading.Event()
        for _ in range(int(timeout / 0.2)):
            if not self.sessions():
                return
            pause.wait(0.2)  # another process: poll its REST API
        raise AssertionError(f"sessions left running: {self.kernel_states()}")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def start_lab(home: Path) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 (free port, random token) rooted at ``home/root``
    (a copy of notebooks/), with isolated settings; stopped on exit. Also used by
    ``benchmarks/widget_frames.py``."""
    root = home / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    for name, values in USER_SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
    )
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = (home / "lab.log").open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    waiter = threading.Event()
    for _ in range(int(6 * TIMEOUT / 0.2)):  # the server is another process: poll its status
        if _ready(f"{base}/api/status?token={token}") or proc.poll() is not None:
            break
        waiter.wait(0.2)
    try:
        assert proc.poll() is None, (home / "lab.log").read_text()[-2000:]
        yield Lab(base, token, root)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 rooted at a copy of notebooks/, isolated settings."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    with start_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright. Module-scoped: Playwright's sync API
    keeps an asyncio loop running on the main thread while it is open, which would break
    the ``asyncio.run`` of tests collected after the browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def screenshot(target: Any, name: str) -> Path:
    """Save a PNG of a page or a locator under build/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if hasattr(target, "goto"):
        target.screenshot(path=str(path), full_page=True)
    else:
        target.screenshot(path=str(path))
    return path


@pytest.fixture
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; a screenshot on teardown, and no kernel left running afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        try:
            screenshot(page, re.sub(r"\W+", "_", request.node.name))
        finally:
            context.close()
            lab.shutdown_sessions()


def _click_menu(page: Any, menu: str, item: str) -> None:
    page.click(f"li.lm-MenuBar-item:has-text('{menu}')")
    page.click(f"li.lm-Menu-item:has-text('{item}')")


def _run_all(page: Any, lab: Lab) -> None:
    """Run All Cells, and make sure cells really execute: the first code cell must finish
    (its prompt shows a number). If a run stalls (a request sent before the kernel channel
    was wired up), restart the kernel and run everything again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    executed = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]"))
    _click_menu(page, "Run", "Run All Cells")
    for _ in range(3):
        try:
            executed.first.wait_for(timeout=2 * MS)
            return
        except PlaywrightTimeout:
            _click_menu(page, "Kernel", "Restart Kernel and Run All Cells")
            page.locator(".jp-Dialog button.jp-mod-accept").first.click()
            lab.wait_kernel_idle()
    raise AssertionError(f"no cell executed; kernels: {lab.kernel_states()}")


def open_and_run(page: Any, lab: Lab, notebook: list[str] | str, name: str | None = None) -> Any:
    """Open a notebook in ``page`` and Run All (see ``run_notebook_in_lab``)."""
    if isinstance(notebook, str):
        path = notebook
    else:
        path = f"{name or 'scratch'}.ipynb"
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in notebook]
        nbformat.write(nb, lab.root / path)
    page.goto(lab.url(path))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=6 * MS)
    page.wait_for_selector(
        ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
        timeout=6 * MS,
    )
    dialog = page.locator(".jp-Dialog button.jp-mod-accept")
    if dialog.count():  # "Select Kernel" can still appear right after start
        dialog.first.click()
    lab.wait_kernel_idle()
    _run_all(page, lab)
    return page


@pytest.fixture
def run_notebook_in_lab(lab: Lab, page: Any) -> Callable[..., Any]:
    """``run(cells_or_path, name=None) -> page``: open a notebook in JupyterLab, Run All."""

    def run(notebook: list[str] | str, name: str | None = None) -> Any:
        return open_and_run(page, lab, notebook, name)

    return run


WIDGET_CELLS = [
    "import obbws_jupyter as obbws",
    'conn = obbws.create_connection(provider="demo", name="browser_demo", symbol="btcusd,ethusd",'
    ' rate=40, if_exists="replace")\nconn',
]


@pytest.fixture
def widget_page(run_notebook_in_lab: Callable[..., Any]) -> Iterator[Any]:
    """A notebook whose cell shows a live demo connection (40 events/s); no error output."""
    page = run_notebook_in_lab(WIDGET_CELLS, name="widget")
    page.locator(".obbws-conn").wait_for(timeout=3 * MS)
    yield page
    assert page.locator(ERROR_OUTPUTS).count() == 0
