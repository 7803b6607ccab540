"""Events a session reports besides records (the driver reacts to them; none is an exception)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AuthFailed",
    "Authenticated",
    "Event",
    "Heartbeat",
    "MalformedFrame",
    "ProviderFailed",
    "ProviderMessage",
    "SequenceGap",
    "StreamEnded",
    "Subscribed",
    "SubscriptionFailed",
    "Unsubscribed",
]


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The provider accepted the credentials; subscriptions may be sent."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """The provider rejected the credentials. Fatal: reconnecting will not help."""

    message: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The provider acknowledged a subscription."""

    symbols: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """The provider acknowledged an unsubscription."""

    symbols: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True, slots=True)
class SubscriptionFailed:
    """The provider refused a subscription; the stream goes on."""

    symbols: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A keep-alive from the provider (any frame also counts as a sign of life)."""


@dataclass(frozen=True, slots=True)
class ProviderMessage:
    """An informational, warning or error message from the provider (logged, not fatal)."""

    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True, slots=True)
class ProviderFailed:
    """The provider reported a failure. ``retry`` says whether a reconnect may help."""

    message: str
    retry: bool = True


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """Messages the provider numbered were missed (a gap in its sequence numbers): counted in
    the status (``sequence_gaps``), logged, never fatal. ``missed`` is how many numbers were
    skipped; ``symbol`` the product or channel the sequence belongs to ("" if global)."""

    missed: int
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The provider finished the stream on purpose (e.g. a replay reached its end)."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A frame could not be parsed; it was skipped and counted."""

    reason: str
    excerpt: str


Event = (
    Authenticated
    | AuthFailed
    | Subscribed
    | Unsubscribed
    | SubscriptionFailed
    | Heartbeat
    | ProviderMessage
    | ProviderFailed
    | SequenceGap
    | StreamEnded
    | MalformedFrame
)
