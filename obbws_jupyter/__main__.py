"""``python -m obbws_jupyter``: the ``obbws`` command (see :mod:`obbws_jupyter._cli`), for an
environment whose scripts folder is not on PATH."""

from __future__ import annotations

from obbws_jupyter._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
