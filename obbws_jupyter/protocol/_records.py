"""Records: what a provider's session produces, and the typed fields that describe them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "FieldType", "Frame", "Record"]

Record = dict[str, Any]
Frame = str | bytes


class FieldType(enum.StrEnum):
    """Column types a provider record may declare (mapped to DuckDB/Arrow by the store)."""

    TIMESTAMP = "timestamp"  # int ns since epoch, UTC -> TIMESTAMPTZ
    STRING = "string"  # str -> VARCHAR
    FLOAT = "float"  # float -> DOUBLE
    INT = "int"  # int -> BIGINT
    BOOL = "bool"  # bool -> BOOLEAN


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a provider's normalized record: a typed column in the results table."""

    name: str
    type: FieldType
    description: str = ""
