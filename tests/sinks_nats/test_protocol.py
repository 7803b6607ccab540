"""The NATS sink's protocol path: a batch written as HPUB commands in chunks, one JetStream
acknowledgement per chunk (its last message), a lost acknowledgement retried whole and
deduplicated, chunks split by bytes, and records over the server's max_payload left out. The
framing itself is checked without a server: every command parses back to its record."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from obbws_jupyter import runtime
from obbws_jupyter._wire import FrameEncoder, RecordEncoder
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.protocol import Field, FieldType
from obbws_jupyter.sinks import Batch, SinkContext
from obbws_jupyter.sinks.nats import NatsSink, _Budget, _Framer, default_stream_name
from tests.conftest import TIMEOUT, wait_until
from tests.sinks_nats.conftest import NatsServer, jetstream

FIELDS = (
    Field("date", FieldType.TIMESTAMP, "event time"),
    Field("symbol", FieldType.STRING, "symbol"),
    Field("price", FieldType.FLOAT, "price"),
    Field("note", FieldType.STRING, "free text"),
)
NS = 1_795_988_934_861_953_123  # 2026-11-29, with nanoseconds


def frames(first: int, count: int, per_frame: int = 50, note: str = "") -> list[Batch]:
    """``count`` records with ids ``first...``, as the client hands them over: one stamped
    batch per frame of ``per_frame``."""
    out = []
    for start in range(first, first + count, per_frame):
        n = min(per_frame, first + count - start)
        rows: list[dict[str, Any]] = [
            {"date": NS + i, "symbol": ("BTCUSD", "ETH.USD")[i % 2], "price": i / 4, "note": note}
            for i in range(start, start + n)
        ]
        out.append(Batch.stamped(rows, FIELDS, start, NS + start))
    return out


def publish(sink: NatsSink, batches: list[Batch]) -> None:
    """Hand ``batches`` to the sink on the loop, as one frame callback would, and wait until
    they are settled."""

    def write_all() -> None:
        for batch in batches:
            sink.write(batch)

    runtime.call_soon(write_all)
    sink.flush(TIMEOUT)


def opened(sink: NatsSink, name: str) -> NatsSink:
    sink.open(SinkContext(name=name, provider="demo", fields=FIELDS, limit=None))
    return sink


def stored(server: NatsServer, name: str, count: int, stream: str | None = None) -> list[Any]:
    """Every message of the connection's stream, in stream order (``count`` of them)."""

    async def read(js: Any) -> list[Any]:
        sub = await js.subscribe(
            f"obbws.{name}.>", stream=stream or default_stream_name(name), ordered_consumer=True
        )
        out = [await sub.next_msg(TIMEOUT) for _ in range(count)]
        await sub.unsubscribe()
        return out

    return jetstream(server.url, read)


class AckLosingSink(NatsSink):
    """A NatsSink whose first publish loses the acknowledgement of its second chunk (a reply
    that never arrives): only our own acknowledgement handling is bypassed; the server is
    real."""

    lost = 0

    async def _on_ack(self, msg: Any) -> None:
        if not self.lost and msg.subject.endswith("_1"):
            self.lost += 1
            return
        await super()._on_ack(msg)


def test_a_lost_ack_retries_the_batch_and_the_stream_holds_each_record_once(
    nats_server: NatsServer,
) -> None:
    """With one chunk's acknowledgement lost, the delivery times out and is retried whole;
    JetStream drops every copy by its Nats-Msg-Id, so the stream holds each record once, in
    order, and the sink counts each record written once (and the copies as duplicates)."""
    sink = AckLosingSink(
        nats_server.url, ack_every=1_000, ack_timeout=TIMEOUT / 20, retry_base=0.05
    )
    opened(sink, "nats-lost-ack")
    try:
        publish(sink, frames(1, 2_500))
        health = sink.health()
        assert sink.lost == 1 and health.state == "ok"
        assert health.rows_written == 2_500 and health.rows_dropped == 0
        assert sink.acks_asked == 6  # three chunks, twice
        assert sink.duplicates == 2_500  # the retry's every chunk ended on a stored record
        messages = stored(nats_server, "nats-lost-ack", 2_500)
        assert [json.loads(m.data)["id"] for m in messages] == list(range(1, 2_501))
        state = nats_server.stream_state(default_stream_name("nats-lost-ack"))
        assert state.messages == 2_500 and state.last_seq == 2_500  # no copy stored at all
    finally:
        sink.close(TIMEOUT)


def test_one_ack_per_chunk_and_every_message_is_whole(nats_server: NatsServer) -> None:
    """10,000 records go out with one acknowledgement asked per 1,000; each stored message
    carries its record's subject, Nats-Msg-Id and broadcast-frame payload."""
    name = "nats-chunks"
    sink = opened(NatsSink(nats_server.url), name)
    batches = frames(1, 10_000)
    try:
        publish(sink, batches)
        assert sink.health().rows_written == 10_000 and sink.acks_asked == 10
        messages = stored(nats_server, name, 10_000)
    finally:
        sink.close(TIMEOUT)
    reference = RecordEncoder(FIELDS, "America/New_York")
    rows = [row for batch in batches for row in batch.rows()]
    prefixes = set()
    for message, row in zip(messages, rows, strict=True):
        assert json.loads(message.data) == json.loads(reference.encode(row))
        assert message.subject == f"obbws.{name}.{row['symbol'].replace('.', '%2E')}"
        msg_id = message.headers["Nats-Msg-Id"]
        assert msg_id.endswith(f":{row['id']}")
        prefixes.add(msg_id.rpartition(":")[0])
    assert len(prefixes) == 1 and prefixes.pop().startswith(f"{name}:")


def test_chunks_split_by_bytes_and_an_oversized_record_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Against a server with max_payload 4 KiB: 1,000 records of about 1.7 kB (1.7 MB in all)
    go out in chunks of at most 512 KiB, every one stored; a record larger than max_payload
    (the server would close the connection on it) is left out, logged and counted, and the
    connection stays up for the others."""
    server = NatsServer(tmp_path / "js", max_payload=4_096)
    server.start()
    name = "nats-payload"
    sink = opened(NatsSink(server.url), name)
    try:
        batches = frames(1, 1_000, note="x" * 1_500)
        big = frames(1_001, 1, note="y" * 5_000)
        batches += big + frames(1_002, 99, note="z" * 10)
        with caplog.at_level(logging.WARNING, logger="obbws_jupyter.sinks.nats"):
            publish(sink, batches)
        health = sink.health()
        assert health.state == "ok" and health.last_error is None
        assert sink.oversized == 1 and health.rows_written == 1_099 and health.rows_pending == 0
        assert sink.acks_asked >= 4  # 1.7 MB in chunks of at most 512 KiB
        assert (
            "record 1001 left out" in caplog.text and "over the 4096 that NATS takes" in caplog.text
        )
        ids = [json.loads(m.data)["id"] for m in stored(server, name, 1_099)]
        assert ids == [*range(1, 1_001), *range(1_002, 1_101)]
    finally:
        sink.close(TIMEOUT)
        server.stop()


def test_a_record_over_an_existing_streams_max_msg_size_is_left_out(
    nats_server: NatsServer,
) -> None:
    """An existing stream that caps a message's size (max_msg_size) would refuse a bigger
    record on its own, silently when it is not the last of its chunk: the sink leaves such a
    record out, counted, and every other record is stored."""
    name = "nats-msg-size"

    async def create(js: Any) -> None:
        await js.add_stream(name="CAPPED", subjects=[f"obbws.{name}.>"], max_msg_size=2_048)

    jetstream(nats_server.url, create)
    sink = opened(NatsSink(nats_server.url), name)
    try:
        batches = frames(1, 10, note="a") + frames(11, 1, note="b" * 3_000) + frames(12, 9)
        publish(sink, batches)
        assert sink.stream_name == "CAPPED" and sink.oversized == 1
        assert sink.health().rows_written == 19 and sink.health().state == "ok"
        ids = [json.loads(m.data)["id"] for m in stored(nats_server, name, 19, "CAPPED")]
        assert ids == [*range(1, 11), *range(12, 21)]
    finally:
        sink.close(TIMEOUT)


def parse(commands: bytes) -> list[tuple[str, str | None, dict[str, str], bytes]]:
    """HPUB commands -> (subject, reply, headers, payload), checking every length field."""
    out = []
    rest = commands
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        op, *args = line.decode().split(" ")
        assert op == "HPUB" and len(args) in (3, 4)
        header_len, total = int(args[-2]), int(args[-1])
        header, payload = rest[:header_len], rest[header_len:total]
        assert rest[total : total + 2] == b"\r\n"
        rest = rest[total + 2 :]
        assert header.startswith(b"NATS/1.0\r\n") and header.endswith(b"\r\n\r\n")
        pairs = [h.split(": ", 1) for h in header.decode().split("\r\n")[1:-2]]
        out.append((args[0], args[1] if len(args) == 4 else None, dict(pairs), payload))
    return out


EXTRA = (*FIELDS, Field("extra", FieldType.STRING, "anything"))


@pytest.mark.parametrize(
    ("value", "split"),
    [
        ("plain", True),
        ('quotes " and },{"id": inside', True),  # the split marker inside a string: escaped
        ([{"id": 1}, {"id": 2}], False),  # ...and between objects in a value: split refused
        (2**70, False),  # beyond orjson: every record through the broadcast's encoder
    ],
)
def test_frames_parse_back_to_the_broadcast_frames(value: Any, split: bool) -> None:
    """Whichever way the payloads are made (split out of one array, or one by one when the
    split would not be exact or orjson refuses a value), every HPUB command's lengths are
    right and its payload decodes to what the broadcast's encoder gives; the last command of
    a chunk asks on the reply subject."""
    reference = RecordEncoder(EXTRA, "UTC")
    framer = _Framer(FrameEncoder(reference), "obbws.t", "t:run:")
    rows = [{"date": NS, "symbol": None, "price": 1.5, "extra": value} for _ in range(30)]
    batch = Batch.stamped(rows, EXTRA, 7, NS)
    framed = framer.frame(batch, 1 << 20)
    assert framed.wrapped is split
    last = framer.with_reply(framed, 29, b"_INBOX.x.1_0")
    parsed = parse(b"".join([*framed.frames[:-1], last]))
    assert len(parsed) == 30 and framed.skipped == 0
    for i, (subject, reply, headers, payload) in enumerate(parsed):
        assert subject == "obbws.t._" and headers == {"Nats-Msg-Id": f"t:run:{7 + i}"}
        assert reply == ("_INBOX.x.1_0" if i == 29 else None)
        assert json.loads(payload) == json.loads(reference.encode(batch.rows()[i]))


def test_the_budget_waits_only_beyond_its_share() -> None:
    """The loop-time budget asks for no wait while the work stays within its burst, and once
    beyond it, for as long as the excess takes to earn back at the share."""
    budget = _Budget(0.1, burst=0.05)
    assert budget.spend(0.01) == 0.0 and budget.spend(0.03) == 0.0  # within the burst
    wait = budget.spend(0.07)  # 0.06 s beyond it, at 10 %: 0.6 s
    assert wait == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize("share", [0, -0.1, 1.5, True, "0.1"])
def test_a_bad_cpu_share_is_refused(share: Any) -> None:
    """cpu_share outside (0, 1] is refused before anything starts, naming the option."""
    with pytest.raises(InvalidParameterError, match="cpu_share"):
        NatsSink("nats://127.0.0.1:4222", cpu_share=share)


def test_closing_lifts_the_budget_so_the_backlog_still_goes_out(nats_server: NatsServer) -> None:
    """A sink held back by its loop-time budget (a tiny cpu_share) with a backlog left
    publishes all of it when closed: nothing competes for the loop any more, so close()
    neither waits out the budget nor loses the rows."""
    name = "nats-close-budget"
    sink = opened(NatsSink(nats_server.url, cpu_share=0.001), name)

    def write_all() -> None:
        for batch in frames(1, 60_000):
            sink.write(batch)

    runtime.call_soon(write_all)
    assert wait_until(lambda: sink.health().rows_written > 0)
    assert sink.health().rows_pending > 0  # held back: at 0.1 % of the loop this takes minutes
    assert sink.close(TIMEOUT) == 0
    assert sink.health().rows_written == 60_000
    assert nats_server.stream_state(default_stream_name(name)).messages == 60_000
