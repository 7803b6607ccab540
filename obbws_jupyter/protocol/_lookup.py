"""The one provider lookup: installed entry points plus run-time registrations.

Each entry point of the group ``obbws_jupyter.providers`` names a :class:`ProviderSpec`. The
core's registry, the ``replay`` provider (which parses a capture with the recorded provider's
own session) and the CLI all look providers up here, so a provider added with
:func:`register_provider` can be created, listed and replayed like an installed one.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from obbws_jupyter.exceptions import UnknownProviderError
from obbws_jupyter.protocol._spec import ProviderSpec

__all__ = ["ENTRY_POINT_GROUP", "available_providers", "get_provider", "register_provider"]

ENTRY_POINT_GROUP = "obbws_jupyter.providers"  # where the core finds providers' ProviderSpecs

log = logging.getLogger("obbws_jupyter.registry")

_lock = threading.Lock()
_specs: dict[str, ProviderSpec] = {}
_loaded = False


def _load() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _specs:
                continue
            try:
                spec = ep.load()
            except Exception as exc:  # a broken third-party provider must not break the others
                log.warning("provider %r could not be loaded: %s", ep.name, exc)
                continue
            if not isinstance(spec, ProviderSpec):
                log.warning("entry point %r does not name a ProviderSpec; ignored", ep.name)
                continue
            _specs[ep.name] = spec
        _loaded = True


def available_providers() -> list[str]:
    """Names of every installed or registered provider, sorted."""
    _load()
    return sorted(_specs)


def get_provider(name: str) -> ProviderSpec:
    """The provider registered as ``name``; UnknownProviderError lists the known ones."""
    _load()
    if not isinstance(name, str) or name.strip().lower() not in _specs:
        known = ", ".join(available_providers()) or "(none installed)"
        raise UnknownProviderError(
            f"Unknown provider {name!r}; installed providers: {known}. "
            "A provider is added by installing a package with an 'obbws_jupyter.providers' "
            "entry point, or with obbws_jupyter.register_provider(spec)."
        )
    return _specs[name.strip().lower()]


def register_provider(spec: ProviderSpec, *, replace: bool = False) -> None:
    """Register a provider at run time (tests, notebooks); entry points are the usual way."""
    if not isinstance(spec, ProviderSpec):
        raise TypeError(f"register_provider() takes a ProviderSpec, got {type(spec).__name__}")
    _load()
    with _lock:
        if spec.name in _specs and not replace:
            raise ValueError(f"a provider named {spec.name!r} is already registered")
        _specs[spec.name] = spec
