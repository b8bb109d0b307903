"""The commit a results file names (bench/README.md): the one given, else $COMMIT (the copy
on the GPU machine carries no .git, or another checkout's), else this checkout's HEAD, else
"unknown". Every benchmark script writes its `meta.commit` through `commit`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def commit(given: str | None = None) -> str:
    if given:
        return given
    if os.environ.get("COMMIT"):
        return os.environ["COMMIT"]
    here = str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        head = ""
    return head or "unknown"
