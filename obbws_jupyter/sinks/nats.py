"""NATS JetStream: a sink that publishes a connection's records, and the reader behind
``listen("nats://...")``.

The sink (``conn.add_sink("nats://[user:password@]host:port", **options)``) publishes every
record as one JetStream message::

    subject   <subject_prefix>.<name>.<symbol>        e.g. obbws.demo.BTCUSD
    payload   the record's broadcast frame: the same JSON bytes (obbws_jupyter._wire)
    header    Nats-Msg-Id: <name>:<run>:<id>          a publish retried is stored once

``<run>`` is fixed when the sink opens (base 36 of its start time in ns): a retry across a
server restart reuses it, so JetStream's duplicate window drops the copy, while a later capture
under the same name (whose ids may start again at 1) is never mistaken for a duplicate.

Subject tokens cannot hold ``.``, ``*``, ``>`` or whitespace, so a name or symbol is written
with those characters, ``%`` itself and control characters percent-encoded as in URLs
(UTF-8 bytes, upper-case hex: ``BRK.B`` -> ``BRK%2EB``, ``EUR/USD`` stays, ``a b`` -> ``a%20b``);
a record without a symbol goes to the token ``_``. :func:`subject_token` is that mapping.

The stream is created on first use when no stream already takes the connection's subjects:
``OBBWS_<name>`` (characters other than letters, digits, ``_`` and ``-`` as ``_``), subjects
``<prefix>.<name>.>``, ``max_msgs`` = the connection's ``limit`` (None: unlimited), oldest
discarded first, file storage, a duplicate window of 2 minutes. An existing stream is used as
it is (several capture processes may share one, ``stream="OBBWS"``): its subjects are extended
with the connection's when they do not cover them, and its ``max_msgs`` / duplicate window are
changed only when those options are given explicitly.

``add_sink`` only checks the options and returns: the sink dials and sets its stream up in
the background, and a server that is down, unreachable or refusing the credentials shows as
state ``"retrying"`` with its error while the stream, DuckDB and the broadcast go on (the base
class's bounded backlog and backoff; nats-py reconnects once connected).

Publishing costs little per record: nats-py keeps the connection (dial, auth, TLS, reconnect,
stream management), but a delivery is written as NATS protocol by the sink itself, a chunk of
up to ``ack_every`` records (and 512 KiB) in one write to nats-py's outgoing buffer::

    HPUB <subject> <header bytes> <total bytes>\r\n
    NATS/1.0\r\nNats-Msg-Id: <id>\r\n\r\n<payload>\r\n

The payloads of a batch come from one orjson call (the JSON array of its records, split at
the record boundaries), and only the last message of a chunk carries a reply subject: the
server stores one connection's messages in order, so its acknowledgement settles the whole
chunk (``rows_written`` counts records so settled). A missing or failed acknowledgement fails
the delivery, which is retried whole; the ``Nats-Msg-Id`` makes the copies harmless. Up to
``max_inflight`` records may await their chunk's acknowledgement. A record larger than the
server takes (its ``max_payload``, or the stream's ``max_msg_size``) is left out and counted
in ``oversized``, never sent (the server would close the connection on it, or refuse it
unseen). The work runs on the obbws loop, within ``cpu_share`` of the loop thread's time: a
feed faster than the sink leaves the excess to the backlog and its drop policy instead of
slowing ingestion; below that share the sink never waits.

Reading (``listen("nats://host:port", subject=..., replay=N)``): ``subject`` defaults to
``obbws.>``, everything obbws captures publish on that server. Every stream holding matching
subjects is read through an ordered push consumer per stream subject (a shard of the scale-out
example is one), so records come in order within each capture connection; ``replay=N`` first
delivers the last N stored records of each, then live ones. Records are the broadcast's dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api

from obbws_jupyter._util import mask_secrets, remember_secret
from obbws_jupyter._wire import MAX_REPLAY, FrameEncoder
from obbws_jupyter.exceptions import BroadcastError, InvalidParameterError, UnauthorizedError
from obbws_jupyter.sinks._base import AsyncBatchingSink, Batch

__all__ = ["NatsSink", "check_listen_options", "records", "subject_token"]

log = logging.getLogger("obbws_jupyter.sinks.nats")

DEFAULT_PREFIX = "obbws"
DEFAULT_DUPLICATE_WINDOW = 120.0  # seconds: JetStream's own default
_FROM_LIMIT: Any = object()  # max_msgs not given: mirror the connection's limit
_ESCAPED = re.compile(r"[.*>%\s\x00-\x1f\x7f]")
_STREAM_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_BAD_TOKEN = re.compile(r"[\s\x00-\x1f\x7f]")
_MSG_ID = "Nats-Msg-Id"
_NO_STREAM_STATUS = "503"  # the server's "no responders": no stream takes the subject
_HEARTBEAT = 1.0  # seconds: a reader notices a lost consumer after a few missed beats


# -- subjects --------------------------------------------------------------------------------


def subject_token(text: str) -> str:
    """``text`` as one NATS subject token (see the module docstring for the mapping)."""
    if not text:
        return "_"
    return _ESCAPED.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def subject_matches(pattern: str, subject: str) -> bool:
    """True when the concrete ``subject`` matches the wildcard ``pattern`` (``*``, ``>``)."""
    return _covers(pattern, subject)


def _covers(pattern: str, subject: str) -> bool:
    """True when every subject that ``subject`` (wildcards allowed) matches, ``pattern`` does."""
    ptoks, stoks = pattern.split("."), subject.split(".")
    for i, tok in enumerate(ptoks):
        if tok == ">":
            return i < len(stoks)
        if i >= len(stoks) or stoks[i] == ">":
            return False
        if tok != "*" and tok != stoks[i]:
            return False
    return len(ptoks) == len(stoks)


def _intersect(a: str, b: str) -> str | None:
    """The subjects both ``a`` and ``b`` match, as one pattern, or None when they share none."""
    x, y = a.split("."), b.split(".")
    out: list[str] = []
    for i in range(max(len(x), len(y))):
        if i >= len(x) or i >= len(y):
            return None
        u, v = x[i], y[i]
        if u == ">":
            return ".".join(out + y[i:])
        if v == ">":
            return ".".join(out + x[i:])
        if u == "*" or u == v:
            out.append(v)
        elif v == "*":
            out.append(u)
        else:
            return None
    return ".".join(out)


def _check_subject(value: Any, what: str, *, wildcards: bool) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParameterError(f"{what} must be a non-empty NATS subject, got {value!r}.")
    tokens = value.split(".")
    for i, tok in enumerate(tokens):
        bad = not tok or _BAD_TOKEN.search(tok) is not None
        if not wildcards:
            bad = bad or "*" in tok or ">" in tok
        else:
            bad = bad or (tok != "*" and "*" in tok) or (tok != ">" and ">" in tok)
            bad = bad or (tok == ">" and i != len(tokens) - 1)
        if bad:
            allowed = "'*' for one token and a final '>'" if wildcards else "no wildcards"
            raise InvalidParameterError(
                f"{what}={value!r} is not a valid NATS subject: tokens are separated by '.', "
                f"non-empty, without spaces ({allowed}); e.g. 'obbws.demo.>'."
            )
    return value


def default_stream_name(name: str) -> str:
    """The stream a connection creates when none takes its subjects: ``OBBWS_<name>``."""
    return "OBBWS_" + _STREAM_UNSAFE.sub("_", name)[:200]


# -- the server address and credentials ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Server:
    """A checked ``nats://`` URL: the address to dial and the credentials, kept apart."""

    address: str  # nats://host:port, no credentials
    shown: str  # the URL as given, secrets masked
    credentials: dict[str, Any] = field(default_factory=dict, repr=False)


def _server(url: Any, **secrets: Any) -> _Server:
    """Check a ``nats://`` URL; ``secrets``: token, user, password, creds (None: not given)."""
    if not isinstance(url, str) or not url.strip().lower().startswith("nats://"):
        raise InvalidParameterError(
            f"a NATS address is nats://HOST:PORT (e.g. nats://127.0.0.1:4222), got "
            f"{mask_secrets(str(url))!r}."
        )
    parts = urlsplit(url.strip())
    try:
        port = parts.port or 4222
    except ValueError:
        port = -1
    if not parts.hostname or port <= 0 or parts.path not in ("", "/") or parts.query:
        raise InvalidParameterError(
            f"{mask_secrets(url)!r} is not a NATS server address: use nats://HOST:PORT "
            "(credentials as nats://user:password@HOST:PORT, token=, or creds=)."
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    credentials = _credentials(parts, **secrets)
    return _Server(f"nats://{host}:{port}", mask_secrets(url.strip()), credentials)


def _credentials(
    parts: Any, token: Any = None, user: Any = None, password: Any = None, creds: Any = None
) -> dict[str, Any]:
    url_user = unquote(parts.username) if parts.username else None
    url_password = unquote(parts.password) if parts.password is not None else None
    if url_user is not None and url_password is None and token is None:
        token, url_user = url_user, None  # nats://TOKEN@host is NATS's token form
    out: dict[str, Any] = {}
    for key, value in (
        ("token", token),
        ("user", user if user is not None else url_user),
        ("password", password if password is not None else url_password),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise InvalidParameterError(f"the NATS {key} must be a non-empty string.")
        if key != "user":
            remember_secret(value)  # masked in every status, log and error from now on
        out[key] = value
    if creds is not None:
        if not isinstance(creds, (str, os.PathLike)) or not os.path.isfile(creds):
            raise InvalidParameterError(
                f"creds must be the path of a NATS .creds file, got {creds!r} (no such file)."
            )
        out["user_credentials"] = os.fspath(creds)
    if ("user" in out) != ("password" in out):
        raise InvalidParameterError("NATS user and password go together; give both or neither.")
    return out


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise InvalidParameterError(
            f"{name} must be seconds in ({low:g}, {high:g}], got {value!r}."
        )
    return float(value)


def _share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InvalidParameterError(
            f"cpu_share must be a fraction in (0, 1] of the loop's time, got {value!r}."
        )
    return float(value)


def _count(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = ", or None for no cap" if allow_none else ""
        raise InvalidParameterError(f"{name} must be an int >= 1{extra}, got {value!r}.")
    return value


async def _connect(server: _Server, connect_timeout: float, **callbacks: Any) -> NatsClient:
    """Dial ``server`` once (reconnects later are nats-py's); errors say where, not how."""

    errors: list[Exception] = []

    async def quiet(exc: Exception) -> None:
        # a refusal says more than the connection reset that follows it: keep it
        if not (errors and _refused(errors[0])):
            errors[:] = [exc]
        log.debug("nats %s: %s", server.shown, _masked(exc))

    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        # nats-py's first dial loops forever unless the attempts are bounded: two tries here,
        # then (below) reconnect for ever once connected, the backlog waiting meanwhile
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.25,
        "error_cb": quiet,
        "name": "obbws-jupyter",
        **server.credentials,
        **callbacks,
    }
    try:
        nc = await nats.connect(servers=[server.address], allow_reconnect=True, **options)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        cause = errors[0] if errors else exc
        kind = _CredentialsRefused if _refused(cause) else ConnectionError
        raise kind(_dial_error(server, cause)) from None
    nc.options["max_reconnect_attempts"] = -1
    return nc


class _CredentialsRefused(ConnectionError):
    """The server refused the token, user/password or creds (a listener says so as such)."""


def _refused(exc: BaseException) -> bool:
    """True for the server's answer to missing or wrong credentials."""
    text = str(exc).lower()
    return "authorization" in text or "authentication" in text


def _dial_error(server: _Server, exc: BaseException) -> str:
    text = str(exc).strip().removeprefix("nats: ").strip("'") or type(exc).__name__
    if _refused(exc):
        return (
            f"NATS at {server.shown} refused the credentials ({text}); check the token, "
            "user/password or creds file"
        )
    if isinstance(exc, (OSError, TimeoutError, nats.errors.NoServersError)):
        return f"no NATS server answers at {server.shown} ({text})"
    return f"cannot connect to NATS at {server.shown}: {mask_secrets(text)}"


# -- the sink --------------------------------------------------------------------------------


_HEADER = b"NATS/1.0\r\n" + _MSG_ID.encode() + b": "
# One message: HPUB <subject> [<reply>] <header bytes> <total bytes>, the header (its msg id),
# then the payload. A payload split out of one JSON array (see _Framer.bodies) lacks its
# '{"id":' and '}' (7 bytes), which the template puts back.
_SPLIT = b'},{"id":'
_WRAPPED = b'HPUB %s %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %s%d\r\n\r\n{"id":%s}\r\n'
_PLAIN = b"HPUB %s %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %s%d\r\n\r\n%s\r\n"
_WRAPPED_REPLY = b'HPUB %s %s %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %s%d\r\n\r\n{"id":%s}\r\n'
_PLAIN_REPLY = b"HPUB %s %s %d %d\r\nNATS/1.0\r\nNats-Msg-Id: %s%d\r\n\r\n%s\r\n"
_NATS_PY_WRITES = ("_send_command", "_flush_pending")  # nats-py's own outgoing buffer
_CHUNK_BYTES = 512 * 1024  # protocol bytes per write at most (nats-py buffers 2 MiB pending)


@dataclass(slots=True)
class _Framed:
    """One batch as HPUB commands without a reply subject, and what framing any one of them
    again with a reply subject takes."""

    frames: list[bytes]
    subjects: list[bytes]
    ids: Sequence[int]
    bodies: list[bytes]
    wrapped: bool  # bodies are split out of one JSON array (no '{"id":' and '}')
    skipped: int = 0  # records left out: larger than the server's max_payload


class _Framer:
    """Writes records as NATS protocol, a batch at a time (the sink's hot path: one ``%``
    format per record, everything else by column or in C)."""

    def __init__(self, encoder: FrameEncoder, subject_root: str, msg_id_prefix: str) -> None:
        self.encoder = encoder
        self.root = subject_root
        self.prefix = msg_id_prefix.encode()
        # header bytes without the id's digits: "NATS/1.0\r\nNats-Msg-Id: <prefix>" CRLF CRLF
        self.head = len(_HEADER) + len(self.prefix) + 4
        self._subjects: dict[Any, bytes] = {}

    def subject(self, symbol: Any) -> bytes:
        found = self._subjects.get(symbol)
        if found is None:
            text = "" if symbol is None else str(symbol)
            found = f"{self.root}.{subject_token(text)}".encode()
            if len(self._subjects) >= 100_000:  # symbols are few; never let the cache grow wild
                self._subjects.clear()
            self._subjects[symbol] = found
        return found

    def subjects(self, batch: Batch) -> list[bytes]:
        symbols = batch.columns().get("symbol")
        if symbols is None:
            return [self.subject(None)] * batch.n
        known = self._subjects
        for symbol in set(symbols) - known.keys():
            self.subject(symbol)
        if len(known) < 100_000:
            return [known[s] for s in symbols]
        return [self.subject(s) for s in symbols]

    def bodies(self, batch: Batch) -> tuple[list[bytes], bool]:
        """The payloads of ``batch``: split out of one JSON array when that is exact (every
        record's object starts with "id", and '},{"id":' appears only between records
        when the pieces number the records), else encoded one by one."""
        array = self.encoder.encode_array(batch)
        if array is not None and array.startswith(b'[{"id":'):
            bodies = array[7:-2].split(_SPLIT)
            if len(bodies) == batch.n:
                return bodies, True
        return self.encoder.encode_batch(batch), False

    def frame(self, batch: Batch, max_payload: int) -> _Framed:
        bodies, wrapped = self.bodies(batch)
        subjects = self.subjects(batch)
        ids: Sequence[int] = batch.column("id")
        extra = 7 if wrapped else 0
        skipped = 0
        if bodies and max(map(len, bodies)) + extra + self.head + 20 > max_payload:
            fitting = self._fitting(subjects, ids, bodies, extra, max_payload)
            subjects, ids, bodies, skipped = fitting
        fmt, head, prefix = _WRAPPED if wrapped else _PLAIN, self.head, self.prefix
        if isinstance(ids, range) and len(ids) and len(str(ids[0])) == len(str(ids[-1])):
            head += len(str(ids[0]))  # one frame's ids: all the same number of digits
            frames = [
                fmt % (s, head, head + extra + len(b), prefix, i, b)
                for s, i, b in zip(subjects, ids, bodies, strict=True)
            ]
        else:
            frames = []
            for s, i, b in zip(subjects, ids, bodies, strict=True):
                h = head + len(str(i))
                frames.append(fmt % (s, h, h + extra + len(b), prefix, i, b))
        return _Framed(frames, subjects, ids, bodies, wrapped, skipped)

    def _fitting(
        self,
        subjects: list[bytes],
        ids: Sequence[int],
        bodies: list[bytes],
        extra: int,
        max_payload: int,
    ) -> tuple[list[bytes], list[int], list[bytes], int]:
        """Leave out the records the server would refuse (a payload over its max_payload
        closes the connection): nothing could ever deliver them."""
        keep_subjects: list[bytes] = []
        keep_ids: list[int] = []
        keep_bodies: list[bytes] = []
        for s, i, b in zip(subjects, ids, bodies, strict=True):
            size = self.head + len(str(i)) + extra + len(b)
            if size <= max_payload:
                keep_subjects.append(s)
                keep_ids.append(i)
                keep_bodies.append(b)
            else:
                log.warning(
                    "record %s left out: %d bytes as a NATS message, over the %d that NATS "
                    "takes here (the server's max_payload, or the stream's max_msg_size)",
                    i,
                    size,
                    max_payload,
                )
        return keep_subjects, keep_ids, keep_bodies, len(bodies) - len(keep_bodies)

    def with_reply(self, framed: _Framed, index: int, reply: bytes) -> bytes:
        """Message ``index`` of ``framed`` again, asking for JetStream's acknowledgement."""
        s, i, b = framed.subjects[index], framed.ids[index], framed.bodies[index]
        fmt, extra = (_WRAPPED_REPLY, 7) if framed.wrapped else (_PLAIN_REPLY, 0)
        head = self.head + len(str(i))
        return fmt % (s, reply, head, head + extra + len(b), self.prefix, i, b)


def _cut(frames: list[bytes], start: int, room: int, budget: int) -> tuple[int, int]:
    """How far from ``start`` a chunk may take ``frames``: at most ``room`` messages and
    ``budget`` bytes; (end, bytes taken). ``end == start`` when the first does not fit."""
    end = min(len(frames), start + room)
    taken = sum(map(len, frames[start:end]))
    if taken <= budget:
        return end, taken
    taken = 0
    for k in range(start, end):
        if taken + len(frames[k]) > budget:
            return k, taken
        taken += len(frames[k])
    return end, taken


class _Chunk:
    """Messages written together, the last asking for the acknowledgement that settles them
    all (the server handles one connection's messages in order)."""

    __slots__ = ("count", "frames", "last", "size")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.count = 0
        self.size = 0
        self.last: tuple[_Framed, int] | None = None

    def add(self, framed: _Framed, start: int, end: int, size: int) -> None:
        self.frames += framed.frames[start:end]
        self.count += end - start
        self.size += size
        self.last = (framed, end - 1)


class _Budget:
    """The share of the loop's time the sink may spend on its own work (a token bucket):
    ``spend(seconds)`` after each piece of work says how long to wait before the next, so
    that over any stretch longer than ``burst / share`` the work stays within ``share``.
    Below the share (a feed the sink keeps up with) it never asks for a wait."""

    __slots__ = ("burst", "credit", "share", "stamp")

    def __init__(self, share: float, burst: float = 0.05) -> None:
        self.share = share
        self.burst = burst  # seconds of work that may run back to back
        self.credit = burst
        self.stamp = time.monotonic()

    def spend(self, seconds: float) -> float:
        now = time.monotonic()
        self.credit = min(self.burst, self.credit + (now - self.stamp) * self.share) - seconds
        self.stamp = now
        return -self.credit / self.share if self.credit < 0 else 0.0


class _Acks:
    """Acknowledgements of one publish attempt: chunk ``k`` asks for it on ``<subject>k``."""

    __slots__ = ("acked", "chunks", "error", "progress", "sent", "sizes", "subject")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.sizes: dict[str, int] = {}  # chunk number (text) not yet acknowledged -> messages
        self.chunks = 0
        self.sent = 0
        self.acked = 0
        self.error: Exception | None = None
        self.progress = asyncio.Event()

    def expect(self, count: int) -> bytes:
        """Register the next chunk of ``count`` messages; the reply subject it asks on."""
        number = str(self.chunks)
        self.chunks += 1
        self.sizes[number] = count
        self.sent += count
        return f"{self.subject}{number}".encode()

    async def wait(self, timeout: float) -> None:
        """Wait for the next acknowledgement; raise what failed, or on ``timeout``."""
        if self.error is None:
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), timeout)
            except TimeoutError:
                raise TimeoutError(f"JetStream acknowledged nothing for {timeout:g} s") from None
        if self.error is not None:
            raise self.error


class JetStreamError(Exception):
    """JetStream refused a message (the server's own description)."""


class NatsSink(AsyncBatchingSink):
    """Publishes a connection's records to NATS JetStream (see the module docstring).

    Options (besides the batching ones of :class:`~obbws_jupyter.sinks.AsyncBatchingSink`):
    ``stream`` (name; default: the stream that takes the subjects, else ``OBBWS_<name>``),
    ``subject_prefix`` ("obbws"), ``max_msgs`` (default the connection's ``limit``; None: no
    cap), ``duplicate_window`` (seconds, 120), ``storage`` ("file" or "memory"),
    ``connect_timeout`` (2 s), ``ack_timeout`` (5 s without an acknowledgement fails the
    delivery), ``max_inflight`` (10000 records awaiting acknowledgement), ``ack_every`` (1000
    records per chunk, one acknowledgement each), ``cpu_share`` (0.1 of the loop thread's
    time at most), ``token`` / ``user`` + ``password`` / ``creds`` (a .creds file), also read
    from the URL.
    """

    kind = "nats"
    # In a child process (process=True) the loop it would share is its own: no cap there.
    child_options: ClassVar[Mapping[str, Any]] = {"cpu_share": 1.0}

    def __init__(
        self,
        url: str,
        *,
        stream: str | None = None,
        subject_prefix: str = DEFAULT_PREFIX,
        max_msgs: int | None = _FROM_LIMIT,
        duplicate_window: float | None = None,
        storage: str = "file",
        connect_timeout: float = 2.0,
        ack_timeout: float = 5.0,
        max_inflight: int = 10_000,
        ack_every: int = 1_000,
        cpu_share: float = 0.1,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        creds: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        self._server = _server(url, token=token, user=user, password=password, creds=creds)
        super().__init__(url, **options)
        if stream is not None and (not isinstance(stream, str) or _STREAM_UNSAFE.search(stream)):
            raise InvalidParameterError(
                f"stream must be a JetStream stream name (letters, digits, '_' and '-'), "
                f"got {stream!r}."
            )
        self.stream = stream
        self.subject_prefix = _check_subject(subject_prefix, "subject_prefix", wildcards=False)
        self._max_msgs_given = max_msgs is not _FROM_LIMIT
        self.max_msgs = (
            _count("max_msgs", max_msgs, allow_none=True) if self._max_msgs_given else None
        )
        self._window_given = duplicate_window is not None
        window = DEFAULT_DUPLICATE_WINDOW if duplicate_window is None else duplicate_window
        self.duplicate_window = _number("duplicate_window", window, 0, 7 * 86400)
        if storage not in ("file", "memory"):
            raise InvalidParameterError(f"storage must be 'file' or 'memory', got {storage!r}.")
        self.storage = storage
        self.connect_timeout = _number("connect_timeout", connect_timeout, 0, 60)
        self.ack_timeout = _number("ack_timeout", ack_timeout, 0, 300)
        self.max_inflight = int(_count("max_inflight", max_inflight) or 1)
        self.ack_every = int(_count("ack_every", ack_every) or 1)
        self.cpu_share = _share(cpu_share)
        self._budget = _Budget(self.cpu_share)
        self._busy = 0.0  # seconds of work since the budget was last charged
        self._unthrottled: asyncio.Event | None = None  # set on closing: no more budget waits
        self._nc: NatsClient | None = None
        self._stream_ready = False
        self._inbox = ""
        self._attempt = 0
        self._acks: _Acks | None = None  # those of the publish under way
        self._framer: _Framer | None = None
        self._subject_root = ""
        self._skipped = 0  # records of the delivery under way left out (over max_payload)
        self._max_msg_size: int | None = None  # the stream's own cap on a message, if any
        self.acks_asked = 0  # messages published asking for an acknowledgement (one a chunk)
        self.oversized = 0  # records never published: larger than the server's max_payload
        self.stream_name: str | None = None  # the stream in use, once set up
        # records of chunks JetStream acknowledged as already stored (retries): a chunk whose
        # last record was stored before had, in order, all of its records stored before
        self.duplicates = 0
        self._dial_lock: asyncio.Lock | None = None
        self._warmup: asyncio.Task[None] | None = None

    @property
    def subjects(self) -> str:
        """The subjects this sink publishes on (``<prefix>.<name>.>``)."""
        return f"{self._subject_root}.>"

    async def setup(self) -> None:
        # Only what needs no server: the first delivery dials (see the module docstring).
        assert self.context is not None
        context = self.context
        if not self._max_msgs_given:
            self.max_msgs = context.limit
        self._subject_root = f"{self.subject_prefix}.{subject_token(context.name)}"
        run = _base36(time.time_ns())
        msg_id_prefix = f"{context.name}:{run}:".replace("\r", " ").replace("\n", " ")
        encoder = FrameEncoder(context.record_encoder())
        self._framer = _Framer(encoder, self._subject_root, msg_id_prefix)
        self._dial_lock = asyncio.Lock()
        # Dial and set the stream up now, in the background, so that a reader can attach
        # before the first record; a failure here is only logged (deliveries retry it).
        self._warmup = asyncio.get_running_loop().create_task(self._warm_up())

    async def _warm_up(self) -> None:
        # Its outcome shows in the health at once, as a delivery's would (an unreachable
        # server reads "retrying" with its error even before the first record).
        try:
            await self._ready()
        except Exception as exc:
            self._failed([], exc)
        else:
            self._succeeded([])

    async def teardown(self) -> None:
        warmup = self._warmup
        if warmup is not None and not warmup.done():
            warmup.cancel()
            with contextlib.suppress(BaseException):
                await warmup
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), self.connect_timeout)

    async def deliver(self, batches: list[Batch]) -> None:
        nc = await self._ready()
        await self._publish(nc, batches)

    # connection and stream -------------------------------------------------------------------

    async def _ready(self) -> NatsClient:
        assert self._dial_lock is not None
        async with self._dial_lock:  # the warm-up and the first delivery must not both dial
            return await self._ready_locked()

    async def _ready_locked(self) -> NatsClient:
        nc = self._nc
        if nc is None or nc.is_closed:
            nc = self._nc = await _connect(
                self._server,
                self.connect_timeout,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
            )
            if not all(callable(getattr(nc, m, None)) for m in _NATS_PY_WRITES):
                await nc.close()
                raise RuntimeError(
                    "this nats-py lacks the buffered write the NATS sink uses "
                    f"({', '.join(_NATS_PY_WRITES)}); install nats-py 2.x (tested with 2.16)"
                )
            self._inbox = nc.new_inbox()
            await nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
            log.info("sink %s: connected", self.display_url)
        if not nc.is_connected:
            raise ConnectionError(f"the connection to NATS at {self._server.shown} is down")
        if not self._stream_ready:
            try:
                await self._ensure_stream(nc)
            except nats.js.errors.ServiceUnavailableError:  # nats-py's text says nothing
                raise ConnectionError(
                    f"NATS at {self._server.shown} does not run JetStream: start nats-server "
                    "with -js (and a store folder, -sd DIR)"
                ) from None
            self._stream_ready = True
        return nc

    async def _disconnected(self) -> None:
        log.info("sink %s: disconnected from NATS; reconnecting", self.display_url)

    async def _reconnected(self) -> None:
        log.info("sink %s: reconnected to NATS", self.display_url)

    async def _ensure_stream(self, nc: NatsClient) -> None:
        js = nc.jetstream(timeout=self.ack_timeout)
        wanted = self.subjects
        name = (
            self.stream
            or await _stream_covering(js, wanted)
            or default_stream_name(self.context.name if self.context else "obbws")
        )
        self._max_msg_size = None
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(self._stream_config(name))
            log.info("sink %s: created stream %s (%s)", self.display_url, name, wanted)
        else:
            await self._fit_stream(js, info.config, wanted)
            size = info.config.max_msg_size  # a stream of someone else's may refuse big ones
            self._max_msg_size = size if size is not None and size > 0 else None
        self.stream_name = name

    def _stream_config(self, name: str) -> api.StreamConfig:
        return api.StreamConfig(
            name=name,
            subjects=[self.subjects],
            max_msgs=self.max_msgs if self.max_msgs is not None else -1,
            discard=api.DiscardPolicy.OLD,
            storage=api.StorageType.FILE if self.storage == "file" else api.StorageType.MEMORY,
            duplicate_window=self.duplicate_window,
        )

    async def _fit_stream(self, js: Any, config: api.StreamConfig, wanted: str) -> None:
        changed = []
        subjects = list(config.subjects or [])
        if not any(_covers(s, wanted) for s in subjects):
            config.subjects = [*subjects, wanted]
            changed.append(f"subjects + {wanted}")
        cap = self.max_msgs if self.max_msgs is not None else -1
        if self._max_msgs_given and config.max_msgs != cap:
            config.max_msgs = cap
            changed.append(f"max_msgs {cap}")
        if self._window_given and config.duplicate_window != self.duplicate_window:
            config.duplicate_window = self.duplicate_window
            changed.append(f"duplicate_window {self.duplicate_window:g}")
        if changed:
            await js.update_stream(config)
            log.info("sink %s: stream %s: %s", self.display_url, config.name, ", ".join(changed))

    # publishing ------------------------------------------------------------------------------

    async def _publish(self, nc: NatsClient, batches: list[Batch]) -> None:
        """Write every record as NATS protocol, in chunks of at most ``ack_every`` messages
        (and 512 KiB), each one write whose last message alone asks for an acknowledgement;
        up to ``max_inflight`` messages unacknowledged. Return once every chunk is
        acknowledged; raise to have the whole delivery retried (the ids make copies
        harmless)."""
        assert self._framer is not None
        self._attempt += 1
        acks = self._acks = _Acks(f"{self._inbox}.{self._attempt}_")
        room, max_payload = min(self.ack_every, self.max_inflight), nc.max_payload
        if self._max_msg_size is not None:  # a message over it would be refused alone
            max_payload = min(max_payload, self._max_msg_size)
        chunk = _Chunk()
        self._skipped = 0
        # The budget counts CPU time (a busy machine's waits are not the sink's work), read
        # once per chunk: between two sends the framing runs without a suspension.
        clock = time.thread_time
        try:
            mark = clock()
            for batch in batches:
                framed = self._framer.frame(batch, max_payload)
                self._skipped += framed.skipped
                start, end = 0, len(framed.frames)
                while start < end:
                    stop, size = _cut(
                        framed.frames, start, room - chunk.count, _CHUNK_BYTES - chunk.size
                    )
                    if stop == start and not chunk.count:  # one message over the budget
                        stop, size = start + 1, len(framed.frames[start])
                    if stop > start:
                        chunk.add(framed, start, stop, size)
                        start = stop
                    if chunk.count >= room or stop < end:
                        self._busy += clock() - mark
                        await self._send(nc, chunk, acks)
                        chunk, mark = _Chunk(), clock()
            if chunk.count:
                self._busy += clock() - mark
                await self._send(nc, chunk, acks)
            while acks.acked < acks.sent:
                await acks.wait(self.ack_timeout)
        finally:
            self._acks = None

    async def _send(self, nc: NatsClient, chunk: _Chunk, acks: _Acks) -> None:
        assert self._framer is not None and chunk.last is not None
        while acks.sent and acks.sent - acks.acked + chunk.count > self.max_inflight:
            await acks.wait(self.ack_timeout)
        if not nc.is_connected:  # nats-py would buffer it for after the reconnect: retry it
            raise ConnectionError(f"the connection to NATS at {self._server.shown} is down")
        began = time.thread_time()
        framed, index = chunk.last
        chunk.frames[-1] = self._framer.with_reply(framed, index, acks.expect(chunk.count))
        self.acks_asked += 1
        # nats-py's own outgoing buffer: its flusher writes it in order with the client's
        # other commands, and bounds it (the public publish() takes one message at a time)
        await nc._send_command(b"".join(chunk.frames))
        await nc._flush_pending()
        busy, self._busy = self._busy + time.thread_time() - began, 0.0
        # a chunk is a few ms of work: let the stream read meanwhile, and when the sink has
        # used its share of the loop (a feed faster than it), wait: its backlog absorbs it
        # (not once closing: the backlog is then all that is left to do)
        pause = self._budget.spend(busy)
        if not pause or self._closing:
            await asyncio.sleep(0)
            return
        unthrottled = self._unthrottled = self._unthrottled or asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(unthrottled.wait(), pause)

    async def _poke(self) -> None:
        # flush() from close() comes here: a wait for the budget ends at once
        await super()._poke()
        if self._closing and self._unthrottled is not None:
            self._unthrottled.set()

    async def _on_ack(self, msg: Msg) -> None:
        acks = self._acks
        if acks is None or not msg.subject.startswith(acks.subject):
            return  # the late answer to an attempt already given up
        count = acks.sizes.pop(msg.subject[len(acks.subject) :], 0)
        if msg.headers and msg.headers.get("Status") == _NO_STREAM_STATUS:
            self._stream_ready = False  # deleted under us: set it up again on the next try
            acks.error = JetStreamError(f"no JetStream stream takes the subject {msg.subject!r}")
        elif b'"error"' in msg.data:
            acks.error = JetStreamError(_error_text(msg.data))
            self._stream_ready = False
        else:
            acks.acked += count
            if b'"duplicate"' in msg.data:  # only ever sent as true
                # the chunk's last record was stored already, so (in order) were the others
                self.duplicates += count
        acks.progress.set()

    def _succeeded(self, batches: list[Batch]) -> None:
        skipped, self._skipped = self._skipped, 0
        if skipped:  # settled, but not written: counted apart (never retried)
            self.oversized += skipped
            with self._lock:
                self._backlog.delivered(batches, sum(b.n for b in batches) - skipped)
                self._backlog.rejected(skipped)
            batches = []
        super()._succeeded(batches)


def _error_text(data: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = json.loads(data)["error"]
        return f"{error.get('description', 'error')} (code {error.get('err_code', '?')})"
    return data.decode(errors="replace")[:200]


def _masked(exc: BaseException) -> str:
    return mask_secrets(f"{type(exc).__name__}: {exc}")


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while value:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
    return out or "0"


async def _streams(js: Any) -> list[api.StreamInfo]:
    """Every stream of the account (the server pages the list)."""
    found: list[api.StreamInfo] = []
    while True:
        page = await js.streams_info(offset=len(found))
        found.extend(page)
        if not page:
            return found


async def _stream_covering(js: Any, subjects: str) -> str | None:
    """The stream whose subjects already take ``subjects``, if one does."""
    for info in await _streams(js):
        if any(_covers(s, subjects) for s in info.config.subjects or []):
            return str(info.config.name)
    return None


# -- reading: listen("nats://...") -----------------------------------------------------------

_LISTEN_OPTIONS = ("subject", "stream", "connect_timeout", "token", "user", "password", "creds")


def check_listen_options(url: str, *, replay: int | None = None, **options: Any) -> dict[str, Any]:
    """Check a ``listen("nats://...")`` call before anything starts; the options to use."""
    unknown = sorted(set(options) - set(_LISTEN_OPTIONS))
    if unknown:
        raise InvalidParameterError(
            f"unknown option(s) for listening to NATS: {', '.join(unknown)}; known: "
            f"{', '.join(_LISTEN_OPTIONS)}."
            + (  # name= is how a Redis stream is picked: say the NATS way
                f" One connection's records: subject='{DEFAULT_PREFIX}.<name>.>'."
                if "name" in unknown
                else ""
            )
        )
    credentials = {k: options.get(k) for k in ("token", "user", "password", "creds")}
    _server(url, **credentials)
    if replay is not None and (
        isinstance(replay, bool) or not isinstance(replay, int) or not 1 <= replay <= MAX_REPLAY
    ):
        raise InvalidParameterError(f"replay must be an int between 1 and {MAX_REPLAY}.")
    subject = _check_subject(
        options.get("subject") or f"{DEFAULT_PREFIX}.>", "subject", wildcards=True
    )
    stream = options.get("stream")
    if stream is not None and (not isinstance(stream, str) or _STREAM_UNSAFE.search(stream)):
        raise InvalidParameterError(f"stream must be a JetStream stream name, got {stream!r}.")
    timeout = _number("connect_timeout", options.get("connect_timeout", 5.0), 0, 60)
    return {**credentials, "subject": subject, "stream": stream, "connect_timeout": timeout}


@dataclass(frozen=True, slots=True)
class _Feed:
    """One ordered consumer: a stream and the part of the asked subjects it holds."""

    stream: str
    subject: str


async def records(
    url: str,
    *,
    replay: int | None = None,
    auth_token: str | None = None,
    on_open: Callable[[], None] | None = None,
    subject: str = f"{DEFAULT_PREFIX}.>",
    stream: str | None = None,
    connect_timeout: float = 5.0,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    creds: str | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield the records JetStream holds on ``subject`` (the last ``replay`` first, then live
    ones) as the broadcast's dicts; ``auth_token`` is the NATS token when ``token`` is not
    given. Raises BroadcastError when no server answers or no stream holds the subject."""
    server = _server(url, token=token or auth_token, user=user, password=password, creds=creds)
    try:
        nc = await _connect(server, connect_timeout)
    except _CredentialsRefused as exc:
        raise UnauthorizedError(f"{exc} (listen(url, auth_token=TOKEN) passes a token).") from None
    except ConnectionError as exc:
        raise BroadcastError(f"{exc}; check the address, or start nats-server -js there.") from None
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
    try:
        js = nc.jetstream()
        feeds = await _feeds(js, server, subject, stream)
        for feed in feeds:
            policy, start, floor = await _start(js, feed, replay)
            await js.subscribe(
                feed.subject,
                stream=feed.stream,
                cb=_taker(queue, floor),
                ordered_consumer=True,
                idle_heartbeat=_HEARTBEAT,  # a lost consumer (server restart) is seen soon
                deliver_policy=policy,
                config=api.ConsumerConfig(opt_start_seq=start),
            )
        log.info("listening to %s (%s)", server.shown, ", ".join(map(str, feeds)))
        if on_open is not None:
            on_open()
        while True:
            data = await queue.get()
            try:
                value = json.loads(data)
            except ValueError:
                log.warning("skipped a message from %s that is not JSON: %.80r", server.shown, data)
                continue
            if isinstance(value, dict):
                yield value
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)


async def _feeds(js: Any, server: _Server, subject: str, stream: str | None) -> list[_Feed]:
    """One feed per (stream, stream subject) sharing subjects with ``subject``."""
    try:
        if stream is not None:
            infos = [await js.stream_info(stream)]
        else:
            infos = await _streams(js)
    except nats.js.errors.NotFoundError:
        raise BroadcastError(f"NATS at {server.shown} has no stream {stream!r}.") from None
    except nats.js.errors.ServiceUnavailableError:
        raise BroadcastError(f"NATS at {server.shown} does not run JetStream.") from None
    feeds = [
        _Feed(str(info.config.name), common)
        for info in infos
        for own in info.config.subjects or []
        if (common := _intersect(own, subject)) is not None
    ]
    if not feeds:
        raise BroadcastError(
            f"no JetStream stream at {server.shown} holds {subject!r}"
            + (f" in stream {stream!r}" if stream else "")
            + "; a capture creates it with conn.add_sink('nats://...'), or check subject=."
        )
    return feeds


async def _start(
    js: Any, feed: _Feed, replay: int | None
) -> tuple[api.DeliverPolicy, int | None, int]:
    """Where a feed's consumer starts (new records only, or the last ``replay`` stored), and
    the first stream sequence it may deliver."""
    info = await js.stream_info(feed.stream, subjects_filter=feed.subject if replay else None)
    state = info.state
    if replay is None:
        return api.DeliverPolicy.NEW, None, state.last_seq + 1
    matching = sum((state.subjects or {}).values())
    if matching <= replay:
        return api.DeliverPolicy.ALL, None, 0
    if matching == state.messages:  # every message matches: count back from the end
        start = max(state.first_seq, state.last_seq - replay + 1)
    else:
        start = await _seek(js, feed, state, replay)
    return api.DeliverPolicy.BY_START_SEQUENCE, start, start


def _taker(queue: asyncio.Queue[bytes], floor: int) -> Callable[[Msg], Awaitable[None]]:
    """The callback of one feed: queue each message's data (a full queue holds the consumer
    back: flow control).

    Until its first message it also drops any below ``floor``: nats-py re-creates an ordered
    consumer that the server lost (a restart) from the sequence after the last one delivered,
    which is the stream's start when none was, so a "new records only" reader would otherwise
    get the whole stream."""
    checking = floor > 1

    async def take(msg: Msg) -> None:
        nonlocal checking
        if checking:
            if msg.metadata.sequence.stream < floor:
                return
            checking = False
        await queue.put(msg.data)

    return take


async def _seek(js: Any, feed: _Feed, state: api.StreamState, replay: int) -> int:
    """The highest start sequence from which ``replay`` matching records remain (a binary
    search on a probe consumer's pending count: JetStream has no "last N of a filter")."""
    low, high = state.first_seq, state.last_seq
    while low < high:
        middle = (low + high + 1) // 2
        if await _pending_from(js, feed, middle) >= replay:
            low = middle
        else:
            high = middle - 1
    return low


async def _pending_from(js: Any, feed: _Feed, start: int) -> int:
    config = api.ConsumerConfig(
        filter_subject=feed.subject,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=5.0,
        mem_storage=True,
    )
    info = await js.add_consumer(feed.stream, config)
    with contextlib.suppress(Exception):
        await js.delete_consumer(feed.stream, info.name)
    return int(info.num_pending or 0)
