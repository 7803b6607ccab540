"""The Binder link of this repository, derived from its git remote.

    python binder/link.py          # print the link (from the remote "origin", if on GitHub)
    python binder/link.py --write  # also put it in README.md, between the binder-link markers

README.md holds the link in exactly one place, between ``<!-- binder-link -->`` markers. While
the repository has no GitHub remote, the link names :data:`PLACEHOLDER` (clearly marked in
the README); once the remote exists, ``--write`` puts the real path there, and
tests/notebooks/test_binder.py checks that the README matches the remote.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLACEHOLDER = "SET-GITHUB-OWNER/obbws-jupyter"
START, END = "<!-- binder-link -->", "<!-- /binder-link -->"
_GITHUB = re.compile(r"github\.com[:/]+([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


def github_repo(remote_url: str) -> str | None:
    """``owner/name`` of a GitHub remote URL (https or ssh), else None."""
    match = _GITHUB.search(remote_url.strip())
    return f"{match[1]}/{match[2]}" if match else None


def remote_repo() -> str | None:
    """``owner/name`` of this checkout's ``origin`` remote when it is on GitHub."""
    try:
        url = subprocess.run(
            ["git", "-C", str(ROOT), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return github_repo(url)


def binder_url(repo: str) -> str:
    return f"https://mybinder.org/v2/gh/{repo}/HEAD?urlpath=lab/tree/notebooks/quickstart.ipynb"


def block(repo: str) -> str:
    """What README.md holds between the markers."""
    note = (
        ""
        if repo != PLACEHOLDER
        else "\n(Set the GitHub path here, or run `python binder/link.py --write` once the"
        " repository has its GitHub remote: no remote was configured when this was written.)"
    )
    return (
        f"{START}\n[![Binder](https://mybinder.org/badge_logo.svg)]({binder_url(repo)})"
        f"{note}\n{END}"
    )


def readme_block(text: str) -> str:
    start, end = text.index(START), text.index(END) + len(END)
    return text[start:end]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md")
    args = parser.parse_args()
    repo = remote_repo()
    print(binder_url(repo or PLACEHOLDER))
    if repo is None:
        print("no GitHub remote 'origin': the README keeps the marked placeholder")
    if args.write:
        text = README.read_text(encoding="utf-8")
        README.write_text(text.replace(readme_block(text), block(repo or PLACEHOLDER)))


if __name__ == "__main__":
    main()
