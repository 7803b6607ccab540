"""The JSON bodies of the HTTP API: OpenBB's ``OBBject`` envelope, and the POST body of
``create_connection``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from obbws_jupyter.models import WebSocketConnectionStatus

__all__ = ["CreateConnectionBody", "Envelope", "Record", "envelope"]

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """OpenBB's ``OBBject`` shape, so OpenBB clients read ``results`` as they do there."""

    results: T = Field(description="The status, the records, or a message.")
    provider: str | None = Field(None, description="The connection's provider, when known.")
    warnings: list[str] | None = Field(None, description="Always null (kept for OpenBB).")
    extra: dict[str, Any] = Field(default_factory=dict, description="Paging details.")


class Record(BaseModel):
    """One stored record: ``id``, ``received_at`` and the provider's fields (dates ISO 8601
    with offset, in the connection's time zone), exactly as the broadcast sends it."""

    model_config = ConfigDict(extra="allow")

    id: int = Field(description="Monotonic id, per connection; poll with since_id=<last id>.")
    received_at: str = Field(description="When the record arrived (ISO 8601).")


def envelope(results: Any) -> dict[str, Any]:
    """Wrap ``results`` (a status, a list of statuses or a message) in the envelope."""
    provider = None
    first = results[0] if isinstance(results, list) and results else results
    if isinstance(first, WebSocketConnectionStatus):
        provider = first.provider or None
    return {"results": results, "provider": provider, "warnings": None, "extra": {}}


class CreateConnectionBody(BaseModel):
    """``create_connection`` as a JSON body: the same names and defaults as the query form and
    the Python function. Keys beyond these are provider parameters, passed to the provider."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "provider": "demo",
                    "name": "demo",
                    "symbol": "btcusd,ethusd",
                    "asset_type": "crypto",
                    "feed": "trade",
                    "limit": 1000,
                    "start_broadcast": True,
                }
            ]
        },
    )

    provider: str = Field(description="Provider name, e.g. demo (`obbws providers` lists them).")
    name: str = Field(description="Your name for the connection; unique in the process.")
    auth_token: str | None = Field(None, description="Token that protects this connection.")
    results_file: str | None = Field(None, description="DuckDB file; a temp file if null.")
    save_results: bool | str = Field(False, description="Keep results_file after kill.")
    table_name: str = Field("records", description="Table of the results file.")
    limit: int | str | None = Field(1000, description="Rows kept (newest); null keeps all.")
    sleep_time: float = Field(0.25, description="Refresh interval of live views, seconds.")
    broadcast_host: str = Field("127.0.0.1", description="Host of the broadcast server.")
    broadcast_port: int | None = Field(
        None, description="Port of the broadcast server (6666, or the next free one, if null)."
    )
    start_broadcast: bool | str = Field(False, description="Start the broadcast server now.")
    connect_kwargs: dict[str, Any] | str | None = Field(
        None, description="Options for websockets.connect, as an object or a JSON string."
    )
    symbol: str | list[str] | None = Field(None, description="Symbols, comma-separated.")
    asset_type: str | None = Field(None, description="Provider asset type, e.g. crypto.")
    feed: str | None = Field(None, description="Provider feed, e.g. trade or quote.")
    tz: str | None = Field(None, description="Time zone of dates (default America/New_York).")
    connect_timeout: float | None = Field(None, description="Seconds to connect (default 15).")
    max_reconnects: int | None = Field(None, description="Reconnect attempts (default 10).")
    stale_timeout: float | None = Field(None, description="Seconds without data = dead stream.")
