"""The zygote's programs behave as fresh ``python -m`` ones where it shows:
here, writing to a pipe nobody reads (SIGPIPE ignored, as a fresh
interpreter has it, so the write raises instead of killing the program; a
platform writing to a socket whose peer had gone was killed by it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import procs
import pytest
from zygote import ForkedProcess

BIG = json.dumps(list(range(50_000)))  # its output is more than a pipe holds


def _exit_code_writing_to_a_closed_pipe(proc: subprocess.Popen[str] | ForkedProcess) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.close()  # nobody reads what it writes
    proc.stdin.write(BIG)
    proc.stdin.close()
    return proc.wait(20)


def test_a_forked_program_is_not_killed_by_writing_to_a_closed_pipe(tmp_path: Path):
    if procs.ZYGOTE is None:
        pytest.skip("the tests start programs fresh (AGENT_PHONE_TEST_FORK=0)")
    fresh = subprocess.Popen(
        [sys.executable, "-m", "json.tool"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    with open(tmp_path / "stderr", "w") as stderr:
        forked = ForkedProcess(
            procs.ZYGOTE, "json.tool", [], procs.child_env(), tmp_path, True, stderr
        )
        forked_code = _exit_code_writing_to_a_closed_pipe(forked)
    fresh_code = _exit_code_writing_to_a_closed_pipe(fresh)
    # json.tool reports the broken pipe and exits 1; neither is killed (-13).
    assert fresh_code > 0 and forked_code == fresh_code, (fresh_code, forked_code)
