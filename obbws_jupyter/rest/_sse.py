"""Server-sent events: a connection's new records for clients that cannot speak websocket.

``GET /api/v1/websockets/stream?name=NAME[&since_id=N]`` answers ``text/event-stream``::

    retry: 2000

    id: 1042
    data: {"id":1042,"received_at":"2026-11-25T08:12:33.123456-05:00","date":...}

    : keep-alive

Each record is one event whose ``data`` is the record's JSON, the same text the broadcast
sends, and whose ``id`` is the record id, so a reconnecting ``EventSource`` resumes after the
last record it saw (``Last-Event-ID``) without gap or duplicate. ``since_id`` first sends the
stored records with a larger id. A comment line every ``keepalive`` seconds keeps proxies
from closing an idle stream. The stream ends with ``event: end`` when the connection is
killed or the server stops, and with ``event: dropped`` when the client fell too far behind.

Feeding: one record hook per connection (``WebSocketClient.add_record_hook``, called on the
obbws loop thread once per socket read) encodes each record once for all of its SSE clients and
appends it to each client's bounded queue. A client whose queue is full is dropped: a slow
reader never slows ingestion nor grows memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from obbws_jupyter._wire import RecordEncoder
from obbws_jupyter.rest._results import Page

if TYPE_CHECKING:
    from obbws_jupyter.client import WebSocketClient

__all__ = ["Feeds", "Subscriber", "event_stream"]

log = logging.getLogger("obbws_jupyter.rest")

Payload = tuple[int, str]


class Subscriber:
    """One SSE client's bounded queue, filled on the obbws loop thread and drained on the
    HTTP server's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self.loop = loop
        self.max_queue = max_queue
        self.dropped = False
        self.closed = False
        self._items: deque[Payload] = deque()
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._waiting = False

    def offer(self, payloads: list[Payload]) -> None:
        """Queue ``payloads`` (any thread); past ``max_queue`` the subscriber is dropped."""
        with self._lock:
            if self.dropped or self.closed:
                return
            if len(self._items) + len(payloads) > self.max_queue:
                self.dropped = True
                self._items.clear()
            else:
                self._items.extend(payloads)
            notify, self._waiting = self._waiting, False
        if notify:
            self._notify()

    def close(self) -> None:
        """End the stream (any thread): the connection is gone or the server stops."""
        with self._lock:
            self.closed = True
            notify, self._waiting = self._waiting, False
        if notify:
            self._notify()

    def _notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # the HTTP loop already closed
            self.loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> list[Payload]:
        items = list(self._items)
        self._items.clear()
        return items

    async def next_batch(self, timeout: float) -> list[Payload]:
        """Everything queued, waiting up to ``timeout`` s for something (empty on timeout)."""
        with self._lock:
            if self._items or self.dropped or self.closed:
                return self._take()
            self._waiting = True
            self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        with self._lock:
            self._waiting = False
            return self._take()


class _Feed:
    """The record hook of one connection, shared by its subscribers."""

    def __init__(self, client: WebSocketClient) -> None:
        self.client = client
        self.encoder = RecordEncoder(client.fields, client.tz)
        self.subscribers: set[Subscriber] = set()

    def hook(self, records: list[dict[str, Any]]) -> None:
        # On the obbws loop thread, once per socket read: encode once, offer to every subscriber.
        payloads: list[Payload] = []
        for record in records:
            try:
                payloads.append((int(record["id"]), self.encoder.encode(record)))
            except Exception as exc:  # one bad record never breaks the stream
                log.warning(
                    "%s: skipped a record that cannot be encoded: %s", self.client.name, exc
                )
        for subscriber in list(self.subscribers):
            subscriber.offer(payloads)


class Feeds:
    """The feeds of every connection with SSE clients (a hook only while a client listens)."""

    def __init__(self, max_queue: int = 10_000) -> None:
        self.max_queue = max_queue
        self._feeds: weakref.WeakKeyDictionary[WebSocketClient, _Feed] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def subscribe(self, client: WebSocketClient) -> Subscriber:
        subscriber = Subscriber(asyncio.get_running_loop(), self.max_queue)
        with self._lock:
            feed = self._feeds.get(client)
            if feed is None:
                feed = self._feeds[client] = _Feed(client)
                client.add_record_hook(feed.hook)
            feed.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, client: WebSocketClient, subscriber: Subscriber) -> None:
        with self._lock:
            feed = self._feeds.get(client)
            if feed is None:
                return
            feed.subscribers.discard(subscriber)
            if not feed.subscribers:
                del self._feeds[client]
                client.remove_record_hook(feed.hook)

    def close_all(self) -> None:
        """End every stream (the server is stopping)."""
        with self._lock:
            subscribers = [s for feed in self._feeds.values() for s in feed.subscribers]
        for subscriber in subscribers:
            subscriber.close()

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(feed.subscribers) for feed in self._feeds.values())


def _event(ident: int, payload: str) -> str:
    return f"id: {ident}\ndata: {payload}\n\n"


async def event_stream(
    feeds: Feeds,
    client: WebSocketClient,
    since_id: int | None,
    keepalive: float,
) -> AsyncIterator[str]:
    """The SSE body: stored records after ``since_id``, then live ones, with keep-alives."""
    subscriber = feeds.subscribe(client)  # before the catch-up read: no gap between the two
    try:
        yield "retry: 2000\n\n"
        last = -1
        if since_id is not None:
            page = await anyio.to_thread.run_sync(Page, client, since_id)
            chunks = page.chunks()
            empty: list[dict[str, Any]] = []
            while rows := await anyio.to_thread.run_sync(next, chunks, empty):
                for record in rows:
                    last = int(record["id"])
                    yield _event(last, page.encoder.encode(record))
        while True:
            batch = await subscriber.next_batch(keepalive)
            if subscriber.dropped:
                yield 'event: dropped\ndata: {"reason":"client too slow"}\n\n'
                return
            for ident, payload in batch:
                if ident > last:
                    last = ident
                    yield _event(ident, payload)
            if subscriber.closed or client.closed:
                yield 'event: end\ndata: {"reason":"connection closed"}\n\n'
                return
            if not batch:
                yield ": keep-alive\n\n"
    finally:
        feeds.unsubscribe(client, subscriber)
