"""Provider faults against the demo server's fault controls: TCP reset, close codes, the server
gone and back on the same port, connection refused during backoff, stalls with and without
pings answered, a login closed at once, and auth revoked mid-session.

Documented outcome of every recoverable fault: the stream reconnects with backoff,
re-subscribes, and records flow again; every record received is stored exactly once (ids
contiguous from 1); records the provider sent into a dying connection may be lost in transit
(sent >= received). Auth revoked (the session closed with 1008, the key refused from then on)
is fatal at the first refused login: state "failed" with a ProviderAuthError message and no
further attempt (no reconnect storm).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter._connection import Connection
from obbws_jupyter.exceptions import ProviderAuthError
from obbws_jupyter.offline.demo_server import DemoServerHandle, start_demo_server
from tests.conftest import TIMEOUT, RecordWaiter, kill_all, wait_until
from tests.faults.conftest import report

pytestmark = pytest.mark.integration

CYCLES = 3


@pytest.fixture
def server() -> Iterator[DemoServerHandle]:
    handle = start_demo_server(rate=2_000.0, heartbeat_interval=0.2)
    yield handle
    kill_all()
    handle.close()


def _connect(server: DemoServerHandle, **kwargs: Any) -> tuple[Connection, RecordWaiter]:
    options: dict[str, Any] = {
        "provider": "demo",
        "name": "faulty",
        "symbol": "btcusd,ethusd",
        "url": server.url_for("crypto"),
        "limit": None,
        "reconnect_base": 0.05,
        "reconnect_cap": 0.2,
        **kwargs,
    }
    conn = obbws.create_connection(**options)
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(200)
    return conn, waiter


def _recovered(conn: Connection, waiter: RecordWaiter, reconnects: int) -> bool:
    """The stream reconnected (more than ``reconnects`` times so far) and records flow."""
    return (
        wait_until(lambda: conn.status.reconnects > reconnects)
        and wait_until(lambda: conn.status.state == "running")
        and waiter.wait_more(200)
    )


def _finish(conn: Connection, server: DemoServerHandle, fault: str, survived: int) -> None:
    """Stop the data, check every received record is stored once, and report."""
    server.set_rate(0)
    client = conn.get_client()
    client.store.flush(timeout=TIMEOUT)
    status = conn.status
    received = status.records_received
    ids = client.get_results()["id"].tolist()
    assert ids == list(range(1, received + 1))
    assert status.records_stored == status.rows_in_table == received
    assert status.store_state == "ok" and status.dropped_records == 0
    sent = server.events_sent
    assert received <= sent
    report(fault, CYCLES, survived, sent, len(ids))


def test_tcp_reset_is_survived(server: DemoServerHandle) -> None:
    """A TCP reset (RST) of the provider connection: reconnect, nothing stored is lost."""
    conn, waiter = _connect(server)
    survived = 0
    for _ in range(CYCLES):
        before = conn.status.reconnects
        assert server.reset_connections() == 1
        assert _recovered(conn, waiter, before)
        survived += 1
    assert server.connections_total == 1 + CYCLES
    _finish(conn, server, "TCP reset", survived)


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012])
def test_close_codes_are_survived(server: DemoServerHandle, code: int) -> None:
    """A provider close with 1000, 1001, 1011 or 1012: reconnect and re-subscribe."""
    conn, waiter = _connect(server)
    survived = 0
    for _ in range(CYCLES):
        before = conn.status.reconnects
        assert server.drop_connections(code, "fault test") == 1
        assert _recovered(conn, waiter, before)
        survived += 1
    assert server.subscribe_requests[-1] == "T.BTCUSD,T.ETHUSD"  # re-subscribed
    _finish(conn, server, f"close code {code}", survived)


def test_server_gone_and_back_on_the_same_port(server: DemoServerHandle) -> None:
    """The provider server goes away and comes back on the same port: the stream resumes."""
    conn, waiter = _connect(server)
    survived = 0
    for _ in range(CYCLES):
        before = conn.status.reconnects
        server.stop_listening()
        assert wait_until(lambda: conn.status.state == "reconnecting")
        server.start()
        assert _recovered(conn, waiter, before)
        survived += 1
    _finish(conn, server, "server gone and back (same port)", survived)


def test_connection_refused_during_backoff(server: DemoServerHandle) -> None:
    """Several refused connection attempts while the server is down are retried with backoff
    (counted as errors, within max_reconnects); the stream resumes when it is back."""
    conn, waiter = _connect(server, max_reconnects=20)
    survived = 0
    for _ in range(CYCLES):
        before = conn.status
        server.stop_listening()
        assert wait_until(lambda b=before: conn.status.errors >= b.errors + 3)  # 3 refused tries
        assert conn.status.state == "reconnecting"
        server.start()
        assert _recovered(conn, waiter, before.reconnects)
        survived += 1
    _finish(conn, server, "connection refused during backoff", survived)


STALLS = {
    # silent, pings still answered: only the data watchdog (stale_timeout) can tell
    "pause": ("stall, pings answered (watchdog)", {"stale_timeout": 0.6}),
    # silent and deaf: the keepalive ping times out (the watchdog is set far off)
    "freeze": (
        "stall, pings unanswered (keepalive)",
        {"stale_timeout": 60, "connect_kwargs": {"ping_interval": 0.3, "ping_timeout": 0.3}},
    ),
}


@pytest.mark.parametrize("stall", ["pause", "freeze"])
def test_stalls_are_caught(server: DemoServerHandle, stall: str) -> None:
    """A provider that goes silent (pause: pings answered) is dropped by the watchdog; one
    that stops reading (freeze: pings unanswered) by the keepalive; both reconnect."""
    fault, options = STALLS[stall]
    conn, waiter = _connect(server, **options)
    survived = 0
    for _ in range(CYCLES):
        before = conn.status.reconnects
        getattr(server, stall)()
        assert wait_until(lambda b=before: conn.status.reconnects > b)
        server.resume()
        assert _recovered(conn, waiter, before)
        survived += 1
    _finish(conn, server, fault, survived)


def test_login_closed_at_once_gives_up_after_max_reconnects(server: DemoServerHandle) -> None:
    """A provider that closes every session right after the login: the stream gives up after
    max_reconnects attempts instead of reconnecting forever."""
    conn, _ = _connect(server, max_reconnects=3)
    connections = server.connections_total
    server.set_close_after_auth(True)
    server.drop_connections(1000)
    assert conn.get_client().wait_stopped(TIMEOUT) == "failed"
    assert "gave up after 3" in (conn.status.last_error or "")
    assert server.connections_total <= connections + 1 + 3
    received = conn.status.records_received
    assert conn.get_results()["id"].tolist() == list(range(1, received + 1))
    report("login closed at once (max_reconnects=3)", 1, 1, server.events_sent, received)


def test_auth_revoked_mid_session_is_fatal_without_a_reconnect_storm(
    server: DemoServerHandle,
) -> None:
    """Auth revoked mid-session: state 'failed' with the reason, no reconnect attempt, the
    stored rows intact; restart_connection works once the key is accepted again."""
    conn, waiter = _connect(server, max_reconnects=None)
    survived = 0
    for _ in range(CYCLES):
        connections = server.connections_total
        server.revoke_auth()
        assert conn.get_client().wait_stopped(TIMEOUT) == "failed"
        status = conn.status
        assert "rejected the credentials" in (status.last_error or "")
        assert not status.is_running
        # one attempt to log in again, refused: the run loop ended, no storm
        assert server.connections_total <= connections + 1
        with pytest.raises(ProviderAuthError):
            conn.restart_connection()  # still revoked: refused at once
        server.server.auth_revoked = False
        assert conn.restart_connection().is_running
        assert waiter.wait_more(200)
        survived += 1
    _finish(conn, server, "auth revoked mid-session (fatal)", survived)
