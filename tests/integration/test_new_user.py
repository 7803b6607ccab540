"""What a new user tripped over in a notebook: short error rendering, re-running the
connection cell (if_exists), waiting for data (conn.wait), warnings printed into random cells,
and connections hidden by their auth_token."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import (
    InvalidParameterError,
    NameInUseError,
    NotRunningError,
    ObbwsTimeoutError,
    ProviderConnectionError,
    UnauthorizedError,
)
from obbws_jupyter.models import StatusList
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.integration


def _demo(name: str = "n", **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("symbol", "btcusd,ethusd")
    kwargs.setdefault("rate", 500)
    return obbws.create_connection(provider="demo", name=name, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_errors_render_in_ipython_as_message_and_hint_then_full_with_tb() -> None:
    """_render_traceback_ gives the message and a hint; shown again (%tb) the full traceback."""
    try:
        _demo("dup")
        _demo("dup")
    except NameInUseError as exc:
        error = exc
    short = error._render_traceback_()
    assert len(short) == 2
    assert "NameInUseError" in short[0] and "Client dup already connected" in short[0]
    assert "if_exists" in short[0] and "%tb" in short[1]
    full = "\n".join(error._render_traceback_())
    assert "Traceback" in full and "create_connection" in full


def test_a_refused_connection_prints_nothing_besides_its_exception() -> None:
    """No logging handler configured: the refusal's message is not printed to stderr too."""
    script = textwrap.dedent(f"""
        import obbws_jupyter as obbws
        try:
            obbws.create_connection("demo", "gone", symbol="btcusd",
                                    url="ws://127.0.0.1:{_free_port()}")
        except obbws.ObbwsError as exc:
            print("raised:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=6 * TIMEOUT, check=True)  # fmt: skip
    assert out.stdout.count("Could not connect") == 1
    assert out.stderr == ""


def test_library_warnings_reach_configured_handlers(caplog: pytest.LogCaptureFixture) -> None:
    """The NullHandler does not swallow anything a user's handler asks for."""
    assert any(
        isinstance(h, logging.NullHandler) for h in logging.getLogger("obbws_jupyter").handlers
    )
    with (
        caplog.at_level(logging.ERROR, logger="obbws_jupyter"),
        pytest.raises(ProviderConnectionError),
    ):
        _demo("gone", url=f"ws://127.0.0.1:{_free_port()}")
    assert any("Could not connect" in r.getMessage() for r in caplog.records)


def test_if_exists_error_is_the_default() -> None:
    """Without if_exists a used name is refused, and the message points to if_exists."""
    _demo("cell")
    with pytest.raises(NameInUseError, match="if_exists='replace'"):
        _demo("cell")
    with pytest.raises(InvalidParameterError, match="if_exists='sometimes' is invalid"):
        _demo("cell", if_exists="sometimes")


def test_if_exists_replace_kills_the_old_connection_first() -> None:
    """Re-running the cell with if_exists='replace' gives a fresh connection."""
    old = _demo("cell").get_client()
    new = _demo("cell", if_exists="replace", symbol="solusd").get_client()
    assert new is not old and old.closed
    assert new.symbol == "SOLUSD" and new.is_running


def test_if_exists_reuse_returns_the_same_stream_or_names_the_differences() -> None:
    """'reuse' returns the existing stream when the parameters match, else says which differ."""
    first = _demo("cell", symbol="btcusd,ethusd").get_client()
    again = _demo("cell", symbol="ETH-USD, btc-usd", if_exists="reuse")  # same, normalized
    assert again.get_client() is first
    with pytest.raises(NameInUseError, match=r"\(feed, symbol differ\)"):
        _demo("cell", symbol="solusd", feed="quote", if_exists="reuse")
    assert first.is_running


def test_if_exists_checks_the_auth_token() -> None:
    """Neither 'reuse' nor 'replace' gets around a connection's auth_token."""
    _demo("locked", auth_token="s3cret")
    with pytest.raises(UnauthorizedError):
        _demo("locked", if_exists="reuse")
    with pytest.raises(UnauthorizedError):
        _demo("locked", if_exists="replace")
    assert _demo("locked", auth_token="s3cret", if_exists="reuse").status.is_running


def test_wait_returns_once_enough_records_arrived() -> None:
    """conn.wait(n) returns the number of records that arrived, at least n."""
    conn = _demo(rate=1000)
    started = time.monotonic()
    assert conn.wait(n_records=200, timeout=TIMEOUT) >= 200
    assert time.monotonic() - started < TIMEOUT


def test_wait_times_out_with_what_was_received() -> None:
    """No data: ObbwsTimeoutError says how many of the wanted records came."""
    conn = _demo(rate=0)
    with pytest.raises(ObbwsTimeoutError, match=r"received 0 of 5 records .* within 0.3 s"):
        conn.wait(n_records=5, timeout=0.3)


def test_wait_on_a_stopped_stream_fails_at_once() -> None:
    """A stopped stream cannot deliver: NotRunningError instead of waiting out the timeout."""
    conn = _demo()
    conn.stop_connection()
    started = time.monotonic()
    with pytest.raises(NotRunningError, match="stopped after 0 of 1 records"):
        conn.wait(1, timeout=5 * TIMEOUT)
    assert time.monotonic() - started < TIMEOUT


@pytest.mark.parametrize("n, timeout", [(0, 1.0), (True, 1.0), (1, 0), (1, float("inf"))])
def test_wait_checks_its_arguments(n, timeout) -> None:  # type: ignore[no-untyped-def]
    """Bad n_records or timeout is an InvalidParameterError."""
    conn = _demo()
    with pytest.raises(InvalidParameterError):
        conn.wait(n, timeout)


def test_get_client_status_all_says_how_many_are_hidden(caplog: pytest.LogCaptureFixture) -> None:
    """Connections of other tokens are counted in .hidden, logged and noted in the repr."""
    _demo("open")
    _demo("closed", auth_token="t0ken")
    with caplog.at_level(logging.INFO, logger="obbws_jupyter.api"):
        statuses = obbws.get_client_status("all")
    assert isinstance(statuses, StatusList) and isinstance(statuses, list)
    assert [s.name for s in statuses] == ["open"] and statuses.hidden == 1
    assert "1 connection is hidden" in repr(statuses) and "auth_token" in repr(statuses)
    assert any("1 connection is hidden" in r.getMessage() for r in caplog.records)
    everything = obbws.get_client_status("all", auth_token="t0ken")
    assert [s.name for s in everything] == ["open", "closed"] and everything.hidden == 0
    assert "hidden" not in repr(everything)


def test_messages_say_each_thing_once(caplog: pytest.LogCaptureFixture) -> None:
    """A name in use names the broadcast only when there is one and its remedy once (no hint
    repeating it); a refused reuse says "differs" for one parameter; one hidden connection is
    "it"; a missing symbol's message ends cleanly; stopping a broadcast is logged once."""
    conn = _demo("dup")
    with pytest.raises(NameInUseError) as refused:
        _demo("dup")
    message = str(refused.value)
    assert "Broadcasting to" not in message and message.count("if_exists='replace'") == 1
    assert refused.value._render_traceback_()[1].endswith("%tb shows the full traceback.")
    assert "if_exists" not in refused.value._render_traceback_()[1]
    address = conn.start_broadcasting(port=0).broadcast_address
    with pytest.raises(NameInUseError, match=f"Broadcasting to: {address}. Use another"):
        _demo("dup")
    with pytest.raises(NameInUseError, match=r"\(symbol differs\), so if_exists='reuse' cannot"):
        _demo("dup", symbol="solusd", if_exists="reuse")
    assert StatusList([], hidden=1).hidden_note.endswith("pass auth_token=... to see it.")
    assert StatusList([], hidden=2).hidden_note.endswith("pass auth_token=... to see them.")
    with pytest.raises(InvalidParameterError) as missing:
        obbws.create_connection(provider="demo", name="nosymbol")
    assert str(missing.value) == (
        "demo: parameter 'symbol' is required; pass symbol=<value> "
        "(comma-separated symbols, e.g. btcusd,ethusd; * = all)."
    )
    with caplog.at_level(logging.INFO, logger="obbws_jupyter"):
        conn.stop_broadcasting()
    assert sum("stopped broadcasting" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("colors", ["NoColor", None])
def test_error_rendering_follows_ipython_colours(colors: str | None) -> None:
    """With --colors=NoColor, or with output that is not a terminal, the short error has no
    ANSI escape codes."""
    code = "import obbws_jupyter as o; o.create_connection('nope', 'x')"
    args = [sys.executable, "-m", "IPython", "--no-banner", "-c", code]
    if colors:
        args.insert(3, f"--colors={colors}")
    done = subprocess.run(args, capture_output=True, text=True, timeout=6 * TIMEOUT)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines[0].startswith("UnknownProviderError: Unknown provider 'nope'"), lines
    assert lines[-1].endswith("%tb shows the full traceback.")
    assert "\x1b[" not in done.stdout + done.stderr
