"""Binder: the files in binder/ alone give a working environment, and the README's Binder link
matches the repository's GitHub remote (or the one marked placeholder while there is none)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import TIMEOUT

pytestmark = pytest.mark.notebook

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def _link_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("binder_link", BINDER / "link.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runtime_python() -> str:
    """The interpreter runtime.txt asks for (python-3.11 -> python3.11)."""
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    found = shutil.which(f"python{version}")
    if found is None and sys.version.startswith(version):
        found = sys.executable
    assert found, f"runtime.txt asks for Python {version}, which is not installed"
    return found


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


EXECUTE = textwrap.dedent("""
    import sys
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": sys.argv[2]}}).execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                raise SystemExit(f"{out.ename}: {out.evalue}")
            if out.output_type == "stream":
                print(out.text, end="")
""")


@pytest.mark.timeout(60 * TIMEOUT)
def test_binder_files_alone_install_and_run_the_quickstart(tmp_path: Path) -> None:
    """A fresh virtualenv from binder/ (runtime.txt, requirements.txt, postBuild) runs the
    quickstart, and JupyterLab is set to open on it."""
    venv = tmp_path / "venv"
    _run([_runtime_python(), "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", HOME=str(tmp_path / "home"))
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    # repo2docker runs pip from the repository root, so "." in requirements.txt is this repo
    _run([python, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
         cwd=ROOT, env=env, timeout=40 * TIMEOUT)  # fmt: skip
    _run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env, timeout=TIMEOUT)
    config = (tmp_path / "home" / ".jupyter" / "jupyter_server_config.py").read_text()
    assert 'default_url = "/lab/tree/notebooks/quickstart.ipynb"' in config
    _run([python, "-c", "import jupyterlab, obbws_jupyter.widgets"], env=env, cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    notebook = str(ROOT / "notebooks" / "quickstart.ipynb")
    out = _run([python, "-c", EXECUTE, notebook, str(work)], env=env, cwd=work,
               timeout=20 * TIMEOUT).stdout  # fmt: skip
    assert "results file deleted: True" in out
    assert "Client quickstart_demo killed." in out


def test_github_remotes_give_the_binder_path() -> None:
    """https and ssh GitHub remotes give owner/name; other hosts give nothing."""
    link = _link_module()
    assert link.github_repo("https://github.com/acme/obbws-jupyter.git") == "acme/obbws-jupyter"
    assert link.github_repo("git@github.com:acme/obbws-jupyter.git\n") == "acme/obbws-jupyter"
    assert link.github_repo("https://github.com/acme/obbws.jupyter") == "acme/obbws.jupyter"
    assert link.github_repo("https://gitlab.com/acme/obbws-jupyter.git") is None


def test_readme_binder_link_matches_the_remote() -> None:
    """README.md has one Binder link: the remote's path, or the marked placeholder if none."""
    link = _link_module()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(link.START) == 1 and readme.count("mybinder.org/v2/gh/") == 1
    repo = link.remote_repo()
    assert link.readme_block(readme) == link.block(repo or link.PLACEHOLDER)
    assert "OWNER/REPO" not in readme
    assert "HEAD?urlpath=lab/tree/notebooks/quickstart.ipynb" in link.binder_url("a/b")
