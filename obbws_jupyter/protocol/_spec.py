"""Provider parameters and the provider spec: typed, validated before anything starts."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obbws_jupyter.exceptions import InvalidParameterError, MissingCredentialsError

if TYPE_CHECKING:
    from obbws_jupyter.protocol._session import ProviderSession

__all__ = ["OPENBB_SETTINGS_ENV", "Param", "ProviderSpec", "openbb_settings_path"]

#: Overrides where the OpenBB user settings file is looked for (tests, shared machines).
OPENBB_SETTINGS_ENV = "OBBWS_OPENBB_SETTINGS"


_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Param:
    """A provider parameter of ``create_connection`` (``symbol``, ``asset_type``, ``api_key``...).

    ``secret`` parameters are credentials: never logged, shown or recorded. When the parameter
    is not given, ``env`` names an environment variable to read, then ``openbb_setting`` a key of
    OpenBB's user settings file (``~/.openbb_platform/user_settings.json``, under
    ``"credentials"``), so a machine set up for OpenBB needs nothing more.
    """

    name: str
    type: type = str
    default: Any = _MISSING
    choices: tuple[Any, ...] | None = None
    secret: bool = False
    env: str | None = None
    description: str = ""
    openbb_setting: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.env is None and self.openbb_setting is None

    def sources(self) -> str:
        """Where a value for this parameter may come from, in order, for error messages."""
        places = [f"pass {self.name}=<value>"]
        if self.description and not self.secret:  # what a value looks like (symbols...)
            places[0] += f" ({self.description})"
        if self.env:
            places.append(f"set the environment variable {self.env}")
        if self.openbb_setting:
            places.append(
                f'add {self.openbb_setting!r} under "credentials" in the OpenBB user settings '
                "file ~/.openbb_platform/user_settings.json"
            )
        if len(places) == 1:
            return places[0]
        return ", ".join(places[:-1]) + ", or " + places[-1]

    def convert(self, provider: str, value: Any) -> Any:
        """Return ``value`` as this parameter's type, or raise InvalidParameterError."""
        if value is None:
            return None
        try:
            converted = _convert(self.type, value)
        except (TypeError, ValueError, OverflowError):
            shown = "<hidden>" if self.secret else repr(value)
            raise InvalidParameterError(
                f"{provider}: parameter {self.name!r} must be {self.type.__name__}, got {shown}."
            ) from None
        if self.choices is not None:
            candidate = converted.lower() if isinstance(converted, str) else converted
            if candidate not in self.choices:
                shown = "<hidden>" if self.secret else repr(value)
                raise InvalidParameterError(
                    f"{provider}: {self.name}={shown} is not supported; "
                    f"choose one of {', '.join(map(str, self.choices))}."
                )
            converted = candidate
        return converted


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if math.isnan(number):
            raise ValueError(value)
        return number
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(value)
        return int(value)
    if kind is str:
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        if not isinstance(value, (str, int, float)):
            raise TypeError(value)
        return str(value)
    return kind(value)


@dataclass(frozen=True)
class ProviderSpec:
    """What the core needs to know about a provider; found through the entry-point group
    ``obbws_jupyter.providers`` (the entry point's object is a ``ProviderSpec``).

    ``embedded_server`` names (``"module:function"``) an async factory
    ``serve(params: dict) -> server`` with ``.url`` and ``async close()``, started when no ``url``
    is given: the offline ``demo`` and ``replay`` providers serve themselves on 127.0.0.1.
    """

    name: str
    description: str
    session_class: type[ProviderSession]
    params: tuple[Param, ...]
    embedded_server: str | None = None
    docs: str = ""
    check: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def secret_params(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.secret)

    def resolve(self, given: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
        """Validate provider parameters and fill defaults; raise before anything starts.

        A parameter not given comes from its ``env`` variable in ``environ``, then from its
        ``openbb_setting`` in the OpenBB settings file, then its default. A missing credential
        raises :class:`MissingCredentialsError` naming all three places."""
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InvalidParameterError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"this provider takes {', '.join(sorted(known))}."
            )
        out: dict[str, Any] = {}
        settings: dict[str, Any] | None = None
        for p in self.params:
            value = given.get(p.name)
            if value is None and p.env is not None:
                value = environ.get(p.env) or None
            if value is None and p.openbb_setting is not None:
                if settings is None:
                    settings = _openbb_credentials(environ)
                value = settings.get(p.openbb_setting) or None
            if value is None:
                if p.default is _MISSING:
                    error = MissingCredentialsError if p.secret else InvalidParameterError
                    raise error(f"{self.name}: parameter {p.name!r} is required; {p.sources()}.")
                value = p.default
            out[p.name] = p.convert(self.name, value)
        if self.check is not None:
            self.check(out)
        return out


def openbb_settings_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where OpenBB keeps its user settings: ``$OBBWS_OPENBB_SETTINGS`` if set, else
    ``~/.openbb_platform/user_settings.json`` (``~`` from ``HOME`` in ``environ``)."""
    env = os.environ if environ is None else environ
    override = env.get(OPENBB_SETTINGS_ENV)
    if override:
        return Path(override)
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".openbb_platform" / "user_settings.json"


def _openbb_credentials(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``credentials`` object of OpenBB's settings file; ``{}`` when there is no usable
    file (a broken file is not our business to fail on: the missing-key error says where to
    look)."""
    try:
        with open(openbb_settings_path(environ), encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    credentials = data.get("credentials", data)
    return credentials if isinstance(credentials, dict) else {}
