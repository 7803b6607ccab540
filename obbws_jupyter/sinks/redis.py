"""Redis Streams: a sink that appends a connection's records to a stream, and ``listen()`` for it.

The sink (``conn.add_sink("redis://[:password@]host:6379/0", **options)``, ``rediss://`` for
TLS) appends each record to the stream ``obbws:<name>`` (``key_prefix`` + the connection's
name, or ``key=``) as one entry:

- **entry id** ``<received_at in ms>-<record id>``: strictly increasing (the record id is, and
  the millisecond part never goes back within a sink), readable as a time by ``XRANGE``. Redis
  refuses an id that is not greater than the stream's last one, so a batch retried after a
  reconnect (part of it may have been stored before the connection broke) is stored once: the
  refused entries are counted as already stored (``sink.duplicates``). ``entry_ids="server"``
  lets Redis number the entries instead (``*``: several writers on one key, no dedupe).
- **one field** ``record``: the broadcast frame's JSON (:mod:`obbws_jupyter._wire`), so a
  consumer decodes an entry exactly as it decodes a broadcast frame.
- **the cap**: ``MAXLEN ~ <limit>`` (the connection's ``limit``; ``maxlen=`` overrides, None
  keeps all). The trim is approximate: Redis drops whole macro nodes only, so the stream holds
  from ``limit`` to ``limit + stream-node-max-entries`` (100 by default) entries.

A delivery is one round trip: a pipeline of ``EVALSHA`` calls of a small Lua script that
appends up to 1,000 entries each (handed over as two newline-joined arguments) and trims once
(``method="script"``, the default: several times the rate of one ``XADD`` per entry, whose
arguments redis-py packs and whose replies it parses one by one, in Python), or pipelines of
one ``XADD ... MAXLEN ~`` per entry, a round trip per thousand (``method="pipeline"``, taken
by itself when the server or the user may not run scripts). Records are encoded by
:class:`~obbws_jupyter._wire.FrameEncoder`, a faster twin of the wire encoder.

Nothing connects until the first delivery, so a dead address never fails ``add_sink``: its
deliveries fail, the base retries them with backoff, and ``status.sinks`` shows ``retrying`` and
the error (passwords masked) while the stream, DuckDB and the broadcast go on.

Options (besides the batching ones of :class:`~obbws_jupyter.sinks.AsyncBatchingSink`):
``key``, ``key_prefix="obbws:"``, ``maxlen="limit"``, ``connect_timeout=2.0`` and ``timeout=10.0``
(seconds per delivery), ``entry_ids="record"``, ``method="script"``.

Listening (``listen("redis://host:6379/0", name="demo")`` or ``key=``): :func:`records` reads the
stream with ``XREAD BLOCK``; ``replay=N`` first yields the last N entries (``XREVRANGE``), then
the live ones. After a dropped connection it reconnects (with backoff, for ``reconnect_for``
seconds) and resumes after the last entry id it yielded: no gap and no duplicate, as long as
Redis kept the entries (persistence on, and not trimmed away meanwhile). It yields the same
dicts as ``listen()`` of the connection's broadcast. ``auth_token`` is the Redis password when
the URL carries none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError

from obbws_jupyter._util import backoff, mask_secrets
from obbws_jupyter._wire import MAX_REPLAY, FrameEncoder
from obbws_jupyter.exceptions import BroadcastError, InvalidParameterError, UnauthorizedError
from obbws_jupyter.sinks._base import AsyncBatchingSink, Batch

__all__ = ["FIELD", "RedisSink", "check_listen_options", "records"]

log = logging.getLogger("obbws_jupyter.sinks.redis")

FIELD = b"record"  # the entry's one field: the broadcast frame's JSON
KEY_PREFIX = "obbws:"
ENTRIES_PER_CALL = 1_000  # entries per script call: Redis runs a script without interruption
METHODS = ("script", "pipeline")
ENTRY_IDS = ("record", "server")
SINK_OPTIONS = (
    "batch_rows",
    "connect_timeout",
    "drop",
    "entry_ids",
    "flush_interval",
    "key",
    "key_prefix",
    "max_pending",
    "maxlen",
    "method",
    "retry_base",
    "retry_cap",
    "timeout",
)
_REFUSED = "equal or smaller"  # Redis's reply to an XADD id not above the stream's last one

# KEYS[1] the stream; ARGV[1] MAXLEN (0 = no trim), ARGV[2] the entry ids and ARGV[3] the
# records' JSON, each joined by newlines (compact JSON never holds a raw newline): three
# arguments for a thousand entries, so redis-py packs almost nothing. Returns {appended,
# refused}; any other error aborts the call (and the delivery is retried).
_APPEND = """
local ids, values = ARGV[2], ARGV[3]
local appended, refused = 0, 0
local i, j = 1, 1
while i <= #ids do
  local id_end = string.find(ids, '\\n', i, true) or (#ids + 1)
  local value_end = string.find(values, '\\n', j, true) or (#values + 1)
  local ok = redis.pcall('XADD', KEYS[1], string.sub(ids, i, id_end - 1),
                         'record', string.sub(values, j, value_end - 1))
  if type(ok) == 'table' and ok.err then
    if string.find(ok.err, 'equal or smaller', 1, true) then
      refused = refused + 1
    else
      return redis.error_reply(ok.err)
    end
  else
    appended = appended + 1
  end
  i, j = id_end + 1, value_end + 1
end
if tonumber(ARGV[1]) > 0 then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[1])
end
return {appended, refused}
"""


# -- URL and option checks (before anything starts) ------------------------------------------


def check_url(url: str) -> str:
    """``url`` stripped, or InvalidParameterError saying what a Redis URL looks like."""
    text = url.strip() if isinstance(url, str) else ""
    parts = urlsplit(text)
    problem = None
    if parts.scheme.lower() not in ("redis", "rediss"):
        problem = "the scheme must be redis:// or rediss:// (TLS)"
    elif not parts.hostname:
        problem = "it names no host"
    else:
        try:
            _ = parts.port
            db = parts.path.strip("/")
            if db and not db.isdigit():
                problem = f"the database must be a number (/0, /1, ...), not /{db}"
            else:
                parse_url(text)
        except ValueError as exc:
            problem = str(exc)
    if problem:
        raise InvalidParameterError(
            f"Invalid Redis URL {mask_secrets(str(url))!r}: {problem}; expected "
            "redis://[:password@]host:port/db, e.g. redis://127.0.0.1:6379/0."
        )
    return text


def _seconds(name: str, value: Any, *, upper: float = 3600.0, none_ok: bool = False) -> Any:
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= upper:
        extra = " or None" if none_ok else ""
        raise InvalidParameterError(
            f"{name} must be seconds in (0, {upper:g}]{extra}, got {value!r}."
        )
    return float(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidParameterError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
    return str(value)


def _key(key: Any, key_prefix: Any) -> None:
    for label, value in (("key", key), ("key_prefix", key_prefix)):
        if value is not None and not isinstance(value, str):
            raise InvalidParameterError(f"{label} must be a string, got {value!r}.")
    if key is not None and not key.strip():
        raise InvalidParameterError("key must name a stream, e.g. key='obbws:demo'.")


def _maxlen(value: Any) -> int | str | None:
    if value is None or value == "limit":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(
            f"maxlen must be an int >= 1, None (keep every entry) or 'limit' (the connection's "
            f"limit, the default), got {value!r}."
        )
    return value


def _client(url: str, connect_timeout: float, password: str | None = None) -> aioredis.Redis:
    """A client that connects on first use and never retries by itself (the caller does).

    No socket timeout: redis-py enforces it on sends with ``asyncio.wait_for``, which on
    Python 3.11 can swallow a cancellation that lands meanwhile (a listener's ``stop()`` or a
    sink's close would then hang); callers bound each call with ``asyncio.timeout`` instead.
    """
    extra: dict[str, Any] = {"password": password} if password else {}
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=None,
        retry=Retry(NoBackoff(), 0),
        client_name="obbws-jupyter",
        **extra,
    )


# -- the sink --------------------------------------------------------------------------------


class RedisSink(AsyncBatchingSink):
    """Appends a connection's records to a Redis stream (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        key_prefix: str = KEY_PREFIX,
        maxlen: int | str | None = "limit",
        connect_timeout: float = 2.0,
        timeout: float = 10.0,
        entry_ids: str = "record",
        method: str = "script",
        **options: Any,
    ) -> None:
        try:
            super().__init__(check_url(url), **options)
        except TypeError:  # an option neither we nor the batching base know
            raise InvalidParameterError(
                f"Unknown option(s) for the Redis sink: {', '.join(sorted(options))}; known: "
                f"{', '.join(SINK_OPTIONS)}."
            ) from None
        _key(key, key_prefix)
        self._key_option, self.key_prefix = key, key_prefix
        self._maxlen_option = _maxlen(maxlen)
        self.connect_timeout = _seconds("connect_timeout", connect_timeout, upper=60)
        self.timeout = _seconds("timeout", timeout)
        self.entry_ids = _choice("entry_ids", entry_ids, ENTRY_IDS)
        self.method = _choice("method", method, METHODS)
        self.key = key or ""
        self.maxlen: int | None = None
        self.duplicates = 0  # entries Redis refused as already stored (retried deliveries)
        self.conflicts = 0  # refused on a first attempt: another writer holds newer ids
        self._client: aioredis.Redis | None = None
        self._sha: str | None = None
        self._last_ms = 0
        # id(batch) -> (the batch, kept so that its id is not reused; (entry ids, values))
        self._prepared: dict[int, tuple[Batch, tuple[list[bytes], list[bytes]]]] = {}

    async def setup(self) -> None:
        assert self.context is not None
        self.key = self._key_option or f"{self.key_prefix}{self.context.name}"
        limit = self.context.limit if self._maxlen_option == "limit" else self._maxlen_option
        self.maxlen = limit if isinstance(limit, int) else None
        self._encoder = FrameEncoder(self.context.record_encoder())
        self._client = _client(self.url, self.connect_timeout)

    async def teardown(self) -> None:
        client, self._client = self._client, None
        self._prepared.clear()
        if client is not None:
            await client.aclose()

    async def deliver(self, batches: list[Batch]) -> None:
        assert self._client is not None
        fresh = [id(b) not in self._prepared for b in batches]
        # a failed delivery's batches come back first; any other kept one was dropped meanwhile
        self._prepared = {id(b): self._prepared[id(b)] for b in batches if id(b) in self._prepared}
        ids: list[bytes] = []
        values: list[bytes] = []
        encoded = 0
        for batch in batches:
            batch_ids, batch_values = self._entries(batch)
            ids += batch_ids
            values += batch_values
            encoded += batch.n
            if encoded >= ENTRIES_PER_CALL:  # let the stream read frames meanwhile
                encoded = 0
                await asyncio.sleep(0)
        try:
            async with asyncio.timeout(self.timeout):
                if self.method == "script":
                    refused = await self._by_script(self._client, ids, values)
                else:
                    refused = await self._by_pipeline(self._client, ids, values)
        except BaseException:
            self._sha = None  # a restarted server forgets scripts: load it again next time
            raise
        for batch in batches:
            self._prepared.pop(id(batch), None)
        if refused:
            self._count_refused(refused, retried=not all(fresh))

    def _entries(self, batch: Batch) -> tuple[list[bytes], list[bytes]]:
        """The entry ids and values of a batch, built once: a retry sends the same ids."""
        kept = self._prepared.get(id(batch))
        if kept is None:
            kept = self._prepared[id(batch)] = (batch, self._prepare(batch))
        return kept[1]

    def _prepare(self, batch: Batch) -> tuple[list[bytes], list[bytes]]:
        values = self._encoder.encode_batch(batch)
        if self.entry_ids == "server":
            return [b"*"] * len(values), values
        ids: list[bytes] = []
        last_ms = self._last_ms
        for received, record_id in zip(
            batch.column("received_at"), batch.column("id"), strict=True
        ):
            last_ms = max(last_ms, int(received) // 1_000_000)  # never back: ids increase
            ids.append(b"%d-%d" % (last_ms, record_id))
        self._last_ms = last_ms
        return ids, values

    async def _by_script(
        self, client: aioredis.Redis, ids: list[bytes], values: list[bytes]
    ) -> int:
        if self._sha is None:
            try:
                self._sha = await client.script_load(_APPEND)
            except ResponseError as exc:
                if not _no_scripts(exc):
                    raise
                log.warning(
                    "sink %s: the server refuses scripts (%s); appending with one XADD per entry",
                    self.display_url,
                    exc,
                )
                self.method = "pipeline"
                return await self._by_pipeline(client, ids, values)
        maxlen = self.maxlen or 0
        pipe = client.pipeline(transaction=False)
        for i in range(0, len(ids), ENTRIES_PER_CALL):
            part = slice(i, i + ENTRIES_PER_CALL)
            pipe.evalsha(
                self._sha, 1, self.key, maxlen, b"\n".join(ids[part]), b"\n".join(values[part])
            )
        replies = await pipe.execute()
        return sum(int(reply[1]) for reply in replies)

    async def _by_pipeline(
        self, client: aioredis.Redis, ids: list[bytes], values: list[bytes]
    ) -> int:
        """One XADD per entry, a pipeline per thousand: redis-py parses every reply in Python
        without yielding, so a whole delivery in one pipeline would hold the loop too long."""
        trim: tuple[Any, ...] = ("MAXLEN", "~", self.maxlen) if self.maxlen else ()
        refused = 0
        for i in range(0, len(ids), ENTRIES_PER_CALL):
            part = slice(i, i + ENTRIES_PER_CALL)
            pipe = client.pipeline(transaction=False)
            for entry_id, value in zip(ids[part], values[part], strict=True):
                pipe.execute_command("XADD", self.key, *trim, entry_id, FIELD, value)
            for reply in await pipe.execute(raise_on_error=False):
                if isinstance(reply, ResponseError):
                    if _REFUSED not in str(reply):
                        raise reply
                    refused += 1
        return refused

    def _count_refused(self, refused: int, *, retried: bool) -> None:
        if retried:
            self.duplicates += refused
            log.info("sink %s: %d entries were already stored", self.display_url, refused)
            return
        self.conflicts += refused
        log.warning(
            "sink %s: stream %s already holds entries with newer ids; %d records refused. Is "
            "another connection writing to the same key? Give each its own key= (or "
            "entry_ids='server').",
            self.display_url,
            self.key,
            refused,
        )


def _no_scripts(exc: ResponseError) -> bool:
    """Whether ``exc`` says that this server or user may not run scripts (ACL, or disabled)."""
    text = str(exc).lower()
    return isinstance(exc, NoPermissionError) or "unknown command" in text or "noperm" in text


# -- listening -------------------------------------------------------------------------------

_LISTEN_DEFAULTS: dict[str, Any] = {
    "key": None,
    "name": None,
    "key_prefix": KEY_PREFIX,
    "count": 1_000,
    "connect_timeout": 5.0,
    "reconnect_for": 60.0,
}
_BLOCK_MS = 1_000  # XREAD BLOCK: short, so a silent server shows within the socket timeout


def check_listen_options(url: str, *, replay: int | None = None, **options: Any) -> dict[str, Any]:
    """Validate ``listen("redis://...")``'s arguments before anything starts; return the
    options :func:`records` takes (``key``, ``count``, ``connect_timeout``, ``reconnect_for``)."""
    check_url(url)
    unknown = sorted(set(options) - set(_LISTEN_DEFAULTS))
    if unknown:
        raise InvalidParameterError(
            f"Unknown option(s) for listening to Redis: {', '.join(unknown)}; known: "
            f"{', '.join(sorted(_LISTEN_DEFAULTS))}."
            + (  # subject= is how NATS subjects are picked: say the Redis way
                " A Redis sink writes one stream per connection: name='<connection name>'."
                if "subject" in unknown
                else ""
            )
        )
    given = {**_LISTEN_DEFAULTS, **options}
    _key(given["key"], given["key_prefix"])
    name = given["name"]
    if given["key"] is None and (not isinstance(name, str) or not name.strip()):
        raise InvalidParameterError(
            "listen('redis://...') needs the stream: name='<connection name>' (reads "
            "obbws:<name>) or key='<stream key>'."
        )
    if replay is not None and (
        isinstance(replay, bool) or not isinstance(replay, int) or not 1 <= replay <= MAX_REPLAY
    ):
        raise InvalidParameterError(f"replay must be an int between 1 and {MAX_REPLAY}.")
    count = given["count"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
        raise InvalidParameterError(f"count must be an int from 1 to 100000, got {count!r}.")
    return {
        "key": given["key"] or f"{given['key_prefix']}{name}",
        "count": count,
        "connect_timeout": _seconds("connect_timeout", given["connect_timeout"], upper=60),
        "reconnect_for": _seconds("reconnect_for", given["reconnect_for"], none_ok=True),
    }


async def records(
    url: str,
    *,
    replay: int | None = None,
    auth_token: str | None = None,
    on_open: Callable[[], None] | None = None,
    key: str,
    count: int = 1_000,
    connect_timeout: float = 5.0,
    reconnect_for: float | None = 60.0,
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield the records of the stream ``key`` (see the module docstring)."""
    reader = _Reader(url, key, count, connect_timeout, auth_token)
    try:
        position = await reader.start(replay)
        for record in reader.replayed:
            yield record
        if on_open is not None:
            on_open()
        while True:
            position, batch = await reader.read(position, reconnect_for)
            for record in batch:
                yield record
    finally:
        await reader.close()


def _decode(fields: dict[bytes, bytes], shown: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(fields[FIELD])
    except (KeyError, orjson.JSONDecodeError):
        log.warning("skipped an entry of %s without a JSON %r field", shown, FIELD.decode())
        return None
    return value if isinstance(value, dict) else None


class _Reader:
    """One listener's connection to the stream, reconnected after a drop."""

    def __init__(
        self, url: str, key: str, count: int, connect_timeout: float, auth_token: str | None
    ) -> None:
        self.shown = f"{mask_secrets(url)} ({key})"
        password = auth_token if auth_token and not urlsplit(url).password else None
        self.client = _client(url, connect_timeout, password)
        self.timeout = connect_timeout + _BLOCK_MS / 1000  # per call: a silent server shows
        self.key = key
        self.count = count
        self.replayed: list[dict[str, Any]] = []

    async def start(self, replay: int | None) -> bytes:
        """Replay the last ``replay`` entries; return the id to read after."""
        try:
            newest = await self._newest(replay or 1)
        except (RedisError, OSError) as exc:
            raise _listen_error(exc, self.shown) from None
        if replay:
            self.replayed = [r for _, f in reversed(newest) if (r := _decode(f, self.shown))]
        log.info("listening to %s", self.shown)
        return bytes(newest[0][0]) if newest else b"0-0"

    async def _newest(self, n: int) -> list[Any]:
        """The ``n`` newest entries, newest first, fetched a page at a time (a replay of
        100,000 is not one huge reply to parse in one go)."""
        entries: list[Any] = []
        upper = "+"
        while len(entries) < n:
            async with asyncio.timeout(self.timeout):
                page: Any = await self.client.xrevrange(
                    self.key, max=upper, count=min(self.count, n - len(entries))
                )
            if not page:
                break
            entries += page
            upper = "(" + bytes(page[-1][0]).decode()  # exclusive: below the oldest so far
        return entries

    async def read(
        self, after: bytes, reconnect_for: float | None
    ) -> tuple[bytes, list[dict[str, Any]]]:
        """The id of the last entry read and the records of the entries after ``after`` (waits
        for some); reconnects after a drop."""
        failures, since = 0, 0.0
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    reply: Any = await self.client.xread(
                        {self.key: after}, count=self.count, block=_BLOCK_MS
                    )
            except (RedisError, OSError) as exc:
                if isinstance(exc, (AuthenticationError, NoPermissionError)):
                    raise _listen_error(exc, self.shown) from None
                failures += 1
                since = since or time.monotonic()  # the first failure of this outage
                if reconnect_for is not None and time.monotonic() - since >= reconnect_for:
                    raise BroadcastError(
                        f"Lost {self.shown} and could not reconnect for {reconnect_for:g} s "
                        f"({type(exc).__name__}: {mask_secrets(str(exc))})."
                    ) from None
                if failures == 1:
                    log.warning("lost %s (%s); reconnecting", self.shown, type(exc).__name__)
                await asyncio.sleep(backoff(failures, 0.1, 2.0))
                continue
            if failures:
                log.info("reconnected to %s; resuming after %s", self.shown, after.decode())
            entries: list[Any] = [entry for _, stream in reply for entry in stream]
            if not entries:
                return after, []
            found = (_decode(fields, self.shown) for _, fields in entries)
            return bytes(entries[-1][0]), [r for r in found if r is not None]

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()


def _listen_error(exc: BaseException, shown: str) -> Exception:
    if isinstance(exc, (AuthenticationError, NoPermissionError)) or "NOAUTH" in str(exc):
        return UnauthorizedError(
            f"Redis at {shown} refused the credentials; put the password in the URL "
            "(redis://:PASSWORD@host:port/0) or pass auth_token=PASSWORD."
        )
    reason = mask_secrets(f"{type(exc).__name__}: {exc}").rstrip(". ")  # redis-py ends with "."
    return BroadcastError(f"Cannot read {shown}: {reason}. Is redis-server running there?")
