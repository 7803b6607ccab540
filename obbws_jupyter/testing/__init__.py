"""Fake provider servers on 127.0.0.1 for tests, the offline demo, benchmarks and Binder.

- :mod:`~obbws_jupyter.testing.market`: the seedable market simulator (stdlib only).
- :mod:`~obbws_jupyter.testing.demo_server`: the ``demo`` provider's server (``DemoServer``,
  ``start_demo_server`` for sync code, ``python -m obbws_jupyter.testing.demo_server``).
- :mod:`~obbws_jupyter.testing.replay_server`: plays a capture file (``ReplayServer``).

The names below are imported lazily, so ``import obbws_jupyter.testing.market`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DemoServer", "DemoServerHandle", "Market", "ReplayServer", "start_demo_server"]

_LAZY = {
    "DemoServer": "obbws_jupyter.testing.demo_server",
    "DemoServerHandle": "obbws_jupyter.testing.demo_server",
    "Market": "obbws_jupyter.testing.market",
    "ReplayServer": "obbws_jupyter.testing.replay_server",
    "start_demo_server": "obbws_jupyter.testing.demo_server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
