"""Runs `ncd` commands in a forked child of this process (ncd and torch already imported, so a
case costs milliseconds, not an interpreter start), under a time and a memory limit."""

from __future__ import annotations

import os
import resource
import signal
import tempfile
import time
from dataclasses import dataclass

MEMORY_LIMIT = 3 * 2**30  # bytes of address space a case may take (torch maps about 1 GiB)


@dataclass
class Result:
    argv: list[str]
    code: int | None  # None: killed at the time limit
    out: str
    err: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.code is None


def run(argv: list[str], timeout: float, cwd: str | None = None) -> Result:
    """`ncd.cli.main(argv)` in a forked child; its exit status, stdout and stderr."""
    import sys

    from ncd.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the test runner
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                limit = MEMORY_LIMIT + _mapped()
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                if cwd:
                    os.chdir(cwd)
                code = main(argv)
            except MemoryError:
                code = 71
            except BaseException as e:  # noqa: BLE001 - reported to the parent as text
                print(f"runner: {type(e).__name__}: {e}", file=sys.stderr)
                code = 72
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 73)
        deadline = t0 + timeout
        status = None
        while time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.005)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        seconds = time.perf_counter() - t0
        code = None if status is None else os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Result(argv, code, _text(out.read()), _text(err.read()), seconds)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def _mapped() -> int:
    """Bytes of address space this process maps already (the child inherits them)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
