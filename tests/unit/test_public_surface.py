"""The public surface: the curated top-level names, the exceptions at the top, the states enum,
the typed-package marker, and a facade without import cycles."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
import zipfile

import pytest

import obbws_jupyter as obbws
from obbws_jupyter import exceptions
from obbws_jupyter.models import StreamState, WebSocketConnectionStatus

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "obbws_jupyter"
# Display and HTTP layers sit above the facade; a Connection reaches them lazily (conn.widget(),
# conn.chart()), so they are left out of the "no cycle even through lazy imports" check.
ABOVE_THE_FACADE = ("obbws_jupyter.widgets", "obbws_jupyter.rest", "obbws_jupyter._cli")


def test_every_public_exception_is_at_the_top_and_in_all() -> None:
    """Each class of exceptions.__all__ is obbws.<Name> (the same class) and in obbws.__all__."""
    for name in exceptions.__all__:
        assert getattr(obbws, name) is getattr(exceptions, name)
        assert name in obbws.__all__
    with pytest.raises(obbws.UnauthorizedError):
        raise exceptions.UnauthorizedError("caught by its top-level name")


def test_all_is_sorted_and_every_name_resolves() -> None:
    """obbws.__all__ is sorted, without duplicates, and each name is an attribute."""
    assert obbws.__all__ == sorted(set(obbws.__all__))
    for name in obbws.__all__:
        assert getattr(obbws, name) is not None
    for name in ("Registry", "default_registry", "ClientOptions", "StreamState"):
        assert name in obbws.__all__
    assert isinstance(obbws.default_registry(), obbws.Registry)


def test_stream_state_is_a_str_enum_that_keeps_the_status_json() -> None:
    """status.state is a StreamState equal to its text; JSON and model_dump carry the text."""
    status = WebSocketConnectionStatus(
        name="n",
        auth_required=False,
        subscribed_symbols="BTCUSD",
        is_running=True,
        is_broadcasting=False,
        save_results=False,
        state="running",
    )
    assert status.state is StreamState.RUNNING and status.state == "running"
    assert json.loads(status.model_dump_json())["state"] == "running"
    assert status.model_dump(mode="json")["state"] == "running"
    assert f"{status.state}" == "running" and str(status.state) == "running"
    assert WebSocketConnectionStatus.model_validate(status.model_dump()).state == "running"
    values = {s.value for s in StreamState}
    assert values == {
        "idle",
        "connecting",
        "running",
        "reconnecting",
        "stopped",
        "failed",
        "finished",
        "closed",
    }


def test_stream_module_keeps_no_bare_states_tuple() -> None:
    """The unused stream.STATES tuple is gone: StreamState is the one list of states."""
    from obbws_jupyter import _stream as stream

    assert not hasattr(stream, "STATES")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (nothing imported yet); its output as text."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_connection_module_imports_first_in_a_fresh_interpreter() -> None:
    """Importing obbws_jupyter._connection before anything else works (no half-built module)."""
    code = (
        "import obbws_jupyter._connection as c, sys; "
        "assert 'obbws_jupyter._api' not in sys.modules, 'connection pulled in the api module'; "
        "import obbws_jupyter as o; "
        "assert o.Connection is c.Connection; print('ok')"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: pathlib.Path, module: str, modules: set[str], lazy: bool) -> set[str]:
    """The package modules ``path`` imports: at module level, or anywhere with ``lazy``;
    never counting ``if TYPE_CHECKING:`` blocks (they do not run)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = node.test
                name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
                if name != "TYPE_CHECKING":
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, is_package)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif lazy and isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.With)
            ):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {m for m in found if m in modules and m != module}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def _graph(lazy: bool, leave_out: tuple[str, ...] = ()) -> dict[str, set[str]]:
    modules = {
        name: path
        for name, path in _modules().items()
        if not any(name == top or name.startswith(f"{top}.") for top in leave_out)
    }
    return {name: _imports(path, name, set(modules), lazy) for name, path in modules.items()}


def test_the_package_has_no_import_cycle_at_module_level() -> None:
    """Walking every module's top-level imports finds no cycle anywhere in the package."""
    assert _cycles(_graph(lazy=False)) == []


def test_the_facade_has_no_cycle_even_through_lazy_imports() -> None:
    """Counting imports inside functions too, the core (api, registry, Connection, client and
    below) has no cycle: connection.py reaches neither api nor the registry module."""
    graph = _graph(lazy=True, leave_out=ABOVE_THE_FACADE)
    assert _cycles(graph) == []
    assert "obbws_jupyter._api" not in graph["obbws_jupyter._connection"]
    assert "obbws_jupyter._connections" not in graph["obbws_jupyter._connection"]
    assert "obbws_jupyter._api" not in graph["obbws_jupyter._connections"]


def test_py_typed_marks_both_packages_in_the_wheel(tmp_path: pathlib.Path) -> None:
    """A wheel built from the source tree ships py.typed for obbws_jupyter and obbws_providers."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("obbws_jupyter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"obbws_jupyter/py.typed", "obbws_providers/py.typed"} <= names


def test_obbws_listen_is_callable_after_importing_the_module() -> None:
    """`import obbws_jupyter as obbws; from obbws_jupyter.listen import listen` (the README's
    order) leaves obbws.listen callable as listen(): Python sets the package attribute to the
    submodule, which therefore calls the function."""
    code = (
        "import obbws_jupyter as obbws\n"
        "from obbws_jupyter.listen import listen\n"
        "from obbws_jupyter.exceptions import InvalidParameterError\n"
        "try:\n"
        "    obbws.listen('ws://127.0.0.1:1', max_records=0)\n"
        "except InvalidParameterError as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: max_records must be a positive int")
