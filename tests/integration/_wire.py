"""Shared fixtures of the broadcast and listen tests: a small schema and a token."""

from __future__ import annotations

from obbws_jupyter.protocol import Field, FieldType

FIELDS = (
    Field("date", FieldType.TIMESTAMP),
    Field("symbol", FieldType.STRING),
    Field("price", FieldType.FLOAT),
)
BASE_NS = 1_795_612_353_123_456_789  # 2026-11-25T08:12:33.123456789-05:00
TOKEN = "s3cr3t-t0ken"
