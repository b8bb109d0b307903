"""Every command that writes a file reports an unwritable place as one clear error (exit 1, no
traceback) and leaves nothing half-written behind."""

from __future__ import annotations

import subprocess
import sys

import pytest


def ncd(*args, cwd):
    p = subprocess.run([sys.executable, "-m", "ncd.cli", *args], capture_output=True, text=True,
                       cwd=cwd, timeout=300)  # fmt: skip
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("compile", "attention", "-o", "/proc/nope/model.py"),
        ("render", "attention", "-o", "/proc/nope/fig.svg"),
        ("analyse", "attention", "--json", "-o", "/proc/nope/a.json"),
    ],
)
def test_unwritable_output(args, tmp_path):
    rc, _, err = ncd(*args, cwd=tmp_path)
    assert rc == 1, err
    assert err.startswith("ncd: error:") and "Traceback" not in err and "internal" not in err


def test_outputs_written_whole(tmp_path):
    rc, out, err = ncd("compile", "attention", "-o", "sub/model.py", cwd=tmp_path)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["model.py"]
