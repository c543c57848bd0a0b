"""``run_gui`` itself, as ``agent-phone --demo`` runs it: the whole app, offscreen.

The demo's in-process platform and caller place a call; alice answers it with
no click; closing the window then hangs up, signs out, stops the platform and
ends the loop with status 0, all logged to the one log file.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from agent_phone.app import parse_args
from agent_phone.ui.app import log_file, run_gui
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.main_window import MainWindow


def test_the_demo_answers_a_call_and_closes_cleanly(qapp, monkeypatch, tmp_path: Path):
    # Keep the log and settings out of the user's home; restore what run_gui installs.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    seen: dict[str, Any] = {}

    def watch() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        window = next((w for w in windows if w.isVisible()), None)
        if window is None:
            return
        view = window.call_panel.view
        seen.setdefault("views", []).append(view)
        if view is CallView.CONNECTED:
            seen["title"] = window.windowTitle()
            seen["detail"] = window.call_panel.detail.text()
            window.close()

    poll = QTimer()
    poll.timeout.connect(watch)
    poll.start(50)
    # A bound on the whole run: close whatever window is open after 25 s.
    # (Stopped at the end: left armed, it closed a later test's windows.)
    bound = QTimer()
    bound.setSingleShot(True)
    bound.timeout.connect(lambda: [w.close() for w in QApplication.topLevelWidgets()])
    bound.start(25000)
    args = parse_args(["--demo", "--demo-calls", "1", "--demo-timeout", "5"])
    try:
        code = run_gui(args)
    finally:
        bound.stop()
        poll.stop()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)

    assert code == 0
    assert CallView.CONNECTED in seen.get("views", []), seen
    assert seen["title"] == "Agent Phone (demo)"
    assert "Answered automatically" in seen["detail"]
    log = log_file()
    assert str(log).startswith(str(tmp_path))
    text = log.read_text()
    assert "session signed_in -> signed_out (closed)" in text
    assert "password='demo'" not in text and '"password": "demo"' not in text
