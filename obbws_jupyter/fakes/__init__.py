"""Fake provider servers: protocol-faithful stand-ins for real providers on 127.0.0.1.

Each module serves one provider's real wire protocol (paths, auth, acknowledgements,
heartbeats, errors, every data message type the provider's session parses) with prices from the
offline market, so the real provider sessions are tested end to end without keys or internet;
the notebooks, the benchmarks and Binder use them too. All are :class:`FakeServer` subclasses
with the same test controls (drop, reset, inject, pause, rate, wait_for) and a sync
:class:`ServerHandle`. ``python -m obbws_jupyter.fakes.<provider> --port 0`` serves one from a
shell.
"""

from __future__ import annotations

from obbws_jupyter.fakes._base import (
    FakeClient,
    FakeServer,
    ServerHandle,
    now_ms,
    run_cli,
    start_server,
)

__all__ = ["FakeClient", "FakeServer", "ServerHandle", "now_ms", "run_cli", "start_server"]
