"""Secrets never leak, and the broadcast resists token guessing (issue #7, "security")."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

import obbws_jupyter as obbws
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsError
from obbws_jupyter.listen import listen
from obbws_jupyter.offline.demo_server import start_demo_server
from tests.conftest import TIMEOUT, RecordWaiter
from tests.integration._wire import TOKEN
from tests.integration.test_broadcast import refused_status

pytestmark = pytest.mark.integration

API_KEY = "sk-live-9f8e7d6c5b4a3210-KEY"
PASSWORD = "pa55-Word-xyz"


@pytest.fixture
def debug_everything(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """DEBUG on for every logger (ours, websockets', asyncio's), all captured."""
    names = ["", "websockets", "websockets.client", "websockets.server", "asyncio"]
    names += [
        "obbws_jupyter.stream.websockets",
        "obbws_jupyter.broadcast.websockets",
        "obbws_jupyter.listen.websockets",
        "obbws_jupyter.fakes.wire",
    ]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(("obbws", "websockets"))]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _all_logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records) + caplog.text


def test_provider_api_key_never_appears_in_debug_logs(
    debug_everything: pytest.LogCaptureFixture,
) -> None:
    """With DEBUG on everywhere, the API key is in no log line (client, server, websockets)."""
    conn = obbws.create_connection(
        provider="demo", name="k", symbol="btcusd", api_key=API_KEY, rate=200
    )
    waiter = RecordWaiter(conn.get_client())
    assert waiter.wait(5)
    client = conn.get_client()
    client.disconnect()
    client.connect()  # a second login: the key is sent again
    assert waiter.wait_more(5)
    status = repr(conn.status) + repr(conn) + repr(client)
    conn.kill()
    logged = _all_logged(debug_everything)
    assert logged.count('"action": "auth"') >= 4  # sent and received twice, logged ...
    assert API_KEY not in logged  # ... masked
    assert API_KEY[:20] not in logged
    assert API_KEY not in status


def test_password_in_provider_url_is_masked_everywhere(
    debug_everything: pytest.LogCaptureFixture,
) -> None:
    """A password in the provider URL is masked in status.url, errors and every log line."""
    server = start_demo_server(rate=200.0)
    try:
        url = f"ws://user:{PASSWORD}@127.0.0.1:{server.server.port}/crypto"
        conn = obbws.create_connection(provider="demo", name="pw", symbol="btcusd", url=url)
        assert conn.status.url is not None and PASSWORD not in conn.status.url
        assert "user:********@" in conn.status.url
        conn.kill()
        # an error path: nothing listens on this port any more
        port = server.server.port
        server.close()
        with pytest.raises(ObbwsError) as info:
            obbws.create_connection(
                provider="demo",
                name="pw2",
                symbol="btcusd",
                url=f"ws://user:{PASSWORD}@127.0.0.1:{port}/crypto",
                connect_timeout=2,
            )
        assert PASSWORD not in str(info.value)
    finally:
        server.close()
    logged = _all_logged(debug_everything)
    basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert PASSWORD not in logged and basic not in logged


# -- broadcast handshakes --------------------------------------------------------------------


def test_handshake_with_several_tokens_is_refused(make_server) -> None:  # type: ignore[no-untyped-def]
    """Exactly one token per handshake: several query tokens, or query plus header, are refused
    even when one of them is right."""
    server = make_server(auth_token=TOKEN)
    guesses = "&".join(f"auth_token=guess{i}" for i in range(50))
    assert refused_status(f"{server.address}/?{guesses}&auth_token={TOKEN}") == 400
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert refused_status(f"{server.address}/?auth_token=guess", additional_headers=headers) == 400
    two_headers = [("Authorization", "Bearer guess"), ("Authorization", f"Bearer {TOKEN}")]
    assert refused_status(server.address, additional_headers=two_headers) == 400
    assert server.stats["listeners_total"] == 0


def test_failed_token_attempts_are_rate_limited_per_address(make_server) -> None:  # type: ignore[no-untyped-def]
    """After too many wrong tokens from one address, even the right token is refused (429)
    until the window passes."""
    server = make_server(auth_token=TOKEN, max_auth_failures=5, auth_failure_window=0.5)
    for i in range(5):
        assert refused_status(f"{server.address}/?auth_token=guess{i}") == 403
    assert refused_status(f"{server.address}/?auth_token={TOKEN}") == 429
    assert server.stats["rate_limited"] >= 1

    async def accepted_later() -> bool:
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    async with connect(f"{server.address}/?auth_token={TOKEN}"):
                        return True
                except Exception:
                    await asyncio.sleep(0.1)

    assert asyncio.run(accepted_later())


def test_broadcast_on_a_public_address_without_token_is_refused() -> None:
    """Broadcasting on a non-loopback address without a token needs allow_insecure=True."""
    conn = obbws.create_connection(provider="demo", name="pub", symbol="btcusd")
    with pytest.raises(InvalidParameterError, match="allow_insecure"):
        conn.start_broadcasting(host="0.0.0.0", port=0)
    assert not conn.status.is_broadcasting
    status = conn.start_broadcasting(host="0.0.0.0", port=0, allow_insecure=True)
    assert status.is_broadcasting
    conn.kill()
    guarded = obbws.create_connection(
        provider="demo", name="tok", symbol="btcusd", auth_token=TOKEN
    )
    assert guarded.start_broadcasting(host="0.0.0.0", port=0).is_broadcasting


def test_listener_token_never_leaks_into_debug_logs(
    debug_everything: pytest.LogCaptureFixture,
) -> None:
    """A broadcast token sent by listen() is masked in every DEBUG line, both sides."""
    conn = obbws.create_connection(
        provider="demo", name="bt", symbol="btcusd", auth_token=TOKEN, rate=200
    )
    address = conn.start_broadcasting(port=0).broadcast_address
    listener = listen(address, auth_token=TOKEN, block=False)
    assert listener.wait(3, timeout=TIMEOUT)
    listener.stop()
    conn.kill()
    assert TOKEN not in _all_logged(debug_everything)
