"""The interpreter tests in fresh processes, started in the background (conftest.py calls
`start` once the session's tests are collected, `stop` at its end; test_interpreter.py waits).

Interpreted kernels keep one core busy each and take minutes, so they run beside the rest of
the suite on all cores but one, the tests dealt round-robin to the processes (at most four)."""

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
OPTS = ["-o", "addopts=--import-mode=importlib"]  # pyproject's, less its -q (node ids listed)
NAME = "test_interpret_tests_in_a_fresh_process"
LIMIT_S = 1500  # each process, from its start


class Runs:
    """The background processes and what they reported."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.failed: list[str] = []
        self.collected = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            env = dict(os.environ, TRITON_INTERPRET="1")
            tests = _interpret_tests(env)
            self.collected = len(tests)
            cores = os.cpu_count() or 1
            workers = max(1, min(4, cores - 1, len(tests)))
            env["OMP_NUM_THREADS"] = "1"
            with contextlib.ExitStack() as stack:
                logs = []
                for i in range(workers):
                    log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
                    cmd = [*PYTEST, *OPTS, "-q", *tests[i::workers]]
                    self.procs.append(
                        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
                    )
                    logs.append(log)
                for proc, log in zip(self.procs, logs):
                    try:
                        rc = proc.wait(timeout=LIMIT_S)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        rc = f"timeout after {LIMIT_S} s"
                    if rc != 0:
                        log.seek(0)
                        self.failed.append(f"exit {rc}:\n{log.read()[-4000:]}")
        except Exception as e:  # reported by the test, not lost in the thread
            self.failed.append(f"{type(e).__name__}: {e}")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


RUNS: Runs | None = None


def _interpret_tests(env) -> list[str]:
    run = subprocess.run(
        [*PYTEST, *OPTS, str(HERE), "-m", "interpret", "--collect-only", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return [line for line in run.stdout.splitlines() if "::" in line]


def start(items) -> None:
    """Start the background runs if this session runs the test, which moves to the end."""
    global RUNS
    mine = [item for item in items if item.name == NAME]
    if not mine or RUNS is not None:
        return
    items[:] = [item for item in items if item.name != NAME] + mine
    RUNS = Runs()
    RUNS.thread.start()


def stop() -> None:
    """Kill runs still going (the session was interrupted)."""
    if RUNS is not None:
        RUNS.stop()
