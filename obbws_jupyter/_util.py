"""Small helpers shared by the core modules (not public API)."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime

__all__ = [
    "DefaultPort",
    "RateLimitedLog",
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


def mask_secrets(text: str) -> str:
    """Hide the values of token-like query parameters, JSON members and bearer headers in
    ``text``, and every value given to :func:`remember_secret`."""
    masked = _SECRET_JSON.sub(r"\1********", _SECRET_QUERY.sub(r"\1********", text))
    masked = _BEARER.sub(r"\1********", masked)
    for value in tuple(_SECRET_VALUES):
        if value in masked:
            masked = masked.replace(value, "********")
    return masked


class SecretFilter(logging.Filter):
    """Masks tokens in records logged by websockets (its debug log shows requests/headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def wire_logger(name: str) -> logging.Logger:
    """The logger handed to websockets: tokens masked, quiet (WARNING) unless set otherwise."""
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
