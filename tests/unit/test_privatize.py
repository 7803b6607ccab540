"""tools/privatize.py: the rewrite rules on sample text, and one real run on a clone of the
repository (renamed with git mv, nothing left to do on a second run, logger names kept)."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import sys
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("privatize", ROOT / "tools" / "privatize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


privatize = _load()

# a sample of ours, written for this test: every form the script must handle
SAMPLE = '''"""Uses :mod:`obbws_jupyter.store` (see obbws_jupyter/store.py)."""
import logging

import obbws_jupyter.stream
from obbws_jupyter import api, runtime
from obbws_jupyter import (
    protocol,
    store as st,
)
from obbws_jupyter.broadcast import WIRE_LOGGER

log = logging.getLogger("obbws_jupyter.store")
WIRE = "obbws_jupyter.stream.websockets"
SERVER_LOGGER = "obbws_jupyter.broadcast"
ARGS = ["-m", "obbws_jupyter.cli"]  # run obbws_jupyter.cli as a module
TARGET = "obbws_jupyter.tail:LiveTail"
SCRIPT = """
    from obbws_jupyter import api
"""
driver = obbws_jupyter.stream.StreamDriver
apis = [api.kill, st.ResultsStore, runtime.run, protocol]


def f(caplog):
    caplog.set_level(logging.INFO, logger="obbws_jupyter.api")
    return obbws_jupyter.store_extra, "obbws_jupyter.storey"
'''

EXPECTED = '''"""Uses :mod:`obbws_jupyter._store` (see obbws_jupyter/_store.py)."""
import logging

import obbws_jupyter._stream
from obbws_jupyter import _api as api, runtime
from obbws_jupyter import (
    protocol,
    _store as st,
)
from obbws_jupyter._broadcast import WIRE_LOGGER

log = logging.getLogger("obbws_jupyter.store")
WIRE = "obbws_jupyter.stream.websockets"
SERVER_LOGGER = "obbws_jupyter.broadcast"
ARGS = ["-m", "obbws_jupyter._cli"]  # run obbws_jupyter._cli as a module
TARGET = "obbws_jupyter._tail:LiveTail"
SCRIPT = """
    from obbws_jupyter import _api as api
"""
driver = obbws_jupyter._stream.StreamDriver
apis = [api.kill, st.ResultsStore, runtime.run, protocol]


def f(caplog):
    caplog.set_level(logging.INFO, logger="obbws_jupyter.api")
    return obbws_jupyter.store_extra, "obbws_jupyter.storey"
'''


def test_python_references_are_rewritten_and_logger_names_kept() -> None:
    """Imports, dotted names, module strings, comments and paths move; loggers do not."""
    assert privatize._rewrite_python(SAMPLE) == EXPECTED


def test_the_rewrite_is_idempotent() -> None:
    """Rewriting rewritten code changes nothing (the script can run again after merges)."""
    assert privatize._rewrite_python(EXPECTED) == EXPECTED
    text = privatize._rewrite_text("see `obbws_jupyter.stream`\nfrom obbws_jupyter import api\n")
    assert text == "see `obbws_jupyter._stream`\nfrom obbws_jupyter import _api as api\n"
    assert privatize._rewrite_text(text) == text


def test_public_modules_are_not_in_the_rename_list() -> None:
    """The documented modules keep their names; every renamed one gets a leading underscore."""
    public = {"client", "listen", "protocol", "exceptions", "models", "sinks", "rest"}
    public |= {"widgets", "runtime", "capture", "fakes", "offline"}
    assert not public & set(privatize.RENAMES)
    assert all(new == f"_{old}" for old, new in privatize.RENAMES.items())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_run_on_a_clone_renames_and_a_second_run_has_nothing_to_do(
    tmp_path: pathlib.Path,
) -> None:
    """On a clone of the committed tree: the renames happen (git mv) unless already done,
    and a second run has nothing left to do."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--local", str(ROOT), str(clone)], check=True)
    package = clone / "obbws_jupyter"
    to_rename = sorted(old for old in privatize.RENAMES if (package / f"{old}.py").exists())
    script = clone / "tools" / "privatize.py"
    first = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert first.returncode == 0, first.stderr
    assert f"renamed {len(to_rename)} module(s)" in first.stdout
    for old, new in privatize.RENAMES.items():
        assert (package / f"{new}.py").exists() and not (package / f"{old}.py").exists()
    check = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stdout
    staged = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    for old in to_rename:  # each a git mv, so history follows the file
        assert f"obbws_jupyter/{old}.py -> obbws_jupyter/_{old}.py" in staged.stdout
