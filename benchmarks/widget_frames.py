"""Frame delay in JupyterLab while several connection widgets with 200-row tables follow demo
streams: what the live views cost the browser.

Run: ``python benchmarks/widget_frames.py [--views 4] [--seconds 10] [--rate 200] [--runs 3]
[--height 1000]`` (a tall ``--height``, e.g. 9000, puts every view on screen: the cost of
drawing itself, without the off-screen saving)

Starts JupyterLab with the browser tests' launcher (``tests/browser/conftest.py``; needs the
Debian ``chromium``), and runs a notebook that opens ``--views`` demo connections (three
symbols each, ``--rate`` events/s per connection) and shows each one twice: in its own cell
with ``rows=200``, and again in a dashboard further down (two views of one model, as when a
connection is shown in two places). Once the tables are full, it records for ``--seconds``:

- frame intervals (``requestAnimationFrame``): median, p95, max, and the share of frames
  later than 50 ms (what a user feels as jank);
- long tasks (``PerformanceObserver("longtask")``, main-thread tasks over 50 ms): how many,
  and their total time per second;
- snapshots drawn per second in views that are on screen / off screen, and the script time
  of one draw (read from the ``data-draws`` and ``data-draw-ms`` counters the widget keeps on
  its root element, when it has them);
- Chrome's main-thread time per second (DevTools ``Performance.getMetrics``): script, style
  recalculation, layout, and all tasks (the rest of ``main_busy`` is mostly paint).

Prints the medians of ``--runs`` runs. Headless Chromium paces frames itself, so compare runs
made here with each other, not with a desktop browser.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import (  # noqa: E402  (the repo root is on the path only now)
    CHROMIUM,
    CHROMIUM_FLAGS,
    MS,
    open_and_run,
    start_lab,
)

# Installed in the page before measuring: frame intervals and long tasks into window.__obbws.
PROBE = """() => {
  const m = (window.__obbws = { frames: [], long: [], t0: performance.now() });
  let last = performance.now();
  const tick = (t) => {
    m.frames.push(t - last);
    last = t;
    if (!m.stop) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) m.long.push(e.duration);
    }).observe({ type: "longtask", buffered: false });
  } catch (e) { m.noLongTasks = true; }
}"""

# Draw counters of every widget view, split by whether the view is on screen now.
DRAWS = """() => {
  const out = { on: 0, off: 0, ms: 0 };
  const h = window.innerHeight;
  for (const el of document.querySelectorAll('.obbws-conn')) {
    const r = el.getBoundingClientRect();
    const on = r.bottom > 0 && r.top < h && r.width > 0;
    out[on ? 'on' : 'off'] += Number(el.dataset.draws || 0);
    out.ms += Number(el.dataset.drawMs || 0);
  }
  return out;
}"""


def cells(views: int, rate: float) -> list[str]:
    opened = [
        f'c{i} = obbws.create_connection(provider="demo", name="frames{i}", '
        f'symbol="btcusd,ethusd,solusd", rate={rate}, if_exists="replace")\n'
        f"c{i}.widget(rows=200)"
        for i in range(views)
    ]
    return ["import obbws_jupyter as obbws", *opened, "obbws.dashboard()"]


# Chrome's own main-thread counters (DevTools "Performance" domain), in seconds
METRICS = ("ScriptDuration", "RecalcStyleDuration", "LayoutDuration", "TaskDuration")


def _metrics(cdp: Any) -> dict[str, float]:
    found = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return {name: float(found.get(name, 0.0)) for name in METRICS}


def measure(page: Any, seconds: float) -> dict[str, float]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    before = page.evaluate(DRAWS)
    page.evaluate(PROBE)
    start = _metrics(cdp)
    page.wait_for_timeout(seconds * 1000)  # the measurement window itself
    end = _metrics(cdp)
    data = page.evaluate("() => { window.__obbws.stop = true; return window.__obbws; }")
    after = page.evaluate(DRAWS)
    busy = {name: (end[name] - start[name]) * 1000 / seconds for name in METRICS}
    frames = sorted(data["frames"][1:])
    drawn = after["on"] + after["off"] - before["on"] - before["off"]
    return {
        "frames": len(frames),
        "median_ms": statistics.median(frames),
        "p95_ms": frames[int(0.95 * (len(frames) - 1))],
        "max_ms": frames[-1],
        "late_share": sum(f > 50 for f in frames) / len(frames),
        "long_tasks": len(data["long"]),
        "long_ms_per_s": sum(data["long"]) / seconds,
        "draws_on_per_s": (after["on"] - before["on"]) / seconds,
        "draws_off_per_s": (after["off"] - before["off"]) / seconds,
        "draw_script_ms": (after["ms"] - before["ms"]) / max(1, drawn),
        "script_ms_per_s": busy["ScriptDuration"],
        "style_ms_per_s": busy["RecalcStyleDuration"],
        "layout_ms_per_s": busy["LayoutDuration"],
        "main_busy_ms_per_s": busy["TaskDuration"],
    }


def run_once(
    browser: Any, lab: Any, views: int, rate: float, seconds: float, height: int
) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1400, "height": height})
    page = context.new_page()
    try:
        open_and_run(page, lab, cells(views, rate), name="frames")
        page.wait_for_function(
            f"() => document.querySelectorAll('.obbws-conn').length >= {2 * views}",
            timeout=6 * MS,
        )
        page.wait_for_function(
            "() => Number(document.querySelector('.obbws-table').dataset.rows) >= 200",
            timeout=6 * MS,
        )
        return measure(page, seconds)
    finally:
        context.close()
        lab.shutdown_sessions()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=4, help="connections (each shown twice)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s per connection")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--height", type=int, default=1000, help="viewport height (px)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as home,
        start_lab(Path(home)) as lab,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            runs = [
                run_once(browser, lab, args.views, args.rate, args.seconds, args.height)
                for _ in range(args.runs)
            ]
        finally:
            browser.close()
    print(
        f"{args.views} connections x 2 views, rows=200, {args.rate:g} events/s each, "
        f"viewport 1400x{args.height}, {args.seconds:g} s, median of {args.runs} runs"
    )
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key:<16} {statistics.median(values):10.2f}   runs: "
              + ", ".join(f"{v:.2f}" for v in values))  # fmt: skip


if __name__ == "__main__":
    main()
