"""Small helpers shared by the core modules (not public API)."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DefaultPort",
    "RateLimitedLog",
    "SecretFilter",
    "clip",
    "mask_secrets",
    "ns_to_datetime",
    "register_secret",
    "unregister_secret",
    "wire_logger",
]

_SECRET_QUERY = re.compile(
    r"(?i)((?:auth_token|token|api_?key|apikey|key|secret|password|authorization)=)([^&\s'\"]+)"
)
_AUTH_HEADER = re.compile(r"(?i)((?:bearer|basic)\s+)(\S+)")
# Credentials inside JSON frames: a secret-named key, or the "params" of an auth action
# (Polygon's and the demo's login message), whatever the key's value is.
_JSON_SECRET = re.compile(
    r'(?i)("(?:api_?key|apikey|auth_?token|token|password|secret|key|authorization)"'
    r'\s*:\s*")([^"]*)'
)
_JSON_AUTH_PARAMS = re.compile(r'(?i)("action"\s*:\s*"auth"\s*,\s*"params"\s*:\s*")([^"]*)')
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/@\s:]*:)([^@/\s]+)(@)")
_MASK = "********"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words

# Values of credentials in use (provider API keys, ...), masked wherever they appear in text
# we log or show: a secret is only safe if every logger sees it masked, including websockets'
# frame dumps of an auth message, whose format we cannot know in advance.
_secrets: Counter[str] = Counter()
_secrets_lock = threading.Lock()
_secret_list: tuple[str, ...] = ()


def register_secret(value: object) -> None:
    """Mask ``value`` (a credential in use) in everything :func:`mask_secrets` sees, until
    :func:`unregister_secret` is called as many times."""
    global _secret_list
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets[value] += 1
        _secret_list = tuple(sorted(_secrets, key=len, reverse=True))


def unregister_secret(value: object) -> None:
    global _secret_list
    if not isinstance(value, str) or value not in _secrets:
        return
    with _secrets_lock:
        _secrets[value] -= 1
        if _secrets[value] <= 0:
            del _secrets[value]
        _secret_list = tuple(sorted(_secrets, key=len, reverse=True))


def mask_secrets(text: str) -> str:
    """Hide credentials in ``text``: token-like query values, bearer/basic headers, the
    password of a ``scheme://user:password@host`` URL, secret-named JSON values and the
    params of a JSON auth action, and every registered secret value."""
    text = _URL_PASSWORD.sub(rf"\1{_MASK}\3", text)
    text = _AUTH_HEADER.sub(rf"\1{_MASK}", _SECRET_QUERY.sub(rf"\1{_MASK}", text))
    if '"' in text:
        text = _JSON_AUTH_PARAMS.sub(rf"\1{_MASK}", _JSON_SECRET.sub(rf"\1{_MASK}", text))
    for secret in _secret_list:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def clip(text: object, limit: int = 500) -> str:
    """``text`` as a string of at most about ``limit`` characters (a provider may send huge
    messages: they are cut, with the original size said, before they reach logs or status)."""
    value = str(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... [{len(value)} characters, cut]"


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
