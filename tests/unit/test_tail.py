"""LiveTail without sockets: records in, newest rows and per-symbol aggregates out."""

from __future__ import annotations

import threading

import pytest

from obbws_jupyter._tail import LiveTail, Seed, value_mode
from obbws_jupyter.protocol import Field, FieldType

TRADES = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("price", FieldType.FLOAT),
    Field("size", FieldType.FLOAT),
)
QUOTES = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("bid", FieldType.FLOAT),
    Field("ask", FieldType.FLOAT),
)
NS = 1_700_000_000_000_000_000


def trade(i: int, symbol: str, price: float) -> dict:
    return {"id": i, "received_at": NS + i, "date": NS + i * 1_000_000, "symbol": symbol,
            "price": price, "size": 1.0}  # fmt: skip


class FakeClient:
    """The record-hook surface of WebSocketClient."""

    name = "fake"
    fields = TRADES

    def __init__(self) -> None:
        self.hooks: list = []

    def add_record_hook(self, hook) -> None:  # type: ignore[no-untyped-def]
        self.hooks.append(hook)

    def remove_record_hook(self, hook) -> None:  # type: ignore[no-untyped-def]
        self.hooks.remove(hook)


def test_newest_rows_come_first_as_columns_with_ms_timestamps() -> None:
    """The snapshot holds the newest N rows, newest first, columnar, dates as int ms."""
    tail = LiveTail(TRADES, rows=3)
    tail.feed([trade(i, "AAA", 10.0 + i) for i in range(1, 6)])
    rows = tail.snapshot()["rows"]
    assert rows["id"] == [5, 4, 3]
    assert rows["price"] == [15.0, 14.0, 13.0]
    assert rows["date"] == [(NS + 5_000_000) // 1_000_000, (NS + 4_000_000) // 1_000_000,
                            (NS + 3_000_000) // 1_000_000]  # fmt: skip
    assert tail.snapshot(rows=1)["rows"]["id"] == [5]


def test_per_symbol_first_last_change_and_count() -> None:
    """Each symbol keeps its first and last price, the change between them and a count."""
    tail = LiveTail(TRADES)
    tail.feed([trade(1, "AAA", 100.0), trade(2, "BBB", 50.0)])
    tail.feed([trade(3, "AAA", 110.0), {"id": 4, "symbol": "BBB"}])  # no price: counted only
    board = {s["symbol"]: s for s in tail.snapshot()["symbols"]}
    assert board["AAA"]["first"] == 100.0 and board["AAA"]["last"] == 110.0
    assert board["AAA"]["change"] == pytest.approx(10.0)
    assert board["AAA"]["change_pct"] == pytest.approx(10.0)
    assert board["AAA"]["count"] == 2 and board["BBB"]["count"] == 2
    assert board["BBB"]["change"] == 0.0


def test_quotes_keep_bid_and_ask_and_use_the_mid() -> None:
    """A bid/ask feed shows bid and ask; change and sparkline follow the mid price."""
    assert value_mode(QUOTES) == ("quote", None)
    tail = LiveTail(QUOTES)
    tail.feed([{"id": 1, "symbol": "EURUSD", "bid": 1.0, "ask": 1.2}])
    tail.feed([{"id": 2, "symbol": "EURUSD", "bid": 1.2, "ask": 1.4}])
    (eur,) = tail.snapshot()["symbols"]
    assert (eur["bid"], eur["ask"]) == (1.2, 1.4)
    assert eur["first"] == pytest.approx(1.1) and eur["last"] == pytest.approx(1.3)


def test_sparkline_gets_one_point_per_refresh_not_per_record() -> None:
    """Thousands of records between two snapshots add one sparkline point."""
    tail = LiveTail(TRADES, sample_every=0.0, spark_points=5)
    for n in range(8):
        tail.feed([trade(i, "AAA", float(n)) for i in range(1000)])
        spark = tail.snapshot()["symbols"][0]["spark"]
    assert spark == [3.0, 4.0, 5.0, 6.0, 7.0]  # one point per snapshot, the newest 5 kept


def test_most_active_symbols_are_kept_when_there_are_too_many() -> None:
    """Beyond max_symbols the busiest symbols are shown, in name order."""
    tail = LiveTail(TRADES)
    tail.feed([trade(i, f"S{i % 4}", 1.0) for i in range(4)])
    tail.feed([trade(10 + i, "S3", 1.0) for i in range(5)] + [trade(20, "S1", 1.0)])
    assert [s["symbol"] for s in tail.snapshot(max_symbols=2)["symbols"]] == ["S1", "S3"]


def test_follow_seeds_history_and_close_detaches() -> None:
    """Seeded rows fill the table without counting as live; close removes the hook."""
    client = FakeClient()
    tail = LiveTail(TRADES).follow(client, [trade(1, "AAA", 90.0)])
    assert client.hooks == [tail.feed]
    client.hooks[0]([trade(2, "AAA", 99.0)])
    snap = tail.snapshot()
    assert snap["total"] == 1 and snap["rows"]["id"] == [2, 1]
    assert snap["symbols"][0]["first"] == 90.0
    tail.close()
    assert client.hooks == [] and tail.closed
    tail.feed([trade(3, "AAA", 1.0)])  # a frame already in flight is ignored
    assert tail.snapshot()["total"] == 1


def test_feed_and_snapshot_on_two_threads_stay_consistent() -> None:
    """Concurrent feeding (loop thread) and snapshots (refresh thread) lose no count."""
    tail = LiveTail(TRADES, rows=50, sample_every=0.0)
    frames = 2000

    def feeder() -> None:
        for f in range(frames):
            tail.feed([trade(f * 10 + k, f"S{k}", float(f)) for k in range(10)])

    thread = threading.Thread(target=feeder)
    thread.start()
    while thread.is_alive():
        snap = tail.snapshot()
        assert len(snap["rows"]["id"]) <= 50
    thread.join()
    snap = tail.snapshot()
    assert snap["total"] == frames * 10
    assert sum(s["count"] for s in snap["symbols"]) == frames * 10


def test_rows_can_be_resized_and_are_bounded() -> None:
    """resize keeps the newest rows; the row count is capped."""
    tail = LiveTail(TRADES, rows=10)
    tail.feed([trade(i, "AAA", 1.0) for i in range(10)])
    tail.resize(2)
    assert tail.snapshot()["rows"]["id"] == [9, 8]
    tail.resize(10**9)
    assert 2 <= tail.rows <= 1000


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_the_current_one_even_after_a_long_gap_between_snapshots() -> None:
    """events/s is measured over the last seconds of feeding, not since the last snapshot:
    a view that comes back after a while sees the live rate, and 0 once records stop."""
    clock = Clock()
    tail = LiveTail(TRADES, clock=clock)
    for step in range(40):  # 10 s at 400 records/s, no snapshot in between
        tail.feed([trade(step * 100 + k, "AAA", 1.0) for k in range(100)])
        clock.now += 0.25
    assert tail.snapshot()["rate"] == pytest.approx(400, rel=0.15)
    clock.now += 3  # the stream stopped: nothing fed
    assert tail.snapshot()["rate"] == 0


def test_sparkline_does_not_move_while_no_records_arrive() -> None:
    """A stopped stream adds no sparkline points, however many snapshots are taken."""
    clock = Clock()
    tail = LiveTail(TRADES, sample_every=0.25, clock=clock)
    tail.feed([trade(1, "AAA", 10.0)])
    for _ in range(5):
        clock.now += 1
        spark = tail.snapshot()["symbols"][0]["spark"]
    assert spark == [10.0]
    tail.feed([trade(2, "AAA", 11.0)])
    clock.now += 1
    assert tail.snapshot()["symbols"][0]["spark"] == [10.0, 11.0]


def test_decimals_follow_the_tick_seen_per_column_and_per_symbol() -> None:
    """Each float column (per symbol) and each board line gets enough decimals for the finest
    value seen (FX quotes keep their fifth decimal, so the spread stays visible), without
    float noise; a value that happens to end in 0 does not shrink it."""
    tail = LiveTail(QUOTES)
    eur = {"id": 1, "symbol": "EURUSD", "bid": 1.07987, "ask": 1.07991}
    btc = {"id": 2, "symbol": "BTCUSD", "bid": 64993.07, "ask": 3499.9500000000003}
    tail.feed([eur, btc])
    snap = tail.snapshot()
    assert snap["decimals"] == {
        "bid": {"EURUSD": 5, "BTCUSD": 2},
        "ask": {"EURUSD": 5, "BTCUSD": 2},
    }
    board = {s["symbol"]: s for s in snap["symbols"]}
    assert board["EURUSD"]["decimals"] == 5 and board["BTCUSD"]["decimals"] == 2
    tail.feed([{"id": 3, "symbol": "EURUSD", "bid": 1.0799, "ask": 1.08}])
    snap = tail.snapshot()
    assert snap["decimals"]["bid"]["EURUSD"] == 5
    assert {s["symbol"]: s for s in snap["symbols"]}["EURUSD"]["decimals"] == 5
    sizes = LiveTail(TRADES)
    sizes.feed([trade(1, "AAA", 190.25)])
    assert sizes.snapshot()["decimals"] == {"price": {"AAA": 2}, "size": {"AAA": 0}}


def test_seed_counts_come_from_the_store_and_live_frames_are_not_counted_twice() -> None:
    """Counts start from the stored count per symbol; frames that arrive while the seed is
    read are kept, and those the seed already counted are not counted again."""
    client = FakeClient()

    def seed() -> Seed:
        client.hooks[0]([trade(10, "AAA", 10.0), trade(11, "AAA", 11.0)])  # arrives meanwhile
        return Seed([trade(1, "AAA", 1.0), trade(9, "AAA", 9.0), trade(10, "AAA", 10.0)],
                    counts={"AAA": 10}, upto=10)  # fmt: skip

    tail = LiveTail(TRADES).follow(client, seed)
    snap = tail.snapshot()
    (aaa,) = snap["symbols"]
    assert aaa["count"] == 11 and aaa["first"] == 1.0 and aaa["last"] == 11.0
    assert snap["rows"]["id"] == [11, 10, 9, 1]
    assert snap["total"] == 1, "only the record the seed did not hold is live"


def test_board_shows_the_subscribed_symbols_only() -> None:
    """An unsubscribed symbol leaves the board (matched case- and separator-blind); when no
    symbol matches at all (a provider writing symbols differently), every symbol stays; with
    no symbol subscribed the board is empty."""
    tail = LiveTail(TRADES)
    tail.feed([trade(1, "AAA", 1.0), trade(2, "BBB", 2.0)])
    assert [s["symbol"] for s in tail.snapshot(only=["aaa"])["symbols"]] == ["AAA"]
    assert [s["symbol"] for s in tail.snapshot(only=["ZZZ"])["symbols"]] == ["AAA", "BBB"]
    assert [s["symbol"] for s in tail.snapshot(only=["*"])["symbols"]] == ["AAA", "BBB"]
    assert tail.snapshot(only=[])["symbols"] == [], "no symbol subscribed: an empty board"
