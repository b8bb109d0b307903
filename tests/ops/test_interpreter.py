"""The interpreter tests in a fresh process, for sessions in which another test imported
triton before TRITON_INTERPRET could be set (see conftest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_interpret_tests_in_a_fresh_process(interpret_in_process):
    if interpret_in_process:
        pytest.skip("the interpret tests ran in this process")
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-m", "interpret", "-q", "-p",
         "no:cacheprovider"],
        cwd=HERE.parent.parent, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
