"""Every file ncd writes is written atomically (circuits/atomic.py): old or new, never part;
no temporary left behind; links written through; modes kept; the longest names work."""

from __future__ import annotations

import os
import signal
import stat
import time

import pytest

from ncd.circuits.atomic import TEMP_PREFIX, write_atomic
from ncd.circuits.errors import NcdError
from ncd.spec import write_text


def _temps(folder):
    return [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_text_bytes_and_folders(tmp_path):
    write_atomic(tmp_path / "a" / "b" / "x.txt", "héllo")
    write_atomic(tmp_path / "y.bin", b"\x00\xff")
    assert (tmp_path / "a" / "b" / "x.txt").read_text("utf-8") == "héllo"
    assert (tmp_path / "y.bin").read_bytes() == b"\x00\xff"
    assert not _temps(tmp_path)


def test_names_of_255_bytes(tmp_path):
    for n in (251, 254, 255):
        write_atomic(tmp_path / ("n" * n), "x")
    assert len(list(tmp_path.iterdir())) == 3 and not _temps(tmp_path)


def test_links_written_through_and_modes_kept(tmp_path):
    target = tmp_path / "secret.json"
    target.write_text("old")
    target.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def fail(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(NcdError, match="No space left"):
        write_text(path, "new")
    assert path.read_text() == "old" and not _temps(tmp_path)


def test_killed_mid_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(b"old")
    pid = os.fork()
    if pid == 0:  # a writer stopped between writing and renaming, then killed
        try:
            os.replace = lambda *a: time.sleep(60)
            write_atomic(path, b"x" * 10_000_000)
        finally:
            os._exit(0)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert path.read_bytes() == b"old"


def test_unwritable_place_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NcdError, match="cannot write"):
        write_text(blocker / "x.svg", "<svg/>")


def read_fifo(path, got):
    """A reader thread: everything written into the FIFO at `path` ends up in `got`."""
    import threading

    def read():
        with open(path, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_fifo_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = read_fifo(fifo, got)
    write_atomic(fifo, b"x" * 300_000)  # more than a pipe's buffer: written in full
    reader.join(10)
    assert got == [b"x" * 300_000]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not _temps(tmp_path)


def test_link_to_fifo_written_through(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "out.py"
    link.symlink_to(fifo)
    got = []
    reader = read_fifo(fifo, got)
    write_atomic(link, "hello")
    reader.join(10)
    assert got == [b"hello"] and link.is_symlink() and stat.S_ISFIFO(fifo.stat().st_mode)


def full_fifo(path, monkeypatch):
    """A FIFO at `path` with a reader, into which every write fails as /dev/full's do
    (ENOSPC); returns the reader thread (join it after `monkeypatch.undo()`)."""
    os.mkfifo(path)
    reader = read_fifo(path, [])

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    return reader


def test_special_file_write_error_is_one_clear_error(tmp_path, monkeypatch):
    """A device that refuses the data (/dev/full: ENOSPC) stays in place; the error names it."""
    fifo = tmp_path / "full"
    reader = full_fifo(fifo, monkeypatch)
    with pytest.raises(NcdError, match=r"cannot write '.*full': No space left on device"):
        write_text(fifo, "data")
    monkeypatch.undo()
    reader.join(10)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not _temps(tmp_path)
