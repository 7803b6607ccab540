"""Small helpers shared by the core modules (not public API)."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DefaultPort",
    "RateLimitedLog",
    "backoff",
    "mask_secrets",
    "ns_to_datetime",
    "remember_secret",
]

_SECRET_QUERY = re.compile(
    r"(?i)((?:auth_token|token|api_?key|apikey|key|secret|password|authorization)=)([^&\s'\"]+)"
)
_BEARER = re.compile(r"(?i)(bearer\s+)(\S+)")
# JSON members such as "authorization": "..." or "apiKey": "..." (providers' auth frames, as
# websockets logs them at DEBUG)
_SECRET_JSON = re.compile(
    r'(?i)("(?:auth_token|token|api_?key|apikey|key|secret|password|authorization)"\s*:\s*")'
    r'([^"]*)'
)


_SECRET_VALUES: set[str] = set()  # exact values to hide wherever they appear (API keys)


def remember_secret(value: object) -> None:
    """Hide this exact value (a provider's secret parameter, e.g. an API key that a provider
    sends inside an auth frame) in everything :func:`mask_secrets` masks from now on."""
    if isinstance(value, str) and len(value) >= 4:
        _SECRET_VALUES.add(value)


# Also: an HTTP Basic header (websockets sends one for ws://user:password@host), the password
# of such a URL, and the "params" of a JSON auth action (Polygon's and the demo's login)
_BASIC = re.compile(r"(?i)(basic\s+)(\S+)")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/@\s:]*:)([^@/\s]+)(@)")
_JSON_AUTH_PARAMS = re.compile(r'(?i)("action"\s*:\s*"auth"\s*,\s*"params"\s*:\s*")([^"]*)')


def mask_secrets(text: str) -> str:
    """Hide the values of token-like query parameters, JSON members and bearer headers in
    ``text``, and every value given to :func:`remember_secret`; also Basic headers, the
    password of a ``scheme://user:password@host`` URL and the params of a JSON auth action."""
    masked = _SECRET_JSON.sub(r"\1********", _SECRET_QUERY.sub(r"\1********", text))
    masked = _BEARER.sub(r"\1********", masked)
    masked = _BASIC.sub(r"\1********", _URL_PASSWORD.sub(r"\1********\3", masked))
    if '"' in masked:
        masked = _JSON_AUTH_PARAMS.sub(r"\1********", masked)
    for value in tuple(_SECRET_VALUES):
        if value in masked:
            masked = masked.replace(value, "********")
    return masked


class SecretFilter(logging.Filter):
    """Masks secrets in records logged by websockets (its DEBUG log shows the request line,
    headers and every frame). A frame is masked on its whole payload before websockets
    shortens it for the log, so a truncated secret cannot slip through either."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.args, tuple) and record.args:
                record.args = tuple(_masked_arg(arg) for arg in record.args)
            message = record.getMessage()
        except Exception:
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def _masked_arg(arg: Any) -> Any:
    data = getattr(arg, "data", None)
    if not isinstance(data, (bytes, bytearray)) or not dataclasses.is_dataclass(arg):
        return arg  # not a websockets Frame
    text = bytes(data).decode("utf-8", "replace")
    masked = mask_secrets(text)
    if masked == text:
        return arg
    return str(dataclasses.replace(arg, data=masked.encode()))  # type: ignore[type-var]


def clip(text: object, limit: int = 500) -> str:
    """``text`` as a string of at most about ``limit`` characters (a provider may send huge
    messages: they are cut, with the original size said, before they reach logs or status)."""
    value = str(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... [{len(value)} characters, cut]"


def wire_logger(name: str) -> logging.Logger:
    """The logger handed to websockets: secrets masked, quiet (WARNING) unless set otherwise."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, SecretFilter) for f in logger.filters):
        logger.addFilter(SecretFilter())
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    return logger


def ns_to_datetime(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, tz=UTC)


class DefaultPort(int):
    """An ``int`` that marks "the user did not choose a port": a busy default port falls
    forward to the next free one, while an explicitly requested busy port is an error."""

    def __repr__(self) -> str:
        return int.__repr__(self)


class RateLimitedLog:
    """Let through the first ``burst`` messages, then one per ``every`` seconds."""

    def __init__(self, burst: int = 5, every: float = 10.0) -> None:
        self.burst = burst
        self.every = every
        self.count = 0
        self._last = 0.0

    def allow(self) -> bool:
        self.count += 1
        if self.count <= self.burst:
            return True
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            return True
        return False


def backoff(
    attempt: int, base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] = random.random
) -> float:
    """Delay before reconnect ``attempt`` (1, 2, ...): exponential, capped, with jitter in
    [0.5, 1.5) of the nominal value so that many clients do not reconnect in step."""
    nominal = min(cap, base * 2 ** max(0, attempt - 1))
    return nominal * (0.5 + rand())
