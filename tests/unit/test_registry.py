"""The Registry of named connections: thread-safe add/get/remove, names in use, kill_all,
isolated registries, and the handles it gives out. No sockets: clients are built, never
connected."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import Registry, default_registry
from obbws_jupyter.client import WebSocketClient
from obbws_jupyter.exceptions import (
    NameInUseError,
    UnauthorizedError,
    UnknownConnectionError,
)
from tests.conftest import TIMEOUT


def _client(name: str, token: str | None = None) -> WebSocketClient:
    return WebSocketClient("demo", name, symbol="btcusd", auth_token=token)


def _together(target: Callable[[Any], None], args: list[Any]) -> None:
    """Run ``target(arg)`` for every arg in its own thread, all released at once."""
    barrier = threading.Barrier(len(args))

    def run(arg: Any) -> None:
        barrier.wait(TIMEOUT)
        target(arg)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)


@pytest.fixture
def registry() -> Iterator[Registry]:
    """An isolated registry, emptied (and its clients closed) after the test."""
    reg = Registry()
    yield reg
    reg.kill_all()


def test_add_get_find_remove(registry: Registry) -> None:
    """add registers by name, get/find return the client, remove forgets and closes it."""
    client = _client("a")
    registry.add(client)
    assert registry.names() == ["a"] and "a" in registry and bool(Registry()) is True
    assert registry.get("a") is client and registry.find("a") is client
    assert registry.remove("a") == 0
    assert client.closed and registry.names() == [] and registry.find("a") is None
    assert registry.remove("a") == 0  # forgetting twice is harmless


def test_a_taken_name_is_refused_with_what_to_do(registry: Registry) -> None:
    """Adding a second client under a registered name raises NameInUseError naming the fixes."""
    first, second = _client("same"), _client("same")
    registry.add(first)
    try:
        with pytest.raises(NameInUseError, match=r"restart_connection\('same'\)"):
            registry.add(second)
        assert registry.get("same") is first
    finally:
        second.close()


def test_a_name_being_created_is_in_use(registry: Registry) -> None:
    """While create_connection holds a name, adding that name is refused."""
    client = _client("busy")
    try:
        with registry._reserve("busy"), pytest.raises(NameInUseError, match="being created"):
            registry.add(client)
        registry.add(client)  # released: now it can be added
        assert registry.names() == ["busy"]
    finally:
        registry.remove("busy")


def test_concurrent_adds_of_one_name_register_exactly_one(registry: Registry) -> None:
    """Eight threads adding clients under one name: one wins, seven get NameInUseError."""
    clients = [_client("race") for _ in range(8)]
    won: list[WebSocketClient] = []
    refused: list[WebSocketClient] = []

    def attempt(client: WebSocketClient) -> None:
        try:
            registry.add(client)
            won.append(client)
        except NameInUseError:
            refused.append(client)

    _together(attempt, clients)
    try:
        assert len(won) == 1 and len(refused) == 7
        assert registry.get("race") is won[0]
    finally:
        for client in refused:
            client.close()


def test_concurrent_adds_and_removes_keep_the_registry_consistent(registry: Registry) -> None:
    """Threads adding and removing their own names leave exactly the names not removed."""
    clients = {f"c{i}": _client(f"c{i}") for i in range(12)}

    def churn(name: str) -> None:
        registry.add(clients[name])
        if int(name[1:]) % 2:
            registry.remove(name)

    _together(churn, list(clients))
    kept = sorted(n for n in clients if int(n[1:]) % 2 == 0)
    assert sorted(registry.names()) == kept
    assert all(clients[n].closed == (n not in kept) for n in clients)


def test_remove_leaves_a_newer_client_under_the_name_alone(registry: Registry) -> None:
    """remove(name, client) does nothing when the name now holds another client."""
    old, new = _client("n"), _client("n")
    try:
        registry.add(new)
        assert registry.remove("n", old) == 0
        assert registry.get("n") is new and not new.closed
    finally:
        old.close()


def test_kill_all_closes_every_client_and_counts_them(registry: Registry) -> None:
    """kill_all forgets and closes every registered client, token or not."""
    clients = [_client("x"), _client("y", token="secret")]
    for client in clients:
        registry.add(client)
    assert registry.kill_all() == 2
    assert registry.names() == [] and all(c.closed for c in clients)
    assert registry.kill_all() == 0


def test_get_checks_the_token(registry: Registry) -> None:
    """get raises UnknownConnectionError for a name not there, UnauthorizedError for a token."""
    registry.add(_client("t", token="good"))
    with pytest.raises(UnknownConnectionError, match="nope"):
        registry.get("nope")
    with pytest.raises(UnauthorizedError, match="required"):
        registry.get("t")
    with pytest.raises(UnauthorizedError, match="Invalid"):
        registry.get("t", "bad")
    assert registry.get("t", "good").name == "t"


def test_registries_are_isolated_from_each_other_and_the_default(registry: Registry) -> None:
    """The same name lives in two registries at once; the default registry sees neither."""
    other = Registry()
    try:
        registry.add(_client("dup"))
        other.add(_client("dup"))
        assert registry.get("dup") is not other.get("dup")
        assert "dup" not in default_registry()
        with pytest.raises(UnknownConnectionError):
            obbws.get_client("dup")
    finally:
        other.kill_all()


def test_connection_handles_act_on_their_own_registry(registry: Registry) -> None:
    """registry.connection(name) gives a Connection whose endpoints use that registry."""
    client = _client("h", token="tok")
    registry.add(client)
    conn = registry.connection("h", "tok")
    assert conn.registry is registry and conn.get_client() is client
    assert conn.status.name == "h" and conn.status.state == "idle"
    with pytest.raises(UnauthorizedError):
        registry.connection("h", "wrong")
    assert conn.kill() == "Client h killed."
    assert client.closed and "h" not in registry


def test_the_default_registry_is_one_per_process() -> None:
    """default_registry() returns the same object each time; the module functions use it."""
    assert default_registry() is default_registry()
    client = _client("mod")
    default_registry().add(client)
    assert obbws.get_client("mod") is client
    assert obbws.kill("mod") == "Client mod killed."
    assert client.closed
