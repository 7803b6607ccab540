"""Make the modules that are not public private (``store.py`` -> ``_store.py``), mechanically.

Run from anywhere inside the repository::

    python tools/privatize.py            # rename with `git mv` and rewrite every reference
    python tools/privatize.py --check    # exit 1 if anything is left to do (changes nothing)

What it does, idempotently (a second run changes nothing):

1. ``git mv obbws_jupyter/<old>.py obbws_jupyter/<new>.py`` for each entry of ``RENAMES``.
2. Rewrites every reference in the tracked (and new, not ignored) text files of the repository:
   the package, ``providers/``, ``tests/``, ``benchmarks/``, ``docs/``, ``notebooks/``,
   ``examples/``, ``binder/``, ``README.md``, ``pyproject.toml``, ``Makefile``, ``.ci/``:

   - dotted names in code (``import obbws_jupyter.store``, ``from obbws_jupyter.store import X``,
     ``obbws_jupyter.store.ResultsStore``);
   - ``from obbws_jupyter import store`` becomes ``from obbws_jupyter import _store as store``,
     so the code below it keeps its local name;
   - module paths inside strings, docstrings and comments (``importlib.import_module(...)``,
     ``"-m", "obbws_jupyter.cli"``, ``"obbws_jupyter.x:serve"`` entry points, Sphinx roles,
     the import lines of a script held in a string), and file paths
     (``obbws_jupyter/store.py``);
   - the same in Markdown, notebooks (their JSON text), TOML and the Makefile.

   Logger names are left alone: they are part of the logging contract (``obbws_jupyter.<area>``)
   and stay as they are when the module moves. A string is a logger name when it is passed to
   ``getLogger``, ``caplog.at_level``/``set_level`` or as ``logger=``, assigned to a name
   containing ``LOGGER``/``logger``, or names a ``.websockets`` child logger.
3. Writes a compatibility shim ``obbws_jupyter/<old>.py`` only for the names in ``SHIMS``
   (modules a user was told to import by name). None is needed today: every documented module
   (``client``, ``listen``, ``protocol``, ``exceptions``, ``models``, ``sinks``, ``rest``,
   ``widgets``, ``runtime``, ``capture``, ``fakes``, ``offline``) stays public.
4. Runs ``ruff check --fix --select I`` and ``ruff format`` on the Python files it changed,
   when ruff is available, so the rewritten import blocks are sorted as the linter wants.

The list of renames lives here and nowhere else; add to it and run the script again.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shutil
import subprocess
import sys
import tokenize
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "obbws_jupyter"

# old module name -> new module name, inside obbws_jupyter/ (files, not packages)
RENAMES: dict[str, str] = {
    "api": "_api",
    "broadcast": "_broadcast",
    "cli": "_cli",
    "connection": "_connection",
    "store": "_store",
    "stream": "_stream",
    "tail": "_tail",
    "wire": "_wire",
}

# old names that keep a module re-exporting the new one (documented import paths)
# Names that earlier releases documented or that scripts may import: a one-line shim keeps them
# importable (the curated names of the private module, nothing else).
SHIMS: frozenset[str] = frozenset({"api", "connection", "broadcast", "store", "stream"})

TEXT_SUFFIXES = {".md", ".ipynb", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".rst"}
TEXT_NAMES = {"Makefile", "run"}
SKIP = {"tools/privatize.py", "tests/unit/test_privatize.py"}  # they hold the old names on purpose
LOGGER_CALLS = {"getLogger", "at_level", "set_level"}

_OLD = "|".join(sorted(map(re.escape, RENAMES), key=len, reverse=True))
# obbws_jupyter.<old> as a whole dotted component (not obbws_jupyter.<old>_x, not a logger's
# ".websockets" child); and obbws_jupyter/<old>.py as a path
_DOTTED = re.compile(rf"\b{PACKAGE}\.({_OLD})\b(?!\.websockets\b)(?![\w-])")
_PATH = re.compile(rf"\b{PACKAGE}/({_OLD})\.py\b")
_FROM_IMPORT_LINE = re.compile(rf"^(\s*from {PACKAGE} import )([^\n(]+)$", re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if not done")
    args = parser.parse_args(argv)
    root = _root()
    pending = [old for old in RENAMES if (root / PACKAGE / f"{old}.py").exists()]
    pending = [old for old in pending if old not in SHIMS or _is_real_module(root, old)]
    changed = [p for p in _files(root) if _rewrite(p, dry_run=True)]
    if args.check:
        for old in pending:
            print(f"to rename: {PACKAGE}/{old}.py -> {RENAMES[old]}.py")
        for path in changed:
            print(f"to rewrite: {path.relative_to(root)}")
        return 1 if pending or changed else 0
    for old in pending:
        _rename(root, old)
    changed = [p for p in _files(root) if _rewrite(p, dry_run=False)]
    for old in sorted(SHIMS):
        _write_shim(root, old)
    _tidy(root, [p for p in changed if p.suffix == ".py"])
    print(f"renamed {len(pending)} module(s), rewrote {len(changed)} file(s)")
    return 0


def _root() -> Path:
    out = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _is_real_module(root: Path, old: str) -> bool:
    """True unless obbws_jupyter/<old>.py is already the shim this script writes."""
    text = (root / PACKAGE / f"{old}.py").read_text(encoding="utf-8")
    return _SHIM_MARK not in text


def _rename(root: Path, old: str) -> None:
    new = root / PACKAGE / f"{RENAMES[old]}.py"
    if new.exists():
        raise SystemExit(
            f"both {PACKAGE}/{old}.py and {new.name} exist: merge them by hand, then re-run"
        )
    subprocess.run(
        ["git", "mv", f"{PACKAGE}/{old}.py", f"{PACKAGE}/{RENAMES[old]}.py"], cwd=root, check=True
    )


def _files(root: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    found = []
    for name in sorted(set(out.stdout.splitlines())):
        path = root / name
        if name in SKIP or not path.is_file():
            continue
        if path.suffix == ".py" or path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            found.append(path)
    return found


def _rewrite(path: Path, dry_run: bool) -> bool:
    text = path.read_text(encoding="utf-8")
    if _SHIM_MARK in text:  # a shim names the old module on purpose
        return False
    new = _rewrite_python(text) if path.suffix == ".py" else _rewrite_text(text)
    if new == text:
        return False
    if not dry_run:
        path.write_text(new, encoding="utf-8")
    return True


# -- text files ------------------------------------------------------------------------------


def _rewrite_text(text: str) -> str:
    text = _FROM_IMPORT_LINE.sub(lambda m: m.group(1) + _aliased_names(m.group(2)), text)
    text = _DOTTED.sub(lambda m: f"{PACKAGE}.{RENAMES[m.group(1)]}", text)
    return _PATH.sub(lambda m: f"{PACKAGE}/{RENAMES[m.group(1)]}.py", text)


def _aliased_names(names: str) -> str:
    """``a, store, b as c`` -> ``a, _store as store, b as c`` (one line of imported names)."""
    parts = []
    for part in names.split(","):
        words = part.split()
        if words and words[0] in RENAMES:
            local = words[2] if len(words) == 3 and words[1] == "as" else words[0]
            lead = part[: len(part) - len(part.lstrip())]
            tail = part[len(part.rstrip()) :]
            part = f"{lead}{RENAMES[words[0]]} as {local}{tail}"
        parts.append(part)
    return ",".join(parts)


# -- Python files ----------------------------------------------------------------------------


def _rewrite_python(text: str) -> str:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        loggers = _logger_strings(text)
    except (tokenize.TokenError, SyntaxError):
        return _rewrite_text(text)  # not Python we can parse (a template): plain text rules
    starts = _line_starts(text)
    edits: list[tuple[int, int, str]] = []
    for i, tok in enumerate(tokens):
        start = starts[tok.start[0] - 1] + tok.start[1]
        end = starts[tok.end[0] - 1] + tok.end[1]
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            if tok.type == tokenize.STRING and tok.start in loggers:
                continue
            replaced = _rewrite_text(tok.string)  # code in strings (a subprocess's script) too
            if replaced != tok.string:
                edits.append((start, end, replaced))
        elif tok.type == tokenize.NAME and tok.string in RENAMES:
            replacement = _name_edit(tokens, i)
            if replacement is not None:
                edits.append((start, end, replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _name_edit(tokens: list[tokenize.TokenInfo], i: int) -> str | None:
    """The new text of NAME token ``i`` when it names a renamed module, else None."""
    old = tokens[i].string
    prev = _significant(tokens, i, -1)
    if prev is not None and prev.string == ".":
        before = _significant(tokens, tokens.index(prev), -1)
        if before is not None and before.string == PACKAGE:
            return RENAMES[old]  # obbws_jupyter.<old> in code
        return None
    if prev is not None and prev.string in ("import", ",", "(") and _in_from_package(tokens, i):
        following = _significant(tokens, i, +1)
        if following is not None and following.string == "as":
            return RENAMES[old]
        return f"{RENAMES[old]} as {old}"
    return None


def _in_from_package(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    """True when token ``i`` is an imported name of ``from obbws_jupyter import ...``."""
    j = i - 1
    depth = 0
    while j >= 0:
        tok = tokens[j]
        if tok.type == tokenize.NEWLINE:
            return False
        if tok.string == ")":
            depth += 1
        elif tok.string == "(":
            depth -= 1
        if tok.string == "import":
            names = [t.string for t in tokens[max(j - 2, 0) : j] if t.type == tokenize.NAME]
            return names == ["from", PACKAGE]
        j -= 1
    return False


def _significant(tokens: list[tokenize.TokenInfo], i: int, step: int) -> tokenize.TokenInfo | None:
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    j = i + step
    while 0 <= j < len(tokens):
        if tokens[j].type not in skip:
            return tokens[j]
        j += step
    return None


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _logger_strings(text: str) -> set[tuple[int, int]]:
    """Start positions (line, column) of the string literals that are logger names."""
    found: set[tuple[int, int]] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in LOGGER_CALLS:
                found.update(_string_starts(node.args))
            found.update(_string_starts(k.value for k in node.keywords if k.arg == "logger"))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any("logger" in ast.unparse(t).lower() for t in targets):
                found.update(_string_starts([node.value] if node.value else []))
    return found


def _string_starts(nodes: Iterable[ast.AST]) -> set[tuple[int, int]]:
    return {
        (n.lineno, n.col_offset)
        for n in nodes
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


# -- shims and tidying -----------------------------------------------------------------------

_SHIM_MARK = "compatibility shim written by tools/privatize.py"


def _write_shim(root: Path, old: str) -> None:
    new = RENAMES[old]
    path = root / PACKAGE / f"{old}.py"
    path.write_text(
        f'"""``{PACKAGE}.{old}``: the earlier name of :mod:`{PACKAGE}.{new}`\n\n'
        f'({_SHIM_MARK})."""\n\n'
        f"from {PACKAGE}.{new} import *  # noqa: F403\n"
        f"from {PACKAGE}.{new} import __all__ as __all__\n",
        encoding="utf-8",
    )
    subprocess.run(["git", "add", str(path)], cwd=root, check=True)


def _tidy(root: Path, paths: list[Path]) -> None:
    ruff = _ruff(root)
    if ruff is None or not paths:
        return
    names = [str(p) for p in paths]
    subprocess.run([ruff, "check", "--fix", "--quiet", "--select", "I", *names], cwd=root)
    subprocess.run([ruff, "format", "--quiet", *names], cwd=root)


def _ruff(root: Path) -> str | None:
    local = root / ".venv" / "bin" / "ruff"
    return str(local) if local.exists() else shutil.which("ruff")


if __name__ == "__main__":
    sys.exit(main())
