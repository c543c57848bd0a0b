"""Habits the code's shape depends on (shared/STYLE.md)."""

from __future__ import annotations

import ast
import subprocess
import sys

from procs import REPO


def test_engine_protocol_platform_and_caller_import_no_qt():
    code = (
        "import sys\n"
        "import agent_phone.protocol, agent_phone.phone.engine, agent_phone.cloud.server\n"
        "import agent_phone.caller.client, agent_phone.headless, agent_phone.app\n"
        "import agent_phone.phone.ringer, agent_phone.phone.history\n"
        "import agent_phone.phone.device_check\n"
        "qt = {'PySide6', 'qasync', 'shiboken6'}\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in qt)\n"
        "print(','.join(qt))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"Qt imported outside agent_phone/ui: {out.stdout}"


def test_only_ui_mentions_qt():
    offenders = []
    for path in (REPO / "agent_phone").rglob("*.py"):
        if path.parent.name == "ui":
            continue
        text = path.read_text()
        if "import PySide6" in text or "from PySide6" in text or "import qasync" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_ruff_is_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "agent_phone", "tests", "benchmarks", "packaging"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_protocol_and_phone_engine_type_check_strictly():
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "agent_phone/protocol", "agent_phone/phone"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_phone_and_the_window_reach_into_no_other_objects_private_members():
    """``x._name`` only on ``self`` or ``cls``: each object is used through
    what it offers (the engine's session, calls and front-ends included)."""
    offenders = []
    paths = [
        *(REPO / "agent_phone" / "phone").glob("*.py"),
        *(REPO / "agent_phone" / "ui").glob("*.py"),
        REPO / "agent_phone" / "headless.py",
        REPO / "agent_phone" / "app.py",
        REPO / "agent_phone" / "demo.py",
    ]
    allowed = {("portaudio.py", "sd")}  # sounddevice's own way to re-scan devices
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            owner = ast.unparse(node.value)
            if node.attr.startswith("__") or owner in ("self", "cls"):
                continue
            if (path.name, owner) not in allowed:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {owner}.{node.attr}")
    assert offenders == []


def test_the_platform_package_has_no_import_cycle():
    """Counting imports made only for type checking: the platform's parts
    see each other through narrow interfaces (``AgentEndpoint``,
    ``RoutedAgent``, ``SessionServices``), not through the sessions or the
    ``Platform`` itself."""
    package = REPO / "agent_phone" / "cloud"
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        graph[path.stem] = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("agent_phone.cloud.")
        }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert sorted(m for m in graph if reaches(m, m, {m})) == []
