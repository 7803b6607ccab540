"""``ConnectionWidget``: the live view of one connection (anywidget; ESM + CSS in ``static/``).

What it shows: a header (name, provider, asset type/feed, a state badge, removable symbol
chips, events/s, rows stored / limit, the last message's age, the broadcast address with a
copy button, the listener count; when the connection has sinks, one line per sink: kind,
masked URL, state badge, rows written, pending with the lag, drops, last error), controls
(subscribe, stop, restart, start/stop broadcasting, clear results, kill with a confirm), the
newest rows (newest on top), a "last per symbol" board with sparklines, and the connection's
log panel.

Refresh model: a :class:`~obbws_jupyter._tail.LiveTail` follows the stream while the widget
lives; the shared refresher thread (``_refresher``) refreshes the widget every ``sleep_time``
seconds, but only while a frontend view reports itself visible (IntersectionObserver and
``document.visibilityState`` on the JS side, re-asserted every few seconds). Each refresh is
ONE comm message (the ``snapshot`` trait, plus ``log_lines`` when new lines arrived, sent
together under ``hold_sync``), kept under :data:`PAYLOAD_BUDGET` bytes by trimming rows first.
A state change to "failed" is pushed to every rendered view even when none is visible, so
the failure banner and notification appear where the user is looking. A view that comes back
on screen gets the current snapshot at once; when the connection is killed, every view gets
a final snapshot built at that moment (rate 0, the final counters, the real age of the last
message), whether or not it was visible.

The "rows" counter is ``status.rows_in_table`` when the store reports it; otherwise it is
estimated from a row count taken at most every :data:`COUNT_EVERY` seconds while a view is
visible (and set to 0 when the connection logs a clear), plus the rows written since.

Controls call the same :class:`~obbws_jupyter._connection.Connection` methods as Python code,
on a small worker pool (some block for seconds: a restart authenticates, a subscribe waits for
the provider's acknowledgement), and answer with a ``result`` message (the exception's
message on failure, never a traceback).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from obbws_jupyter._notices import failure_text
from obbws_jupyter._tail import LiveTail, stored_seed
from obbws_jupyter._util import clip
from obbws_jupyter.exceptions import ObbwsError
from obbws_jupyter.models import SinkStatus
from obbws_jupyter.widgets._logpanel import ConnectionLog
from obbws_jupyter.widgets._refresher import IDLE_WAIT, refresher

if TYPE_CHECKING:
    from obbws_jupyter._connection import Connection
    from obbws_jupyter.client import WebSocketClient

__all__ = ["PAYLOAD_BUDGET", "ConnectionWidget", "connection_widget"]

log = logging.getLogger("obbws_jupyter.widgets")

STATIC = Path(__file__).parent / "static"
ROWS_DEFAULT = 20
PAYLOAD_BUDGET = 60_000  # bytes of JSON per refresh message (the target is < 64 KB)
LOG_LINES = 40  # log lines sent to the panel
VIEW_TTL = 15.0  # a view silent this long (closed tab, dead frontend) counts as gone
HIDDEN_TICK = 0.5  # how often a widget nobody sees checks its state (for failure alerts)
RETRY = "Restart tries again."  # how the widget's failure text ends (it has the button)
COUNT_EVERY = 2.0  # seconds between row counts while the store does not report rows_in_table
SINK_ERROR_CHARS = 200  # a sink's last error as the header shows it (the status has it all)
# symbols the subscribe box suggests, per asset type (the first one not yet subscribed)
EXAMPLES = {
    "crypto": ("solusd", "ethusd", "btcusd", "xrpusd", "ltcusd"),
    "stock": ("msft", "aapl", "nvda", "amzn", "spy"),
    "fx": ("gbpusd", "eurusd", "usdjpy", "audusd", "usdchf"),
}

_actions = ThreadPoolExecutor(max_workers=2, thread_name_prefix="obbws-widget-action")
_cache_lock = threading.Lock()
_cache: dict[int, ConnectionWidget] = {}  # id(client) -> its widget (one view model each)


def _describe(action: str, result: Any) -> str:
    """A control's result in a few words (an endpoint's own message when it returns one);
    the log panel shows the same words."""
    if isinstance(result, str):
        return result
    if action in ("subscribe", "unsubscribe"):
        symbols = result.subscribed_symbols
        if not symbols:
            return f"{action}d; no symbols left: subscribe to some to get data"
        return f"{action}d; symbols now {symbols}"
    if action == "start_broadcast":
        return f"broadcasting on {result.broadcast_address}"
    if action == "stop_broadcast":
        return "stopped broadcasting"
    return f"the stream is {result.state}"


def symbol_example(client: WebSocketClient) -> str:
    """A symbol to suggest in the subscribe box, in the style of the connection's feed: for
    a provider with several asset types, one of that type; otherwise the first example of the
    provider's ``symbol`` parameter. Never one already subscribed."""
    asset_type = client.provider_params.get("asset_type")
    try:
        choices = client.spec.param("asset_type").choices or ()
    except (KeyError, ValueError):
        choices = ()
    candidates = list(EXAMPLES.get(str(asset_type), ()))
    try:
        described = client.spec.param("symbol").description
    except (KeyError, ValueError):
        described = ""
    _, _, given = described.partition("e.g. ")
    listed = [s.strip() for s in given.split(";")[0].split(",") if s.strip()]
    candidates = candidates + listed if len(choices) > 1 else listed + candidates
    subscribed = set(client.symbol.split(","))
    for candidate in candidates:
        try:
            (normalized,) = client.normalize_symbols(candidate)
        except (ObbwsError, ValueError):
            continue
        if normalized not in subscribed:
            return candidate
    return ""


ACTIONS: dict[str, Callable[[Connection, str], Any]] = {
    "subscribe": lambda c, arg: c.subscribe(arg),
    "unsubscribe": lambda c, arg: c.unsubscribe(arg),
    "stop": lambda c, arg: c.stop_connection(),
    "restart": lambda c, arg: c.restart_connection(),
    "start_broadcast": lambda c, arg: c.start_broadcasting(),
    "stop_broadcast": lambda c, arg: c.stop_broadcasting(),
    "clear": lambda c, arg: c.clear_results(),
    "kill": lambda c, arg: c.kill(),
}


class ConnectionWidget(anywidget.AnyWidget):
    """The live view of one connection; get it with ``conn.widget()`` or by showing ``conn``."""

    _esm = STATIC / "connection.js"
    _css = STATIC / "connection.css"

    info: traitlets.Dict[str, Any] = traitlets.Dict().tag(
        sync=True
    )  # fixed facts: name, provider, feed, tz, columns...
    rows = traitlets.Int(ROWS_DEFAULT).tag(sync=True)  # rows in the live table
    snapshot: traitlets.Dict[str, Any] = traitlets.Dict().tag(
        sync=True
    )  # replaced once per refresh
    log_lines: traitlets.List[Any] = traitlets.List().tag(sync=True)

    def __init__(self, connection: Connection, rows: int = ROWS_DEFAULT, **kwargs: Any) -> None:
        client = connection.get_client()
        self._conn = connection
        self._client: WebSocketClient = client
        self._tail = LiveTail(client.fields, rows=rows, sample_every=client.sleep_time)
        self._views: dict[str, float] = {}
        self._views_lock = threading.Lock()
        self._next = 0.0
        self._last_refresh = -1e9
        self._state = client.state
        self._reconnects_at_live = 0
        self._last_message_at: Any = None  # newest seen: a failed restart has no message yet
        self._row_count: tuple[float, int, int] | None = None  # (when, counted, written then)
        self._example: tuple[str, str] = ("", "")  # (subscribed symbols, suggestion for them)
        self.finished = False
        self.messages_sent = 0  # refresh messages (for tests and the benchmark)
        self.last_payload_bytes = 0
        self._tail.follow(client, lambda: stored_seed(client, rows))
        self._log = ConnectionLog(client.name).install()
        self._log.watchers.append(self._on_log)
        # the connection's earlier messages went out before this panel existed
        self._log.add("info", f"live view opened; the stream is {client.state}", time.time())
        self._log_seq = self._log.seq
        first, self.last_payload_bytes = fit(self._build(rows), PAYLOAD_BUDGET)
        super().__init__(
            info=self._info(), rows=rows, snapshot=first, log_lines=list(self._log.lines), **kwargs
        )
        self.on_msg(self._on_msg)
        refresher.add(self)

    def _info(self) -> dict[str, Any]:
        client = self._client
        params = client.provider_params
        return {
            "name": client.name,
            "provider": client.provider,
            "asset_type": params.get("asset_type"),
            "feed": params.get("feed"),
            "tz": client.tz,
            "sleep_time": client.sleep_time,
            "limit": client.limit,
            "columns": self._tail.columns,
            "types": self._tail.types,
            "auth_required": client.auth_required,
            "example": self._suggestion(client.symbol),
        }

    def _suggestion(self, subscribed: str) -> str:
        """The subscribe box's example, worked out again only when the symbols change."""
        if self._example[0] != subscribed:
            self._example = (subscribed, symbol_example(self._client))
        return self._example[1]

    # -- views --------------------------------------------------------------------------------

    @property
    def visible(self) -> bool:
        """True while at least one frontend view is on screen."""
        return bool(self._views)

    def view_changed(self, view: str, visible: bool) -> None:
        """A frontend view reports (or re-asserts) whether it is on screen."""
        with self._views_lock:
            if visible:
                new = view not in self._views
                self._views[view] = time.monotonic()
            else:
                new = False
                self._views.pop(view, None)
        if new:
            self._next = 0.0  # a view that just appeared gets fresh data at once
            refresher.wake()

    def _expire_views(self, now: float) -> None:
        with self._views_lock:
            for view, seen in list(self._views.items()):
                if now - seen > VIEW_TTL:
                    del self._views[view]

    # -- refresh (on the refresher thread) -----------------------------------------------------

    def tick(self, now: float) -> float:
        if self.finished:
            return now + IDLE_WAIT
        state = self._client.state
        if state != self._state:
            self._state_changed(state)
        if state == "closed":
            self._finish()
            return now + IDLE_WAIT
        self._expire_views(now)
        if not self._views:
            return now + HIDDEN_TICK
        # never two refreshes closer than sleep_time, even when a new view or a control asks
        # for one at once: at most 1/sleep_time messages per second, whatever happens
        due = max(self._next, self._last_refresh + self._client.sleep_time)
        if now >= due:
            self._last_refresh = now
            self._next = now + self._client.sleep_time
            self.refresh()
            due = self._next
        return min(due, now + HIDDEN_TICK)

    def refresh(self) -> None:
        """Build one snapshot and send it to the views as one message."""
        log_lines = None
        if self._log.seq != self._log_seq:
            self._log_seq = self._log.seq
            log_lines = list(self._log.lines)[-LOG_LINES:]
        used = len(json.dumps(log_lines, ensure_ascii=False)) if log_lines else 0
        snapshot, size = fit(self._build(self.rows), PAYLOAD_BUDGET - used)
        self.last_payload_bytes = size + used
        with self.hold_sync():
            self.snapshot = snapshot
            if log_lines is not None:
                self.log_lines = log_lines
        self.messages_sent += 1

    def _build(self, rows: int) -> dict[str, Any]:
        status = self._client.status()
        symbols = [s for s in status.subscribed_symbols.split(",") if s]
        tail = self._tail.snapshot(rows=rows, only=symbols)
        del tail["columns"], tail["types"]  # fixed: in `info`
        last = status.last_message_at
        if last is None or (self._last_message_at is not None and last < self._last_message_at):
            last = self._last_message_at
        self._last_message_at = last
        # the store's figures stay readable after a kill, when status() no longer has them
        stats = self._client.store.stats
        stored = int(stats.get("rows_written", status.records_stored))
        rows_in_table = status.rows_in_table
        if rows_in_table is None:
            rows_in_table = stats.get("rows_in_table")
        if rows_in_table is None:
            rows_in_table = self._estimate_rows(stored, status.limit)
        snapshot = {
            "t": int(time.time() * 1000),
            "state": status.state,
            "attempt": max(0, status.reconnects - self._reconnects_at_live),
            "symbols": symbols,
            "example": self._suggestion(status.subscribed_symbols),
            "acknowledged": [s for s in status.acknowledged_symbols.split(",") if s],
            "received": status.records_received,
            "stored": stored,
            "rows_in_table": rows_in_table,
            "limit": status.limit,
            "last_age": None if last is None else round(time.time() - last.timestamp(), 3),
            "connected_at": None
            if status.connected_at is None
            else int(status.connected_at.timestamp() * 1000),
            "broadcast": status.broadcast_address,
            "listeners": status.listeners,
            "errors": status.errors,
            "reconnects": status.reconnects,
            "last_error": status.last_error,
            "failure": failure_text(status.name, status.last_error, RETRY)
            if status.state == "failed"
            else None,
            "dropped": status.dropped_records,
            "recording": status.recording_file,
            "tail": tail,
        }
        if status.sinks:  # the key is there only when there are sinks: no bytes otherwise
            snapshot["sinks"] = [sink_line(s) for s in status.sinks]
        return snapshot

    def _estimate_rows(self, stored: int, limit: int | None) -> int:
        """Rows in the table while the store does not report them: the last count (taken at
        most every COUNT_EVERY seconds, so a clear from anywhere shows within that time) plus
        the rows written since, capped by the limit."""
        now = time.monotonic()
        counted = self._row_count
        if self._client.state != "closed" and (counted is None or now - counted[0] >= COUNT_EVERY):
            try:
                counted = self._row_count = (now, self._client.store.count(), stored)
            except Exception:  # a store being closed: keep the last count
                log.debug("%s: rows not counted", self._client.name, exc_info=True)
        estimate = stored if counted is None else counted[1] + max(0, stored - counted[2])
        return min(estimate, limit) if limit else estimate

    def _on_log(self, record: logging.LogRecord) -> None:
        # A clear from anywhere (Python, the REST API, a button) logs this line in the thread
        # that cleared, right after the DELETE: the table is empty and every row written so
        # far is gone. That keeps the rows counter right without a query, even for a widget
        # that is off screen and then killed (when nothing can be counted any more).
        if isinstance(record.msg, str) and "results cleared from table" in record.msg:
            written = int(self._client.store.stats.get("rows_written", 0))
            self._row_count = (time.monotonic(), 0, written)

    def _state_changed(self, state: str) -> None:
        self._state = state
        self._next = 0.0
        if state == "running":
            self._reconnects_at_live = self._client.status().reconnects
        elif state == "failed":
            name = self._client.name
            error = failure_text(name, self._client.status().last_error, RETRY)
            self.send({"type": "alert", "level": "error", "message": f"{name}: {error}"})

    def _finish(self) -> None:
        """The connection was killed: every view (visible or not) gets a snapshot built now
        with the final figures, then the widget costs nothing."""
        self.finished = True
        snapshot, _ = fit(self._build(self.rows), PAYLOAD_BUDGET)
        snapshot["tail"]["rate"] = 0.0  # nothing arrives any more
        with self.hold_sync():
            self.snapshot = snapshot
            self.log_lines = list(self._log.lines)[-LOG_LINES:]
        self._detach()

    def _detach(self) -> None:
        refresher.remove(self)
        self._tail.close()
        self._log.uninstall()
        with _cache_lock:
            if _cache.get(id(self._client)) is self:
                del _cache[id(self._client)]

    def close(self) -> None:
        """Close the widget: stop refreshing and stop following the stream."""
        self.finished = True
        self._detach()
        super().close()

    @traitlets.observe("rows")
    def _rows_changed(self, change: dict[str, Any]) -> None:
        if hasattr(self, "_tail"):
            self._tail.resize(change["new"])

    # -- controls -----------------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "view":
            self.view_changed(str(content.get("view")), bool(content.get("visible")))
        elif kind == "action":
            self.run_action(
                str(content.get("action")), str(content.get("arg") or ""), content.get("req")
            )

    def run_action(self, action: str, arg: str = "", req: Any = None) -> Any:
        """Run a control (``"subscribe"``, ``"stop"``, ``"kill"``...) off the comm thread; its
        result or error goes to the views and the log panel. Returns the Future."""
        return _actions.submit(self._action, action, arg, req)

    def _action(self, action: str, arg: str, req: Any) -> dict[str, Any]:
        call = ACTIONS.get(action)
        try:
            if call is None:
                raise ValueError(f"unknown control {action!r}")
            message, ok = _describe(action, call(self._conn, arg)), True
        except ObbwsError as exc:
            message, ok = str(exc), False
        except Exception as exc:  # shown inline, readable; the traceback goes to the log
            log.warning("%s: control %s failed", self._client.name, action, exc_info=True)
            message, ok = f"{type(exc).__name__}: {exc}", False
        line = message if ok else f"{action.replace('_', ' ')} failed: {message}"
        self._log.add("info" if ok else "error", line, time.time())
        result = {"type": "result", "req": req, "action": action, "ok": ok, "message": message}
        if not self.finished:
            self.send(result)
        self._next = 0.0
        refresher.wake()
        return result


def sink_line(sink: SinkStatus) -> dict[str, Any]:
    """One sink as the header shows it: kind, URL (secrets already masked by the status),
    state, rows written / pending / dropped, lag in seconds (0.1 s), the last error (clipped)."""
    line: dict[str, Any] = {
        "kind": sink.kind,
        "url": sink.url,
        "state": sink.state,
        "written": sink.rows_written,
        "pending": sink.rows_pending,
        "dropped": sink.rows_dropped,
    }
    if sink.lag_seconds is not None:
        line["lag"] = round(sink.lag_seconds, 1)
    if sink.last_error:
        line["error"] = clip(sink.last_error, SINK_ERROR_CHARS)
    return line


def fit(snapshot: dict[str, Any], budget: int) -> tuple[dict[str, Any], int]:
    """``snapshot`` trimmed until its JSON is at most ``budget`` bytes (rows go first, then
    sparkline points, then symbols); non-finite floats become null. Returns it and its size."""
    text = _dumps(snapshot)
    tail = snapshot["tail"]
    while len(text) > budget:
        rows = tail["rows"]
        n = len(next(iter(rows.values()), []))
        symbols = tail["symbols"]
        if n > 1:
            tail["rows"] = {k: v[: n // 2] for k, v in rows.items()}
        elif any(len(s["spark"]) > 2 for s in symbols):
            for s in symbols:
                s["spark"] = s["spark"][len(s["spark"]) // 2 :]
        elif len(symbols) > 1:
            tail["symbols"] = symbols[: len(symbols) // 2]
        else:
            break
        text = _dumps(snapshot)
    return snapshot, len(text)


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:  # NaN/inf from a provider: JSON (and the comm) has no such number
        return json.dumps(_finite(value), ensure_ascii=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = _finite(v)
    elif isinstance(value, list):
        value[:] = [_finite(v) for v in value]
    return value


def connection_widget(connection: Connection, rows: int | None = None) -> ConnectionWidget:
    """The one widget of ``connection`` (created on first use, or after it was closed)."""
    client = connection.get_client()
    with _cache_lock:
        widget = _cache.get(id(client))
        if widget is not None and widget.finished:
            widget = None
    if widget is None:
        widget = ConnectionWidget(connection, rows=rows or ROWS_DEFAULT)
        with _cache_lock:
            _cache[id(client)] = widget
    elif rows is not None:
        widget.rows = rows
    return widget
