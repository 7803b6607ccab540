"""A sink run in a child process (process=True) against real redis-server / nats-server:
records arrive in order once each through the child, health crosses back, a killed child is
reported and restarted, the parent's death ends the child, a stalled child costs drops (not a
blocked stream), a dead address is reported, close() counts the rows not delivered, secrets
stay out of the child's argv, and bad options fail before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import orjson
import psutil
import pytest

import obbws_jupyter as obbws
from obbws_jupyter import runtime
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.sinks import sink_from_url
from obbws_jupyter.sinks._process import ProcessSink
from obbws_jupyter.sinks.nats import default_stream_name
from obbws_jupyter.sinks.redis import RedisSink
from tests.conftest import TIMEOUT, RecordWaiter, wait_until
from tests.sinks_nats.conftest import NatsServer
from tests.sinks_redis.conftest import RedisServer, finish, free_port

pytestmark = pytest.mark.integration

FAST = {"flush_interval": 0.02, "retry_base": 0.05, "retry_cap": 0.5}


def demo(name: str, **kwargs: Any) -> obbws.Connection:
    kwargs.setdefault("rate", 2_000)
    return obbws.create_connection(provider="demo", name=name, symbol="btcusd,ethusd", **kwargs)


def process_sink(conn: obbws.Connection) -> ProcessSink:
    (sink,) = conn.get_client()._sink_list
    assert isinstance(sink, ProcessSink)
    return sink


def stored_ids(server: RedisServer, key: str) -> list[int]:
    client = server.client()
    try:
        return [orjson.loads(fields[b"record"])["id"] for _, fields in client.xrange(key)]
    finally:
        client.close()


def received_at_least(conn: obbws.Connection, n: int) -> bool:
    return wait_until(lambda: conn.status.records_received >= n, 2 * TIMEOUT)


@pytest.mark.parametrize("path", ["frames", "batches"])
def test_records_arrive_in_order_once_each_through_the_child(
    redis_server: RedisServer, path: str
) -> None:
    """Every record reaches Redis once, in id order, through a child process (not this
    one), the same ids DuckDB holds; with the sink alone the stream hands it frames, with a
    record hook beside it stamped batches: both end the same."""
    conn = demo(f"ps-order-{path}", limit=None, sinks=[{"url": redis_server.url, "process": True}])
    sink = process_sink(conn)
    assert sink.pid is not None and sink.pid != os.getpid() and psutil.pid_exists(sink.pid)
    client = conn.get_client()
    if path == "batches":
        assert RecordWaiter(client).wait_more(600)
    else:
        assert client._frame_sinks == (sink,) and received_at_least(conn, 600)
    finish(conn)
    ids = stored_ids(redis_server, f"obbws:ps-order-{path}")
    received = conn.status.records_received
    assert ids == list(range(1, received + 1))
    assert ids == conn.get_results()["id"].tolist()
    health = conn.sinks[0]
    assert (health.kind, health.state, health.rows_written) == ("redis", "ok", received)
    assert health.rows_dropped == 0 and health.rows_pending == 0


class ShortRedisSink(RedisSink):
    """A sink class of the tests' own, with an option it takes in a child process."""

    child_options = {"maxlen": 50}


def test_a_sink_class_of_ones_own_runs_in_the_child_with_its_child_options(
    redis_server: RedisServer,
) -> None:
    """ProcessSink(url, SinkClass): the child imports the class by name and builds it with
    its child_options (here a short cap); every record is written, the stream kept short."""
    conn = demo("ps-own", limit=None, sinks=[ProcessSink(redis_server.url, ShortRedisSink)])
    assert received_at_least(conn, 1_000)
    finish(conn)
    assert conn.sinks[0].rows_written == conn.status.records_received
    client = redis_server.client()
    try:
        assert 50 <= client.xlen("obbws:ps-own") <= 200  # MAXLEN ~ 50 trims whole nodes
    finally:
        client.close()


def test_nats_records_reach_jetstream_through_the_child(nats_server: NatsServer) -> None:
    """The NATS sink runs in the child as it does in the stream's process: the stream holds
    every record once, in order (first and last sequence = first and last id)."""
    conn = demo("ps-nats", limit=None, sinks=[{"url": nats_server.url, "process": True}])
    assert received_at_least(conn, 600)
    finish(conn)
    received = conn.status.records_received
    assert conn.sinks[0].rows_written == received and conn.sinks[0].state == "ok"
    state = nats_server.stream_state(default_stream_name("ps-nats"))
    assert (state.messages, state.first_seq, state.last_seq) == (received, 1, received)


def test_health_crosses_back_and_close_counts_what_a_dead_address_kept(tmp_path: Any) -> None:
    """A child whose sink cannot reach its server: the parent's status says retrying with the
    child's error, DuckDB stores every record, and close() returns every row not delivered."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    sink_spec = {"url": dead, "process": True, "connect_timeout": 0.5, **FAST}
    conn = demo("ps-dead", rate=1_000, limit=None, sinks=[sink_spec])
    assert wait_until(lambda: conn.sinks[0].state == "retrying", 2 * TIMEOUT)
    assert "connect" in str(conn.sinks[0].last_error).lower()
    assert received_at_least(conn, 1_000)
    conn.stop_connection()
    received = conn.status.records_received
    assert len(conn.get_results()) == received
    health = conn.sinks[0]
    assert health.rows_written == 0
    assert health.rows_pending + health.rows_dropped == received
    assert process_sink(conn).close(timeout=0.5) == received


def test_a_killed_child_is_reported_and_restarted(redis_server: RedisServer) -> None:
    """SIGKILL the child: the status says failed and how it ended, a new child takes over
    and writes on; every row is written once or counted as dropped, none twice."""
    options = {"url": redis_server.url, "process": True, **FAST}
    conn = demo("ps-crash", limit=None, sinks=[options])
    sink = process_sink(conn)
    first = sink.pid
    assert first is not None and wait_until(lambda: conn.sinks[0].rows_written > 0)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: conn.sinks[0].state == "failed")
    assert "killed by signal 9" in str(conn.sinks[0].last_error)
    assert wait_until(lambda: sink.pid not in (None, first) and conn.sinks[0].state == "ok")
    written = conn.sinks[0].rows_written
    assert wait_until(lambda: conn.sinks[0].rows_written > written + 200)
    assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
    finish(conn)
    health = conn.sinks[0]
    ids = stored_ids(redis_server, "obbws:ps-crash")
    assert ids == sorted(set(ids))  # none twice, in order
    assert health.rows_written <= len(ids) <= health.rows_written + health.rows_dropped
    assert health.rows_written + health.rows_dropped == conn.status.records_received
    assert health.last_error is None


@pytest.mark.parametrize("watch", ["epoll", "polled"])
def test_a_stalled_child_costs_drops_never_the_stream(
    redis_server: RedisServer, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped child (SIGSTOP) fills the pipe: the parent drops rows (counted) and the
    stream goes on storing every record; resumed, the child writes again. The same where the
    loop cannot watch a pipe (Windows' proactor loop): the parent looks at it on a timer."""
    if watch == "polled":

        def no_pipes(*args: Any) -> None:
            raise NotImplementedError

        monkeypatch.setattr(runtime.get_loop(), "add_writer", no_pipes)
    options = {"url": redis_server.url, "process": True, "max_pending": 5_000, **FAST}
    conn = demo(f"ps-stall-{watch}", rate=20_000, limit=None, sinks=[options])
    sink = process_sink(conn)
    assert sink.pid is not None and wait_until(lambda: conn.sinks[0].rows_written > 0)
    os.kill(sink.pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: sink._armed and conn.sinks[0].rows_dropped > 0, 3 * TIMEOUT)
        stored = conn.status.records_stored
        assert wait_until(lambda: conn.status.records_stored > stored + 5_000)
    finally:
        os.kill(sink.pid, signal.SIGCONT)
    written = conn.sinks[0].rows_written
    assert wait_until(lambda: conn.sinks[0].rows_written > written)
    finish(conn)
    health = conn.sinks[0]
    assert health.rows_written + health.rows_dropped == conn.status.records_received


def test_a_child_killed_with_a_full_pipe_is_replaced_cleanly(redis_server: RedisServer) -> None:
    """The child dies while the parent waits for room in its pipe: the new child's pipe is
    watched afresh, and it writes on; counts add up."""
    options = {"url": redis_server.url, "process": True, "max_pending": 5_000, **FAST}
    conn = demo("ps-full-crash", rate=20_000, limit=None, sinks=[options])
    sink = process_sink(conn)
    first = sink.pid
    assert first is not None and wait_until(lambda: conn.sinks[0].rows_written > 0)
    os.kill(first, signal.SIGSTOP)
    assert wait_until(lambda: sink._armed and conn.sinks[0].rows_dropped > 0, 3 * TIMEOUT)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: sink.pid not in (None, first) and conn.sinks[0].state == "ok")
    written = conn.sinks[0].rows_written
    assert wait_until(lambda: conn.sinks[0].rows_written > written + 5_000)
    finish(conn)
    health = conn.sinks[0]
    assert health.rows_written + health.rows_dropped == conn.status.records_received


def test_the_parents_death_ends_the_child(redis_server: RedisServer) -> None:
    """A process holding a process sink is SIGKILLed: its child sees the pipe close and
    exits by itself (never orphaned)."""
    script = textwrap.dedent(
        f"""
        import obbws_jupyter as obbws
        conn = obbws.create_connection(provider="demo", name="ps-orphan", symbol="btcusd",
                                       rate=500, sinks=[{{"url": {redis_server.url!r},
                                                          "process": True}}])
        print(conn.get_client()._sink_list[0].pid, flush=True)
        import threading
        threading.Event().wait()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
    finally:
        parent.kill()
        parent.wait(TIMEOUT)
    child.wait(TIMEOUT)  # psutil.TimeoutExpired if it outlived its parent
    assert not child.is_running()


def test_secrets_stay_out_of_the_childs_argv(secured_redis: RedisServer) -> None:
    """The password in the URL reaches the child through its pipe: not its argv, not the
    status, not the repr; the records still arrive."""
    password = "s3cret-redis-pw"
    conn = demo("ps-secret", limit=None, sinks=[{"url": secured_redis.url, "process": True}])
    sink = process_sink(conn)
    assert sink.pid is not None
    assert password not in " ".join(psutil.Process(sink.pid).cmdline())
    assert wait_until(lambda: conn.sinks[0].rows_written > 100)
    assert password not in repr(conn.sinks) + repr(sink) + repr(conn.status)


def test_bad_process_options_fail_before_anything_starts() -> None:
    """process= must be a bool, nice= an int 0-19 given with process=True, the wrapped
    sink's own options are checked in this process, and a factory the child cannot import is
    refused: all before a child starts."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    before = len(psutil.Process().children())
    bad: list[dict[str, Any]] = [
        {"process": "yes"},
        {"process": True, "nice": 25},
        {"process": True, "nice": True},
        {"process": False, "nice": 5},
        {"process": True, "maxlen": -1},
        {"process": True, "no_such_option": 1},
    ]
    for options in bad:
        with pytest.raises(InvalidParameterError):
            sink_from_url(url, **options)
    with pytest.raises(InvalidParameterError, match="Invalid Redis URL"):
        sink_from_url("redis://", process=True)
    with pytest.raises(InvalidParameterError, match="importable module"):
        ProcessSink(url, lambda u, **o: RedisSink(u, **o))  # a class the child cannot import
    assert len(psutil.Process().children()) == before


def test_network_sinks_run_in_a_child_by_default_and_files_in_process(tmp_path: Any) -> None:
    """nats:// and redis:// sinks run in a child process unless process=False is given (so a
    sink slower than the feed costs ingestion little); a parquet sink stays in this process."""
    port = free_port()
    for url in (f"nats://127.0.0.1:{port}", f"redis://127.0.0.1:{port}/0"):
        sink = sink_from_url(url)
        assert isinstance(sink, ProcessSink), url
        assert not isinstance(sink_from_url(url, process=False), ProcessSink), url
    assert not isinstance(sink_from_url(f"parquet://{tmp_path}"), ProcessSink)
