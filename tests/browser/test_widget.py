"""The live connection widget and the dashboard in JupyterLab (headless Chromium): they render,
fill and follow the stream, and their controls act on the connection."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import MS, screenshot

pytestmark = pytest.mark.browser


def _rows_count(page: Any) -> int:
    return int(page.locator(".obbws-rows-count").inner_text().replace(",", ""))


def test_widget_renders_and_the_table_fills(widget_page) -> None:  # type: ignore[no-untyped-def]
    """The widget shows the connection live: badge, chips, a growing row counter, a full table."""
    page = widget_page
    page.locator(".obbws-badge[data-state='running']").wait_for(timeout=3 * MS)
    assert page.locator(".obbws-name").inner_text() == "browser_demo"
    assert page.locator(".obbws-chip[data-symbol='BTCUSD']").count() == 1
    first = _rows_count(page)
    page.wait_for_function(
        f"() => Number(document.querySelector('.obbws-rows-count').textContent"
        f".replace(/,/g, '')) > {first}",
        timeout=3 * MS,
    )
    page.wait_for_function(
        "() => Number(document.querySelector('.obbws-table').dataset.rows) >= 20",
        timeout=3 * MS,
    )
    assert page.locator(".obbws-board tr[data-symbol='ETHUSD'] svg polyline").count() == 1
    assert "ago" in page.locator(".obbws-age").inner_text()
    assert page.locator("[data-stat='rows']").inner_text().endswith("/ 1,000")
    assert page.locator(".obbws-sinks").is_hidden()  # no sink, no sink line


def test_stop_and_restart_buttons_drive_the_badge(widget_page) -> None:  # type: ignore[no-untyped-def]
    """Stop turns the badge to stopped; Restart brings it back to live."""
    page = widget_page
    page.locator(".obbws-badge[data-state='running']").wait_for(timeout=3 * MS)
    page.click(".obbws-btn[data-action='stop']")
    page.locator(".obbws-badge[data-state='stopped']").wait_for(timeout=3 * MS)
    assert page.locator(".obbws-badge").inner_text() == "stopped"
    page.click(".obbws-btn[data-action='restart']")
    page.locator(".obbws-badge[data-state='running']").wait_for(timeout=3 * MS)
    assert page.locator(".obbws-badge").inner_text() == "live"


def test_subscribe_box_adds_a_chip_and_its_rows_arrive(widget_page) -> None:  # type: ignore[no-untyped-def]
    """A symbol typed in the subscribe box becomes a chip, and its rows reach the table."""
    page = widget_page
    page.locator(".obbws-badge[data-state='running']").wait_for(timeout=3 * MS)
    page.fill(".obbws-subscribe", "solusd")
    page.press(".obbws-subscribe", "Enter")
    page.locator(".obbws-chip[data-symbol='SOLUSD']").wait_for(timeout=3 * MS)
    page.locator(".obbws-table td", has_text="SOLUSD").first.wait_for(timeout=3 * MS)
    page.locator(".obbws-board tr[data-symbol='SOLUSD']").wait_for(timeout=3 * MS)
    assert page.locator(".obbws-msg[data-ok='1']").count() == 1
    page.locator(".obbws-board tr[data-symbol='SOLUSD'] svg polyline").wait_for(timeout=3 * MS)
    screenshot(page.locator(".obbws-conn"), "widget")  # docs/widget.png is one of these


def test_a_refused_subscription_shows_its_message_inline(widget_page) -> None:  # type: ignore[no-untyped-def]
    """An error from a control shows the exception's message next to the controls."""
    page = widget_page
    page.locator(".obbws-badge[data-state='running']").wait_for(timeout=3 * MS)
    page.fill(".obbws-subscribe", "btcusd")
    page.press(".obbws-subscribe", "Enter")
    error = page.locator(".obbws-msg[data-ok='0']")
    error.wait_for(timeout=3 * MS)
    assert "already subscribed" in error.inner_text()
    assert "Traceback" not in error.inner_text()


def test_a_sink_shows_in_the_header_with_its_state_and_counters(run_notebook_in_lab) -> None:  # type: ignore[no-untyped-def]
    """A connection with a Parquet sink shows one sink line: kind, URL, an ok badge and a
    written count that grows."""
    page = run_notebook_in_lab(
        [
            "import tempfile\nimport obbws_jupyter as obbws\nout = tempfile.mkdtemp()",
            'conn = obbws.create_connection(provider="demo", name="sink_demo", symbol="btcusd",'
            ' rate=40, if_exists="replace", sinks=[{"url": f"parquet://{out}",'
            ' "roll_seconds": 0.5}])\nconn',
        ],
        name="sink_widget",
    )
    line = page.locator(".obbws-sink[data-kind='parquet']")
    line.wait_for(timeout=3 * MS)
    assert line.locator(".obbws-sink-url").inner_text().startswith("parquet:///")
    line.locator(".obbws-sink-state[data-state='ok']").wait_for(timeout=3 * MS)
    page.wait_for_function(
        "() => Number(document.querySelector(\".obbws-sink [data-stat='written'] b\")"
        ".textContent.replace(/,/g, '')) > 0",
        timeout=3 * MS,
    )
    assert page.locator(".obbws-sink").count() == 1
    screenshot(page.locator(".obbws-conn"), "widget_sinks")


def test_dashboard_lists_two_connections(run_notebook_in_lab) -> None:  # type: ignore[no-untyped-def]
    """obbws.dashboard() shows both connections of the kernel, each with its live widget."""
    page = run_notebook_in_lab(
        [
            "import obbws_jupyter as obbws",
            'a = obbws.create_connection(provider="demo", name="dash_one", symbol="btcusd",'
            ' rate=20, if_exists="replace")\n'
            'b = obbws.create_connection(provider="demo", name="dash_two", symbol="eurusd",'
            ' asset_type="fx", feed="quote", rate=20, if_exists="replace")',
            "obbws.dashboard()",
        ],
        name="dashboard_test",
    )
    board = page.locator(".obbws-dashboard")
    board.wait_for(timeout=3 * MS)
    page.wait_for_function(
        "() => document.querySelectorAll('.obbws-dashboard .obbws-conn').length === 2",
        timeout=3 * MS,
    )
    names = board.locator(".obbws-conn .obbws-name").all_inner_texts()
    assert names == ["dash_one", "dash_two"]
    assert "2 connections" in board.locator(".obbws-dash-title").inner_text()
    board.locator(".obbws-conn .obbws-badge[data-state='running']").nth(1).wait_for(timeout=3 * MS)
    screenshot(board, "dashboard")


def test_widget_follows_the_dark_theme(widget_page) -> None:  # type: ignore[no-untyped-def]
    """Switched to JupyterLab Dark, the widget takes the theme's colours (--jp-* variables)."""
    page = widget_page
    page.locator(".obbws-badge[data-state='running']").wait_for(timeout=3 * MS)
    light = page.evaluate(_BACKGROUND)
    page.click("li.lm-MenuBar-item:has-text('Settings')")
    page.hover("li.lm-Menu-item:has-text('Theme')")
    page.click("li.lm-Menu-item:has-text('JupyterLab Dark')")
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=3 * MS)
    page.wait_for_function(f"() => ({_BACKGROUND})().widget !== {light['widget']!r}")
    dark = page.evaluate(_BACKGROUND)
    assert dark["widget"] == dark["theme"] and light["widget"] == light["theme"]
    screenshot(page.locator(".obbws-conn"), "widget_dark")


# the widget's background and the theme's --jp-layout-color1, both as computed rgb() strings
_BACKGROUND = """() => {
  const probe = document.createElement("div");
  probe.style.background = "var(--jp-layout-color1)";
  document.body.append(probe);
  const theme = getComputedStyle(probe).backgroundColor;
  probe.remove();
  const widget = getComputedStyle(document.querySelector(".obbws-conn")).backgroundColor;
  return { widget, theme };
}"""
