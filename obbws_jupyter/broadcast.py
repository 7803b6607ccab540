"""``obbws_jupyter.broadcast``: the earlier name of :mod:`obbws_jupyter._broadcast`

(compatibility shim written by tools/privatize.py)."""

from obbws_jupyter._broadcast import *  # noqa: F403
from obbws_jupyter._broadcast import __all__ as __all__
