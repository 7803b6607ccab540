"""Checks of user arguments shared by the client, the endpoints and the store.

Each returns the value in its proper type or raises InvalidParameterError naming the
parameter, the bad value and what would be accepted. Text forms are understood where OpenBB's
REST examples send them (``limit="None"``, ``save_results="True"``).
"""

from __future__ import annotations

import math
import zoneinfo
from typing import Any

from obbws_jupyter._util import DefaultPort
from obbws_jupyter.exceptions import InvalidParameterError

__all__ = ["check_bool", "check_limit", "check_port", "check_positive", "check_retries", "check_tz"]

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
    """A TCP port 0-65535 (0 picks a free one); a DefaultPort keeps its marker type."""
    if isinstance(port, bool):
        raise InvalidParameterError(f"{what} must be an integer 0-65535, got {port!r}.")
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{what} must be an integer 0-65535, got {port!r}.") from None
    if not 0 <= number <= 65535:
        raise InvalidParameterError(f"{what} must be an integer 0-65535, got {port!r}.")
    return DefaultPort(number) if isinstance(port, DefaultPort) else number
