"""listen("redis://...") against a real redis-server: replay then live records, resume after a
restart with no gap and no duplicate, blocking use, passwords, and options checked first."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import InvalidParameterError, UnauthorizedError
from obbws_jupyter.listen import listen
from tests.conftest import TIMEOUT, RecordWaiter, wait_until
from tests.sinks_redis.conftest import RedisServer, finish, free_port

pytestmark = pytest.mark.integration

FAST = {"flush_interval": 0.02, "retry_base": 0.05, "retry_cap": 0.5}


def capture(name: str, server: RedisServer, **kwargs: Any) -> obbws.Connection:
    """A demo connection whose records go to ``server`` from the first one."""
    kwargs.setdefault("rate", 1_000)
    return obbws.create_connection(
        provider="demo",
        name=name,
        symbol="btcusd,ethusd",
        limit=None,
        sinks=[{"url": server.url, **FAST}],
        **kwargs,
    )


def consecutive(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


def test_replay_gives_the_last_n_then_live_records(redis_server: RedisServer) -> None:
    """replay=50 yields the 50 newest entries first (read in pages of count=16), then live
    ones, with no gap or duplicate between them; the records are the broadcast's dicts."""
    conn = capture("rl-replay", redis_server)
    assert RecordWaiter(conn.get_client()).wait_more(300)
    finish(conn)  # the stream holds ids 1..last, nothing moves
    last = conn.status.records_received
    listener = listen(redis_server.url, name="rl-replay", replay=50, count=16, block=False)
    assert listener.wait(50, TIMEOUT), listener.error
    conn.restart_connection()  # then live ones
    assert listener.wait(250, TIMEOUT), listener.error
    listener.stop()
    ids = [record["id"] for record in listener.records]
    assert ids[0] == last - 49 and consecutive(ids) and len(ids) == listener.count
    assert set(listener.records[0]) >= {"id", "received_at", "symbol", "price", "size"}
    stored = conn.get_results().set_index("id")
    first = listener.records[0]
    assert first["price"] == stored.loc[first["id"], "price"]


def test_a_listener_resumes_after_a_redis_restart(durable_redis: RedisServer) -> None:
    """A listener whose Redis stops and comes back (same data) reconnects and resumes after
    the last entry it yielded: in the end it has every record once, in order."""
    conn = capture("rl-resume", durable_redis, rate=1_000)
    listener = listen(durable_redis.url, name="rl-resume", replay=1, block=False)
    assert listener.wait_connected(TIMEOUT)
    assert listener.wait(200, TIMEOUT)
    durable_redis.stop()
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait_more(2_000)  # ~2 s written while Redis is down: the sink keeps them
    durable_redis.start()
    assert waiter.wait_more(300)
    finish(conn)
    last = conn.status.records_received
    assert wait_until(lambda: listener.records[-1]["id"] == last, 2 * TIMEOUT), listener.error
    listener.stop()
    ids = [record["id"] for record in listener.records]
    assert consecutive(ids) and ids[-1] == last and len(ids) == listener.count


def test_blocking_listen_with_max_records(redis_server: RedisServer) -> None:
    """In a thread with no event loop, listen() blocks, hands each record to the callback and
    returns after max_records."""
    conn = capture("rl-block", redis_server)
    assert RecordWaiter(conn.get_client()).wait_more(20)
    got: list[dict[str, Any]] = []
    listener = listen(
        redis_server.url, name="rl-block", replay=5, max_records=25, callback=got.append
    )
    assert listener.count == 25 and len(got) == 25 and consecutive([r["id"] for r in got])


def test_the_password_comes_from_the_url_or_auth_token(secured_redis: RedisServer) -> None:
    """A password-protected Redis is read with the URL's password or auth_token=; without one
    the listener fails with UnauthorizedError, whose message shows no password."""
    conn = capture("rl-secret", secured_redis)
    assert RecordWaiter(conn.get_client()).wait_more(20)
    secret = secured_redis.password
    assert secret
    bare = secured_redis.url.replace(f":{secret}@", "")
    for url, token in ((secured_redis.url, None), (bare, secret)):
        listener = listen(url, auth_token=token, name="rl-secret", replay=3, block=False)
        assert listener.wait(3, TIMEOUT), listener.error
        listener.stop()
        assert secret not in repr(listener)
    refused = listen(bare, name="rl-secret", block=False)
    assert wait_until(lambda: not refused.is_running)
    assert isinstance(refused.error, UnauthorizedError)
    assert secret not in str(refused.error)


def test_nothing_listening_is_a_clear_error() -> None:
    """A Redis address where nothing answers ends the listener with an error that says so,
    in one sentence per thought (no doubled full stop)."""
    with pytest.raises(obbws.ObbwsError, match="redis-server running") as caught:
        listen(f"redis://127.0.0.1:{free_port()}/0", name="x", connect_timeout=1, block=True)
    assert ".." not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "name="),
        ({"name": "x", "replay": 0}, "replay"),
        ({"name": "x", "replay": True}, "replay"),
        ({"name": "x", "count": 0}, "count"),
        ({"name": "x", "subject": "a.b"}, "Unknown option.*name='<connection name>'"),
        ({"name": "x", "reconnect_for": -1}, "reconnect_for"),
        ({"key": 5}, "key"),
    ],
)
def test_bad_listen_options_fail_before_anything_starts(
    options: dict[str, Any], match: str
) -> None:
    """Bad listen() arguments for a Redis URL raise InvalidParameterError at once."""
    with pytest.raises(InvalidParameterError, match=match):
        listen("redis://127.0.0.1:6379/0", block=False, **options)


def test_a_bad_redis_url_fails_before_anything_starts() -> None:
    """listen() of a malformed redis:// URL raises InvalidParameterError at once."""
    with pytest.raises(InvalidParameterError, match="Invalid Redis URL"):
        listen("redis://127.0.0.1:6379/db", name="x", block=False)


def test_a_listener_gives_up_after_reconnect_for(redis_server: RedisServer) -> None:
    """A listener whose Redis stays away longer than reconnect_for ends with an error that
    says so, instead of waiting forever."""
    listener = listen(redis_server.url, name="rl-gone", reconnect_for=0.5, block=False)
    assert listener.wait_connected(TIMEOUT)
    redis_server.stop()
    assert wait_until(lambda: not listener.is_running)
    assert isinstance(listener.error, obbws.ObbwsError)
    assert "could not reconnect for 0.5 s" in str(listener.error)


def test_the_cli_reads_a_redis_stream_from_another_process(redis_server: RedisServer) -> None:
    """`obbws listen redis://... --name N --replay 5 --max-records 5`, run as a separate
    process, prints the stream's 5 newest records as JSON lines; without --name it says
    what is missing and exits 1."""
    conn = capture("rl-cli", redis_server)
    assert RecordWaiter(conn.get_client()).wait_more(50)
    finish(conn)
    last = conn.status.records_received
    command = [sys.executable, "-m", "obbws_jupyter", "listen", redis_server.url]
    out = subprocess.run(
        [*command, "--name", "rl-cli", "--replay", "5", "--max-records", "5"],
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == list(
        range(last - 4, last + 1)
    )
    unnamed = subprocess.run(
        [*command, "--max-records", "1"], capture_output=True, text=True, timeout=3 * TIMEOUT
    )
    assert unnamed.returncode == 1 and "name=" in unnamed.stderr
