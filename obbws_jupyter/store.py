"""``obbws_jupyter.store``: the earlier name of :mod:`obbws_jupyter._store`

(compatibility shim written by tools/privatize.py)."""

from obbws_jupyter._store import *  # noqa: F403
from obbws_jupyter._store import __all__ as __all__
