"""``obbws.dashboard()``: every connection of the kernel in one view, with the same controls.

The widget form of ``get_client_status("all")``: a header (how many connections, how many are
hidden by their ``auth_token``, and a small form that opens a new connection: provider,
name, symbols, asset type, feed) above the :class:`ConnectionWidget` of every connection the
given ``auth_token`` may see. Those are the connections' own widgets (one per connection), so
a connection shown in its cell and in the dashboard stays one model. The shared refresher
checks the registry once a second and adds or removes connections as they come and go.
"""

from __future__ import annotations

import threading
from typing import Any

import anywidget
import ipywidgets
import traitlets

from obbws_jupyter._connections import default_registry
from obbws_jupyter._registry import available_providers, get_provider
from obbws_jupyter.exceptions import ObbwsError, UnauthorizedError
from obbws_jupyter.widgets._refresher import refresher
from obbws_jupyter.widgets.connection import (
    STATIC,
    ConnectionWidget,
    _actions,
    connection_widget,
)

__all__ = ["Dashboard", "DashboardHeader", "dashboard"]

SYNC_EVERY = 1.0  # seconds between checks of the registry
_names = iter(range(1, 1_000_000))


def provider_choices() -> list[dict[str, Any]]:
    """What the new-connection form offers per provider: its asset types and feeds."""
    out = []
    for name in available_providers():
        spec = get_provider(name)
        entry: dict[str, Any] = {"name": name, "description": spec.description}
        for param in ("asset_type", "feed"):
            try:
                p = spec.param(param)
            except (KeyError, ValueError):
                continue
            entry[param] = {"choices": list(p.choices or ()), "default": p.default}
        entry["needs"] = [
            p.name
            for p in spec.params
            if p.required and p.name not in ("symbol", "asset_type", "feed")
        ]
        out.append(entry)
    return out


class DashboardHeader(anywidget.AnyWidget):
    """The dashboard's title line and its new-connection form."""

    _esm = STATIC / "dashboard.js"
    _css = STATIC / "connection.css"

    providers: traitlets.List[Any] = traitlets.List().tag(sync=True)
    count = traitlets.Int(0).tag(sync=True)
    hidden = traitlets.Int(0).tag(sync=True)

    def __init__(self, dashboard: Dashboard, **kwargs: Any) -> None:
        super().__init__(providers=provider_choices(), **kwargs)
        self._dashboard = dashboard
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "create":
            _actions.submit(self.create, dict(content.get("params") or {}), content.get("req"))

    def create(self, params: dict[str, Any], req: Any = None) -> dict[str, Any]:
        """Open a connection from the form's fields (empty fields are left out); the answer
        (its name, or the error's message) goes back to the form."""
        fields: dict[str, Any] = {
            k: v.strip() for k, v in params.items() if isinstance(v, str) and v.strip()
        }
        provider = fields.pop("provider", "")
        name = fields.pop("name", "") or f"{provider or 'conn'}-{next(_names)}"
        try:
            default_registry().create_connection(
                provider, name, auth_token=self._dashboard.auth_token, **fields
            )
            result = {"ok": True, "message": f"opened {name}"}
        except ObbwsError as exc:
            result = {"ok": False, "message": str(exc)}
        except Exception as exc:  # shown in the form, readable
            result = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
        self.send({"type": "result", "req": req, **result})
        self._dashboard.sync()
        return result


class Dashboard(ipywidgets.VBox):
    """Every connection visible with ``auth_token``, each as its live widget."""

    def __init__(self, auth_token: str | None = None) -> None:
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._shown: list[int] = []
        self._next = 0.0
        self.header = DashboardHeader(self)
        super().__init__(children=[self.header])
        self.add_class("obbws-dashboard")
        self.sync()
        refresher.add(self)

    @property
    def connections(self) -> list[ConnectionWidget]:
        return [c for c in self.children if isinstance(c, ConnectionWidget)]

    def tick(self, now: float) -> float:
        if now >= self._next:
            self._next = now + SYNC_EVERY
            self.sync()
        return self._next

    def sync(self) -> None:
        """Show exactly the registered connections this dashboard's token may see."""
        with self._lock:
            registry = default_registry()
            clients = registry.clients()
            visible = [c for c in clients if c.check_token(self.auth_token)]
            self.header.hidden = len(clients) - len(visible)
            self.header.count = len(visible)
            ids = [id(c) for c in visible]
            if ids == self._shown:
                return
            widgets = []
            for client in visible:
                try:
                    conn = registry.connection(client.name, self.auth_token)
                    widgets.append(connection_widget(conn, rows=None))
                except (UnauthorizedError, ObbwsError):  # killed meanwhile
                    continue
            self._shown = ids
            self.children = [self.header, *widgets]

    def close(self) -> None:
        refresher.remove(self)
        self.header.close()
        super().close()


def dashboard(auth_token: str | None = None) -> Dashboard:
    """Every connection of this kernel in one live view, plus a form that opens new ones.

    Show it as a cell's last expression (or with ``display``). ``auth_token`` also shows the
    connections created with that token; the header says how many stay hidden."""
    return Dashboard(auth_token=auth_token)
