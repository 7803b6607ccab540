"""``obbws_jupyter.api``: the earlier name of :mod:`obbws_jupyter._api`

(compatibility shim written by tools/privatize.py)."""

from obbws_jupyter._api import *  # noqa: F403
from obbws_jupyter._api import __all__ as __all__
