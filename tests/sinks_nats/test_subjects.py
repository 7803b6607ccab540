"""The NATS subject mapping and matching of the sink and reader (pure functions, no server)."""

from __future__ import annotations

import pytest

from obbws_jupyter.sinks.nats import _intersect, default_stream_name, subject_matches, subject_token


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("BTCUSD", "BTCUSD"),
        ("BRK.B", "BRK%2EB"),
        ("EUR/USD", "EUR/USD"),
        ("a b", "a%20b"),
        ("x*>y", "x%2A%3Ey"),
        ("50%", "50%25"),
        ("tab\there", "tab%09here"),
        ("nbsp\u00a0x", "nbsp%C2%A0x"),
        ("", "_"),
    ],
)
def test_subject_tokens_escape_what_nats_forbids(text: str, token: str) -> None:
    """Names and symbols become one subject token: '.', '*', '>', '%', whitespace and
    control characters percent-encoded (UTF-8 bytes), an empty one as '_'."""
    assert subject_token(text) == token


def test_distinct_symbols_keep_distinct_subjects() -> None:
    """The mapping is one-to-one: symbols that differ only in an escaped character do not
    share a subject."""
    symbols = ["BRK.B", "BRK%2EB", "BRK_B", "BRK B", "BRK*B"]
    assert len({subject_token(s) for s in symbols}) == len(symbols)


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("obbws.>", "obbws.demo.BTCUSD", True),
        ("obbws.*.BTCUSD", "obbws.demo.BTCUSD", True),
        ("obbws.*.BTCUSD", "obbws.demo.ETHUSD", False),
        ("obbws.demo", "obbws.demo.BTCUSD", False),
        ("obbws.demo.>", "obbws.demo", False),
    ],
)
def test_subject_matching(pattern: str, subject: str, matches: bool) -> None:
    """'*' takes one token and a final '>' one or more, as NATS matches them."""
    assert subject_matches(pattern, subject) is matches


@pytest.mark.parametrize(
    ("stream_subject", "asked", "common"),
    [
        ("obbws.a.>", "obbws.>", "obbws.a.>"),
        ("obbws.a.>", "obbws.*.BTCUSD", "obbws.a.BTCUSD"),
        ("obbws.a.>", "obbws.b.>", None),
        ("obbws.>", "obbws.a.BTCUSD", "obbws.a.BTCUSD"),
        ("obbws.a.x", "obbws.a.x.y", None),
    ],
)
def test_a_stream_subject_and_the_asked_one_intersect(
    stream_subject: str, asked: str, common: str | None
) -> None:
    """The reader consumes, per stream subject, exactly the part the asked subject shares
    with it (or nothing)."""
    assert _intersect(stream_subject, asked) == common


def test_default_stream_names_are_valid() -> None:
    """A connection name that a stream name cannot hold is written with '_' instead."""
    assert default_stream_name("demo") == "OBBWS_demo"
    assert default_stream_name("my desk.v2/x") == "OBBWS_my_desk_v2_x"
