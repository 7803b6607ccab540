"""Provider discovery for the core: the one lookup lives in the provider kit
(:mod:`obbws_jupyter.protocol`), shared with the ``replay`` provider; this module re-exports it.
"""

from __future__ import annotations

from obbws_jupyter.protocol import (
    ENTRY_POINT_GROUP,
    available_providers,
    get_provider,
    register_provider,
)

__all__ = ["ENTRY_POINT_GROUP", "available_providers", "get_provider", "register_provider"]
