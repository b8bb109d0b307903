"""The interpreter tests in fresh processes, for sessions in which another test imported
triton before TRITON_INTERPRET could be set (see conftest.py). The tests are dealt round-robin
to one process per core (at most four): interpreted kernels keep one core busy each."""

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
OPTS = ["-o", "addopts=--import-mode=importlib"]  # pyproject's, less its -q (node ids listed)


def _interpret_tests(env) -> list[str]:
    run = subprocess.run(
        [*PYTEST, *OPTS, str(HERE), "-m", "interpret", "--collect-only", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return [line for line in run.stdout.splitlines() if "::" in line]


def test_interpret_tests_in_a_fresh_process(interpret_in_process):
    if interpret_in_process:
        pytest.skip("the interpret tests ran in this process")
    env = dict(os.environ, TRITON_INTERPRET="1")
    tests = _interpret_tests(env)
    assert tests, "no test marked interpret was collected"
    workers = max(1, min(4, os.cpu_count() or 1, len(tests)))
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    failed = []
    with contextlib.ExitStack() as stack:
        runs = []
        for i in range(workers):
            log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            cmd = [*PYTEST, *OPTS, "-q", *tests[i::workers]]
            runs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log), log))
        for proc, log in runs:
            try:
                rc = proc.wait(timeout=900)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "timeout"
            if rc != 0:
                log.seek(0)
                failed.append(f"exit {rc}:\n{log.read()[-4000:]}")
    assert not failed, "\n\n".join(failed)
