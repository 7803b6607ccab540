"""Capture files: the raw frames a provider sent, with their timing, as JSON lines.

A capture records a stream so that the ``replay`` provider can play it back offline, in tests
and notebooks (reference-free, deterministic). The format (``docs/demo_protocol.md``)::

    {"obbws_capture": 1, "provider": "demo", "params": {...}, "url": "...", "started_at": "..."}
    {"t": 0.0123, "d": "[{\\"ev\\":\\"T\\", ...}]"}
    {"t": 0.0311, "b": "AAECAw=="}

Line 1 is the header: the provider's name and its parameters *without secrets* (and without
``url``, which belongs to the recording machine); ``started_at`` is ISO 8601 UTC. Every further
line is one frame received from the provider: ``t`` seconds since the capture started, and
``d`` the text frame or ``b`` the base64 of a binary frame.

Only the standard library is used.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from obbws_jupyter.exceptions import InvalidParameterError
from obbws_jupyter.protocol import CAPTURE_VERSION, read_capture_header

__all__ = ["CAPTURE_VERSION", "CaptureWriter", "read_capture", "read_header"]

FLUSH_INTERVAL = 0.5  # seconds

#: Never recorded, whatever the provider declares (defence in depth for ``secret_names``).
ALWAYS_EXCLUDED = frozenset({"url", "api_key", "apikey", "token", "auth_token", "password"})

Frame = str | bytes


def _secret_names(secrets: Iterable[str] | Any) -> frozenset[str]:
    declared = getattr(secrets, "secret_params", None)  # a ProviderSpec
    if declared is not None:
        return frozenset(declared)
    return frozenset(secrets)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class CaptureWriter:
    """Write a capture file: a header now, then one line per :meth:`write`.

    ``secret_names`` is a set of parameter names, or the provider's ``ProviderSpec`` (its
    secret parameters); those are never written. An existing file is refused unless
    ``overwrite=True``. Writes are buffered and flushed at most every 0.5 s (and on
    :meth:`flush` / :meth:`close`), so :meth:`write` is cheap enough to call on the loop for
    every frame.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        provider: str,
        params: Mapping[str, Any],
        secret_names: Iterable[str] | Any = frozenset(),
        url: str = "",
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        excluded = _secret_names(secret_names) | ALWAYS_EXCLUDED
        self.header: dict[str, Any] = {
            "obbws_capture": CAPTURE_VERSION,
            "provider": provider,
            "params": {k: _jsonable(v) for k, v in params.items() if k not in excluded},
            "url": url,
            "started_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            self._file: IO[str] | None = open(  # noqa: SIM115 - closed by close()
                self.path, "w" if overwrite else "x", encoding="utf-8", buffering=1 << 16
            )
        except FileExistsError:
            raise InvalidParameterError(
                f"capture file {str(self.path)!r} already exists; pass overwrite=True to "
                "replace it, or choose another path."
            ) from None
        except OSError as exc:
            raise InvalidParameterError(
                f"cannot create capture file {str(self.path)!r}: {exc.strerror or exc}."
            ) from None
        self._clock = clock
        self._start = clock()
        self._last_flush = self._start
        self.frames = 0
        self._file.write(json.dumps(self.header) + "\n")
        self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, frame: Frame) -> None:
        """Append one received frame (text or binary) with its time since the start."""
        file = self._file
        if file is None:
            raise ValueError(f"capture {str(self.path)!r} is closed")
        now = self._clock()
        t = round(now - self._start, 6)
        if isinstance(frame, str):
            line = json.dumps({"t": t, "d": frame})
        else:
            line = json.dumps({"t": t, "b": base64.b64encode(frame).decode("ascii")})
        file.write(line + "\n")
        self.frames += 1
        if now - self._last_flush >= FLUSH_INTERVAL:
            file.flush()
            self._last_flush = now

    def flush(self) -> None:
        """Push buffered lines to the file (call now and then on a quiet stream)."""
        if self._file is not None:
            self._file.flush()
            self._last_flush = self._clock()

    def close(self) -> None:
        """Flush and close. Safe to call twice."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<CaptureWriter {str(self.path)!r} frames={self.frames} {state}>"


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a capture file; InvalidParameterError if it is not one."""
    return read_capture_header(path)


def _frames(path: Path) -> Generator[tuple[float, Frame], None, None]:
    with open(path, encoding="utf-8") as file:
        file.readline()  # header
        for number, line in enumerate(file, start=2):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                t = float(item["t"])
                if "d" in item:
                    frame: Frame = item["d"]
                    if not isinstance(frame, str):
                        raise TypeError("d is not a string")
                else:
                    frame = base64.b64decode(item["b"], validate=True)
            except (ValueError, KeyError, TypeError) as exc:
                if not line.endswith("\n"):
                    return  # a last line cut short by a crash while recording
                raise InvalidParameterError(
                    f"capture file {str(path)!r}, line {number}: not a frame line "
                    f'({type(exc).__name__}); expected {{"t": seconds, "d": text}} or '
                    '{"t": seconds, "b": base64}.'
                ) from None
            yield t, frame


def read_capture(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], Generator[tuple[float, Frame], None, None]]:
    """``(header, frames)``: the header now (InvalidParameterError for a file that is not a
    capture, naming it), and a lazy iterator of ``(t, frame)`` that opens the file when first
    advanced and closes it when exhausted."""
    header = read_header(path)
    return header, _frames(Path(path))
