"""Capture files (obbws_jupyter.capture) and the replay provider's session, without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obbws_jupyter.capture import CaptureWriter, read_capture, read_header
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.offline.market import Market
from obbws_jupyter.offline.replay_server import end_marker
from obbws_jupyter.protocol import (
    Authenticated,
    Heartbeat,
    MalformedFrame,
    StreamEnded,
    Subscribed,
    Unsubscribed,
)
from obbws_providers import demo
from obbws_providers.replay import PROVIDER, ReplaySession

CONNECTED = '[{"ev":"status","status":"connected","message":"obbws demo market"}]'
AUTH_OK = '[{"ev":"status","status":"auth_success","message":"authenticated"}]'
SUB_OK = '[{"ev":"status","status":"success","message":"subscribed to: T.BTCUSD,T.ETHUSD"}]'
HEARTBEAT = '[{"ev":"heartbeat","t":1700000000000}]'


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def demo_frames(n: int = 20, symbols: str = "BTCUSD,ETHUSD,SOLUSD") -> list[str]:
    market = Market(seed=3)
    channels = market.channels("T", symbols, "crypto")
    frames = [CONNECTED, AUTH_OK, SUB_OK]
    for i in range(n):
        events = market.events(channels, 10, 1_700_000_000_000 + 15 * i, 15.0)
        frames.append(json.dumps(events))
        if i % 5 == 0:
            frames.append(HEARTBEAT)
    return frames


def write_capture(path: Path, frames: list[str | bytes], **params: object) -> Path:
    params = {"symbol": "btcusd,ethusd", "asset_type": "crypto", "feed": "trade", **params}
    clock = FakeClock()
    with CaptureWriter(
        path, provider="demo", params=params, secret_names=demo.PROVIDER, clock=clock
    ) as writer:
        for frame in frames:
            clock.now += 0.01
            writer.write(frame)
    return path


def replay(path: Path, **given: object) -> ReplaySession:
    params = PROVIDER.resolve({"path": str(path), "url": "ws://127.0.0.1:9/", **given}, {})
    session = PROVIDER.session_class(params)
    assert isinstance(session, ReplaySession)
    return session


# capture format ------------------------------------------------------------------------------


def test_capture_roundtrip_text_and_binary(tmp_path: Path) -> None:
    """Frames written (text and binary) come back in order with their times."""
    path = tmp_path / "c.jsonl"
    clock = FakeClock()
    writer = CaptureWriter(
        path, provider="demo", params={"symbol": "btcusd"}, url="ws://x/crypto", clock=clock
    )
    clock.now += 0.25
    writer.write("[1]")
    clock.now += 0.5
    writer.write(b"\x00\x01\xff")
    assert writer.frames == 2
    writer.close()
    writer.close()  # idempotent
    header, frames = read_capture(path)
    assert header["obbws_capture"] == 1
    assert header["provider"] == "demo"
    assert header["url"] == "ws://x/crypto"
    assert header["started_at"].endswith("+00:00")
    assert list(frames) == [(0.25, "[1]"), (0.75, b"\x00\x01\xff")]


def test_capture_excludes_secrets_and_url(tmp_path: Path) -> None:
    """Secret params (from the ProviderSpec or a set of names) and url are never written."""
    path = tmp_path / "c.jsonl"
    params = {"symbol": "x", "api_key": "s3cret", "url": "ws://h", "feed": "trade"}
    CaptureWriter(path, provider="demo", params=params, secret_names=demo.PROVIDER).close()
    assert read_header(path)["params"] == {"symbol": "x", "feed": "trade"}
    assert "s3cret" not in path.read_text()
    other = tmp_path / "d.jsonl"
    CaptureWriter(
        other, provider="p", params={"symbol": "x", "pin": "1234"}, secret_names={"pin"}
    ).close()
    assert read_header(other)["params"] == {"symbol": "x"}


def test_capture_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing file is refused unless overwrite=True."""
    path = tmp_path / "c.jsonl"
    path.write_text("precious\n")
    with pytest.raises(InvalidParameterError, match="already exists"):
        CaptureWriter(path, provider="demo", params={})
    assert path.read_text() == "precious\n"
    CaptureWriter(path, provider="demo", params={}, overwrite=True).close()
    assert read_header(path)["provider"] == "demo"


@pytest.mark.parametrize(
    "content", ["hello\n", '{"a": 1}\n', "", '{"obbws_capture": 99, "provider": "x"}\n']
)
def test_read_capture_rejects_non_capture_file(tmp_path: Path, content: str) -> None:
    """A file that is not a capture gets InvalidParameterError naming it and the format."""
    path = tmp_path / "notes.txt"
    path.write_text(content)
    with pytest.raises(InvalidParameterError) as info:
        read_capture(path)
    assert "notes.txt" in str(info.value)
    assert "obbws_capture" in str(info.value)


def test_read_capture_missing_file(tmp_path: Path) -> None:
    """A missing capture file is named in the error."""
    with pytest.raises(InvalidParameterError, match="does not exist"):
        read_capture(tmp_path / "nope.jsonl")


def test_read_capture_bad_frame_line_names_line(tmp_path: Path) -> None:
    """A corrupt frame line is reported with its line number; a cut-off last line is skipped."""
    path = write_capture(tmp_path / "c.jsonl", ["[1]", "[2]"])
    with path.open("a") as file:
        file.write('{"t": 1.0, "d": "[3]"}\n{"t": 2.0, "d"')  # crash mid-write
    assert [f for _, f in read_capture(path)[1]] == ["[1]", "[2]", "[3]"]
    with path.open("a") as file:
        file.write("\nnot json\n")
    with pytest.raises(InvalidParameterError, match="line 5"):
        list(read_capture(path)[1])


# replay session ------------------------------------------------------------------------------


def test_replay_yields_the_same_records_as_the_demo_session(tmp_path: Path) -> None:
    """Replaying a capture of demo frames gives exactly the records DemoSession gives."""
    frames = demo_frames()
    path = write_capture(tmp_path / "c.jsonl", list(frames), symbol="*")
    live = demo.PROVIDER.session_class(demo.PROVIDER.resolve({"symbol": "*"}, {}))
    live.connection_made()
    expected = [r for f in frames for r in live.receive(f)]
    session = replay(path)
    session.connection_made()
    got = [r for f in frames for r in session.receive(f)]
    assert got == expected and len(got) == 200
    assert session.fields == live.fields
    assert session.data_to_send() == []  # the inner session's auth/subscribe never go out


def test_replay_authenticates_on_connect_and_acknowledges_symbols(tmp_path: Path) -> None:
    """connection_made -> Authenticated + Subscribed for the capture's symbols, nothing sent."""
    session = replay(write_capture(tmp_path / "c.jsonl", demo_frames(2)))
    session.connection_made()
    events = session.events_received()
    assert isinstance(events[0], Authenticated)
    assert events[1] == Subscribed(("BTCUSD", "ETHUSD"), "replay")
    assert session.symbols == ("BTCUSD", "ETHUSD") and session.is_authenticated
    assert session.data_to_send() == []


def test_replay_swallows_inner_auth_events_and_passes_heartbeats(tmp_path: Path) -> None:
    """Recorded auth/subscribe statuses are not re-reported; heartbeats and bad frames are."""
    session = replay(write_capture(tmp_path / "c.jsonl", demo_frames(1)))
    session.connection_made()
    session.events_received()
    for frame in (CONNECTED, AUTH_OK, SUB_OK, HEARTBEAT, "garbage"):
        session.receive(frame)
    events = session.events_received()
    assert [type(e) for e in events] == [type(events[0]), Heartbeat, MalformedFrame]
    assert events[0].level == "info"  # type: ignore[union-attr]  # the "connected" message
    assert session.data_to_send() == []


def test_end_marker_emits_stream_ended(tmp_path: Path) -> None:
    """The server's end marker becomes StreamEnded("replay finished after N frames")."""
    session = replay(write_capture(tmp_path / "c.jsonl", demo_frames(1)))
    session.connection_made()
    session.events_received()
    assert session.receive(end_marker(42)) == []
    assert session.events_received() == [StreamEnded("replay finished after 42 frames")]


def test_explicit_symbol_filters_records(tmp_path: Path) -> None:
    """With symbol= only those symbols pass; subscribe/unsubscribe change the filter."""
    frames = demo_frames()
    session = replay(write_capture(tmp_path / "c.jsonl", frames, symbol="*"), symbol="eth-usd")
    session.connection_made()
    assert {r["symbol"] for f in frames for r in session.receive(f)} == {"ETHUSD"}
    assert session.subscribe("solusd") == ["SOLUSD"]
    assert session.data_to_send() == []
    assert Subscribed(("SOLUSD",), "replay") in session.events_received()
    assert {r["symbol"] for f in frames for r in session.receive(f)} == {"ETHUSD", "SOLUSD"}


def test_default_passes_everything_until_unsubscribed(tmp_path: Path) -> None:
    """Without symbol= every recorded record passes; an unsubscribed symbol is dropped."""
    frames = demo_frames()
    session = replay(write_capture(tmp_path / "c.jsonl", frames))  # header: btcusd,ethusd
    session.connection_made()
    assert {r["symbol"] for f in frames for r in session.receive(f)} == {
        "BTCUSD",
        "ETHUSD",
        "SOLUSD",
    }
    assert session.unsubscribe("ethusd") == ["ETHUSD"]
    assert Unsubscribed(("ETHUSD",), "replay") in session.events_received()
    assert {r["symbol"] for f in frames for r in session.receive(f)} == {"BTCUSD", "SOLUSD"}
    session.subscribe("ethusd")
    assert "ETHUSD" in {r["symbol"] for f in frames for r in session.receive(f)}


def test_replay_params_and_spec(tmp_path: Path) -> None:
    """Defaults speed=1, loop=False; no watchdog; the embedded server is the replay server."""
    path = write_capture(tmp_path / "c.jsonl", [])
    params = PROVIDER.resolve({"path": str(path)}, {})
    assert params == {"path": str(path), "speed": 1.0, "loop": False, "symbol": None, "url": None}
    assert PROVIDER.embedded_server == "obbws_jupyter.offline.replay_server:serve"
    session = replay(path)
    assert session.stale_after is None
    assert session.url() == "ws://127.0.0.1:9/"


def test_negative_speed_is_rejected(tmp_path: Path) -> None:
    """speed < 0 raises InvalidParameterError."""
    path = write_capture(tmp_path / "c.jsonl", [])
    with pytest.raises(InvalidParameterError, match="speed"):
        PROVIDER.resolve({"path": str(path), "speed": -1}, {})


def test_missing_or_invalid_capture_fails_at_construction(tmp_path: Path) -> None:
    """A missing or non-capture path raises InvalidParameterError naming the path."""
    missing = str(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidParameterError, match=r"missing\.jsonl"):
        PROVIDER.resolve({"path": missing}, {})
    with pytest.raises(InvalidParameterError, match=r"missing\.jsonl"):
        ReplaySession({"path": missing})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2, 3]\n")
    with pytest.raises(InvalidParameterError, match=r"bad\.jsonl.*not a capture"):
        ReplaySession({"path": str(bad)})


def test_unknown_recorded_provider_lists_installed(tmp_path: Path) -> None:
    """A capture from a provider that is not installed names it and the installed ones."""
    path = tmp_path / "c.jsonl"
    CaptureWriter(path, provider="nosuch", params={"symbol": "x"}).close()
    with pytest.raises(InvalidParameterError, match=r"'nosuch'.*installed providers: .*demo"):
        ReplaySession({"path": str(path)})


def test_registered_provider_is_replayed_with_secret_placeholder(
    tmp_path: Path, monkeypatch
) -> None:
    """A provider added with register_provider is replayed (one lookup for both), and its
    required secret is filled with a placeholder, never recorded."""
    from obbws_jupyter.protocol import Param, ProviderSpec, _lookup, available_providers

    spec = ProviderSpec(
        name="keyed",
        description="needs a key",
        session_class=demo.DemoSession,
        params=(*demo.PROVIDER.params[:3], Param("api_key", str, secret=True)),
    )
    available_providers()  # load the entry points first
    monkeypatch.setitem(_lookup._specs, "keyed", spec)  # registered for this test only
    path = tmp_path / "c.jsonl"
    CaptureWriter(path, provider="keyed", params={"symbol": "x", "api_key": "k"}).close()
    session = ReplaySession({"path": str(path)})
    assert session.inner.params["api_key"] == "replay"
    assert session.symbols == ("X",)
