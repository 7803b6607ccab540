"""Checks of user arguments shared by the client, the endpoints and the store.

Each returns the value in its proper type or raises InvalidParameterError naming the
parameter, the bad value and what would be accepted. Text forms are understood where OpenBB's
REST examples send them (``limit="None"``, ``save_results="True"``).
"""

from __future__ import annotations

import math
import os
import pathlib
import stat
import zoneinfo
from typing import Any

from obbws_jupyter._util import DefaultPort
from obbws_jupyter.exceptions import InvalidParameterError

__all__ = [
    "check_bool",
    "check_limit",
    "check_name",
    "check_path",
    "check_port",
    "check_positive",
    "check_retries",
    "check_token",
    "check_tz",
]

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", "none", ""}


def check_limit(limit: Any) -> int | None:
    """Rows kept: a whole number >= 1, or None (also the text "None") to keep every row."""
    if limit is None or (isinstance(limit, str) and limit.strip().lower() == "none"):
        return None
    if isinstance(limit, str) and limit.strip().isdigit():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParameterError(
            f"limit={limit!r} is invalid: use a whole number >= 1 (rows kept), "
            "or None to keep every row."
        )
    return limit


def check_tz(tz: Any) -> str:
    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError(tz)
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise InvalidParameterError(
            f"tz={tz!r} is not a known time zone: use an IANA name such as "
            "'America/New_York' or 'UTC'."
        ) from None
    return tz


def check_positive(name: str, value: Any, *, whole: bool = False) -> float:
    """A finite number > 0 (a whole one when ``whole``)."""
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number_ok and (not whole or isinstance(value, int)) and value > 0 and math.isfinite(value):
        return float(value)
    rule = "a whole number >= 1" if whole else "a number > 0"
    raise InvalidParameterError(f"{name}={value!r} is invalid: use {rule}.")


def check_retries(name: str, value: Any) -> int | None:
    """A whole number >= 0, or None for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(
            f"{name}={value!r} is invalid: use a whole number >= 0, or None for no limit."
        )
    return value


def check_bool(name: str, value: Any) -> bool:
    """A flag given as a bool or, as OpenBB's REST examples send it, as text ("True")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidParameterError(f"{name} must be True or False, got {value!r}.")


def check_port(port: Any, what: str = "port") -> int:
    """A TCP port 0-65535 (0 picks a free one): an int or its digits as text, never a float
    (1.9 is not silently port 1); a DefaultPort keeps its marker type."""
    rule = f"{what} must be a whole number 0-65535 (0 picks a free port), got {port!r}."
    if isinstance(port, str) and port.strip().isdigit():
        number = int(port.strip())
    elif isinstance(port, int) and not isinstance(port, bool):
        number = int(port)
    else:
        raise InvalidParameterError(rule)
    if not 0 <= number <= 65535:
        raise InvalidParameterError(rule)
    return DefaultPort(number) if isinstance(port, DefaultPort) else number


MAX_TOKEN_LENGTH = 1024
MAX_NAME_LENGTH = 200


def _check_text(what: str, value: Any, max_length: int, controls: bool = False) -> str:
    """Text that is safe to compare, log and encode: not empty, not huge, no NUL, no lone
    surrogates (they cannot be encoded), and no other control character unless ``controls``
    (a name may hold one: whoever puts it in a header or a file name sanitizes it)."""
    if not isinstance(value, str):
        raise InvalidParameterError(f"{what} must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise InvalidParameterError(f"{what} is empty; give a non-empty string.")
    if len(value) > max_length:
        raise InvalidParameterError(
            f"{what} is too long ({len(value)} characters; at most {max_length})."
        )
    if "\x00" in value:
        raise InvalidParameterError(f"{what} contains a NUL character; remove it.")
    if not controls and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidParameterError(f"{what} contains a control character; remove it.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameterError(
            f"{what} contains a lone surrogate (an unpaired \\ud800-\\udfff code point), "
            "which cannot be encoded; use valid Unicode text."
        ) from None
    return value


def check_token(value: Any, what: str = "auth_token") -> str | None:
    """None (no token) or a token of 1-1024 characters without control characters or lone
    surrogates (so it can be compared, sent in a header and never crash an endpoint)."""
    if value is None:
        return None
    return _check_text(what, value, MAX_TOKEN_LENGTH)


def check_name(value: Any, what: str = "name") -> str:
    """A connection name: 1-200 characters, no NUL and no lone surrogates."""
    return _check_text(what, value, MAX_NAME_LENGTH, controls=True)


def check_path(what: str, value: Any) -> pathlib.Path:
    """A file path (str or os.PathLike) as an absolute Path, ``~`` expanded. Refused with the
    parameter's name: a NUL byte, an unknown ``~user``, and an existing path that is not a
    regular file (a directory, a FIFO or a device would block or fail later)."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidParameterError(f"{what} must be a path (str), got {type(value).__name__}.")
    text = os.fspath(value)
    if isinstance(text, bytes) or "\x00" in text:
        raise InvalidParameterError(f"{what} {text!r} contains a NUL byte; give a valid path.")
    try:
        path = pathlib.Path(text).expanduser().absolute()
    except RuntimeError:  # "Could not determine home directory" for ~nosuchuser
        user = text[1:].split("/", 1)[0]
        raise InvalidParameterError(
            f"{what} {text!r}: there is no user {user!r} to expand ~{user} for; "
            "give an absolute path."
        ) from None
    try:
        info = path.stat()
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise InvalidParameterError(f"{what} {text!r} cannot be used: {exc.strerror}.") from None
    if stat.S_ISDIR(info.st_mode):
        return path  # the caller says what it expects of a directory
    if not stat.S_ISREG(info.st_mode):
        raise InvalidParameterError(
            f"{what} {text!r} is not a regular file (a FIFO, socket or device would block "
            "or fail); give the path of a regular file."
        )
    return path
