"""The sans-I/O provider base: parameters, symbols, timestamps and the session state machine."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from obbws_jupyter.exceptions import InvalidParameterError, SymbolError
from obbws_jupyter.protocol import (
    OPENBB_SETTINGS_ENV,
    Authenticated,
    Field,
    FieldType,
    MalformedFrame,
    MissingCredentialsError,
    Param,
    ProviderSession,
    ProviderSpec,
    iso_to_ns,
    ms_to_ns,
    openbb_settings_path,
    split_symbols,
)


class EchoSession(ProviderSession):
    """A minimal provider: auth on open, one JSON frame per subscribe, data as {"s","p","t"}."""

    provider = "echo"
    fields = (
        Field("date", FieldType.TIMESTAMP),
        Field("symbol", FieldType.STRING),
        Field("price", FieldType.FLOAT),
    )

    def url(self) -> str:
        return "ws://example.invalid"

    def normalize_symbol(self, symbol: str) -> str:
        if not symbol.isalnum():
            raise SymbolError(f"bad symbol {symbol!r}")
        return symbol.upper()

    def auth_frames(self) -> list[str | bytes]:
        return [json.dumps({"auth": "k"})]

    def subscribe_frames(self, symbols: Sequence[str]) -> list[str | bytes]:
        return [json.dumps({"sub": list(symbols)})]

    def unsubscribe_frames(self, symbols: Sequence[str]) -> list[str | bytes]:
        return [json.dumps({"unsub": list(symbols)})]

    def parse(self, frame: str | bytes) -> list[dict]:
        msg = json.loads(frame)
        if msg.get("ok"):
            self._authenticated("welcome")
            return []
        return [{"date": ms_to_ns(msg["t"]), "symbol": msg["s"], "price": float(msg["p"])}]


def test_split_symbols_keeps_order_and_drops_blanks() -> None:
    """Comma strings and lists split the same way, order kept, duplicates dropped."""
    assert split_symbols(" btcusd, ethusd,,btcusd ") == ["btcusd", "ethusd"]
    assert split_symbols(["a", " b "]) == ["a", "b"]
    assert split_symbols(None) == []
    with pytest.raises(SymbolError):
        split_symbols([1])  # type: ignore[list-item]


def test_timestamps_become_int_nanoseconds() -> None:
    """ms, us and ns epochs and ISO strings with nanoseconds all give exact int ns UTC."""
    assert ms_to_ns(1_700_000_000_000) == 1_700_000_000_000_000_000
    assert ms_to_ns(1_700_000_000_000_000) == 1_700_000_000_000_000_000
    assert ms_to_ns(1_700_000_000_000_000_000) == 1_700_000_000_000_000_000
    assert iso_to_ns("2019-01-30T13:33:45.594808294-05:00") == 1548873225594808294
    assert iso_to_ns("2024-01-01T00:00:00Z") == 1704067200 * 10**9
    with pytest.raises(ValueError):
        iso_to_ns("2024-01-01T00:00:00")


def test_session_subscribes_only_after_authentication() -> None:
    """Auth goes out on open; wanted symbols are sent once the provider accepts the key."""
    session = EchoSession({"symbol": "btc,eth"})
    assert session.symbols == ("BTC", "ETH")
    session.connection_made()
    assert session.data_to_send() == ['{"auth": "k"}']
    assert session.subscribe("sol") == ["SOL"]
    assert session.data_to_send() == []  # not yet authenticated
    session.receive('{"ok": true}')
    assert session.events_received() == [Authenticated("welcome")]
    assert session.data_to_send() == ['{"sub": ["BTC", "ETH", "SOL"]}']


def test_reconnect_replays_every_wanted_symbol() -> None:
    """A new connection re-authenticates and re-subscribes the current symbol set."""
    session = EchoSession({"symbol": "btc"})
    session.connection_made()
    session.receive('{"ok": true}')
    session.subscribe("eth")
    session.unsubscribe("btc")
    session.data_to_send()
    session.connection_made()
    assert not session.is_authenticated
    session.receive('{"ok": true}')
    assert session.data_to_send() == ['{"auth": "k"}', '{"sub": ["ETH"]}']


def test_malformed_frame_is_an_event_not_an_exception() -> None:
    """A frame the parser cannot read becomes a MalformedFrame event."""
    session = EchoSession({"symbol": "btc"})
    assert session.receive("{nope") == []
    (event,) = session.events_received()
    assert isinstance(event, MalformedFrame) and "JSONDecodeError" in event.reason
    assert session.receive(b"\x00\x01") == []
    assert isinstance(session.events_received()[0], MalformedFrame)


def test_bad_symbol_raises_symbol_error() -> None:
    """normalize_symbol's SymbolError reaches the caller before anything is sent."""
    with pytest.raises(SymbolError):
        EchoSession({"symbol": "b-t-c"})


SPEC = ProviderSpec(
    name="echo",
    description="test",
    session_class=EchoSession,
    params=(
        Param("symbol"),
        Param("asset_type", default="crypto", choices=("crypto", "fx")),
        Param("rate", float, default=1.0),
        Param("api_key", secret=True, env="ECHO_KEY"),
        Param("flag", bool, default=False),
    ),
)


def test_spec_resolves_defaults_env_and_types() -> None:
    """Defaults fill in, env vars supply secrets, strings convert to declared types."""
    out = SPEC.resolve({"symbol": "x", "rate": "2.5", "flag": "true"}, {"ECHO_KEY": "k"})
    assert out == {"symbol": "x", "asset_type": "crypto", "rate": 2.5, "api_key": "k", "flag": True}


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({}, "symbol"),
        ({"symbol": "x", "asset_type": "bonds"}, "crypto, fx"),
        ({"symbol": "x", "rate": "fast"}, "rate"),
        ({"symbol": "x", "bogus": 1}, "bogus"),
    ],
)
def test_spec_rejects_bad_parameters(given: dict, match: str) -> None:
    """Missing, unknown, out-of-choice and mistyped parameters raise InvalidParameterError."""
    with pytest.raises(InvalidParameterError, match=match):
        SPEC.resolve(given, {})


def test_secret_values_never_appear_in_errors() -> None:
    """A secret parameter's bad value is hidden in the error text."""
    spec = ProviderSpec("s", "", EchoSession, (Param("api_key", int, default=0, secret=True),))
    with pytest.raises(InvalidParameterError) as info:
        spec.resolve({"api_key": "sup3r-secret"}, {})
    assert "sup3r-secret" not in str(info.value)


KEYED = ProviderSpec(
    name="keyed",
    description="test",
    session_class=EchoSession,
    params=(
        Param("symbol"),
        Param("api_key", secret=True, env="KEYED_API_KEY", openbb_setting="keyed_api_key"),
    ),
)


def _settings(tmp_path, content: str) -> dict[str, str]:
    path = tmp_path / "user_settings.json"
    path.write_text(content)
    return {OPENBB_SETTINGS_ENV: str(path)}


def test_credentials_come_from_argument_then_env_then_openbb_settings(tmp_path) -> None:
    """An API key is taken from the argument, else the env variable, else OpenBB's file."""
    environ = _settings(tmp_path, '{"credentials": {"keyed_api_key": "from-file"}}')
    assert KEYED.resolve({"symbol": "x", "api_key": "arg"}, environ)["api_key"] == "arg"
    both = {**environ, "KEYED_API_KEY": "from-env"}
    assert KEYED.resolve({"symbol": "x"}, both)["api_key"] == "from-env"
    assert KEYED.resolve({"symbol": "x"}, environ)["api_key"] == "from-file"


def test_openbb_settings_default_path_is_under_home(tmp_path) -> None:
    """Without the override, the file is ~/.openbb_platform/user_settings.json of HOME."""
    folder = tmp_path / ".openbb_platform"
    folder.mkdir()
    (folder / "user_settings.json").write_text('{"credentials": {"keyed_api_key": "k"}}')
    assert openbb_settings_path({"HOME": str(tmp_path)}) == folder / "user_settings.json"
    assert KEYED.resolve({"symbol": "x"}, {"HOME": str(tmp_path)})["api_key"] == "k"


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"credentials": 3}', "{}"])
def test_missing_credentials_name_all_three_places(tmp_path, content: str) -> None:
    """No key anywhere (or an unusable settings file) raises MissingCredentialsError that
    names the argument, the env variable and the OpenBB settings key."""
    with pytest.raises(MissingCredentialsError) as info:
        KEYED.resolve({"symbol": "x"}, _settings(tmp_path, content))
    text = str(info.value)
    assert "api_key=" in text and "KEYED_API_KEY" in text and "keyed_api_key" in text
    assert "user_settings.json" in text
    assert isinstance(info.value, InvalidParameterError)


def test_has_output_says_when_events_or_frames_wait() -> None:
    """has_output is true while events or frames to send wait, false once both are taken."""
    session = EchoSession({})
    assert not session.has_output
    session.connection_made()  # queues the auth frame
    assert session.has_output
    session.data_to_send()
    assert not session.has_output
    session.receive('{"ok": true}')  # Authenticated, an event
    assert session.has_output
    session.events_received()
    assert not session.has_output
    session.receive('{"t": 1, "s": "A", "p": 2}')  # records only
    assert not session.has_output


@pytest.mark.parametrize(
    ("as_bytes", "frame", "expected"),
    [
        (False, "not json", "not json"),
        (False, b"\x00\xffnot json", "00ff6e6f74206a736f6e"),
        (True, "not json", "not json"),
        (True, "née".encode(), "née"),
        (True, b"\xff{", "\ufffd{"),
    ],
)
def test_a_malformed_frame_is_shown_as_text_or_hex(
    as_bytes: bool, frame: str | bytes, expected: str
) -> None:
    """A bad frame's excerpt is its text (a text frame read as bytes too), binary in hex."""
    session = EchoSession({})
    session.text_as_bytes = as_bytes  # type: ignore[misc]
    assert session.receive(frame) == []
    [event] = session.events_received()
    assert isinstance(event, MalformedFrame)
    assert event.excerpt == expected
