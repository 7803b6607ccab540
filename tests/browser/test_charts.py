"""JupyterLab in headless Chromium: the charts notebook draws live plotly charts with data.

Runs ``notebooks/charts.ipynb`` with Run All in a real JupyterLab (the shared fixtures of
``tests/browser/conftest.py``), then reads plotly's DOM: line and band traces are
``.scatterlayer .trace`` groups whose path has points, candlesticks are ``.boxlayer .trace``
groups with one path per bar. Screenshots go to ``build/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ERROR_OUTPUTS, MS, screenshot

pytestmark = pytest.mark.browser

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


def test_charts_notebook_draws_live_charts_in_jupyterlab(run_notebook_in_lab) -> None:  # type: ignore[no-untyped-def]
    """Run All on charts.ipynb draws line, candle, band and static charts that hold data."""
    page = run_notebook_in_lab("notebooks/charts.ipynb")
    done = page.locator(".jp-OutputArea-output:has-text('charts done: True')")
    try:
        done.wait_for(timeout=12 * MS)
        page.wait_for_function(f"() => ({PLOTS_JS})().length >= 4", timeout=3 * MS)
    finally:
        for i, plot in enumerate(page.locator(".js-plotly-plot").all()):
            plot.scroll_into_view_if_needed()
            screenshot(plot, f"chart-{i}")
    errors = page.locator(ERROR_OUTPUTS)
    assert errors.count() == 0, errors.first.inner_text()
    plots = page.evaluate(PLOTS_JS)
    assert len(plots) == 4
    line, candles, band, static = plots
    assert [p["xaxis"] for p in plots] == ["date"] * 4  # times, not epoch numbers
    assert len(line["scatter"]) == 2 and _points(line["scatter"]) > 10
    assert len(candles["candles"]) == 2 and min(candles["candles"]) >= 2
    assert len(band["scatter"]) == 3 and _points(band["scatter"]) > 10
    assert len(static["candles"]) == 2
    text = " ".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert re.search(r"ohlc matches pandas: True", text)
