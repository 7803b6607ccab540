"""The client's own options, as one typed object kept apart from the provider's parameters.

:class:`ClientOptions` holds everything a :class:`~obbws_jupyter.client.WebSocketClient` takes
that is not a provider parameter: where and how results are stored, the time zone of dates,
timeouts, reconnects, the raw-frame capture file. It is validated when built (a bad value
raises :class:`~obbws_jupyter.exceptions.InvalidParameterError` naming it), frozen, and
comparable, so ``create_connection(..., if_exists="reuse")`` can tell two connections apart.

Keyword arguments keep working: :func:`split_options` sorts one ``**kwargs`` into the options
and the provider's parameters. A name that is both an option and a parameter of the chosen
provider (a provider ``Param("tz")``) is never silently taken by the client: it is refused as
ambiguous, and ``options=ClientOptions(tz=...)`` or ``provider_params={"tz": ...}`` says which
one is meant.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from websockets.asyncio.client import connect as _ws_connect

from obbws_jupyter._validate import (
    check_bool,
    check_limit,
    check_positive,
    check_retries,
    check_tz,
)
from obbws_jupyter.exceptions import InvalidParameterError

__all__ = ["DEFAULT_TZ", "ClientOptions", "parse_connect_kwargs", "split_options"]

DEFAULT_TZ = "America/New_York"  # OpenBB's default for returned dates


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """The options of one client (and of ``create_connection``), validated when built.

    ``results_file``/``save_results``/``table_name``/``limit``: the DuckDB results file (a
    temporary file deleted at kill unless ``save_results``), its table, and the rows kept
    (None keeps all). ``tz``: the time zone of returned dates. ``sleep_time``: the live view's
    refresh period. ``connect_kwargs``: extra ``websockets.connect`` arguments (a dict or a
    JSON object string). ``record_file``: capture every raw provider frame to this file for
    the ``replay`` provider. ``connect_timeout``, ``max_reconnects`` (None: forever),
    ``reconnect_base``/``reconnect_cap`` (backoff seconds), ``stale_timeout`` (seconds
    without data before the stream counts as dead), ``flush_interval`` (store batching),
    ``http_client`` (an async callable for the provider's HTTP steps; tests inject a fake).
    """

    results_file: str | os.PathLike[str] | None = None
    save_results: bool = False
    table_name: str = "records"
    limit: int | None = 1000
    tz: str = DEFAULT_TZ
    sleep_time: float = 0.25
    connect_kwargs: Mapping[str, Any] | str | None = dataclasses.field(default=None, repr=False)
    record_file: str | os.PathLike[str] | None = None
    connect_timeout: float = 15.0
    max_reconnects: int | None = 10
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0
    stale_timeout: float | None = None
    flush_interval: float = 0.1
    http_client: Any = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        # the checks return the value in its proper type ("None" -> None, 5 -> 5.0)
        checked = {
            "limit": check_limit(self.limit),
            "tz": check_tz(self.tz),
            "sleep_time": check_positive("sleep_time", self.sleep_time),
            "connect_timeout": check_positive("connect_timeout", self.connect_timeout),
            "max_reconnects": check_retries("max_reconnects", self.max_reconnects),
            "reconnect_base": check_positive("reconnect_base", self.reconnect_base),
            "reconnect_cap": check_positive("reconnect_cap", self.reconnect_cap),
            "stale_timeout": None
            if self.stale_timeout is None
            else check_positive("stale_timeout", self.stale_timeout),
            "connect_kwargs": parse_connect_kwargs(self.connect_kwargs),
            "http_client": _check_http_client(self.http_client),
            "save_results": check_bool("save_results", self.save_results),
        }
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @classmethod
    def names(cls) -> frozenset[str]:
        """Every option's name (what ``split_options`` takes out of keyword arguments)."""
        return _NAMES

    def replace(self, **changes: Any) -> ClientOptions:
        """A copy with ``changes`` applied (validated again)."""
        unknown = sorted(set(changes) - _NAMES)
        if unknown:
            raise InvalidParameterError(
                f"{', '.join(unknown)} {'is not a' if len(unknown) == 1 else 'are not'} "
                f"client option(s); the options are {', '.join(sorted(_NAMES))}."
            )
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict (``connect_kwargs`` as its dict)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __hash__(self) -> int:  # connect_kwargs is a dict: hash what identifies the options
        return hash(tuple(sorted((k, repr(v)) for k, v in self.as_dict().items())))


_NAMES = frozenset(f.name for f in dataclasses.fields(ClientOptions))


def split_options(
    kwargs: Mapping[str, Any],
    options: ClientOptions | None = None,
    provider_params: Mapping[str, Any] | None = None,
    provider_names: Iterable[str] = (),
) -> tuple[ClientOptions, dict[str, Any]]:
    """Sort keyword arguments into the client's options and the provider's parameters.

    ``options`` is the base (defaults when None); option names among ``kwargs`` change it, and
    the other keys are provider parameters, as are the ``provider_params``. Refused with
    InvalidParameterError: an option given both in ``options`` and as a keyword, a provider
    parameter given twice, and a keyword that is both an option and one of ``provider_names``
    (the provider's declared parameters), which would otherwise be taken by the client.
    """
    if options is not None and not isinstance(options, ClientOptions):
        raise InvalidParameterError(
            "options must be an obbws_jupyter.ClientOptions, got "
            f"{type(options).__name__}; or pass the options as keywords."
        )
    if provider_params is not None and not isinstance(provider_params, Mapping):
        raise InvalidParameterError(
            f"provider_params must be a dict, got {type(provider_params).__name__}."
        )
    chosen = {k: v for k, v in kwargs.items() if k in _NAMES}
    params = {k: v for k, v in kwargs.items() if k not in _NAMES}
    _refuse_ambiguous(chosen, set(provider_names))
    if options is not None and chosen:
        raise InvalidParameterError(
            f"{', '.join(sorted(chosen))} given both in options= and as keyword(s); "
            "pass each client option once (options.replace(...) makes a changed copy)."
        )
    twice = sorted(set(params) & set(provider_params or {}))
    if twice:
        raise InvalidParameterError(
            f"{', '.join(twice)} given both in provider_params= and as keyword(s); pass once."
        )
    params.update(provider_params or {})
    built = options if options is not None else ClientOptions(**chosen)
    return built, params


def _refuse_ambiguous(chosen: Mapping[str, Any], provider_names: set[str]) -> None:
    both = sorted(set(chosen) & provider_names)
    if both:
        key = both[0]
        raise InvalidParameterError(
            f"{', '.join(both)} is both a client option and a parameter of this provider; say "
            f"which one is meant: options=ClientOptions({key}=...) for the client, or "
            f"provider_params={{{key!r}: ...}} for the provider."
        )


def parse_connect_kwargs(value: Any) -> dict[str, Any]:
    """``connect_kwargs`` as a dict: a dict, a JSON object string, or None. Keys are checked
    against what ``websockets`` accepts, so a typo fails now rather than at connect time."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(
                f"Invalid JSON format for 'connect_kwargs': {exc.msg} at position {exc.pos}. "
                "Pass a dict or a JSON object string such as '{\"ping_interval\": 10}'."
            ) from None
    if not isinstance(value, Mapping):
        raise InvalidParameterError(
            "Invalid 'connect_kwargs' format. Must be a dictionary or serialized JSON string "
            f"of an object, got {type(value).__name__}."
        )
    unknown = sorted(set(value) - _CONNECT_KEYS)
    if unknown:
        raise InvalidParameterError(
            f"connect_kwargs has unknown key(s) {', '.join(map(str, unknown))}; "
            f"websockets.connect accepts {', '.join(sorted(_CONNECT_KEYS))}."
        )
    return dict(value)


_CONNECT_KEYS = frozenset(
    name
    for name, p in inspect.signature(_ws_connect.__init__).parameters.items()
    if name not in {"self", "uri"} and p.kind is not inspect.Parameter.VAR_KEYWORD
) | {"ssl", "server_hostname", "local_addr", "family", "ssl_handshake_timeout"}


def _check_http_client(http_client: Any) -> Any:
    """``http_client``: an async callable ``(HttpRequest) -> HttpResponse`` for the provider's
    HTTP steps before connecting (default: the stdlib); tests inject a fake."""
    if http_client is not None and not callable(http_client):
        raise InvalidParameterError(
            "http_client must be an async callable taking an obbws_jupyter.protocol.HttpRequest "
            f"and returning an HttpResponse, got {type(http_client).__name__}."
        )
    return http_client
