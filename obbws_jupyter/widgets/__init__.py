"""Jupyter views of a connection: the only package that imports plotly, anywidget and ipywidgets.

Nothing is imported here, so ``import obbws_jupyter`` stays free of widget libraries; the
connection methods import what they need (``chart`` / ``plot`` -> :mod:`.chart`).
"""
