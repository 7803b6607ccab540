"""``obbws_jupyter.stream``: the earlier name of :mod:`obbws_jupyter._stream`

(compatibility shim written by tools/privatize.py)."""

from obbws_jupyter._stream import *  # noqa: F403
from obbws_jupyter._stream import __all__ as __all__
