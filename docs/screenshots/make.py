#!/usr/bin/env python3
"""Take the window's screenshots in docs/screenshots from the real app.

    python docs/screenshots/make.py [--out docs/screenshots] [--dark]

Starts the tests' virtual sound card, a private Xvfb (1366x768, Qt's xcb
platform) and the real platform as a process, builds the window as
``run_gui`` does, and drives it through real calls from caller processes:
signed in, an incoming call (ringing), a call in progress, the call ended,
a declined and an auto-answered call for the history, the settings dialog
with a tone playing into the microphone (the meter), the Phone menu, and the
indicator in each state as it passed through them. Each picture is the
widget's own ``grab()``: what Qt drew, with no window-manager frame.
With ``--dark`` the app runs with a dark palette (as on a desktop with a
dark theme) and only the call, settings and indicator pictures are written,
named ``*-dark.png``.

Then ``quality.png`` (``quality_scene``): a call over a media path impaired
in this process (agent_phone/media/netem.py: loss in bursts, delay and
jitter), shown once the phone's own quality report grades it fair or poor,
with the call-quality icon's tooltip. ``--scene quality`` takes only that
picture (``--scene main`` all the others). ``--scene control``: the
call waiting, the transfer dialog, a consult and the wrap-up form
(``control_scene``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


#: What --dark writes (as NAME-dark.png).
DARK_SHOTS = {"in-call.png", "incoming-call.png", "settings.png", "history.png"}

#: The quality scene's network, on the phone's side (both directions): enough
#: loss in bursts that concealment passes the "fair" threshold, with delay
#: and jitter for the round trip and the buffering figures.
QUALITY_NETWORK = "loss=0.08,burst=2.5,delay_ms=45,jitter_ms=20,seed=7"


def dark_palette() -> Any:
    """Fusion's colours for a dark desktop theme."""
    from PySide6.QtGui import QColor, QPalette

    p = QPalette()
    roles = QPalette.ColorRole
    for role, colour in (
        (roles.Window, "#2b2b2b"),
        (roles.WindowText, "#e8e8e8"),
        (roles.Base, "#1e1e1e"),
        (roles.AlternateBase, "#333333"),
        (roles.ToolTipBase, "#3c3c3c"),
        (roles.ToolTipText, "#e8e8e8"),
        (roles.Text, "#e8e8e8"),
        (roles.Button, "#3a3a3a"),
        (roles.ButtonText, "#e8e8e8"),
        (roles.Highlight, "#2a82da"),
        (roles.HighlightedText, "#000000"),
        (roles.PlaceholderText, "#9e9e9e"),
    ):
        p.setColor(role, QColor(colour))
    return p


async def until(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def app_window(workdir: Path, name: str) -> Any:
    """The app as ``run_gui`` builds it, with its own settings and history
    files (``name``), its window 560x440 and shown."""
    from test_ui_window import MemoryKeyring, _args

    from agent_phone.ui.app import GuiApp
    from agent_phone.ui.passwords import PasswordVault
    from agent_phone.ui.settings import SettingsStore

    store = SettingsStore.at(workdir / f"{name}-settings.ini")
    gui = GuiApp(
        _args(), store, PasswordVault(MemoryKeyring()), history_path=workdir / f"{name}.jsonl"
    )
    gui.window.resize(560, 440)
    gui.window.show()
    return gui


async def scenes(url: str, out: Path, audio: Any, workdir: Path, dark: bool = False) -> None:
    from audio_analysis import make_tone
    from procs import CallerProcess
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QColor, QFont, QPainter, QPixmap

    from agent_phone.phone.connection_state import Indicator
    from agent_phone.ui.call_panel import CallView
    from agent_phone.ui.controller import SessionState
    from agent_phone.ui.history_view import HistoryDialog
    from agent_phone.ui.settings import AUTO_ANSWER
    from agent_phone.ui.settings_dialog import SettingsDialog
    from agent_phone.ui.sign_in import SignInForm

    gui = app_window(workdir, "main")
    win, panel = gui.window, gui.window.call_panel
    states: dict[Indicator, QPixmap] = {}

    def note_state(_status: Any) -> None:
        state = win.indicator.shown_state
        if state not in states or state is Indicator.ACTIVE:
            states[state] = win.indicator.grab()

    gui.connection.changed.connect(note_state)
    await asyncio.sleep(0.5)
    states[Indicator.OFF] = win.indicator.grab()

    def save(widget: Any, name: str) -> None:
        if dark:
            if name not in DARK_SHOTS:
                return
            name = name.replace(".png", "-dark.png")
        widget.grab().save(str(out / name))
        print("wrote", out / name, flush=True)

    callers: list[Any] = []

    def call(*args: str) -> None:
        callers.append(CallerProcess(url, *args, log_dir=workdir))

    try:
        win.sign_in.submit(SignInForm(url, "bob", "demo", save_account=False))
        await until(lambda: gui.controller.state is SessionState.SIGNED_IN, "signed in")
        await asyncio.sleep(0.5)
        save(win, "signed-in-off-queue.png")
        win.agent_panel.queue_action.trigger()
        await until(lambda: win.agent_panel.on_queue, "on queue")

        call("--tone", "440", "--duration", "0", "--caller", "Dana Whitfield")
        await until(lambda: panel.view is CallView.INCOMING, "incoming")
        await asyncio.sleep(0.8)
        save(win, "incoming-call.png")
        panel.call_actions.answer.trigger()
        await until(lambda: "hear the customer" in panel.detail.text(), "audio")
        await asyncio.sleep(2.3)
        win.statusBar().clearMessage()
        save(win, "in-call.png")
        panel.call_actions.hangup.trigger()
        await until(lambda: panel.view is CallView.ENDED, "ended")
        await asyncio.sleep(0.3)
        save(win, "call-ended.png")

        call("--duration", "0", "--wait", "10", "--caller", "Marcus Lee")
        await until(lambda: panel.view is CallView.INCOMING, "second call")
        await asyncio.sleep(1.0)
        panel.call_actions.decline.trigger()
        await until(lambda: panel.view is CallView.ENDED, "declined")
        gui.store.set(AUTO_ANSWER, True)
        call("--tone", "440", "--duration", "2", "--caller", "Priya Shah", "--wait", "20")
        await until(lambda: panel.view is CallView.CONNECTED, "auto answered", 30)
        await until(lambda: panel.view is CallView.ENDED, "third ended", 30)

        win.history_action.trigger()
        history = win.findChild(HistoryDialog)
        assert history is not None
        await asyncio.sleep(0.5)
        save(history, "history.png")
        history.close()

        win.device_refresh_ms = 0
        win.settings_action.trigger()
        dialog = win.findChild(SettingsDialog)
        assert dialog is not None
        await until(lambda: "devices found" in dialog.device_status.text(), "devices")
        feed = audio.play_into_mic(make_tone(440, 6.0, amplitude=0.12))
        await until(lambda: dialog.meter.value() > -30, "the meter", 5)
        await asyncio.sleep(0.35)
        save(dialog, "settings.png")
        feed.stop()
        dialog.reject()

        menu = win.menuBar().actions()[0].menu()
        win.activateWindow()
        menu.popup(win.mapToGlobal(QPoint(0, win.menuBar().height())))
        await asyncio.sleep(0.6)
        shot = win.grab()
        painter = QPainter(shot)
        painter.drawPixmap(win.mapFromGlobal(menu.pos()), menu.grab())
        painter.end()
        menu.hide()
        if not dark:
            shot.save(str(out / "phone-menu.png"))
            print("wrote", out / "phone-menu.png", flush=True)

        win.persistent_action.trigger()  # off: the indicator's last state
        await until(lambda: win.indicator.shown_state is Indicator.OFF, "off")
        win.persistent_action.trigger()

        order = [Indicator.ACTIVE, Indicator.CONNECTING, Indicator.INACTIVE, Indicator.OFF]
        missing = [s.value for s in order if s not in states]
        if missing:
            raise RuntimeError(f"indicator states not seen: {missing}")
        scale, cell_w, cell_h = 3, 284, 150
        legend = QPixmap(cell_w * len(order), cell_h)
        legend.fill(win.palette().window().color() if dark else QColor("white"))
        painter = QPainter(legend)
        painter.setFont(QFont("DejaVu Sans", 13))
        painter.setPen(win.palette().windowText().color() if dark else QColor("black"))
        for i, state in enumerate(order):
            pix = states[state]
            big = pix.scaled(
                pix.width() * scale, pix.height() * scale, Qt.AspectRatioMode.KeepAspectRatio
            )
            x = i * cell_w + (cell_w - big.width()) // 2
            painter.drawPixmap(x, 28, big)
            painter.drawText(i * cell_w, 100, cell_w, 40, Qt.AlignmentFlag.AlignCenter, state.value)
        painter.end()
        legend_name = "indicator-states-dark.png" if dark else "indicator-states.png"
        legend.save(str(out / legend_name))
        print("wrote", out / legend_name, flush=True)
    finally:
        win.close()
        await gui.close()
        for caller in callers:
            caller.stop()


async def quality_scene(url: str, out: Path, workdir: Path, dark: bool = False) -> None:
    """A connected call graded fair or poor by the phone's own quality report,
    the icon's tooltip open: ``quality.png``."""
    from procs import CallerProcess
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtGui import QPainter, QPixmap
    from PySide6.QtWidgets import QApplication, QToolTip

    from agent_phone.media import netem
    from agent_phone.ui.call_panel import CallView
    from agent_phone.ui.controller import SessionState
    from agent_phone.ui.quality_view import QualityGrade
    from agent_phone.ui.sign_in import SignInForm

    # Every ICE socket opened from here on in this process: this app's only.
    netem.install(netem.parse(QUALITY_NETWORK))
    gui = app_window(workdir, "quality")
    win, panel = gui.window, gui.window.call_panel
    reports: list[Any] = []
    gui.phone.quality.connect(reports.append)
    caller = None
    try:
        win.sign_in.submit(SignInForm(url, "carol", "demo", save_account=False))
        await until(lambda: gui.controller.state is SessionState.SIGNED_IN, "signed in")
        win.agent_panel.queue_action.trigger()
        await until(lambda: win.agent_panel.on_queue, "on queue")
        caller = CallerProcess(
            url, "--tone", "440", "--duration", "0", "--caller", "Dana Whitfield", log_dir=workdir
        )
        await until(lambda: panel.view is CallView.INCOMING, "incoming", 30)
        panel.call_actions.answer.trigger()
        await until(lambda: panel.view is CallView.CONNECTED, "connected", 30)

        def graded() -> bool:
            # The second report on: the round trip is known by then.
            return len(reports) >= 2 and panel.quality.grade in (
                QualityGrade.FAIR,
                QualityGrade.POOR,
            )

        await until(graded, "a fair or poor quality report", 60)
        win.statusBar().clearMessage()
        # Just after a report, so the next one does not change the picture.
        count = len(reports)
        await until(lambda: len(reports) > count, "the next report", 10)
        await asyncio.sleep(0.1)
        icon = panel.quality
        QToolTip.showText(
            icon.mapToGlobal(QPoint(icon.width() // 2, icon.height() + 6)), icon.toolTip(), icon
        )
        await asyncio.sleep(0.6)
        tips = [w for w in QApplication.topLevelWidgets() if w.inherits("QTipLabel")]
        tip = next((w for w in tips if w.isVisible()), None)
        if tip is None:
            raise RuntimeError("the quality tooltip did not show")
        shot, tip_shot = win.grab(), tip.grab()
        at = win.mapFromGlobal(tip.pos())
        area = QRect(QPoint(0, 0), shot.size()).united(QRect(at, tip_shot.size()))
        picture = QPixmap(area.size())
        picture.fill(win.palette().window().color())
        painter = QPainter(picture)
        painter.drawPixmap(-area.topLeft(), shot)
        painter.drawPixmap(at - area.topLeft(), tip_shot)
        painter.end()
        QToolTip.hideText()
        name = "quality-dark.png" if dark else "quality.png"
        picture.save(str(out / name))
        print(f"wrote {out / name} ({icon.grade.value}):", icon.toolTip().splitlines(), flush=True)
        panel.call_actions.hangup.trigger()
        await until(lambda: panel.view is CallView.ENDED, "ended")
    finally:
        win.close()
        await gui.close()
        if caller is not None:
            caller.stop()


async def dial_scene(url: str, out: Path, workdir: Path) -> None:
    """The dial pad with a number typed (``dial-pad.png``), then the outbound
    call it placed, connected (``outbound-call.png``)."""
    from procs import CallerProcess
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter, QPixmap

    from agent_phone.ui.call_panel import CallView
    from agent_phone.ui.controller import SessionState
    from agent_phone.ui.sign_in import SignInForm

    gui = app_window(workdir, "dial")
    win, panel = gui.window, gui.window.call_panel
    customer = CallerProcess(url, "--answer", "+15550100", "--duration", "0", log_dir=workdir)
    try:
        win.sign_in.submit(SignInForm(url, "alice", "demo", save_account=False))
        await until(lambda: gui.controller.state is SessionState.SIGNED_IN, "signed in")
        await asyncio.sleep(1.0)  # the customer's trunk awaits calls to the number
        panel.call_actions.dial.trigger()
        await until(lambda: win.dial_pad is not None and win.dial_pad.isVisible(), "the pad")
        pad = win.dial_pad
        assert pad is not None
        pad.number.setText("+15550100")
        await asyncio.sleep(0.3)
        # The pad over the window, where the window system would show it.
        picture = QPixmap(win.size())
        picture.fill()
        painter = QPainter(picture)
        painter.drawPixmap(0, 0, win.grab())
        offset = QPoint(win.width() - pad.width() - 16, 40)
        painter.drawPixmap(offset, pad.grab())
        painter.end()
        picture.save(str(out / "dial-pad.png"))
        print("wrote", out / "dial-pad.png", flush=True)
        pad.call_button.click()
        await until(lambda: panel.view is CallView.CONNECTED, "connected")
        await asyncio.sleep(2.5)
        win.grab().save(str(out / "outbound-call.png"))
        print("wrote", out / "outbound-call.png", flush=True)
        panel.call_actions.hangup.trigger()
        await until(lambda: panel.view is CallView.ENDED, "ended")
    finally:
        win.close()
        await gui.close()
        customer.stop()


async def control_scene(out: Path, workdir: Path) -> None:
    """Call control against a platform of its own (queue ``support`` with
    wrap-up codes): carol's call waiting while bob talks with a customer
    (``call-waiting.png``), then answered with the customer held
    (``call-waiting-held.png``); the transfer dialog over a call (``transfer.png``), the
    call while bob consults carol (``consult.png``), and the wrap-up form
    once the transfer is complete (``wrap-up.png``). carol is a phone
    engine in this process, answering when offered."""
    from inprocess import signed_in_agent
    from procs import CallerProcess, PlatformProcess, write_config
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter, QPixmap

    from agent_phone.phone import events
    from agent_phone.ui.call_panel import CallView
    from agent_phone.ui.controller import SessionState
    from agent_phone.ui.sign_in import SignInForm

    config = write_config(
        workdir / "control.toml",
        {"wrap_up_codes": ["resolved", "callback_promised", "escalated"], "acw_timeout_s": 60},
    )
    platform = PlatformProcess(config, log_dir=workdir)
    gui = app_window(workdir, "control")
    win, panel = gui.window, gui.window.call_panel
    customer: Any = None

    def over(dialog: Any) -> QPixmap:
        picture = QPixmap(win.size())
        picture.fill()
        painter = QPainter(picture)
        painter.drawPixmap(0, 0, win.grab())
        painter.drawPixmap(QPoint(win.width() - dialog.width() - 16, 40), dialog.grab())
        painter.end()
        return picture

    try:
        async with signed_in_agent(platform, "carol", workdir, hz=1000.0) as carol:
            await carol.engine.set_status("busy")
            win.sign_in.submit(SignInForm(platform.url, "bob", "demo", save_account=False))
            await until(lambda: gui.controller.state is SessionState.SIGNED_IN, "signed in")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")
            customer = CallerProcess(
                platform.url,
                "--tone",
                "440",
                "--duration",
                "60",
                "--caller",
                "Dana Whitfield",
                log_dir=workdir,
            )
            await until(lambda: panel.buttons["answer"].isVisible(), "ringing")
            panel.buttons["answer"].click()
            await until(lambda: panel.view is CallView.CONNECTED, "connected")
            await asyncio.sleep(2.0)
            # carol calls bob meanwhile: her call waits under his.
            bar = panel.other_call
            await carol.engine.dial(agent="bob")
            await until(lambda: bar.isVisible(), "the call waiting")
            await asyncio.sleep(0.5)
            win.grab().save(str(out / "call-waiting.png"))
            print("wrote", out / "call-waiting.png", flush=True)
            bar.actions_.answer.trigger()
            await until(lambda: bar.buttons["swap"].isVisible(), "the customer held")
            await asyncio.sleep(1.5)
            win.grab().save(str(out / "call-waiting-held.png"))
            print("wrote", out / "call-waiting-held.png", flush=True)
            await carol.engine.hangup()
            await until(lambda: panel.held and not bar.isVisible(), "the customer shown")
            panel.call_actions.hold.trigger()  # resume
            await until(lambda: not panel.held, "the customer back")
            panel.call_actions.transfer.trigger()
            await until(lambda: win.transfer_dialog is not None, "the transfer dialog")
            dialog = win.transfer_dialog
            dialog.filter.setText("car")
            await asyncio.sleep(0.3)
            over(dialog).save(str(out / "transfer.png"))
            print("wrote", out / "transfer.png", flush=True)
            dialog.go.click()
            offered = await carol.wait_for(events.CallChanged, lambda e: e.state == "alerting")
            await carol.engine.answer(offered.call_id)  # type: ignore[attr-defined]
            await until(lambda: panel.call_actions.complete.isEnabled(), "consulting")
            await asyncio.sleep(1.5)
            win.grab().save(str(out / "consult.png"))
            print("wrote", out / "consult.png", flush=True)
            panel.call_actions.complete.trigger()
            await until(lambda: win.wrap_up.isVisible(), "the wrap-up form")
            win.wrap_up.codes.setCurrentRow(0)
            await asyncio.sleep(1.2)
            win.grab().save(str(out / "wrap-up.png"))
            print("wrote", out / "wrap-up.png", flush=True)
            win.wrap_up.button.click()
            await until(lambda: not win.wrap_up.isVisible(), "wrapped up")
    finally:
        win.close()
        await gui.close()
        if customer is not None:
            customer.stop()
        platform.stop()


async def web_scene(out: Path, workdir: Path) -> None:
    """The click-to-call page in headless Chromium (its fake microphone a
    tone), connected to bob, a phone engine in this process, answering by
    auto answer: ``click-to-call.png``."""
    from audio_analysis import make_tone
    from browser import Chromium
    from inprocess import signed_in_agent
    from procs import PlatformProcess, write_config

    from agent_phone.media.wav import write_wav
    from agent_phone.phone import events

    config = write_config(workdir / "web.toml", click_to_call_queues=["support"])
    platform = PlatformProcess(config, log_dir=workdir)
    microphone = workdir / "web-customer.wav"
    write_wav(microphone, make_tone(440.0, 4.0))
    browser = Chromium(microphone, workdir / "chromium")
    try:
        await browser.start()
        async with signed_in_agent(platform, "bob", workdir, auto_answer=True) as bob:
            base = platform.url.replace("ws://", "http://").removesuffix("/ws")
            page = await browser.open(f"{base}/call?queue=support")
            await page.evaluate("document.getElementById('call').click()")
            await bob.wait_for(events.CallChanged, lambda e: e.state == "connected")
            await page.wait_for("callPage.state === 'connected'")
            await page.evaluate("document.getElementById('hangup').focus()")
            await page.screenshot(out / "click-to-call.png", 560, 400)
            print("wrote", out / "click-to-call.png", flush=True)
            await page.evaluate("document.getElementById('hangup').click()")
            await page.close()
    finally:
        browser.stop()
        platform.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    p.add_argument("--dark", action="store_true", help="a dark palette; writes *-dark.png")
    p.add_argument(
        "--scene",
        choices=("all", "main", "quality", "dial", "control", "web"),
        default="all",
        help="main: every picture but quality.png and the dial pad's; quality: only quality.png;"
        " dial: only dial-pad.png and outbound-call.png; control: transfer.png, consult.png"
        " and wrap-up.png; web: click-to-call.png (headless Chromium)",
    )
    opts = p.parse_args()
    import virtual_audio
    from test_packaging import start_xvfb, stop_process

    audio = virtual_audio.VirtualAudio(virtual_audio.prepare_environment())
    audio.start()
    xvfb, display = start_xvfb()
    os.environ.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    from procs import PlatformProcess, write_config

    workdir = Path(tempfile.mkdtemp(prefix="agent-phone-shots-"))
    # The demo's agents and queue without after-call work: the scenes take
    # calls back to back (the control scene has its own, with it).
    platform = PlatformProcess(write_config(workdir / "platform.toml"), log_dir=workdir)
    try:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance() or QApplication(sys.argv[:1])
        app.setQuitOnLastWindowClosed(False)
        if opts.dark:
            app.setStyle("Fusion")
            app.setPalette(dark_palette())
        import qasync

        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            if opts.scene in ("all", "main"):
                loop.run_until_complete(scenes(platform.url, opts.out, audio, workdir, opts.dark))
            if opts.scene in ("all", "quality"):
                loop.run_until_complete(quality_scene(platform.url, opts.out, workdir, opts.dark))
            if opts.scene in ("all", "dial") and not opts.dark:
                loop.run_until_complete(dial_scene(platform.url, opts.out, workdir))
            if opts.scene in ("all", "control") and not opts.dark:
                loop.run_until_complete(control_scene(opts.out, workdir))
            if opts.scene in ("all", "web") and not opts.dark:
                loop.run_until_complete(web_scene(opts.out, workdir))
    finally:
        platform.stop()
        stop_process(xvfb)
        audio.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
