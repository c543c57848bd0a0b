"""Shared pytest configuration for Agent Phone.

Layout (keep it this way; put big fixtures in their own modules under tests/
and import them here):

1. Process environment, set at import: before any test module imports Qt or
   sounddevice, and inherited by every subprocess a test starts.
2. Fixture imports.
3. The zygote that starts the programs warm (tests/zygote.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Helper modules of the test suite (virtual_audio, audio_analysis, ...) are
# imported by name, whatever pytest's --import-mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

# --- 1. Environment -------------------------------------------------------------------

# No screen in CI: Qt renders offscreen unless told otherwise (e.g. xcb under Xvfb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Audio: tests only ever see the private virtual sound card (tests/virtual_audio.py).
# This sets PULSE_SERVER, PULSE_COOKIE, ALSA_CONFIG_PATH and XDG_RUNTIME_DIR now;
# the `virtual_audio` fixture starts the daemon when a test first asks for it.
import virtual_audio as _virtual_audio  # noqa: E402

AUDIO_PATHS = _virtual_audio.prepare_environment()

# --- 2. Fixtures ------------------------------------------------------------------------

from e2e import platform, start_caller, start_phone, start_platform  # noqa: E402, F401
from virtual_audio import _virtual_audio_stop_streams, virtual_audio  # noqa: E402, F401

# --- 3. The zygote ----------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _zygote() -> Iterator[None]:
    """Platforms, phones and callers start from one warm interpreter, unless
    AGENT_PHONE_TEST_FORK=0 asks for a fresh ``python -m`` each time."""
    import procs
    from zygote import Zygote

    if os.environ.get("AGENT_PHONE_TEST_FORK", "1") == "0":
        yield
        return
    with tempfile.TemporaryDirectory(prefix="agent-phone-zygote-") as workdir:
        zygote = Zygote(Path(workdir), procs.child_env())
        procs.ZYGOTE = zygote
        try:
            yield
        finally:
            procs.ZYGOTE = None
            zygote.close()
