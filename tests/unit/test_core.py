"""Core pieces without sockets: backoff, connect_kwargs, masking, the public surface."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import obbws_jupyter
from obbws_jupyter import exceptions
from obbws_jupyter._stream import backoff
from obbws_jupyter._util import mask_secrets
from obbws_jupyter.client import parse_connect_kwargs
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsError

ROOT = Path(__file__).resolve().parents[2]


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    """Nominal delay doubles per attempt, stays under the cap, jitter spans [0.5, 1.5)."""
    assert backoff(1, 0.5, 30, rand=lambda: 0.5) == 0.5
    assert backoff(4, 0.5, 30, rand=lambda: 0.5) == 4.0
    assert backoff(50, 0.5, 30, rand=lambda: 0.5) == 30.0
    assert backoff(3, 1, 30, rand=lambda: 0.0) == 2.0
    assert backoff(3, 1, 30, rand=lambda: 0.999) == pytest.approx(5.996)


def test_connect_kwargs_accepts_dicts_and_json_objects() -> None:
    """connect_kwargs may be a dict or a JSON object string; None means none."""
    assert parse_connect_kwargs(None) == {}
    assert parse_connect_kwargs('{"ping_interval": 5}') == {"ping_interval": 5}
    assert parse_connect_kwargs({"max_size": 10}) == {"max_size": 10}


@pytest.mark.parametrize(
    ("value", "match"),
    [("{bad", "Invalid JSON"), ("[1]", "dictionary"), (3, "dictionary"), ({"nope": 1}, "nope")],
)
def test_connect_kwargs_errors_are_specific(value: object, match: str) -> None:
    """Bad JSON, non-objects and unknown keys are refused with the reason."""
    with pytest.raises(InvalidParameterError, match=match):
        parse_connect_kwargs(value)


def test_mask_secrets_hides_tokens_in_urls_and_headers() -> None:
    """Token-like query values and bearer tokens are masked."""
    text = mask_secrets("ws://h/?auth_token=abc&x=1 token=zzz Authorization: Bearer qqq api_key=k")
    assert "abc" not in text and "zzz" not in text and "qqq" not in text and "=k" not in text
    assert "x=1" in text


def test_all_is_sorted_complete_and_importable() -> None:
    """obbws_jupyter.__all__ is sorted, every name resolves, and the endpoints are all there."""
    names = obbws_jupyter.__all__
    assert names == sorted(names, key=lambda n: (n != n.lstrip("_"), n)) or names == sorted(names)
    for name in names:
        assert getattr(obbws_jupyter, name) is not None
    endpoints = {
        "clear_results",
        "create_connection",
        "get_client",
        "get_client_status",
        "get_results",
        "kill",
        "restart_connection",
        "start_broadcasting",
        "stop_broadcasting",
        "stop_connection",
        "subscribe",
        "unsubscribe",
    }
    assert endpoints <= set(names)
    from obbws_jupyter._connection import Connection

    assert endpoints - {"create_connection"} <= set(dir(Connection))


def test_every_exception_derives_from_the_root() -> None:
    """Each public exception class is an ObbwsError and is drawn in the module docstring."""
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, ObbwsError)
        assert name in (exceptions.__doc__ or "")


IO_LIBS = (
    "asyncio",
    "websockets",
    "duckdb",
    "pandas",
    "pyarrow",
    "ipywidgets",
    "anywidget",
    "plotly",
    "socket",
    "threading",
)


def test_providers_import_no_io_library_statically() -> None:
    """No module under providers/ imports an I/O, async, database or widget library."""
    for path in (ROOT / "providers" / "obbws_providers").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top not in IO_LIBS, f"{path.name} imports {mod}"
                if top == "obbws_jupyter":
                    assert mod == "obbws_jupyter.protocol", f"{path.name} imports {mod}"


def test_importing_the_providers_loads_no_io_library() -> None:
    """Importing every provider module in a fresh interpreter pulls in no I/O library."""
    code = (
        "import sys, importlib, pkgutil, obbws_providers\n"
        "for m in pkgutil.iter_modules(obbws_providers.__path__):\n"
        "    importlib.import_module('obbws_providers.' + m.name)\n"
        f"bad = [m for m in {IO_LIBS[:8]!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("check", "value", "expected"),
    [
        ("limit", None, None),
        ("limit", "None", None),
        ("limit", "250", 250),
        ("limit", 5, 5),
        ("bool", "True", True),
        ("bool", "false", False),
        ("bool", 0, False),
        ("retries", None, None),
        ("retries", 0, 0),
    ],
)
def test_validators_accept_values_and_openbb_text_forms(check: str, value, expected) -> None:  # type: ignore[no-untyped-def]
    """The shared validators accept proper values and OpenBB's text forms."""
    from obbws_jupyter import _validate

    func = {
        "limit": _validate.check_limit,
        "bool": lambda v: _validate.check_bool("flag", v),
        "retries": lambda v: _validate.check_retries("max_reconnects", v),
    }[check]
    assert func(value) == expected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda v: v.check_limit(0), "limit=0"),
        (lambda v: v.check_limit(True), "limit=True"),
        (lambda v: v.check_limit("lots"), "limit='lots'"),
        (lambda v: v.check_bool("save_results", "maybe"), "save_results"),
        (lambda v: v.check_retries("max_reconnects", "5"), "max_reconnects='5'"),
        (lambda v: v.check_positive("sleep_time", 0), "sleep_time=0"),
        (lambda v: v.check_positive("batch_rows", 1.5, whole=True), "batch_rows=1.5"),
        (lambda v: v.check_tz("Mars/Olympus"), "Mars/Olympus"),
        (lambda v: v.check_port(70000, "broadcast_port"), "broadcast_port"),
    ],
)
def test_validators_name_the_parameter_and_value(call, match: str) -> None:  # type: ignore[no-untyped-def]
    """Each refusal names the parameter and the bad value."""
    from obbws_jupyter import _validate

    with pytest.raises(InvalidParameterError, match=re.escape(match)):
        call(_validate)


def test_mask_secrets_hides_keys_in_json_auth_frames() -> None:
    """API keys inside JSON members (Tiingo's authorization, FMP's apiKey) are masked."""
    text = mask_secrets(
        """> TEXT '{"eventName":"subscribe","authorization":"tk-1","eventData":{}}' """
        """< TEXT '{"event": "login", "data": {"apiKey": "fk-2"}}' {"symbol": "aapl"}"""
    )
    assert "tk-1" not in text and "fk-2" not in text
    assert '"authorization":"********"' in text and '"apiKey": "********"' in text
    assert '"symbol": "aapl"' in text
