"""The registry facade end to end on the demo provider: concurrent creates of one name, the
options object through create_connection, states as an enum over a lifecycle, and the
deprecated names of raw-frame capture."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import ClientOptions, Registry, StreamState
from obbws_jupyter.exceptions import NameInUseError, UnknownConnectionError
from tests.conftest import TIMEOUT, RecordWaiter

pytestmark = pytest.mark.integration


def _demo(name: str, registry: Registry | None = None, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("symbol", "btcusd")
    kwargs.setdefault("rate", 200)
    target = registry if registry is not None else obbws.default_registry()
    return target.create_connection(provider="demo", name=name, **kwargs)


def test_concurrent_creates_of_one_name_give_one_connection() -> None:
    """Four threads create the same name at once: one connection, three NameInUseErrors."""
    barrier = threading.Barrier(4)
    made: list[object] = []
    refused: list[str] = []

    def attempt() -> None:
        barrier.wait(TIMEOUT)
        try:
            made.append(_demo("race"))
        except NameInUseError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * TIMEOUT)
    assert len(made) == 1 and len(refused) == 3
    assert obbws.default_registry().names() == ["race"]
    assert all("race" in text for text in refused)


def test_create_connection_takes_an_options_object() -> None:
    """options=ClientOptions(...) sets the limit, tz and table of a live connection."""
    conn = _demo("opts", options=ClientOptions(limit=5, tz="UTC", table_name="ticks"))
    assert RecordWaiter(conn.get_client()).wait(10)
    status = conn.status
    assert status.limit == 5 and status.table_name == "ticks"
    df = conn.get_results()
    assert 0 < len(df) <= 5 and str(df["date"].dt.tz) == "UTC"


def test_reuse_compares_the_options_too() -> None:
    """if_exists="reuse" returns the connection for equal options and names a differing one."""
    opts = ClientOptions(limit=50, max_reconnects=3)
    first = _demo("same", options=opts)
    again = _demo("same", options=ClientOptions(limit=50, max_reconnects=3), if_exists="reuse")
    assert again.get_client() is first.get_client()
    with pytest.raises(NameInUseError, match="max_reconnects differs"):
        _demo("same", options=opts.replace(max_reconnects=4), if_exists="reuse")


def test_an_isolated_registry_runs_its_own_connections() -> None:
    """A Registry() holds a live connection the default registry does not see; kill_all ends it."""
    registry = Registry()
    try:
        conn = _demo("solo", registry)
        assert conn.registry is registry
        assert RecordWaiter(conn.get_client()).wait(5)
        assert "solo" not in obbws.default_registry()
        assert [s.name for s in registry.get_client_status()] == ["solo"]
    finally:
        assert registry.kill_all() == 1
    assert registry.names() == []
    with pytest.raises(UnknownConnectionError):
        conn.get_client()


def test_status_state_is_the_enum_over_a_lifecycle() -> None:
    """state is StreamState.RUNNING, then STOPPED after stop_connection, equal to the text."""
    conn = _demo("life")
    assert conn.status.state is StreamState.RUNNING and conn.status.state == "running"
    conn.stop_connection()
    assert conn.status.state is StreamState.STOPPED
    assert conn.status.model_dump(mode="json")["state"] == "stopped"
    assert "state='stopped'" in repr(conn)


def test_capture_writes_frames_and_the_old_names_still_work_with_a_warning(
    tmp_path: Path,
) -> None:
    """conn.capture/stop_capture capture raw frames; record/stop_recording do the same and
    warn DeprecationWarning naming the new method."""
    conn = _demo("cap")
    waiter = RecordWaiter(conn.get_client())
    first = tmp_path / "first.jsonl"
    assert conn.capture(first) == first
    assert conn.status.recording_file == str(first)
    assert waiter.wait_more(5)
    assert conn.stop_capture() == first and first.stat().st_size > 0
    second = tmp_path / "second.jsonl"
    with pytest.warns(DeprecationWarning, match=r"use capture\(\)"):
        assert conn.record(second) == second
    assert waiter.wait_more(5)
    with pytest.warns(DeprecationWarning, match=r"use stop_capture\(\)"):
        assert conn.stop_recording() == second
    assert second.stat().st_size > 0 and conn.status.recording_file is None
    client = conn.get_client()
    with pytest.warns(DeprecationWarning, match=r"use stop_capture\(\)"):
        assert client.stop_recording() is None
