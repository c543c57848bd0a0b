"""Start the end-to-end tests' programs from a warm interpreter.

Every platform, headless phone and caller a test starts would otherwise pay
~1.4 s of CPU importing aiortc, aiohttp, PyAV and numpy before its ``main()``
runs: about a third of the suite's time. The zygote is one process that has
imported them once (never sounddevice or Qt: PortAudio and Qt must start in
the program itself) and forks a child per program. The child takes the
test's stdin, stdout and stderr, argv, environment and working directory,
and runs the module as ``python -m MODULE`` would (``runpy``), so each
program runs its own real ``main()`` in its own process, killed, stopped and
signalled like any other. What it skips is only the interpreter's start and
the imports.

``procs.py`` starts a ``ForkedProcess`` through it when the test session
started one (``tests/conftest.py``); ``AGENT_PHONE_TEST_FORK=0`` turns it
off, and benchmarks never use it.

Protocol on the zygote's Unix socket, one connection per program: the test
sends one JSON line (``module``, ``args``, ``env``, ``cwd``) with the three
descriptors (SCM_RIGHTS); the zygote answers ``{"pid": N}`` and, when the
child has exited, ``{"returncode": R}`` (negative: killed by that signal),
then closes the connection.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

#: What every program imports (and nothing that must start in the child,
#: nor a module run as ``-m``: runpy warns when it is imported already).
PRELOAD = (
    "agent_phone.cloud.server",
    "agent_phone.cloud.config",
    "agent_phone.caller.client",
    "agent_phone.phone.engine",
    "agent_phone.headless",
)
NEVER_PRELOADED = ("sounddevice", "PySide6", "_sounddevice")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGKILL this process when its parent goes (no orphans after a crash)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


# --- the zygote process ------------------------------------------------------------------


def _child(request: dict[str, Any], fds: list[int], listener: socket.socket) -> None:
    """In the forked child: become the program, run it, never return."""
    code = 1
    try:
        listener.close()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # As a fresh interpreter has it: ignored, so a write to a socket whose
        # peer is gone raises (BrokenPipeError) instead of killing the
        # program. (SIG_DFL here killed platforms now and then: exit -13.)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        _die_with_parent()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        import runpy

        sys.argv = [request["module"], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)


def serve(path: str) -> None:
    _die_with_parent()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no thread pool to fork past
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    loaded = [m for m in NEVER_PRELOADED if m in sys.modules]
    assert not loaded, f"the zygote must not import {loaded}"

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    waiting: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "wake":
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
            else:
                conn, _ = listener.accept()
                msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
                if not msg:
                    conn.close()
                    continue
                request = json.loads(msg.decode())
                pid = os.fork()
                if pid == 0:
                    conn.close()
                    _child(request, fds, listener)
                for fd in fds:
                    os.close(fd)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                waiting[pid] = conn
        while waiting:  # reap every child that has ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()


# --- the test's side ---------------------------------------------------------------------


class ForkedProcess:
    """A program forked by the zygote, with the part of ``subprocess.Popen``'s
    interface the tests use (pid, pipes, poll, wait, signals)."""

    def __init__(
        self,
        zygote: Zygote,
        module: str,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        stdin: bool,
        stderr: IO[str],
    ) -> None:
        self.args = [sys.executable, "-m", module, *args]
        self.returncode: int | None = None
        self._ended = threading.Event()
        out_r, out_w = os.pipe()
        if stdin:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), -1
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(zygote.path)
            request = {"module": module, "args": args, "env": env, "cwd": str(cwd)}
            socket.send_fds(
                self._conn, [json.dumps(request).encode()], [in_r, out_w, stderr.fileno()]
            )
        finally:
            os.close(in_r)
            os.close(out_w)
        self.stdout: IO[str] | None = open(out_r, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.stdin: IO[str] | None = open(in_w, "w", encoding="utf-8") if stdin else None  # noqa: SIM115
        self._replies = self._conn.makefile("r", encoding="utf-8")
        first = self._replies.readline()
        if not first:
            raise OSError("the zygote did not start the program")
        self.pid: int = json.loads(first)["pid"]
        threading.Thread(target=self._wait_for_end, daemon=True).start()

    def _wait_for_end(self) -> None:
        line = self._replies.readline()
        self.returncode = json.loads(line)["returncode"] if line else -signal.SIGKILL
        self._replies.close()
        self._conn.close()
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode if self._ended.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        if self.stdin is not None and not self.stdin.closed:
            try:
                self.stdin.close()
            except OSError:
                pass
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if not self._ended.is_set():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The zygote process, started once per test session."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.path = str(workdir / "zygote.sock")
        self._proc = subprocess.Popen(
            [sys.executable, "-u", __file__, self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._proc.stdout is not None
        started = time.monotonic()
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self._proc.kill()
            raise RuntimeError(f"the zygote did not start ({time.monotonic() - started:.1f} s)")

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(5)


if __name__ == "__main__":
    serve(sys.argv[1])
