"""The desktop app: builds the parts, runs them on one qasync loop, closes them.

``run_gui(args)`` is what ``agent-phone`` (no ``--headless``) and
``agent-phone --demo`` run when a display is available. The parts are built
here and handed to each other through constructors (STYLE.md habit 3):
bridges, controller, settings store, keyring vault, window. Closing the
window hangs up, signs out, closes the engine (and the demo's platform), and
only then ends the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import logging.handlers
import os
import signal
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import platformdirs
from PySide6.QtWidgets import QApplication

from agent_phone.phone.history import CallHistory
from agent_phone.phone.history import default_path as default_history_path
from agent_phone.phone.ringer import AlertSounds
from agent_phone.ui.bridges import ConnectionStateBridge, PhoneBridge
from agent_phone.ui.controller import (
    EngineFactory,
    PhoneController,
    SessionState,
    default_engine,
)
from agent_phone.ui.demo_run import DemoRun
from agent_phone.ui.main_window import MainWindow
from agent_phone.ui.passwords import PasswordVault
from agent_phone.ui.settings import (
    AUTO_ANSWER,
    ON_QUEUE_AT_SIGN_IN,
    SettingsStore,
    alert_sound_settings,
)
from agent_phone.ui.sign_in import SignInForm
from agent_phone.ui.tasks import OwnedTasks
from agent_phone.ui.tray import TrayNotifier

logger = logging.getLogger(__name__)

APP_NAME = "agent-phone"
LOG_BYTES = 2_000_000


def log_file() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)) / "agent-phone.log"


def settings_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.ini"


def setup_logging(path: Path, verbose: bool = False) -> None:
    """Everything at INFO (DEBUG with -v) into one log file; stderr keeps its level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.level == logging.NOTSET:  # e.g. app.main's stderr handler
            handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=1, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(file_handler)
    # aioice logs every ICE candidate check at INFO: dozens of lines per call.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    root.setLevel(min(root.level or logging.WARNING, file_handler.level))
    logger.info("agent-phone window starting; log file %s", path)


def install_exception_handlers(loop: asyncio.AbstractEventLoop) -> None:
    """Log what nobody caught: in loop callbacks and in Qt slots (sys.excepthook)."""

    def on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        logger.error("asyncio: %s", context.get("message"), exc_info=exc)

    def on_uncaught(
        kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        # PySide6 reports an exception raised in a slot here and carries on.
        logger.critical("uncaught exception", exc_info=(kind, exc, tb))

    loop.set_exception_handler(on_loop_error)
    sys.excepthook = on_uncaught


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line options, for the sign-in they start (never saved as settings)."""
    out: dict[str, Any] = {}
    if getattr(args, "on_queue", False):
        out["on_queue"] = True
    if getattr(args, "auto_answer", False):
        out["auto_answer"] = True
    if getattr(args, "persistent", True) is False:
        out["persistent"] = False
    for name in ("mic", "speaker"):
        if value := getattr(args, name, None):
            out[f"{name}_device"] = value
    if getattr(args, "reconnect", 0):
        out["reconnect_attempts"] = args.reconnect
    if addresses := getattr(args, "ice_address", None):
        out["ice_addresses"] = tuple(addresses)
    for name in ("mic_file", "speaker_file"):
        if value := getattr(args, name, None):
            out[name] = value
    if ca := getattr(args, "ca", None):
        out["ca_file"] = Path(ca)
    return out


class GuiApp:
    """The window's parts for one run; ``run()`` returns when the window closed."""

    def __init__(
        self,
        args: argparse.Namespace,
        store: SettingsStore,
        vault: PasswordVault,
        engine_factory: EngineFactory = default_engine,
        history_path: Path | None = None,
    ) -> None:
        self.args = args
        self.store = store
        self.phone = PhoneBridge()
        self.connection = ConnectionStateBridge()
        self.demo: DemoRun | None = None
        if args.demo:
            self.demo = DemoRun(args, OwnedTasks("demo"))
            engine_factory = self.demo.engine
        # The engine's observers with no Qt in them: the ringer and the call history.
        self.history = CallHistory(history_path or default_history_path())
        self.sounds = AlertSounds(alert_sound_settings(store))
        self.controller = PhoneController(
            self.phone,
            self.connection,
            engine_factory,
            observers=(self.sounds.on_event, self.history.on_event),
        )
        self.window = MainWindow(
            self.controller,
            self.phone,
            self.connection,
            store,
            vault,
            history=self.history,
            sounds=self.sounds,
        )
        self.sounds.on_error = lambda text: self.window.statusBar().showMessage(text, 15000)
        panel = self.window.call_panel
        self.tray = TrayNotifier(
            self.window,
            self.phone,
            focus=lambda: panel.buttons["answer"] if panel.buttons["answer"].isVisible() else panel,
        )
        if self.demo is not None:
            self.demo.tasks.failed.connect(self.window.statusBar().showMessage)
        self._closed = asyncio.Event()
        self.window.closed.connect(self._closed.set)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Ctrl-C in the terminal, or a session logout: close as the window would.
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
                loop.add_signal_handler(sig, self.window.close)
        self.window.show()
        if self.demo is not None:
            await self._start_demo(self.demo)
        else:
            self._first_sign_in()
        await self._closed.wait()
        await self.close()
        return 0

    def _first_sign_in(self) -> None:
        args = self.args
        password = getattr(args, "password", None) or os.environ.get("AGENT_PHONE_PASSWORD")
        if args.platform and args.user and password:
            self.window.sign_in.submit(
                SignInForm(args.platform, args.user, password, overrides=_overrides(args))
            )
        else:
            dialog = self.window.sign_in.open_dialog(self.window)
            if args.platform or args.user:
                dialog.fill(args.platform or "", args.user or "")
        if getattr(args, "persistent", True) is False:
            self.window.show_persistent_override(False)

    async def _start_demo(self, demo: DemoRun) -> None:
        url = await demo.start()
        if not demo.has_devices:
            # No sound card: the demo's audio is files; nothing to ring on.
            self.sounds.configure(dataclasses.replace(self.sounds.settings, enabled=False))
        # run_gui gives the demo a throwaway settings file, so this does not
        # touch the agent's own: alice takes calls at once, with no click.
        self.store.set(AUTO_ANSWER, True)
        self.store.set(ON_QUEUE_AT_SIGN_IN, True)
        self.window.set_title("Agent Phone (demo)")
        self.controller.state_changed.connect(self._on_demo_state)
        self.window.sign_in.submit(
            SignInForm(url, "alice", "demo", save_account=False, overrides=_overrides(self.args))
        )
        demo.start_callers()

    def _on_demo_state(self, state: SessionState) -> None:
        if state is SessionState.SIGNED_IN and self.demo is not None:
            self.window.statusBar().showMessage(self.demo.audio_note, 20000)

    async def close(self) -> None:
        """Hang up, sign out, close the engine and the demo. Idempotent."""
        await self.controller.close()
        await self.sounds.close()
        self.tray.close()
        if self.demo is not None:
            await self.demo.close()


def run_gui(args: argparse.Namespace) -> int:
    """Run the window until it is closed; the exit status."""
    setup_logging(log_file(), verbose=getattr(args, "verbose", False))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Agent Phone")
    app.setDesktopFileName(APP_NAME)
    # The loop ends when our close() is done, not when Qt sees no window.
    app.setQuitOnLastWindowClosed(False)
    # Imported here, after PySide6: qasync binds to the Qt binding already
    # loaded, and would otherwise pick PyQt5 first if that is installed.
    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_exception_handlers(loop)
    if args.demo:
        # The demo must not overwrite the agent's settings (its platform URL
        # changes each run, and it turns auto answer on).
        demo_dir = Path(tempfile.mkdtemp(prefix="agent-phone-demo-"))
        store = SettingsStore.at(demo_dir / "settings.ini")
        history: Path | None = demo_dir / "call-history.jsonl"
    else:
        store = SettingsStore.at(settings_file())
        history = None  # the user data directory (platformdirs)
    try:
        with loop:
            code: int = loop.run_until_complete(_run(args, store, history))
            return code
    finally:
        asyncio.set_event_loop(None)


async def _run(args: argparse.Namespace, store: SettingsStore, history: Path | None) -> int:
    # Built inside the running loop: the demo platform's parts expect one.
    gui = GuiApp(args, store, PasswordVault(), history_path=history)
    return await gui.run()
