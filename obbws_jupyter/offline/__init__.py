"""The offline market: what the ``demo`` and ``replay`` providers serve on 127.0.0.1.

Product code, not test scaffolding: the offline demo, the notebooks, Binder and the benchmarks
run on it (tests use it too).

- :mod:`~obbws_jupyter.offline.market`: the seedable market simulator (stdlib only); the fake
  provider servers (:mod:`obbws_jupyter.fakes`) draw their prices from it as well.
- :mod:`~obbws_jupyter.offline.demo_server`: the ``demo`` provider's server (``DemoServer``,
  ``start_demo_server`` for sync code, ``python -m obbws_jupyter.offline.demo_server``).
- :mod:`~obbws_jupyter.offline.replay_server`: plays a capture file (``ReplayServer``).

The names below are imported lazily, so ``import obbws_jupyter.offline.market`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DemoServer", "DemoServerHandle", "Market", "ReplayServer", "start_demo_server"]

_LAZY = {
    "DemoServer": "obbws_jupyter.offline.demo_server",
    "DemoServerHandle": "obbws_jupyter.offline.demo_server",
    "Market": "obbws_jupyter.offline.market",
    "ReplayServer": "obbws_jupyter.offline.replay_server",
    "start_demo_server": "obbws_jupyter.offline.demo_server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
