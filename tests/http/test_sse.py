"""The server-sent-events route: stored then live records without gap, keep-alives, the end
of the stream when the connection is killed, and a slow client dropped, never waited for."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from obbws_jupyter import _api as api
from obbws_jupyter.rest._sse import Feeds, Subscriber
from tests.conftest import TIMEOUT
from tests.http.conftest import route, waiter

pytestmark = pytest.mark.integration


def _events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse an event stream into events ({"id", "event", "data"} or {"comment"})."""
    event: dict[str, str] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            key, _, value = line.partition(": ")
            event[key] = value


def test_stream_sends_stored_then_live_records_in_order(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """since_id first sends the stored records after it, then live ones: ids consecutive,
    data the same JSON as get_results."""
    create("s")
    assert waiter("s").wait(20)
    stored = http.get(route("get_results"), params={"name": "s", "limit": 20}).json()["results"]
    since = stored[4]["id"]
    seen: list[dict] = []
    with http.stream("GET", route("stream"), params={"name": "s", "since_id": since}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in _events(response.iter_lines()):
            if "data" in event:
                record = json.loads(event["data"])
                assert int(event["id"]) == record["id"]
                seen.append(record)
            if len(seen) >= 60:
                break
    ids = [r["id"] for r in seen]
    assert ids == list(range(since + 1, since + 61))
    assert seen[:15] == stored[5:20]


def test_stream_keepalive_and_end_when_killed(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """An idle stream gets keep-alive comments; killing the connection ends it with an
    "end" event."""
    create("k")
    http.get(route("stop_connection"), params={"name": "k"})
    events: list[dict[str, str]] = []
    with http.stream("GET", route("stream"), params={"name": "k"}) as response:
        for event in _events(response.iter_lines()):
            events.append(event)
            if event.get("comment") == "keep-alive":
                threading.Thread(target=api.kill, args=("k",)).start()
            if event.get("event") == "end":
                break
    assert {"comment": "keep-alive"} in events
    assert events[-1]["event"] == "end"


def test_stream_resumes_after_last_event_id(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """A reconnecting EventSource (Last-Event-ID header) continues after that record."""
    create("r")
    assert waiter("r").wait(10)
    headers = {"Last-Event-ID": "7"}
    with http.stream("GET", route("stream"), params={"name": "r"}, headers=headers) as response:
        first = next(e for e in _events(response.iter_lines()) if "data" in e)
    assert first["id"] == "8"


def test_stream_checks_the_auth_token(http: TestClient, create) -> None:  # type: ignore[no-untyped-def]
    """The stream of a token-protected connection needs the token (query, as EventSource
    cannot send headers)."""
    create("t", auth_token="tok-123")
    assert http.get(route("stream"), params={"name": "t"}).status_code == 401
    with http.stream("GET", route("stream"), params={"name": "t", "auth_token": "tok-123"}) as r:
        assert r.status_code == 200
        assert next(e for e in _events(r.iter_lines()) if "data" in e)["id"]


def test_a_full_queue_drops_the_subscriber_and_a_close_wakes_it() -> None:
    """offer() past max_queue drops the subscriber (queue emptied, nothing waits on it);
    close() wakes a waiting reader at once."""

    async def scenario() -> tuple[bool, list, bool, list]:
        subscriber = Subscriber(asyncio.get_running_loop(), max_queue=3)
        subscriber.offer([(1, "a"), (2, "b")])
        first = await subscriber.next_batch(TIMEOUT)
        subscriber.offer([(3, "c"), (4, "d"), (5, "e"), (6, "f")])
        dropped = subscriber.dropped
        after_drop = await subscriber.next_batch(TIMEOUT)
        other = Subscriber(asyncio.get_running_loop(), max_queue=3)
        waiting = asyncio.create_task(other.next_batch(10 * TIMEOUT))
        await asyncio.sleep(0)
        threading.Thread(target=other.close).start()
        return dropped, first + after_drop, other.closed, await asyncio.wait_for(waiting, TIMEOUT)

    dropped, items, closed, woke_with = asyncio.run(scenario())
    assert dropped and items == [(1, "a"), (2, "b")]
    assert closed and woke_with == []


def test_one_hook_per_connection_while_clients_listen(create) -> None:  # type: ignore[no-untyped-def]
    """The feed adds one record hook for all its subscribers and removes it with the last."""
    create("h")
    client = api.get_client("h")
    before = len(client._record_hooks)
    feeds = Feeds(max_queue=100)

    async def scenario() -> tuple[int, int, int]:
        a, b = feeds.subscribe(client), feeds.subscribe(client)
        during = len(client._record_hooks)
        batch = await a.next_batch(TIMEOUT)
        feeds.unsubscribe(client, a)
        feeds.unsubscribe(client, b)
        return during, len(batch), len(client._record_hooks)

    during, got, after = asyncio.run(scenario())
    assert during == before + 1 and got > 0 and after == before
