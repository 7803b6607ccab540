"""``obbws_jupyter.connection``: the earlier name of :mod:`obbws_jupyter._connection`

(compatibility shim written by tools/privatize.py)."""

from obbws_jupyter._connection import *  # noqa: F403
from obbws_jupyter._connection import __all__ as __all__
