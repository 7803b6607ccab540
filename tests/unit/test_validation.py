"""Bad input at the door: every refusal is an ObbwsError naming the parameter, raised before
anything starts (issue #7, "unclear errors")."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import _api as api
from obbws_jupyter._broadcast import BroadcastServer
from obbws_jupyter.client import WebSocketClient
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsError
from obbws_jupyter.listen import listen
from tests.conftest import TIMEOUT
from tests.integration._wire import FIELDS


@pytest.mark.parametrize("port", [1.9, 6666.0, float("inf"), float("nan"), 10**30, -1, "66a"])
def test_bad_broadcast_port_is_refused_not_truncated(port: object) -> None:
    """A float, infinite, huge or negative broadcast_port is refused naming the parameter."""
    with pytest.raises(InvalidParameterError, match="broadcast_port"):
        obbws.create_connection(provider="demo", name="p", symbol="btcusd", broadcast_port=port)
    assert obbws.default_registry().names() == []


@pytest.mark.parametrize("rate", [10**400, float("inf"), -1, "fast"])
def test_bad_rate_is_refused_naming_it(rate: object) -> None:
    """A huge, infinite, negative or non-numeric rate is an InvalidParameterError naming rate."""
    with pytest.raises(InvalidParameterError, match="rate"):
        WebSocketClient("demo", symbol="btcusd", rate=rate)


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("\ud800", "surrogate"),
        ("to\x00ken", "NUL"),
        ("x" * 5000, "long"),
        ("", "empty"),
        (123, "string"),
    ],
)
def test_bad_auth_tokens_are_refused_at_the_door(token: object, match: str) -> None:
    """Tokens with lone surrogates, NUL bytes or huge sizes are refused by every entry point."""
    with pytest.raises(InvalidParameterError, match=rf"auth_token.*{match}"):
        obbws.create_connection(provider="demo", name="t", symbol="btcusd", auth_token=token)
    with pytest.raises(InvalidParameterError, match="auth_token"):
        WebSocketClient("demo", symbol="btcusd", auth_token=token)
    with pytest.raises(InvalidParameterError, match="auth_token"):
        BroadcastServer(fields=FIELDS, auth_token=token)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="auth_token"):
        listen("ws://127.0.0.1:1", auth_token=token, block=False)  # type: ignore[arg-type]
    assert obbws.default_registry().names() == []


@pytest.mark.parametrize(
    ("name", "match"),
    [("\udcff", "surrogate"), ("a\x00b", "NUL"), ("n" * 1000, "long"), ("  ", "empty")],
)
def test_bad_connection_names_are_refused(name: str, match: str) -> None:
    """Names with lone surrogates, NUL bytes, huge sizes or only blanks are refused."""
    with pytest.raises(InvalidParameterError, match=rf"name.*{match}"):
        obbws.create_connection(provider="demo", name=name, symbol="btcusd")
    assert obbws.default_registry().names() == []


def test_a_surrogate_token_on_an_endpoint_is_unauthorized_not_a_crash() -> None:
    """An endpoint called with a malformed token refuses it with UnauthorizedError."""
    from obbws_jupyter.exceptions import UnauthorizedError

    client = WebSocketClient("demo", "guarded", symbol="btcusd", auth_token="good")
    try:
        assert client.check_token("\ud800") is False
        obbws.default_registry().add(client)
        with pytest.raises(UnauthorizedError):
            api.get_client_status("guarded", auth_token="\ud800")
        with pytest.raises(UnauthorizedError):
            api.kill("guarded", auth_token="\ud800")
        assert api.kill("guarded", auth_token="good").startswith("Client guarded killed")
    finally:
        obbws.default_registry().remove("guarded", client)
        client.close()


def test_record_and_replay_paths_refuse_fifos(tmp_path: pathlib.Path) -> None:
    """A FIFO as a replay capture or record file is refused instead of blocking forever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            WebSocketClient("replay", path=str(fifo))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert errors, "opening a FIFO as the replay capture blocked"
    assert isinstance(errors[0], ObbwsError) and "regular file" in str(errors[0])
    with pytest.raises(InvalidParameterError, match="record_file"):
        WebSocketClient("demo", symbol="btcusd", record_file=fifo)


@pytest.mark.parametrize("path", ["cap\x00.jsonl", "~nosuchuser-obbws/cap.jsonl"])
def test_bad_record_paths_name_the_parameter(path: str) -> None:
    """A NUL byte or an unknown ~user in record_file is an InvalidParameterError naming it."""
    with pytest.raises(InvalidParameterError, match="record_file"):
        WebSocketClient("demo", symbol="btcusd", record_file=path)


def test_a_nul_in_the_replay_path_is_refused_naming_it() -> None:
    """A NUL byte in the replay capture path is an InvalidParameterError, not a ValueError."""
    with pytest.raises(InvalidParameterError, match="capture"):
        WebSocketClient("replay", path="cap\x00.jsonl")
