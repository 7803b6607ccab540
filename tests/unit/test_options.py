"""ClientOptions: the client's own options as one validated object, kept apart from the
provider's parameters (a provider ``Param("tz")`` is never silently taken by the client)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import ClientOptions
from obbws_jupyter._options import split_options
from obbws_jupyter.client import WebSocketClient
from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.protocol import Param, _lookup, available_providers
from obbws_providers import demo


@pytest.fixture
def tz_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A provider (the demo session) that declares its own ``tz`` parameter, for this test."""
    spec = dataclasses.replace(
        demo.PROVIDER, name="tzdemo", params=(*demo.PROVIDER.params, Param("tz", str, "UTC"))
    )
    available_providers()  # load the entry points first
    monkeypatch.setitem(_lookup._specs, "tzdemo", spec)
    yield "tzdemo"


def test_defaults_are_openbb_s_and_values_come_back_typed() -> None:
    """The defaults match create_connection's; text and ints are turned into their types."""
    opts = ClientOptions()
    assert (opts.limit, opts.tz, opts.table_name, opts.save_results) == (
        1000,
        "America/New_York",
        "records",
        False,
    )
    typed = ClientOptions(limit="None", save_results="True", sleep_time=1, connect_kwargs="{}")
    assert typed.limit is None and typed.save_results is True
    assert typed.sleep_time == 1.0 and isinstance(typed.sleep_time, float)
    assert typed.connect_kwargs == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": 0}, "limit"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"sleep_time": 0}, "sleep_time"),
        ({"connect_timeout": -1}, "connect_timeout"),
        ({"max_reconnects": -2}, "max_reconnects"),
        ({"reconnect_cap": "soon"}, "reconnect_cap"),
        ({"stale_timeout": 0}, "stale_timeout"),
        ({"connect_kwargs": "{not json"}, "Invalid JSON"),
        ({"connect_kwargs": {"pign_interval": 1}}, "pign_interval"),
        ({"http_client": 5}, "http_client"),
        ({"save_results": "maybe"}, "save_results"),
    ],
)
def test_bad_values_are_refused_naming_the_option(kwargs: dict[str, Any], match: str) -> None:
    """Each invalid option raises InvalidParameterError naming it, when the object is built."""
    with pytest.raises(InvalidParameterError, match=match):
        ClientOptions(**kwargs)


def test_options_are_frozen_comparable_and_replaced_by_copy() -> None:
    """Options cannot be changed in place; replace() validates a copy; equal ones hash equal."""
    opts = ClientOptions(limit=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.limit = 6  # type: ignore[misc]
    changed = opts.replace(tz="UTC")
    assert (changed.tz, changed.limit, opts.tz) == ("UTC", 5, "America/New_York")
    assert ClientOptions(limit=5) == opts and hash(ClientOptions(limit=5)) == hash(opts)
    with pytest.raises(InvalidParameterError, match="bogus"):
        opts.replace(bogus=1)
    with pytest.raises(InvalidParameterError, match="limit"):
        opts.replace(limit=0)


def test_the_repr_leaves_out_connect_kwargs() -> None:
    """connect_kwargs can carry auth headers, so the options' repr does not show them."""
    opts = ClientOptions(connect_kwargs={"additional_headers": {"Authorization": "Bearer s3cr3t"}})
    assert "s3cr3t" not in repr(opts) and "limit=1000" in repr(opts)


def test_split_sorts_keywords_into_options_and_provider_params() -> None:
    """Option names go to the options, the other keys (and provider_params) to the provider."""
    opts, params = split_options(
        {"tz": "UTC", "symbol": "btcusd", "limit": 7}, provider_params={"feed": "trade"}
    )
    assert (opts.tz, opts.limit) == ("UTC", 7)
    assert params == {"symbol": "btcusd", "feed": "trade"}


@pytest.mark.parametrize(
    ("kwargs", "options", "provider_params", "match"),
    [
        ({"tz": "UTC"}, ClientOptions(), None, "given both in options="),
        ({"symbol": "a"}, None, {"symbol": "b"}, "given both in provider_params="),
        ({}, {"tz": "UTC"}, None, "options must be an obbws_jupyter.ClientOptions"),
        ({}, None, ["symbol"], "provider_params must be a dict"),
    ],
)
def test_split_refuses_what_is_given_twice_or_of_the_wrong_kind(
    kwargs: dict[str, Any], options: Any, provider_params: Any, match: str
) -> None:
    """A value given twice, or options/provider_params of the wrong type, is refused."""
    with pytest.raises(InvalidParameterError, match=match):
        split_options(kwargs, options, provider_params)


def test_the_client_takes_an_options_object() -> None:
    """WebSocketClient(options=...) uses them: tz, limit and the store's table name."""
    opts = ClientOptions(tz="UTC", limit=5, table_name="ticks")
    client = WebSocketClient("demo", "o", symbol="btcusd", options=opts)
    try:
        assert (client.tz, client.limit, client.table_name) == ("UTC", 5, "ticks")
        assert client.options is opts
    finally:
        client.close()


def test_a_provider_param_named_like_an_option_is_not_taken_silently(tz_provider: str) -> None:
    """tz= for a provider that declares tz is refused as ambiguous, saying both ways out."""
    with pytest.raises(InvalidParameterError, match=r"options=ClientOptions\(tz=") as info:
        WebSocketClient(tz_provider, symbol="btcusd", tz="UTC")
    assert "provider_params={'tz': ...}" in str(info.value)
    with pytest.raises(InvalidParameterError, match="both a client option"):
        obbws.create_connection(provider=tz_provider, name="amb", symbol="btcusd", tz="UTC")
    assert obbws.default_registry().names() == []


def test_the_colliding_provider_param_is_reachable_through_provider_params(
    tz_provider: str,
) -> None:
    """provider_params={"tz": ...} reaches the provider while options set the client's tz."""
    client = WebSocketClient(
        tz_provider,
        symbol="btcusd",
        options=ClientOptions(tz="Asia/Tokyo"),
        provider_params={"tz": "Europe/Paris"},
    )
    try:
        assert client.tz == "Asia/Tokyo"
        assert client.provider_params["tz"] == "Europe/Paris"
    finally:
        client.close()


def test_create_connection_refuses_an_option_given_twice_before_starting() -> None:
    """limit=5 with options=ClientOptions(limit=...) is refused; nothing is registered."""
    with pytest.raises(InvalidParameterError, match="limit given both"):
        obbws.create_connection(
            provider="demo", name="twice", symbol="btcusd", limit=5, options=ClientOptions()
        )
    with pytest.raises(InvalidParameterError, match="tz given both"):
        obbws.create_connection(
            provider="demo", name="twice", symbol="btcusd", tz="UTC", options=ClientOptions()
        )
    assert obbws.default_registry().names() == []
