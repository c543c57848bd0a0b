"""The platform's event stream: one JSON line per event on stdout.

Other programs and tests read it (the contract is in docs/protocol.md);
in-process listeners (tests, benchmarks) can subscribe too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

Listener = Callable[[dict[str, Any]], None]


class EventLog:
    def __init__(self, out: TextIO | None = sys.stdout) -> None:
        self._out = out
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "t": time.time(), **fields}
        if self._out is not None:
            self._out.write(json.dumps(record) + "\n")
            self._out.flush()
        for listener in list(self._listeners):
            listener(record)
        return record
