"""Finding the files in ``resources/`` (icons, sounds) wherever we run from.

A source checkout keeps them beside the package; a bundled app (packaging/)
unpacks them next to its executable (``sys._MEIPASS`` for PyInstaller).
``AGENT_PHONE_RESOURCES`` overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    candidates = []
    if env := os.environ.get("AGENT_PHONE_RESOURCES"):
        candidates.append(Path(env))
    if bundle := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(bundle) / "resources")
    candidates.append(Path(__file__).resolve().parent.parent / "resources")
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        "Agent Phone's resources folder is missing; looked in "
        + ", ".join(str(p) for p in candidates)
    )


def resource(*parts: str) -> Path:
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"missing resource: {path}")
    return path
