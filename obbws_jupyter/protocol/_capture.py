"""The capture-file header, read here (stdlib only) so that the core's capture module, the replay
provider and the registry read it one way."""

from __future__ import annotations

import json
import os
from typing import Any

from obbws_jupyter.exceptions import InvalidParameterError

__all__ = ["CAPTURE_VERSION", "read_capture_header"]

CAPTURE_VERSION = 1  # format of capture files (obbws_jupyter.capture writes them)


def read_capture_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header line of a capture file: ``{"obbws_capture": 1, "provider": ..., "params":
    {...}}``. Here (stdlib only) so both the core and the replay provider read it one way.
    Raises InvalidParameterError naming the path and what was expected."""
    shown = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block open() forever
        raise _not_a_capture(shown, "not a regular file")
    try:
        with open(path, encoding="utf-8") as file:
            first = file.readline(1 << 20)
    except FileNotFoundError:
        raise InvalidParameterError(f"capture file {shown!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        raise _not_a_capture(shown, f"unreadable: {exc}") from None
    try:
        header = json.loads(first)
    except ValueError:
        raise _not_a_capture(shown, "line 1 is not JSON") from None
    if not isinstance(header, dict) or "obbws_capture" not in header:
        raise _not_a_capture(shown, "no obbws_capture header")
    if header["obbws_capture"] != CAPTURE_VERSION:
        raise _not_a_capture(shown, f"unsupported capture version {header['obbws_capture']!r}")
    if not isinstance(header.get("provider"), str) or not isinstance(header.get("params"), dict):
        raise _not_a_capture(shown, "the header lacks provider/params")
    return header


def _not_a_capture(shown: str, why: str) -> InvalidParameterError:
    return InvalidParameterError(
        f"{shown!r} is not a capture file ({why}); expected JSON lines starting with a header "
        f'like {{"obbws_capture": {CAPTURE_VERSION}, "provider": ..., "params": {{...}}}}, '
        "as written by obbws_jupyter.capture.CaptureWriter."
    )
