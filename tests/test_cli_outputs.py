"""Every command that writes a file reports an unwritable place as one clear error (exit 1, no
traceback) and leaves nothing half-written behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .robustness.test_atomic import full_fifo, read_fifo


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


def test_every_writer_creates_missing_folders(tmp_path, monkeypatch):
    """`-o` into folders that do not exist yet: each command creates them, as `compile` does,
    and a command that fails leaves no folder behind."""
    import shutil
    from pathlib import Path

    from ncd import gallery
    from ncd.cli import main
    from ncd.page import write_page

    shutil.copy(Path(__file__).parent / "robustness" / "hostile_models.py", tmp_path)
    monkeypatch.chdir(tmp_path)
    writes = {
        "r/a/fig.svg": ["render", "attention", "-o", "r/a/fig.svg"],
        "p/a/fig.png": ["render", "attention", "-o", "p/a/fig.png"],
        "j/a/cost.json": ["analyse", "attention", "--json", "-o", "j/a/cost.json"],
        "o/a/cost.svg": ["analyse", "attention", "--overlay", "flops", "-o", "o/a/cost.svg"],
        "s/a/plot.svg": ["analyse", "attention", "--plot", "T=64..256", "-o", "s/a/plot.svg"],
        "c/a/m.py": ["compile", "attention", "-o", "c/a/m.py"],
        "i/a/lin.json": ["import", "hostile_models:lin", "--shape", "2,4", "-o", "i/a/lin.json"],
    }
    for out, argv in writes.items():
        assert main(argv) == 0, argv
        assert (tmp_path / out).stat().st_size > 0, out
    assert (tmp_path / "i/a/lin.safetensors").is_file()
    path, _ = write_page(tmp_path / "g" / "a", [gallery.ENTRIES["attention"]])
    assert path == tmp_path / "g/a/index.html" and path.stat().st_size > 0
    assert main(["render", "attention", "-o", "bad/a/fig.svg", "--theme", "poster"]) == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("command", ["compile", "render"])
def test_output_onto_a_fifo_is_written_in_place(command, tmp_path):
    """`-o FIFO` (as `-o /dev/null` or a named pipe) writes into it; it is not replaced."""
    import os
    import stat

    fifo = tmp_path / "out.svg"
    os.mkfifo(fifo)
    got = []
    reader = read_fifo(fifo, got)
    rc, _, err = ncd(command, "mlp", "-o", "out.svg", cwd=tmp_path)
    reader.join(30)
    assert rc == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert got and got[0].startswith(b'"""' if command == "compile" else b"<?xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.svg"]


def test_full_special_file_is_one_error_line(tmp_path, monkeypatch, capsys):
    """A device that refuses the data (ENOSPC, as /dev/full) gives one error line, exit 1."""
    from ncd.cli import main

    fifo = tmp_path / "full.py"
    reader = full_fifo(fifo, monkeypatch)
    assert main(["compile", "mlp", "-o", str(fifo)]) == 1
    monkeypatch.undo()
    reader.join(10)
    err = capsys.readouterr().err
    assert err == f"ncd: error: cannot write {str(fifo)!r}: No space left on device\n"


@pytest.mark.parametrize("command", ["compile", "render"])
def test_dash_output_is_stdout(command, tmp_path):
    rc, out, err = ncd(command, "mlp", "-o", "-", cwd=tmp_path)
    assert rc == 0, err
    assert out.startswith('"""' if command == "compile" else "<?xml") and "wrote" not in out
    assert list(tmp_path.iterdir()) == []
