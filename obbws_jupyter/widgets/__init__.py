"""Live views of connections for Jupyter (anywidget): the only package that imports
ipywidgets/anywidget.

- :class:`ConnectionWidget` (``conn.widget()``, or ``conn`` as a cell's last expression): the
  live view of one connection, refreshed at its ``sleep_time`` from an in-memory tail.
- :func:`dashboard` (``obbws.dashboard()``): every connection of the kernel, plus a form that
  opens new ones.
- :mod:`.chart` (``conn.chart()``, ``conn.plot()``): live and static plotly figures of a
  stream; imported only when a chart is asked for.

The ESM and CSS files sit in ``static/`` beside the Python: no build step, no CDN, so the
views work offline and on Binder, in JupyterLab, Notebook 7 and VS Code.
"""

from __future__ import annotations

from obbws_jupyter.widgets.board import Dashboard, dashboard
from obbws_jupyter.widgets.connection import ConnectionWidget, connection_widget

__all__ = ["ConnectionWidget", "Dashboard", "connection_widget", "dashboard"]
