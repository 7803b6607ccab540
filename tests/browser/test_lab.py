"""JupyterLab in headless Chromium: the quickstart notebook runs top to bottom, as `make lab`
opens it, and its connection shows as the live widget."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ERROR_OUTPUTS, MS

pytestmark = pytest.mark.browser


def test_quickstart_runs_top_to_bottom_in_jupyterlab(run_notebook_in_lab) -> None:  # type: ignore[no-untyped-def]
    """Opening the quickstart in JupyterLab and choosing Run All runs every cell without error."""
    page = run_notebook_in_lab("notebooks/quickstart.ipynb")
    done = page.locator(".jp-OutputArea-output:has-text('results file deleted: True')")
    done.wait_for(timeout=9 * MS)
    errors = page.locator(ERROR_OUTPUTS)
    assert errors.count() == 0, errors.first.inner_text()
    text = page.locator(".jp-OutputArea-output").all_inner_texts()
    assert any(t.startswith("rows:") for t in text)
    assert any("killed" in t for t in text)
    widget = page.locator(".obbws-conn")
    assert widget.count() == 1, "the connection cell shows the live widget"
    widget.scroll_into_view_if_needed()  # a view draws while it is on screen
    page.locator(".obbws-conn .obbws-badge[data-state='closed']").wait_for(timeout=3 * MS)
