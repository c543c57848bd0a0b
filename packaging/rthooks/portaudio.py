"""PyInstaller runtime hook: make ``sounddevice`` load the bundled PortAudio.

On Linux ``sounddevice`` finds PortAudio with ``ctypes.util.find_library
("portaudio")``, which asks ``ldconfig -p`` (and gcc/ld, absent on a user's
machine) for the *system's* libportaudio.so.2 and raises "PortAudio library
not found" when there is none. The spec copies Debian's libportaudio.so.2
into the bundle (next to the other shared libraries, ``sys._MEIPASS``); this
hook, run before any app code, answers that lookup with the bundled copy, so
the app uses the PortAudio it was built and tested with, installed or not.

``AGENT_PHONE_SYSTEM_PORTAUDIO=1`` skips the hook (use the system's PortAudio).
On Windows and macOS sounddevice's wheel carries PortAudio in
``_sounddevice_data``, which it finds by itself; the hook does nothing there.
"""


def _use_bundled_portaudio() -> None:
    import ctypes.util
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("AGENT_PHONE_SYSTEM_PORTAUDIO"):
        return
    bundled = os.path.join(getattr(sys, "_MEIPASS", ""), "libportaudio.so.2")
    if not os.path.isfile(bundled):
        return
    system_find_library = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if name == "portaudio":
            return bundled
        return system_find_library(name)

    ctypes.util.find_library = find_library


_use_bundled_portaudio()
del _use_bundled_portaudio
