"""The real programs, started as processes for end-to-end tests.

``PlatformProcess`` runs ``agent-phone-platform``, ``PhoneProcess`` runs
``agent-phone --headless`` and ``CallerProcess`` runs ``agent-phone-caller``,
each exactly as a user would (``python -m``), on loopback. Their JSON lines
are collected by a reader thread; ``wait_for`` blocks (bounded) until a
matching event arrives.

A platform's ``ready`` event names its trunk token and, with TLS, its
certificate; ``PLATFORMS`` keeps them by URL so that a caller or phone
started with just ``platform.url`` presents the token and trusts the
certificate, as the demo does. A test that wants otherwise says so
(``trunk_token=None``, ``ca=None`` or another file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zygote import ForkedProcess, Zygote

from agent_phone.cloud.config import ACCEPT_OFF_QUEUE, DEMO_STATUS_REASONS, demo_password_hash

REPO = Path(__file__).resolve().parent.parent
Event = dict[str, Any]

#: URL -> running platform, for its trunk token and certificate.
PLATFORMS: dict[str, PlatformProcess] = {}
#: Starts ``python -m`` programs warm when the test session has one (zygote.py).
ZYGOTE: Zygote | None = None
#: "Take it from the platform at that URL" (the default for tokens and CA files).
FROM_PLATFORM = "from-platform"


def child_env(**extra: str) -> dict[str, str]:
    """The children's environment: this checkout first on the path, plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class JsonLinesProcess:
    """A child process whose stdout is JSON lines, collected as they come.

    By default it runs ``python -m ARGS`` from the checkout; ``command``,
    ``env`` and ``cwd`` run anything else (the packaged app's executable).
    """

    name = "process"

    def __init__(
        self,
        args: list[str],
        stdin: bool = False,
        log_dir: Path | None = None,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = args
        self.events: list[Event] = []
        #: Every stdout line as printed.
        self.lines: list[str] = []
        self._cond = threading.Condition()
        stderr_path = (log_dir or Path("/tmp")) / f"{self.name}-{os.getpid()}-{id(self)}.log"
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen[str] | ForkedProcess
        if command is None and ZYGOTE is not None:
            self.proc = ForkedProcess(
                ZYGOTE,
                args[0],
                args[1:],
                child_env() if env is None else env,
                cwd or REPO,
                stdin,
                self._stderr,
            )
        else:
            self.proc = subprocess.Popen(
                command or [sys.executable, "-m", *args],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                env=child_env() if env is None else env,
                cwd=cwd or REPO,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "_text", "text": line.rstrip()}
            if not isinstance(event, dict):
                event = {"event": "_json", "value": event}
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def matching(self, name: str, **fields: Any) -> list[Event]:
        with self._cond:
            return [
                e
                for e in self.events
                if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
            ]

    def mark(self) -> int:
        """A point in the event stream, for ``wait_for(..., since=mark)``."""
        with self._cond:
            return len(self.events)

    def wait_for(
        self,
        name: str,
        timeout: float = 15.0,
        where: Callable[[Event], bool] | None = None,
        since: int = 0,
        **fields: Any,
    ) -> Event:
        """The first event named ``name`` with these fields, among those seen
        so far (from ``since`` on) or arriving within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[since:]:
                    if (
                        e.get("event") == name
                        and all(e.get(k) == v for k, v in fields.items())
                        and (where is None or where(e))
                    ):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"{self.name}: no {name} {fields} within {timeout} s; "
                        f"exit={self.proc.poll()}; events: {self.events[-15:]}; "
                        f"stderr: {self.stderr_tail()}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_count(
        self, name: str, count: int, timeout: float = 15.0, **fields: Any
    ) -> list[Event]:
        """Wait (bounded) until ``count`` events named ``name`` with these fields arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(name, **fields)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def send(self, cmd: str, **fields: Any) -> None:
        """A JSON command line on stdin (the headless phone's protocol)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.stderr_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def wait_exit(self, timeout: float = 15.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s; "
                f"events: {self.events[-12:]}; stderr: {self.stderr_tail()}"
            ) from None
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self._stderr.close()


def write_config(
    path: Path, queue: dict[str, Any] | None = None, more: str = "", **platform: Any
) -> Path:
    """The demo's agents, queue and status reasons, with the ``[platform]``
    settings given. Its queue has no after-call work unless ``queue`` sets
    ``wrap_up_codes`` (so an agent may take calls back to back)."""
    h = demo_password_hash()
    lines = ["[platform]"]
    lines += [f"{k} = {v!r}" for k, v in platform.items()]
    for name in ("alice", "bob", "carol"):
        lines += [f"[agents.{name}]", f'password_hash = "{h}"']
        if name == "alice":
            lines.append(f'permissions = ["{ACCEPT_OFF_QUEUE}"]')
    lines += ["[queues.support]", 'members = ["alice", "bob", "carol"]']
    lines += [f"{k} = {v!r}" for k, v in (queue or {}).items()]
    lines += [more]  # more tables, as TOML
    lines += ["[status_reasons]"]  # as the built-in demo's
    lines += [f"{status} = {list(names)!r}" for status, names in DEMO_STATUS_REASONS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class PlatformProcess(JsonLinesProcess):
    name = "platform"

    def __init__(
        self,
        config: Path | None = None,
        log_dir: Path | None = None,
        port: int = 0,
        extra: tuple[str, ...] = (),
        trunk_token: str | None = None,
    ) -> None:
        """``trunk_token``: the one the configuration names (``ready`` shows
        only a generated one)."""
        args = ["agent_phone.cloud", "--port", str(port), *extra]
        if config is not None:
            args += ["--config", str(config)]
        super().__init__(args, log_dir=log_dir)
        ready = self.wait_for("ready", timeout=20)
        self.url: str = ready["url"]
        self.admin_url: str = ready["admin_url"]
        self.admin_token: str | None = ready["admin_token"]
        self.trunk_token: str | None = ready.get("trunk_token") or trunk_token
        #: The certificate it serves (with --dev-tls, what clients pass as --ca).
        self.tls_cert: str | None = ready.get("tls_cert")
        self.tls_fingerprint: str | None = ready.get("tls_fingerprint")
        PLATFORMS[self.url] = self

    def admin_get(self, path: str) -> Any:
        """A GET on the admin API (``path`` as ``/calls?limit=100``), with the
        token from ``ready``."""
        request = urllib.request.Request(
            self.admin_url + path, headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def call_records(self) -> dict[str, Event]:
        """The newest 100 call records, by call id."""
        return {r["call_id"]: r for r in self.admin_get("/calls?limit=100")["calls"]}

    def stop(self) -> None:
        PLATFORMS.pop(getattr(self, "url", ""), None)
        super().stop()


def _known(platform_url: str) -> PlatformProcess | None:
    return PLATFORMS.get(platform_url)


def _ca_args(platform_url: str, ca: str | None) -> list[str]:
    if ca == FROM_PLATFORM:
        known = _known(platform_url)
        ca = known.tls_cert if known is not None else None
    return ["--ca", ca] if ca else []


class PhoneProcess(JsonLinesProcess):
    name = "phone"

    def __init__(
        self,
        platform: str,
        user: str,
        *extra: str,
        password: str = "demo",
        log_dir: Path | None = None,
        ca: str | None = FROM_PLATFORM,
        env: dict[str, str] | None = None,
    ) -> None:
        self.user = user
        args = ["agent_phone.app", "--headless", "--platform", platform, "--user", user]
        args += ["--password", password, *_ca_args(platform, ca), *extra]
        super().__init__(args, stdin=True, log_dir=log_dir, env=env)

    def send_raw(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except BrokenPipeError:
                pass  # it was exiting by itself (its exit code says how)
        code = self.wait_exit(timeout)
        self.stop()
        return code


class CallerProcess(JsonLinesProcess):
    name = "caller"

    def __init__(
        self,
        platform: str,
        *extra: str,
        queue: str = "support",
        log_dir: Path | None = None,
        trunk_token: str | None = FROM_PLATFORM,
        ca: str | None = FROM_PLATFORM,
        env: dict[str, str] | None = None,
    ):
        if trunk_token == FROM_PLATFORM:
            known = _known(platform)
            trunk_token = known.trunk_token if known is not None else None
        token = [f"--trunk-token={trunk_token}"] if trunk_token else []
        mode = [] if "--answer" in extra else ["--queue", queue]
        super().__init__(
            ["agent_phone.caller", "--platform", platform, *mode, *token]
            + [*_ca_args(platform, ca), *extra],
            log_dir=log_dir,
            env=None if env is None else {**child_env(), **env},
        )

    def result(self, timeout: float = 60.0) -> tuple[int, Event]:
        """The exit code and the JSON summary."""
        code = self.wait_exit(timeout)
        self._reader.join(5)
        summaries = [e for e in self.events if "answered" in e]
        assert summaries, f"caller printed no summary; stderr: {self.stderr_tail()}"
        self.stop()
        return code, summaries[-1]
