"""JupyterLab in headless Chromium: the charts notebook draws live plotly charts with data.

Runs ``notebooks/charts.ipynb`` with Run All in a real JupyterLab (the server fixture and
helpers of ``test_lab``), then reads plotly's DOM: line and band traces are
``.scatterlayer .trace`` groups whose path has points, candlesticks are ``.boxlayer .trace``
groups with one path per bar. A screenshot goes to ``tests/browser/screenshots/`` (ignored
by git).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.test_lab import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    _kernel_states,
    _open_and_run_all,
    lab,  # noqa: F401  (the JupyterLab server fixture)
)
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

# Per plot (in page order, widgets and the static plot alike): the time axis type, the
# scatter traces with the points of their path, the candlestick traces with their bars.
PLOTS_JS = """
() => [...document.querySelectorAll(
  '.jp-OutputArea-output .js-plotly-plot, .jp-OutputArea-output.js-plotly-plot'
)].map(plot => ({
  xaxis: plot._fullLayout?.xaxis?.type,
  scatter: [...plot.querySelectorAll('.scatterlayer .trace')].map(
    t => (t.querySelector('path.js-line')?.getAttribute('d') || '').split(/[ML]/).length - 1),
  candles: [...plot.querySelectorAll('.boxlayer .trace')].map(
    t => t.querySelectorAll('path').length),
}))
"""


def _points(path_points: list[int]) -> int:
    return min(path_points, default=0)


def test_charts_notebook_draws_live_charts_in_jupyterlab(lab) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Run All on charts.ipynb draws line, candle, band and static charts that hold data."""
    from playwright.sync_api import sync_playwright

    base, token = lab
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _open_and_run_all(page, base, token, "notebooks/charts.ipynb")
            done = page.locator(".jp-OutputArea-output:has-text('charts done: True')")
            try:
                done.wait_for(timeout=int(12 * TIMEOUT * 1000))
                page.wait_for_function(
                    f"() => ({PLOTS_JS})().length >= 4", timeout=int(3 * TIMEOUT * 1000)
                )
            finally:
                page.screenshot(path=str(SCREENSHOTS / "charts.png"), full_page=True)
                for i, plot in enumerate(page.locator(".js-plotly-plot").all()):
                    plot.scroll_into_view_if_needed()
                    plot.screenshot(path=str(SCREENSHOTS / f"chart-{i}.png"))
                print("screenshot:", SCREENSHOTS / "charts.png", _kernel_states(base, token))
            errors = page.locator(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
            )
            assert errors.count() == 0, errors.first.inner_text()
            plots = page.evaluate(PLOTS_JS)
            print("plots:", plots)
            assert len(plots) == 4
            line, candles, band, static = plots
            assert [p["xaxis"] for p in plots] == ["date"] * 4  # times, not epoch numbers
            assert len(line["scatter"]) == 2 and _points(line["scatter"]) > 10
            assert len(candles["candles"]) == 2 and min(candles["candles"]) >= 2
            assert len(band["scatter"]) == 3 and _points(band["scatter"]) > 10
            assert len(static["candles"]) == 2
            text = " ".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            assert re.search(r"ohlc matches pandas: True", text)
        finally:
            browser.close()
