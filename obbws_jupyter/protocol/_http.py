"""HTTP steps before a websocket connects (e.g. Intrinio trades its API key for a token), kept
sans-I/O: a session describes the request, the stream driver performs it through an injectable
HTTP client, and hands the response back to the session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["HttpRequest", "HttpResponse"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request the session needs answered before it can connect (``url`` may carry a
    secret in its query: the driver masks it in logs and errors)."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the server answered: the status code and the raw body."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")
