"""Public data models: the status of a connection and the states of its stream."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

__all__ = ["SinkStatus", "StatusList", "StreamState", "WebSocketConnectionStatus"]


class StreamState(StrEnum):
    """The state of a connection's provider stream (``status.state``). A ``str`` enum: each
    member equals its text (``status.state == "running"``), and JSON carries the text."""

    IDLE = "idle"  # created, never connected
    CONNECTING = "connecting"  # first connection and authentication under way
    RUNNING = "running"  # receiving
    RECONNECTING = "reconnecting"  # the connection dropped; backing off and reconnecting
    STOPPED = "stopped"  # stopped by a call (stop_connection); restart_connection resumes
    FAILED = "failed"  # gave up (max_reconnects, a fatal provider error): see last_error
    FINISHED = "finished"  # the provider ended the stream on purpose (a replay's end)
    CLOSED = "closed"  # killed: nothing more happens on it


class SinkStatus(BaseModel):
    """One sink's health in a connection's status (``status.sinks``): its URL (secrets
    masked), kind, state ("opening", "ok", "retrying", "closed", "failed"), rows written,
    dropped and pending, the age in seconds of the oldest pending row, and the last error."""

    model_config = ConfigDict(frozen=True)

    url: str
    kind: str
    state: str
    rows_written: int = 0
    rows_dropped: int = 0
    rows_pending: int = 0
    lag_seconds: float | None = None
    last_error: str | None = None


class WebSocketConnectionStatus(BaseModel):
    """Status of one named connection. The first eleven keys are OpenBB's, in OpenBB's order;
    the rest describe the stream's health. ``store_state`` is "ok", "retrying" (writes to
    the results file fail; rows are kept and retried, ``last_error`` says why) or "closed";
    ``rows_in_table`` is the table's row count after the last committed batch."""

    model_config = ConfigDict(frozen=True)

    name: str
    auth_required: bool
    subscribed_symbols: str
    is_running: bool
    provider_pid: int | None = None
    is_broadcasting: bool
    broadcast_address: str | None = None
    broadcast_pid: int | None = None
    results_file: str | None = None
    table_name: str | None = None
    save_results: bool
    # -- beyond OpenBB ------------------------------------------------------------------------
    provider: str = ""
    state: StreamState = StreamState.STOPPED
    url: str | None = None
    acknowledged_symbols: str = ""
    messages_received: int = 0
    records_received: int = 0
    records_stored: int = 0
    rows_in_table: int | None = None
    malformed_frames: int = 0
    heartbeats: int = 0
    sequence_gaps: int = 0
    errors: int = 0
    reconnects: int = 0
    last_message_at: datetime | None = None
    connected_at: datetime | None = None
    last_error: str | None = None
    listeners: int = 0
    dropped_records: int = 0
    recording_file: str | None = None
    limit: int | None = None
    store_state: str = "ok"
    rejected_records: int = 0
    sinks: list[SinkStatus] = []


class StatusList(list[WebSocketConnectionStatus]):
    """What ``get_client_status("all")`` returns: a plain list of statuses that also says how
    many connections it leaves out because they were created with another ``auth_token``."""

    def __init__(self, statuses: Iterable[WebSocketConnectionStatus] = (), hidden: int = 0) -> None:
        super().__init__(statuses)
        self.hidden = hidden

    @property
    def hidden_note(self) -> str:
        """One sentence about the hidden connections ("" when none are hidden)."""
        if not self.hidden:
            return ""
        one = self.hidden == 1
        what, them = ("connection is", "it") if one else ("connections are", "them")
        return (
            f"{self.hidden} {what} hidden: created with an auth_token; pass "
            f"auth_token=... to see {them}."
        )

    def __repr__(self) -> str:
        note = self.hidden_note
        return f"{super().__repr__()}  # {note}" if note else super().__repr__()
