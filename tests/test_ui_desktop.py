"""The window's ringer, connect tone and call history, against real processes.

As tests/test_ui_window.py: the real window offscreen (``GuiApp``) on a
qasync loop, a real platform and real callers on loopback, and real
PortAudio on the tests' virtual sound card. The window's ringer device is the
virtual card's second output, ``ringer`` (its own null sink), so what rings
there is told apart from what the speaker plays: this test records both
sinks' monitors and looks for the ring's 440 + 480 Hz and the connect tone's
1 kHz with an FFT (tests/audio_analysis.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import test_ui_window
from audio_analysis import has_tone, make_tone, rms
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QSystemTrayIcon
from test_ui_window import run, signed_in, until, window

from agent_phone.phone.history import CallHistory, CallRecord
from agent_phone.phone.sounds import CONNECT_HZ, RING_HZ, TEST_HZ
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.history_view import HistoryDialog
from agent_phone.ui.settings import AUTO_ANSWER, RINGER, RINGER_VOLUME, SPEAKER
from agent_phone.ui.settings_dialog import SettingsDialog
from agent_phone.ui.tray import should_notify

qloop = test_ui_window.qloop  # the same fixture

RINGER_DEVICE = "ringer"  # tests/virtual_audio.py's RINGER_PCM


def streams_on(virtual_audio: Any, sink: str) -> int:
    """How many playback streams PulseAudio has on ``sink`` now."""
    sinks = dict(
        (line.split("\t")[1], line.split("\t")[0])
        for line in virtual_audio.pactl("list", "short", "sinks").splitlines()
    )
    inputs = virtual_audio.pactl("list", "short", "sink-inputs").splitlines()
    return sum(1 for line in inputs if line.split("\t")[1] == sinks[sink])


def has_ring(samples: np.ndarray) -> bool:
    return all(has_tone(samples, f, tolerance_hz=8) for f in RING_HZ)


def tone_in_windows(samples: np.ndarray, freq: float, seconds: float = 0.25) -> bool:
    """``freq`` in any ``seconds``-long window (half overlapping)."""
    n = int(48000 * seconds)
    return any(
        has_tone(samples[i : i + n], freq, tolerance_hz=10)
        for i in range(0, max(1, samples.size - n), n // 2)
    )


def test_ringer_rings_until_answered_and_history_survives_a_restart(
    qloop, qtbot, virtual_audio, start_platform, start_caller, tmp_path
):
    platform = start_platform(alert_timeout_s=3)
    history_file = tmp_path / "call-history.jsonl"

    async def steps() -> None:
        async with window(tmp_path) as gui:
            gui.store.set(RINGER, RINGER_DEVICE)
            gui.store.set(RINGER_VOLUME, 100)
            win, panel = gui.window, gui.window.call_panel
            await signed_in(gui, platform.url, "bob")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")

            # 1. Rings on the ringer device (not the speaker) until answered.
            caller = start_caller(
                platform.url, "--tone", "300", "--duration", "0", "--caller", "Dana"
            )
            await until(lambda: panel.view is CallView.INCOMING, "the incoming call", 20)
            ringer = virtual_audio.start_recording(2.0, sink="ringer")
            speaker = virtual_audio.start_recording(2.0)
            await until(lambda: ringer.full.is_set() and speaker.full.is_set(), "2 s recorded")
            rang, speaker_heard = ringer.stop(), speaker.stop()
            assert has_ring(rang), f"no ring on the ringer sink (rms {rms(rang):.0f})"
            assert not any(has_tone(speaker_heard, f) for f in RING_HZ)
            assert gui.sounds.ringing

            qtbot.mouseClick(panel.buttons["answer"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.CONNECTED, "the call connected")
            await until(lambda: streams_on(virtual_audio, "ringer") == 0, "the ringer closed", 3)
            # A whole ring cycle (2 s on, 4 s off): a ring still going would be heard.
            after = virtual_audio.start_recording(6.5, sink="ringer")
            await until(lambda: after.full.is_set(), "6.5 s recorded", 15)
            quiet = after.stop()
            assert rms(quiet) < 10 and not has_ring(quiet), f"rms {rms(quiet):.0f}"
            # A manually answered call gets no connect tone.
            assert gui.sounds.tones_played == 0
            qtbot.mouseClick(panel.buttons["hangup"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.ENDED, "the call ended")
            code, summary = await asyncio.to_thread(caller.result, 30)
            assert summary["answered"] is True and summary["agent"] == "bob"

            # 2. Not answered: the platform's alert timeout (3 s) ends the ring.
            caller = start_caller(platform.url, "--duration", "0", "--wait", "6", "--caller", "Eve")
            await until(lambda: panel.view is CallView.INCOMING, "the second call", 20)
            await until(lambda: streams_on(virtual_audio, "ringer") == 1, "ringing again", 3)
            await until(lambda: panel.view is CallView.ENDED, "the alert timeout", 10)
            await until(lambda: streams_on(virtual_audio, "ringer") == 0, "the ring stopped", 3)
            assert not gui.sounds.ringing
            code, summary = await asyncio.to_thread(caller.result, 30)
            assert summary["answered"] is False

            # 3. Both calls in the history window, newest first.
            win.history_action.trigger()
            dialog = win.findChild(HistoryDialog)
            assert dialog is not None and dialog.isVisible()
            rows = dialog.rows()
            assert [r[1] for r in rows] == ["Eve", "Dana"]
            assert rows[0][2] == "support" and rows[0][4] == "Missed" and rows[0][3] == ""
            assert "Not answered in time" in rows[0][5]
            assert rows[1][4] == "Answered" and rows[1][3].startswith("0:0")
            assert rows[1][6] == "No" and rows[0][6] == "Yes"  # the 2nd came over the kept one
            assert all(r[7].endswith(" ms") for r in rows)
            first = gui.history.records()
            dana, eve = first[1], first[0]
            assert dana.answered and dana.duration_s > 2.0 and dana.end_reason == "agent_hangup"
            assert not eve.answered and eve.end_reason == "alert_timeout"
            assert eve.over_persistent_connection and not dana.over_persistent_connection
            assert 0 < dana.delivery_ms < 5000 and 0 < eve.delivery_ms < 5000
            assert dana.time < eve.time
            dialog.close()

        # 4. A new app object (a restart) reads the same calls back.
        assert CallHistory(history_file).records() == first
        async with window(tmp_path) as again:
            again.window.history_action.trigger()
            dialog = again.window.findChild(HistoryDialog)
            assert dialog is not None and [r[1] for r in dialog.rows()] == ["Eve", "Dana"]
            assert dialog.rows() == rows
            dialog.close()

    run(qloop, steps(), timeout=90)


def test_auto_answer_plays_the_connect_tone_on_the_speaker(
    qloop, virtual_audio, platform, start_caller, tmp_path
):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            gui.store.set(RINGER, RINGER_DEVICE)
            gui.store.set(AUTO_ANSWER, True)
            win, panel = gui.window, gui.window.call_panel
            await signed_in(gui, platform.url, "carol")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")

            speaker = virtual_audio.start_recording(20.0)
            ringer = virtual_audio.start_recording(20.0, sink="ringer")
            caller = start_caller(
                platform.url, "--tone", "300", "--duration", "3", "--caller", "Fay"
            )
            await until(lambda: panel.view is CallView.CONNECTED, "auto-answered", 20)
            await until(lambda: gui.sounds.tones_played == 1, "the connect tone started", 5)
            await asyncio.sleep(1.0)
            heard, rang = speaker.stop(), ringer.stop()
            code, summary = await asyncio.to_thread(caller.result, 30)
            assert code == 0 and summary["answered"] and summary["agent"] == "carol"

            assert tone_in_windows(heard, CONNECT_HZ), "no connect tone on the speaker"
            assert rms(rang) < 10 and not has_ring(rang), "an auto-answered call rang"
            assert gui.sounds.rings_started == 0
            # The caller may be gone a moment before the phone hears the call end.
            await until(lambda: gui.history.records(), "the call in the history", 10)
            record = gui.history.records()[0]
            assert record.caller == "Fay" and record.answered and record.auto_answered

            # A new speaker chosen between calls is used from the next call
            # (here the virtual card's second output), with no new sign-in.
            await until(lambda: panel.view is CallView.ENDED, "the call ended")
            gui.store.set(SPEAKER, RINGER_DEVICE)
            assert "from the next call" in win.statusBar().currentMessage()
            speaker = virtual_audio.start_recording(20.0)
            ringer = virtual_audio.start_recording(20.0, sink="ringer")
            caller = start_caller(
                platform.url, "--tone", "300", "--duration", "2", "--caller", "Hal"
            )
            await until(lambda: panel.view is CallView.CONNECTED, "the second call", 20)
            await asyncio.sleep(1.5)
            heard, rang = speaker.stop(), ringer.stop()
            await asyncio.to_thread(caller.result, 30)
            assert has_tone(rang, 300) and tone_in_windows(rang, CONNECT_HZ)
            assert not has_tone(heard, 300) and not tone_in_windows(heard, CONNECT_HZ)

    run(qloop, steps(), timeout=60)


def test_minimised_window_notifies_and_the_notification_brings_the_call_forward(
    qloop, virtual_audio, platform, start_caller, tmp_path
):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            win, panel, tray = gui.window, gui.window.call_panel, gui.tray
            await signed_in(gui, platform.url, "bob")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")

            win.showMinimized()
            await until(win.isMinimized, "minimised")
            start_caller(platform.url, "--duration", "0", "--wait", "20", "--caller", "Gus")
            await until(lambda: panel.view is CallView.INCOMING, "the incoming call", 20)
            assert [n.title for n in tray.notifications] == ["Incoming call: Gus"]
            assert "support" in tray.notifications[0].text
            # With a system tray the notification is shown there; offscreen has
            # none, and the same action is what a click on the icon or the
            # notification runs.
            assert tray.tray_available == QSystemTrayIcon.isSystemTrayAvailable()
            tray.show_action.trigger()
            await until(lambda: not win.isMinimized() and win.isVisible(), "restored")
            await until(lambda: QApplication.activeWindow() is win, "the window active")
            assert panel.buttons["answer"].hasFocus()
            # The window is in front now: the next call needs no notification.
            panel.call_actions.decline.trigger()
            await until(lambda: panel.view is CallView.ENDED, "declined")
            assert len(tray.notifications) == 1

    run(qloop, steps())


def test_notification_only_for_a_ringing_call_the_agent_cannot_see():
    assert should_notify(visible=False, minimized=False, auto_answer=False)
    assert should_notify(visible=True, minimized=True, auto_answer=False)
    assert not should_notify(visible=True, minimized=False, auto_answer=False)
    assert not should_notify(visible=False, minimized=False, auto_answer=True)
    assert not should_notify(visible=True, minimized=True, auto_answer=True)


async def _settings_dialog(gui: Any, refresh_ms: int = 0) -> SettingsDialog:
    gui.window.device_refresh_ms = refresh_ms
    gui.window.settings_action.trigger()
    dialog = gui.window.findChild(SettingsDialog)
    assert dialog is not None and dialog.isVisible()
    await until(lambda: "devices found" in dialog.device_status.text(), "the device list")
    return dialog


async def _meter_readings(dialog: SettingsDialog, seconds: float) -> list[int]:
    readings: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
        readings.append(dialog.meter.value())
    return readings


def test_settings_meter_test_sound_and_ringer_volume(qloop, qtbot, virtual_audio, tmp_path):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            dialog = await _settings_dialog(gui)
            assert RINGER_DEVICE in dialog.device_names(RINGER.key)

            # The microphone meter: silence reads low, a -10 dBFS tone high.
            await until(dialog.meter.isEnabled, "the meter running")
            quiet = await _meter_readings(dialog, 1.0)
            assert max(quiet) < -45, quiet
            feed = virtual_audio.play_into_mic(make_tone(880, 3.0, amplitude=0.3))
            loud = await _meter_readings(dialog, 2.0)
            feed.stop()
            assert max(loud) > -16, loud
            await until(lambda: dialog.meter.value() < -45, "the meter falling back", 3)

            # Test on the speaker: the test sound is heard on the speaker sink.
            speaker = virtual_audio.start_recording(4.0)
            qtbot.mouseClick(dialog._test_buttons[SPEAKER.key], Qt.MouseButton.LeftButton)
            await until(lambda: dialog._test_buttons[SPEAKER.key].isEnabled(), "played", 8)
            heard = speaker.stop()
            assert has_tone(heard, TEST_HZ), f"rms {rms(heard):.0f}"

            # Test on the ringer chosen in the list (not saved yet), at its volume.
            combo = dialog._devices[RINGER.key][1]
            combo.setCurrentIndex(combo.findData(RINGER_DEVICE))
            slider = dialog._numbers[RINGER_VOLUME.key][1]
            levels = []
            for volume in (100, 30):
                slider.setValue(volume)
                ringer = virtual_audio.start_recording(4.0, sink="ringer")
                speaker = virtual_audio.start_recording(4.0)
                qtbot.mouseClick(dialog._test_buttons[RINGER.key], Qt.MouseButton.LeftButton)
                await until(lambda: not dialog._test_buttons[RINGER.key].isEnabled(), "busy", 2)
                await until(lambda: dialog._test_buttons[RINGER.key].isEnabled(), "played", 8)
                rang, heard = ringer.stop(), speaker.stop()
                assert has_tone(rang, TEST_HZ) and not has_tone(heard, TEST_HZ)
                levels.append(np.abs(rang).max())
            # 30 % on a squared curve: about 0.09 of full volume.
            assert 0.05 < levels[1] / levels[0] < 0.14, levels
            assert gui.store.get(RINGER) == ""  # nothing saved until OK
            dialog.accept()
            assert gui.store.get(RINGER) == RINGER_DEVICE
            assert gui.store.get(RINGER_VOLUME) == 30
            assert gui.sounds.settings.ringer_device == RINGER_DEVICE
            assert gui.sounds.settings.ringer_volume == 30

    run(qloop, steps())


def test_settings_lists_a_device_plugged_in_while_it_is_open(qloop, virtual_audio, tmp_path):
    """A new ALSA device stands in for a headset plugged in: PortAudio sees it
    only after re-initialising, which the open dialog does every few seconds."""
    config = virtual_audio.paths.alsa_config
    original = config.read_text()

    async def steps() -> None:
        async with window(tmp_path) as gui:
            dialog = await _settings_dialog(gui, refresh_ms=300)
            assert "headset_test" not in dialog.device_names(SPEAKER.key)
            refreshes = gui.window._device_tools.refreshes
            config.write_text(original + 'pcm.headset_test { type pulse device "speaker" }\n')
            await until(
                lambda: "headset_test" in dialog.device_names(SPEAKER.key), "the new device", 10
            )
            assert "headset_test" in dialog.device_names(RINGER.key)
            assert gui.window._device_tools.refreshes > refreshes
            dialog._devices[SPEAKER.key][1].setCurrentIndex(
                dialog._devices[SPEAKER.key][1].findData("headset_test")
            )
            config.write_text(original)
            # The choice is kept, marked as unplugged, rather than silently lost.
            combo = dialog._devices[SPEAKER.key][1]
            await until(
                lambda: combo.currentText() == "headset_test (not found)", "the device gone", 10
            )
            assert "headset_test" not in dialog.device_names(RINGER.key)
            dialog.reject()

    try:
        run(qloop, steps())
    finally:
        config.write_text(original)
        virtual_audio.reinit_portaudio()


def _record(n: int, answered: bool = True) -> CallRecord:
    return CallRecord(
        call_id=f"c{n}",
        time=1_700_000_000.0 + n,
        caller=f"Caller {n}",
        queue="support",
        answered=answered,
        auto_answered=False,
        duration_s=65.0 if answered else 0.0,
        end_reason="customer_hangup" if answered else "alert_timeout",
        over_persistent_connection=n > 0,
        delivery_ms=1.5,
    )


def test_history_file_is_bounded_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "h.jsonl"
    history = CallHistory(path, limit=3)
    for n in range(7):
        history.add(_record(n, answered=n % 2 == 0))
    assert [r.call_id for r in history.records()] == ["c6", "c5", "c4"]
    assert len(path.read_text().splitlines()) <= 6  # rewritten past 2 x limit
    with path.open("a") as f:
        f.write('{"call_id": "c7", "time": 1')  # a crash mid-write
    again = CallHistory(path, limit=3)
    assert again.records() == history.records()
    assert again.records()[1].outcome == "missed"


def test_history_window_is_named_and_keyboard_reachable(qapp, qtbot, tmp_path):
    history = CallHistory(tmp_path / "h.jsonl")
    history.add(_record(0))
    dialog = HistoryDialog(history)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.rows()[0][1:5] == ["Caller 0", "support", "1:05", "Answered"]
    history.add(_record(1, answered=False))  # a call ending while it is open
    assert [r[1] for r in dialog.rows()] == ["Caller 1", "Caller 0"]
    assert dialog.rows()[0][4] == "Missed" and dialog.rows()[0][6] == "Yes"
    for widget in (dialog, dialog.table, dialog.summary):
        assert widget.accessibleName()
    assert "2 calls: 1 answered" in dialog.summary.text()
    assert dialog.table.focusPolicy() & Qt.FocusPolicy.TabFocus
