"""The log panel's source: a logging handler that keeps one connection's recent messages.

The core logs a connection's messages with its name as the first argument (``"%s: ..."`` in
stream/client/store, ``"[%s] "`` in broadcast); the handler keeps those records, so the
provider, broadcast and storage messages of a connection land in its widget instead of in
whichever cell runs. While a panel exists, the ``obbws_jupyter`` logger passes INFO records
unless the user set its level; handlers the user configured receive them as usual.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from obbws_jupyter._util import mask_secrets

__all__ = ["ConnectionLog"]

PACKAGE_LOGGER = "obbws_jupyter"
MAX_CHARS = 400

_lock = threading.Lock()
_panels = 0
_level_set_by_us = False


class ConnectionLog(logging.Handler):
    """Newest ``maxlen`` log lines of connection ``name`` (INFO and above)."""

    def __init__(self, name: str, maxlen: int = 200) -> None:
        super().__init__(logging.INFO)
        self.connection = name
        self.lines: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.seq = 0  # grows with every line: the widget sends the panel only when it moved
        # called with each of this connection's log records (the widget notices a clear)
        self.watchers: list[Callable[[logging.LogRecord], None]] = []
        self._prefixes = (f"{name}:", f"[{name}]", f"store {name!r}:")

    def belongs(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and args
            and args[0] in (self.connection, f"[{self.connection}] ")
        ):
            return True
        return isinstance(record.msg, str) and record.msg.startswith(self._prefixes)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.belongs(record):
            return
        for watcher in self.watchers:
            watcher(record)
        try:
            message = mask_secrets(record.getMessage())
        except Exception:  # a bad format string in someone's log call
            return
        prefixes = (f"{self.connection}: ", f"[{self.connection}] ")
        while message.startswith(prefixes):  # "name: name: gave up" (the name in the message too)
            for prefix in prefixes:
                message = message.removeprefix(prefix)
        self.add(record.levelname.lower(), message, record.created)

    def add(self, level: str, message: str, created: float) -> None:
        """Append one line (also used for the widget's own action results)."""
        self.lines.append({"t": int(created * 1000), "level": level, "msg": message[:MAX_CHARS]})
        self.seq += 1

    def install(self) -> ConnectionLog:
        global _panels, _level_set_by_us
        logger = logging.getLogger(PACKAGE_LOGGER)
        with _lock:
            _panels += 1
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.INFO)
                _level_set_by_us = True
            logger.addHandler(self)
        return self

    def uninstall(self) -> None:
        global _panels, _level_set_by_us
        logger = logging.getLogger(PACKAGE_LOGGER)
        with _lock:
            if self not in logger.handlers:
                return
            logger.removeHandler(self)
            _panels -= 1
            if _panels == 0 and _level_set_by_us:
                logger.setLevel(logging.NOTSET)
                _level_set_by_us = False
