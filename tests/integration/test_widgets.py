"""The connection widget and the dashboard without a browser: traits, payloads, controls and
the refresh budget, against demo streams on loopback. Comm traffic is captured by replacing
the widget comm's ``publish_msg`` (what ipykernel would put on iopub)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import _connection as connection_module
from obbws_jupyter._notices import failure_text
from obbws_jupyter.widgets import ConnectionWidget, connection_widget, dashboard
from obbws_jupyter.widgets import connection as widget_module
from obbws_jupyter.widgets._refresher import refresher
from obbws_jupyter.widgets.connection import RETRY
from tests.conftest import TIMEOUT, RecordWaiter, wait_until

pytestmark = pytest.mark.integration

WIRE_LIMIT = 64 * 1024


class Comm:
    """Records what a widget publishes; ``wait`` waits for a matching message."""

    def __init__(self, widget: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        widget.comm.publish_msg = self._publish

    def _publish(self, msg_type: str, data: Any = None, metadata: Any = None,
                 buffers: Any = None, **keys: Any) -> None:  # fmt: skip
        with self._cond:
            self.messages.append({"type": msg_type, "data": data, "bytes": len(json.dumps(data))})
            self._cond.notify_all()

    def updates(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if (m["data"] or {}).get("method") == "update"]

    def custom(self) -> list[dict[str, Any]]:
        return [m["data"]["content"] for m in self.messages
                if (m["data"] or {}).get("method") == "custom"]  # fmt: skip

    def wait(self, predicate: Any, timeout: float = TIMEOUT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


def _demo(name: str = "w", **kwargs: Any) -> obbws.Connection:
    kwargs.setdefault("symbol", "btcusd,ethusd")
    kwargs.setdefault("rate", 500)
    return obbws.create_connection(provider="demo", name=name, if_exists="replace", **kwargs)


@pytest.fixture(autouse=True)
def _close_widgets() -> Any:
    """No widget of a test keeps refreshing into the next one."""
    yield
    for widget in list(widget_module._cache.values()):
        widget.close()


def test_widget_traits_describe_the_connection() -> None:
    """info holds the fixed facts; the first snapshot is there before any refresh."""
    conn = _demo(asset_type="crypto", feed="trade")
    conn.wait(20)
    widget = conn.widget()
    assert isinstance(widget, ConnectionWidget)
    info = widget.info
    assert (info["name"], info["provider"], info["asset_type"], info["feed"]) == (
        "w", "demo", "crypto", "trade")  # fmt: skip
    assert info["tz"] == "America/New_York" and info["limit"] == 1000
    assert info["columns"][:2] == ["id", "received_at"] and "price" in info["columns"]
    snap = widget.snapshot
    assert snap["state"] == "running" and snap["symbols"] == ["BTCUSD", "ETHUSD"]
    assert snap["tail"]["rows"]["id"], "seeded from the stored rows"
    assert snap["tail"]["rows"]["id"] == sorted(snap["tail"]["rows"]["id"], reverse=True)
    assert {s["symbol"] for s in snap["tail"]["symbols"]} == {"BTCUSD", "ETHUSD"}
    assert conn.widget() is widget, "one widget per connection"
    assert "api_key" not in json.dumps(info)


def test_conn_displays_as_the_widget_in_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a kernel the mimebundle is the widget view (text repr kept); elsewhere it is None."""
    conn = _demo()
    assert conn._repr_mimebundle_() is None  # no kernel: IPython falls back to the repr
    assert repr(conn).startswith("Connection(name='w', provider='demo'")
    monkeypatch.setattr(connection_module, "_in_kernel", lambda: True)
    bundle = conn._repr_mimebundle_()
    if isinstance(bundle, tuple):  # (data, metadata)
        bundle = bundle[0]
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == conn.widget().model_id
    assert bundle["text/plain"] == repr(conn)


def test_refreshes_at_most_once_per_sleep_time_under_20k_events_per_second() -> None:
    """At 20,000 events/s a visible widget sends one message per sleep_time, each < 64 KB."""
    conn = _demo("fast", symbol="btcusd,ethusd,solusd", rate=20000, sleep_time=0.25)
    widget = conn.widget()
    comm = Comm(widget)
    started = time.monotonic()
    widget.view_changed("view-1", True)
    conn.wait(60_000, timeout=6 * TIMEOUT)  # about 3 s of stream
    elapsed = time.monotonic() - started
    sent = comm.updates()
    assert 2 <= len(sent) <= elapsed / 0.25 + 1, (len(sent), elapsed)
    assert len(sent) == widget.messages_sent, "one comm message per refresh"
    assert max(m["bytes"] for m in sent) < WIRE_LIMIT
    assert all("snapshot" in m["data"]["state"] for m in sent)
    assert sent[-1]["data"]["state"]["snapshot"]["tail"]["rate"] > 1000


def test_a_hidden_widget_sends_nothing_and_a_silent_view_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No visible view, no refresh; a view that stops re-asserting itself counts as gone."""
    conn = _demo(rate=2000)
    widget = conn.widget()
    comm = Comm(widget)
    conn.wait(1000)
    assert comm.updates() == [] and not widget.visible
    monkeypatch.setattr(widget_module, "VIEW_TTL", 0.5)
    widget.view_changed("v", True)
    assert comm.wait(lambda c: len(c.updates()) >= 1)
    assert comm.wait(lambda c: not widget.visible, timeout=TIMEOUT)  # expired by the refresher
    count = len(comm.updates())
    conn.wait(1000)
    assert len(comm.updates()) <= count + 1  # at most the refresh already in flight


def test_a_closed_widget_sends_nothing_and_detaches_from_the_stream() -> None:
    """close() stops refreshing, removes the record hook and the log handler."""
    conn = _demo(rate=2000)
    client = conn.get_client()
    hooks_before = len(client._record_hooks)
    widget = conn.widget()
    assert len(client._record_hooks) == hooks_before + 1
    comm = Comm(widget)
    widget.view_changed("v", True)
    assert comm.wait(lambda c: len(c.updates()) >= 1)
    widget.close()
    count = len(comm.messages)
    conn.wait(2000)
    assert len(comm.messages) == count
    assert len(client._record_hooks) == hooks_before
    assert widget not in refresher
    assert conn.widget() is not widget, "a closed widget is replaced on the next display"


def test_controls_call_the_connection_and_answer_readably() -> None:
    """subscribe/stop/restart from the widget change the stream; errors come back as text."""
    conn = _demo()
    widget = conn.widget()
    comm = Comm(widget)
    result = widget.run_action("subscribe", "solusd", req=1).result(TIMEOUT)
    assert result["ok"], result
    assert "SOLUSD" in conn.status.subscribed_symbols
    again = widget.run_action("subscribe", "solusd", req=2).result(TIMEOUT)
    assert not again["ok"] and "already subscribed" in again["message"]
    assert "Traceback" not in again["message"]
    assert [c["req"] for c in comm.custom() if c["type"] == "result"] == [1, 2]
    assert widget.run_action("stop").result(TIMEOUT)["ok"]
    assert conn.status.state == "stopped"
    assert widget.run_action("restart").result(TIMEOUT)["ok"]
    assert conn.status.state == "running"
    assert not widget.run_action("nonsense").result(TIMEOUT)["ok"]
    lines = [line["msg"] for line in widget._log.lines]
    assert "subscribed; symbols now BTCUSD,ETHUSD,SOLUSD" in lines
    assert "the stream is stopped" in lines and "the stream is running" in lines
    assert "nonsense failed: ValueError: unknown control 'nonsense'" in lines


def test_kill_from_the_widget_shows_killed_and_detaches() -> None:
    """Kill ends the connection; the widget sends a last 'closed' snapshot and stops."""
    conn = _demo()
    widget = conn.widget()
    comm = Comm(widget)
    assert widget.run_action("kill").result(TIMEOUT)["message"] == "Client w killed."
    assert comm.wait(lambda c: widget.finished)
    assert widget.snapshot["state"] == "closed"
    assert widget not in refresher
    assert "w" not in obbws.default_registry().names()


def test_log_panel_gets_this_connections_messages_only() -> None:
    """Provider messages of the connection land in its panel, not another connection's."""
    conn = _demo("logged")
    other = _demo("other")
    widget = conn.widget()
    other_widget = other.widget()
    conn.subscribe("solusd")
    widget.refresh()
    assert any("subscribed to SOLUSD" in line["msg"] for line in widget.log_lines)
    other_widget.refresh()
    assert not any("SOLUSD" in line["msg"] for line in other_widget.log_lines)


def test_a_failure_alerts_every_rendered_view(demo_server) -> None:  # type: ignore[no-untyped-def]
    """A stream that gives up pushes an alert with the reason, even with no visible view."""
    conn = _demo("fragile", url=demo_server.url, max_reconnects=1, reconnect_base=0.01)
    conn.wait(3)
    widget = conn.widget()
    comm = Comm(widget)
    demo_server.close()
    assert comm.wait(lambda c: any(m["type"] == "alert" for m in c.custom()))
    alert = next(m for m in comm.custom() if m["type"] == "alert")
    assert alert["level"] == "error" and "gave up" in alert["message"]
    assert alert["message"].startswith("fragile: gave up")
    assert alert["message"].count("fragile") == 1
    assert wait_until(lambda: widget.tick(time.monotonic()) and widget._state == "failed")
    widget.refresh()
    assert widget.snapshot["failure"].startswith("gave up")
    assert widget.snapshot["failure"].lower().count("restart") == 1
    assert not any("fragile:" in line["msg"] for line in widget.log_lines)


def test_payload_is_trimmed_under_the_budget_and_has_no_nan() -> None:
    """fit() cuts rows, then sparkline points, then symbols; NaN becomes null."""
    rows = {"id": list(range(5000)), "price": [float("nan")] + [1.5] * 4999}
    symbols = [{"symbol": f"S{i}", "spark": [1.0] * 60} for i in range(300)]
    snap = {"tail": {"rows": rows, "symbols": symbols}}
    fitted, size = widget_module.fit(snap, 20_000)
    text = json.dumps(fitted, allow_nan=False)
    assert size <= 20_000 and len(text.encode()) <= 20_000
    assert 0 < len(fitted["tail"]["rows"]["id"]) < 5000


def test_rows_trait_sets_the_table_size() -> None:
    """widget.rows (or conn.widget(rows=N)) is the number of rows in the live table."""
    conn = _demo(rate=2000)
    widget = connection_widget(conn, rows=5)
    conn.wait(100)
    widget.refresh()
    assert len(widget.snapshot["tail"]["rows"]["id"]) == 5
    conn.widget(rows=12)
    conn.wait(100)
    widget.refresh()
    assert len(widget.snapshot["tail"]["rows"]["id"]) == 12


def test_dashboard_lists_connections_and_counts_hidden_ones() -> None:
    """The dashboard shows every visible connection's widget and how many a token hides."""
    a, b = _demo("dash_a"), _demo("dash_b")
    obbws.create_connection(provider="demo", name="dash_secret", symbol="btcusd", auth_token="s")
    board = dashboard()
    assert [w.info["name"] for w in board.connections] == ["dash_a", "dash_b"]
    assert board.connections[0] is a.widget() and board.connections[1] is b.widget()
    assert (board.header.count, board.header.hidden) == (2, 1)
    with_token = dashboard(auth_token="s")
    assert [w.info["name"] for w in with_token.connections] == [
        "dash_a", "dash_b", "dash_secret"]  # fmt: skip
    with_token.close()  # a dashboard left open would adopt the next tests' connections
    b.kill()
    board.sync()
    assert [w.info["name"] for w in board.connections] == ["dash_a"]
    board.close()


def test_dashboard_form_opens_connections_and_reports_errors() -> None:
    """The form's fields become a create_connection call; a bad one answers with its message."""
    board = dashboard()
    providers = {p["name"]: p for p in board.header.providers}
    assert "trade" in providers["demo"]["feed"]["choices"]
    ok = board.header.create({"provider": "demo", "name": "formed", "symbol": "btcusd",
                              "asset_type": "crypto", "feed": "quote"})  # fmt: skip
    assert ok == {"ok": True, "message": "opened formed"}
    assert [w.info["name"] for w in board.connections] == ["formed"]
    assert obbws.get_client("formed").provider_params["feed"] == "quote"
    bad = board.header.create({"provider": "nope", "symbol": "x"})
    assert not bad["ok"] and "Unknown provider 'nope'" in bad["message"]
    board.close()


def test_a_kill_while_no_view_is_visible_leaves_a_final_snapshot() -> None:
    """Killed while off screen, the widget's last snapshot is built at the kill: state
    closed, rate 0, the final counters and newest rows, and the real age of the last message."""
    conn = _demo("offscreen", rate=1000)
    widget = conn.widget()  # shown, never visible: no refresh goes out
    conn.wait(1500)
    received = conn.status.records_received
    conn.kill()
    assert wait_until(lambda: widget.finished)
    snap = widget.snapshot
    assert snap["state"] == "closed" and snap["tail"]["rate"] == 0
    assert snap["received"] >= received >= 1500
    assert snap["stored"] >= 1000 and snap["rows_in_table"] == 1000
    assert snap["tail"]["rows"]["id"][0] >= received
    assert snap["last_age"] is not None and 0 <= snap["last_age"] < TIMEOUT


def test_a_clear_then_a_kill_while_off_screen_leaves_the_right_row_count() -> None:
    """Cleared from Python and then killed, never on screen: the final snapshot counts the
    rows stored after the clear, not the rows before it."""
    conn = _demo("clearkill", rate=1000)
    widget = conn.widget()
    conn.wait(900)
    conn.clear_results()
    conn.wait(50)
    conn.stop_connection()
    after_clear = len(conn.get_results())
    conn.kill()
    assert wait_until(lambda: widget.finished)
    assert 50 <= widget.snapshot["rows_in_table"] == after_clear < 800


def test_a_view_that_comes_back_gets_the_current_snapshot_at_once() -> None:
    """A view hidden while the stream stopped gets the stopped state as soon as it is back."""
    conn = _demo("comeback", rate=1000)
    widget = conn.widget()
    comm = Comm(widget)
    widget.view_changed("v", True)
    assert comm.wait(lambda c: len(c.updates()) >= 1)
    widget.view_changed("v", False)
    conn.stop_connection()
    sent = len(comm.updates())
    widget.view_changed("v", True)
    assert comm.wait(lambda c: len(c.updates()) > sent, timeout=TIMEOUT)
    snap = comm.updates()[sent]["data"]["state"]["snapshot"]
    assert snap["state"] == "stopped"
    assert snap["received"] == conn.status.records_received


def test_rows_counter_follows_a_clear_made_in_python() -> None:
    """After conn.clear_results() the rows counter drops, also while the store does not
    report rows_in_table itself; when it does, that figure is shown."""
    conn = _demo("cleared", rate=500)
    widget = conn.widget()
    widget.view_changed("v", True)
    conn.wait(800)
    assert wait_until(lambda: widget.snapshot["rows_in_table"] >= 700)
    conn.clear_results()
    assert wait_until(lambda: widget.snapshot["rows_in_table"] < 500), widget.snapshot
    real_status = conn.get_client().status
    conn.get_client().status = lambda: real_status().model_copy(update={"rows_in_table": 7})
    widget.refresh()
    assert widget.snapshot["rows_in_table"] == 7


def test_board_counts_cover_the_stored_rows_when_shown_after_data_arrived() -> None:
    """A widget opened on a stream that already stored rows counts them all per symbol, with
    one grouped read, and "change" starts at each symbol's first stored value."""
    conn = _demo("late", rate=1000)
    conn.wait(1200)
    conn.stop_connection()
    stored = conn.query(
        "SELECT symbol, count(*) AS n, arg_min(price, id) AS first FROM records GROUP BY symbol"
    )
    widget = conn.widget()
    board = {s["symbol"]: s for s in widget.snapshot["tail"]["symbols"]}
    expected = stored.set_index("symbol")
    assert {k: v["count"] for k, v in board.items()} == expected["n"].to_dict()
    assert {k: v["first"] for k, v in board.items()} == expected["first"].to_dict()


def test_an_unsubscribed_symbol_leaves_the_board() -> None:
    """Unsubscribing removes the symbol's line from the board (its rows stay in the table)."""
    conn = _demo("unsub", rate=1000)
    widget = conn.widget()
    conn.subscribe("solusd")
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_symbol("SOLUSD")
    widget.refresh()
    assert [s["symbol"] for s in widget.snapshot["tail"]["symbols"]] == [
        "BTCUSD", "ETHUSD", "SOLUSD"]  # fmt: skip
    conn.unsubscribe("solusd")
    widget.refresh()
    assert [s["symbol"] for s in widget.snapshot["tail"]["symbols"]] == ["BTCUSD", "ETHUSD"]
    waiter.close()


def test_failure_text_says_the_reason_once_with_one_way_to_retry() -> None:
    """The banner/notification text drops the repeated connection name and adds "Restart
    tries again." only when the reason does not already say how to restart."""
    gave_up = "fail: gave up after 2 reconnect attempts; Use restart_connection() to try again."
    assert failure_text("fail", f"fail: {gave_up}", RETRY) == gave_up.removeprefix("fail: ")
    refused = "Could not connect to ws://127.0.0.1:1/crypto: refused"
    assert failure_text("x", refused, RETRY) == refused + ". Restart tries again."


def test_subscribe_box_suggests_a_symbol_of_the_connection_s_kind() -> None:
    """The subscribe placeholder shows a symbol of the feed's asset type, not yet subscribed."""
    stock = _demo("stocks", symbol="msft", asset_type="stock")
    fx = _demo("fx", symbol="eurusd", asset_type="fx", feed="quote")
    crypto = _demo("crypto", symbol="solusd")
    assert stock.widget().info["example"] == "aapl"
    assert fx.widget().info["example"] == "gbpusd"
    widget = crypto.widget()
    assert widget.info["example"] == "ethusd"
    crypto.subscribe("ethusd")
    widget.refresh()
    assert widget.snapshot["example"] == "btcusd", "a symbol subscribed meanwhile is not offered"


def test_removing_every_chip_says_that_no_symbol_is_left() -> None:
    """Unsubscribing the last symbol answers with what it means, not an empty list."""
    conn = _demo("empty", symbol="btcusd")
    widget = conn.widget()
    result = widget.run_action("unsubscribe", "BTCUSD").result(TIMEOUT)
    assert result["ok"], result
    assert result["message"] == "unsubscribed; no symbols left: subscribe to some to get data"
    assert widget.run_action("subscribe", "ethusd").result(TIMEOUT)["message"] == (
        "subscribed; symbols now ETHUSD"
    )


def test_sinks_show_in_the_header_only_when_there_are_some(tmp_path: Any) -> None:
    """Without sinks the snapshot has no sinks key; with a Parquet sink it lists kind, URL,
    state and counters; a failing sink shows retrying and its error (clipped), and a secret
    in a sink URL never reaches the widget."""
    from obbws_jupyter.sinks import _SCHEMES, Batch, BatchingSink, register_sink

    class Refusing(BatchingSink):
        kind = "refusing"

        def deliver(self, batches: list[Batch]) -> None:
            raise ConnectionError("refused " + "x" * 1_000)

    conn = _demo(rate=500)
    widget = conn.widget()
    widget.refresh()
    assert "sinks" not in widget.snapshot
    out = tmp_path / "out"
    sink = conn.add_sink(f"parquet://{out}", roll_seconds=0.1, flush_interval=0.02)
    register_sink("refusing", Refusing, replace=True)
    try:
        conn.add_sink("refusing://user:hunter2@host", flush_interval=0.02, retry_base=0.02)
        conn.wait(50)
        sink.flush(TIMEOUT)
        assert wait_until(lambda: conn.sinks[1].state == "retrying")
        widget.refresh()
        parquet, refusing = widget.snapshot["sinks"]
        assert (parquet["kind"], parquet["url"], parquet["state"]) == (
            "parquet", f"parquet://{out}", "ok")  # fmt: skip
        assert parquet["written"] > 0 and parquet["dropped"] == 0 and "error" not in parquet
        assert (refusing["kind"], refusing["state"]) == ("refusing", "retrying")
        assert refusing["error"].startswith("ConnectionError: refused xxx")
        assert len(refusing["error"]) < 300  # clipped: the status has the whole text
        assert refusing["pending"] > 0 and refusing["lag"] >= 0
        assert "hunter2" not in json.dumps(widget.snapshot)
    finally:
        _SCHEMES.pop("refusing", None)
