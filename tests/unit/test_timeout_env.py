"""``OBBWS_TIMEOUT`` is read when a call waits, not when the package is imported."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from obbws_jupyter import runtime
from obbws_jupyter.exceptions import InvalidParameterError, ObbwsTimeoutError
from tests.conftest import TIMEOUT


def test_the_default_timeout_follows_the_environment_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changing OBBWS_TIMEOUT after import changes how long run() waits by default."""
    monkeypatch.delenv(runtime.TIMEOUT_ENV, raising=False)
    assert runtime.default_timeout() == runtime.DEFAULT_TIMEOUT
    monkeypatch.setenv(runtime.TIMEOUT_ENV, "0.05")
    assert runtime.default_timeout() == 0.05
    with pytest.raises(ObbwsTimeoutError, match=r"within 0\.05 s"):
        runtime.run(asyncio.sleep(TIMEOUT))
    assert runtime.run(asyncio.sleep(0, result="explicit"), timeout=TIMEOUT) == "explicit"


@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf", "nan"])
def test_a_bad_timeout_setting_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A value that is not seconds > 0 raises InvalidParameterError naming OBBWS_TIMEOUT,
    and the coroutine handed to run() is closed, not left unawaited."""
    monkeypatch.setenv(runtime.TIMEOUT_ENV, value)
    with pytest.raises(InvalidParameterError, match="OBBWS_TIMEOUT"):
        runtime.default_timeout()
    coro = asyncio.sleep(0)
    with pytest.raises(InvalidParameterError, match="OBBWS_TIMEOUT"):
        runtime.run(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
