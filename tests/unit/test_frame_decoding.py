"""One JSON decoder for every session (orjson, ``bytes`` or ``str``): the records and events of
every fixture frame are exactly those the stdlib decoder gave, keys, values and types."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from obbws_jupyter.exceptions import ObbwsError
from obbws_jupyter.protocol import (
    HttpResponse,
    MalformedFrame,
    ProviderSession,
    _json,
    get_provider,
    json_loads,
)
from tests.provider_fixtures import FIXTURES, load_fixture

#: symbols tried, in order, for every (asset_type, feed) of a provider: the first one the
#: session accepts makes the session (combinations no symbol fits are left out)
SYMBOLS = {
    "binance": ("btcusdt,ethusdt",),
    "coinbase": ("btc-usd,eth-usd",),
    "fmp": ("btcusd,ethusd", "aapl,msft", "eurusd"),
    "intrinio": ("aapl",),
    "tiingo": ("btcusd,ethusd", "aapl,spy", "eurusd"),
    "polygon": ("*", "O:SPY251219C00650000", "SPX"),
}
#: sessions that read a binary frame differently from text (no bytes-for-text variant)
BINARY_AWARE = {"intrinio"}

#: demo frames built by us from docs/demo_protocol.md (the demo has no captured fixture)
DEMO_FRAMES = (
    '[{"ev":"status","status":"connected","message":"obbws demo market"}]',
    '[{"ev":"status","status":"auth_success","message":"authenticated"}]',
    '[{"ev":"status","status":"success","message":"subscribed to: T.BTCUSD,Q.BTCUSD"}]',
    '[{"ev":"T","sym":"BTCUSD","x":"DEMO","p":65001.5,"s":0.0123,"t":1700000000000}]',
    '[{"ev":"T","sym":"ETHUSD","x":"DEMO","p":3500,"s":2,"t":1700000000001},'
    '{"ev":"Q","sym":"BTCUSD","x":"DEMO","bp":1.5,"bs":2.0,"ap":1.75,"as":3,"t":1700000000002},'
    '{"ev":"T","sym":"SOLUSD","x":"DEMO","p":NaN,"s":1e308,"t":"1700000000003"}]',
    '[{"ev":"heartbeat","t":1700000000000}]',
    '[{"ev":"T","sym":"BTCUSD"},{"ev":"T","sym":"\\u00e9","x":"DEMO","p":1,"s":1,"t":1}]',
    '[{"ev":"status","status":"error","message":"invalid symbol: T.NOPE"}]',
    '{"ev":"T"}',
    "not json",
    "",
)


def _configs(provider: str) -> Iterator[dict[str, Any]]:
    spec = get_provider(provider)
    choices = {p.name: p.choices for p in spec.params if p.choices and p.name != "region"}
    names = sorted(choices)
    for values in itertools.product(*(choices[n] for n in names)):
        for symbol in SYMBOLS.get(provider, ("btcusd,ethusd",)):
            yield {**dict(zip(names, values, strict=True)), "symbol": symbol}


def _session(provider: str, given: dict[str, Any]) -> ProviderSession | None:
    spec = get_provider(provider)
    takes = {p.name for p in spec.params}
    extra = {"api_key": "k-123", "url": "ws://127.0.0.1:9"}
    given = {**given, **{k: v for k, v in extra.items() if k in takes}}
    try:
        session = spec.session_class(spec.resolve(given, {}))
    except ObbwsError:
        return None
    if hasattr(session, "_clock"):  # receipt times (binance, coinbase): one fixed clock
        session._clock = lambda: 1_700_000_000_000_000_000
    for request in session.http_requests():  # a token step (intrinio)
        session.http_response(request, HttpResponse(200, b"tok-1"))
    session.connection_made()
    return session


def _sessions(provider: str) -> Iterator[tuple[dict[str, Any], ProviderSession]]:
    made = set()
    for given in _configs(provider):
        key = tuple(v for k, v in sorted(given.items()) if k != "symbol")
        if key in made:
            continue
        session = _session(provider, given)
        if session is not None:
            made.add(key)
            yield given, session


def _typed(records: list[dict[str, Any]]) -> list[dict[str, tuple[str, str]]]:
    """Records with every value as (type, repr): equal only if keys, values and types are."""
    return [{k: (type(v).__name__, repr(v)) for k, v in r.items()} for r in records]


def _run(session: ProviderSession, frames: list[str | bytes]) -> list[tuple[Any, Any, Any]]:
    out = []
    for frame in frames:
        records = session.receive(frame)
        out.append((_typed(records), session.events_received(), session.data_to_send()))
    return out


def _frames(provider: str) -> list[str | bytes]:
    if provider == "demo":
        return list(DEMO_FRAMES)
    return [s.frame for s in load_fixture(provider).values() if s.dir == "in"]


@pytest.fixture
def stdlib_decoder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The decoder as it was: the stdlib's ``json.loads`` for every frame."""
    monkeypatch.setattr(_json, "_fast", json.loads)
    monkeypatch.setattr(_json, "_FastError", json.JSONDecodeError)
    yield


PROVIDERS = [*sorted(p.stem for p in FIXTURES.glob("*.jsonl")), "demo"]


def _outputs(provider: str, as_bytes: bool = False) -> list[Any]:
    frames = _frames(provider)
    if as_bytes:
        frames = [f.encode() if isinstance(f, str) else f for f in frames]
    return [(given, _run(session, frames)) for given, session in _sessions(provider)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_fixture_frame_gives_the_records_and_events_of_the_stdlib_decoder(
    provider: str, request: pytest.FixtureRequest
) -> None:
    """Every fixture frame, through every session configuration: orjson's output equals the
    stdlib's, records (keys, values, types), events and frames to send alike."""
    new = _outputs(provider)
    request.getfixturevalue("stdlib_decoder")
    old = _outputs(provider)
    assert len(new) == len(old) >= 1
    records = 0
    for (given, new_run), (_, old_run) in zip(new, old, strict=True):
        assert new_run == old_run, given
        records += sum(len(step[0]) for step in new_run)
    assert records > 0  # the fixtures exercise the record builders, not only status frames


def _without_excerpts(run: list[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, Any]]:
    """A malformed frame's excerpt shows bytes as hex: compare what it says, not the excerpt."""
    return [
        (
            records,
            [MalformedFrame(e.reason, "") if isinstance(e, MalformedFrame) else e for e in events],
            sent,
        )
        for records, events, sent in run
    ]


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p not in BINARY_AWARE])
def test_text_frames_as_bytes_give_the_same_records(provider: str) -> None:
    """A JSON session given a text frame's UTF-8 bytes (no decode to str) gives what the str
    gives: records, events and frames to send."""
    as_text = _outputs(provider)
    as_bytes = _outputs(provider, as_bytes=True)
    for (given, text_run), (_, bytes_run) in zip(as_text, as_bytes, strict=True):
        assert _without_excerpts(bytes_run) == _without_excerpts(text_run), given


@pytest.mark.parametrize(
    "text",
    ["[1.5, NaN, -Infinity, 1e400]", '{"a": "\\ud800"}', "[18446744073709551615]", '{"b": [1]}'],
)
def test_loads_reads_what_the_stdlib_reads(text: str) -> None:
    """Documents orjson refuses (NaN, 1e400, lone surrogates) still decode as the stdlib does."""
    expected = json.loads(text)
    for frame in (text, text.encode("utf-8", "surrogatepass")):
        assert repr(json_loads(frame)) == repr(expected)


def test_loads_raises_the_stdlib_error_for_what_neither_reads() -> None:
    """A frame no decoder reads raises json.JSONDecodeError with the stdlib's message."""
    with pytest.raises(json.JSONDecodeError) as info:
        json_loads(b"[1,")
    with pytest.raises(json.JSONDecodeError) as stdlib:
        json.loads(b"[1,")
    assert type(info.value) is json.JSONDecodeError
    assert str(info.value) == str(stdlib.value)


def _demo_batch(channel: str, n: int) -> str:
    """A demo frame of ``n`` events of ``channel`` (built by us, as the demo server makes them)."""
    events = []
    for i in range(n):
        base = {"ev": channel, "sym": ("BTCUSD", "ETHUSD")[i % 2], "x": "DEMO", "t": 1_7e12 + i}
        if channel == "T":
            base.update(p=65000.25 + i, s=i or 1)
        else:
            base.update(bp=1.5 + i, bs=2, ap=1.75 + i, **{"as": 3.5})
        events.append({**base, "t": int(base["t"])})
    return json.dumps(events, separators=(",", ":"))


def _batches(provider: str) -> list[str]:
    """Frames of up to 50 events of one type, from the provider's sample elements repeated
    (built by us from its fixture, as a busy feed batches them), then one of every type."""
    frames = [*_frames(provider), _demo_batch("T", 50), _demo_batch("Q", 50)]
    by_type: dict[str, list[Any]] = {}
    for frame in frames:
        try:
            data = json.loads(frame)
        except ValueError:
            continue
        if type(data) is list:
            for item in data:
                if isinstance(item, dict) and isinstance(item.get("ev"), str):
                    by_type.setdefault(item["ev"], []).append(item)
    out = [json.dumps((items * 50)[:50]) for items in by_type.values()]
    out.append(json.dumps([items[0] for items in by_type.values()]))  # every type in one frame
    return out


def _counting(func: Any, calls: list[int]) -> Any:
    """``func``, noting each call in ``calls``."""

    def wrapper(*args: Any) -> Any:
        calls.append(1)
        return func(*args)

    return wrapper


@pytest.mark.parametrize("provider", ["demo", "polygon"])
def test_one_pass_build_equals_the_element_by_element_path(provider: str) -> None:
    """A batched session's one-pass build of a frame gives exactly what its element-by-element
    path (the loop it replaced, kept for status, other channels and bad elements) gives:
    records (keys, values, types), events and frames to send, for every session
    configuration and every fixture frame."""
    frames = [*_frames(provider), *_batches(provider)]
    one_pass = 0
    for given, fast in _sessions(provider):
        each = _session(provider, given)
        assert each is not None
        slow_calls: list[int] = []
        fast._parse_each = _counting(fast._parse_each, slow_calls)  # type: ignore[attr-defined]
        for frame in frames:
            try:
                data = json_loads(frame)
            except ValueError:
                continue  # not JSON: no path builds anything
            if type(data) is not list:
                continue
            calls = len(slow_calls)
            records = fast.receive(frame)
            assert _typed(records) == _typed(each._parse_each(data, frame)), (given, frame)  # type: ignore[attr-defined]
            assert fast.events_received() == each.events_received(), (given, frame)
            assert fast.data_to_send() == each.data_to_send(), (given, frame)
            if len(data) == 50 and len(records) == 50 and len(slow_calls) == calls:
                one_pass += 1
    assert one_pass >= 2  # full batches went through the one-pass build


def _old_crypto_conditions(conditions: Any) -> str | None:
    """Polygon crypto trade conditions as the parser read them before its [1]/[2] shortcut."""
    from obbws_providers.polygon._codes import CRYPTO_CONDITIONS
    from obbws_providers.polygon._records import _names

    if not conditions:
        return None
    codes = [c for c in conditions if c] if len(conditions) > 1 else conditions
    return _names(codes, CRYPTO_CONDITIONS) if codes and codes != [0] else None


@pytest.mark.parametrize(
    "conditions",
    [
        [1],
        [2],
        [0],
        [],
        None,
        [0, 2],
        [2, 1],
        [7],
        [0.0],
        [False],
        [None],
        ["2"],
        3,
        "12",
        {"a": 1},
    ],
)
def test_polygon_crypto_trade_conditions_read_as_before(conditions: Any) -> None:
    """The one-code shortcut of Polygon's crypto trades names every condition list (or bad
    value) exactly as the general path did: the same name, absence or error."""
    from obbws_providers.polygon._records import _crypto_trade

    event = {"ev": "XT", "pair": "BTC-USD", "p": 1.5, "s": 2.0, "t": 1, "x": 1, "c": conditions}
    try:
        expected: Any = _old_crypto_conditions(conditions)
    except Exception as exc:  # the element was malformed before: it must still be
        with pytest.raises(type(exc)):
            _crypto_trade(event)
        return
    assert _crypto_trade(event).get("conditions") == expected
