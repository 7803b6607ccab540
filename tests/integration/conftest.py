"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from obbws_jupyter import runtime
from obbws_jupyter._broadcast import BroadcastServer
from tests.conftest import TIMEOUT
from tests.integration._wire import FIELDS


@pytest.fixture
def make_server() -> Iterator[Callable[..., BroadcastServer]]:
    """Start BroadcastServers for the small test schema (port 0 unless given); stop them after
    the test."""
    servers: list[BroadcastServer] = []

    def make(**kwargs: Any) -> BroadcastServer:
        kwargs.setdefault("port", 0)
        server = BroadcastServer(fields=FIELDS, **kwargs)
        servers.append(server)
        runtime.run(server.start(), TIMEOUT)
        return server

    yield make
    for server in servers:
        runtime.run(server.stop(), 3 * TIMEOUT)
