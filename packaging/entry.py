"""The bundled app's entry point: one executable for the phone, the platform and the caller.

PyInstaller freezes this script (packaging/agent-phone.spec) into
``dist/agent-phone/agent-phone``. Its first argument picks the program:

    agent-phone platform ARGS   the platform    (the source checkout's agent-phone-platform)
    agent-phone caller ARGS     the caller tool (the source checkout's agent-phone-caller)
    agent-phone selfcheck       checks resources, PortAudio and Qt here (packaging/selfcheck.py)
    agent-phone ARGS            the phone       (--headless, --demo, --version, or the window)

The three programs are the same functions the source checkout's console
scripts run (pyproject.toml [project.scripts]); nothing here changes what they do.
Run from a checkout (``.venv/bin/python packaging/entry.py caller --help``) it
behaves the same, which is how its dispatching can be checked without a build.
"""

from __future__ import annotations

import multiprocessing
import sys

HELP_EPILOG = """
The same executable also runs the platform and the caller tool:
  agent-phone platform [--host H] [--port N] [--config FILE]   (agent-phone platform --help)
  agent-phone caller --platform URL --queue NAME --trunk-token TOKEN [...]
                                                  (agent-phone caller --help)
and checks that it works on this machine (sound devices, Qt, resources):
  agent-phone selfcheck                                         (agent-phone selfcheck --help)"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "platform":
        from agent_phone.cloud.__main__ import main as platform_main

        return platform_main(args[1:])
    if args and args[0] == "caller":
        from agent_phone.caller.__main__ import main as caller_main

        return caller_main(args[1:])
    if args and args[0] == "selfcheck":
        from selfcheck import main as selfcheck_main

        return selfcheck_main(args[1:])

    from agent_phone.app import main as phone_main

    if args[:1] in (["-h"], ["--help"]):
        try:
            phone_main(args)
        except SystemExit:
            pass
        print(HELP_EPILOG)
        return 0
    return phone_main(args)


if __name__ == "__main__":
    # A no-op unless some library starts worker processes with multiprocessing
    # (none does today); frozen, a worker re-runs this executable and must not
    # start the app again.
    multiprocessing.freeze_support()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
