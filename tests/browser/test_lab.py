"""JupyterLab in headless Chromium: the quickstart notebook runs top to bottom, as `make lab`
opens it. Uses Debian's chromium (installed by `make test`) driven by Playwright."""

from __future__ import annotations

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
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import TIMEOUT

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ERROR_MIME = "application/vnd.jupyter.error"
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on 127.0.0.1 rooted at the repo, with isolated user settings."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    home = tmp_path_factory.mktemp("lab")
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
        f"--ServerApp.root_dir={ROOT}",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = (home / "lab.log").open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    waiter = threading.Event()
    for _ in range(int(6 * TIMEOUT / 0.2)):  # the server is another process: poll its status
        if _ready(f"{base}/api/status?token={token}") or proc.poll() is not None:
            break
        waiter.wait(0.2)
    try:
        assert proc.poll() is None, (home / "lab.log").read_text()[-2000:]
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _kernel_states(base: str, token: str) -> list[str]:
    """Execution states of the kernels of this server's sessions (REST API)."""
    try:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=2) as r:
            sessions = json.load(r)
    except OSError:
        return []
    return [s["kernel"].get("execution_state", "?") for s in sessions if s.get("kernel")]


def _wait_kernel_idle(base: str, token: str, timeout: float) -> None:
    """The notebook's kernel is started and idle (the server's own view, not the UI's)."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.2)):
        if _kernel_states(base, token) == ["idle"]:
            return
        pause.wait(0.2)  # another process: poll its REST API
    raise AssertionError(f"kernel not idle: {_kernel_states(base, token)}")


def _click_menu(page, menu: str, item: str) -> None:  # type: ignore[no-untyped-def]
    page.click(f"li.lm-MenuBar-item:has-text('{menu}')")
    page.click(f"li.lm-Menu-item:has-text('{item}')")


def _run_all(page, base: str, token: str) -> None:  # type: ignore[no-untyped-def]
    """Run All Cells, and make sure cells really execute: the first code cell must finish
    (its prompt shows a number). If a run stalls (a request sent before the kernel channel
    was wired up), restart the kernel and run everything again."""
    executed = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]"))
    _click_menu(page, "Run", "Run All Cells")
    for _ in range(3):
        try:
            executed.first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            _click_menu(page, "Kernel", "Restart Kernel and Run All Cells")
            page.locator(".jp-Dialog button.jp-mod-accept").first.click()
            _wait_kernel_idle(base, token, 6 * TIMEOUT)
    raise AssertionError(f"no cell executed; kernels: {_kernel_states(base, token)}")


def _open_and_run_all(page, base: str, token: str, notebook: str) -> None:  # type: ignore[no-untyped-def]
    """Open ``notebook`` (a path under the server root) once its kernel is idle; Run All."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_selector(
        ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
        timeout=60_000,
    )
    dialog = page.locator(".jp-Dialog button.jp-mod-accept")
    if dialog.count():  # "Select Kernel" can still appear right after start
        dialog.first.click()
    _wait_kernel_idle(base, token, 6 * TIMEOUT)
    _run_all(page, base, token)


def test_quickstart_runs_top_to_bottom_in_jupyterlab(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Opening the quickstart in JupyterLab and choosing Run All runs every cell without error."""
    from playwright.sync_api import sync_playwright

    base, token = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _open_and_run_all(page, base, token, "notebooks/quickstart.ipynb")
            done = page.locator(".jp-OutputArea-output:has-text('results file deleted: True')")
            try:
                done.wait_for(timeout=90_000)
            finally:
                shot = tmp_path / "quickstart.png"
                page.screenshot(path=str(shot), full_page=True)
                print("screenshot:", shot, "kernels:", _kernel_states(base, token))
                print("outputs:", page.locator(".jp-OutputArea-output").all_inner_texts()[-4:])
            errors = page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
            )
            assert errors.count() == 0, errors.first.inner_text()
            text = page.locator(".jp-OutputArea-output").all_inner_texts()
            assert any(t.startswith("rows:") for t in text)
            assert any("killed" in t for t in text)
        finally:
            browser.close()
