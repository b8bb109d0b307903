"""What the CLI's SPEC argument means: a JSON file, or the name of a gallery entry."""

from __future__ import annotations

from pathlib import Path

from ncd.circuits import io
from ncd.circuits.atomic import write_atomic
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError, SizeError
from ncd.circuits.limits import MAX_INT_DIGITS, MAX_SIZE


def load_spec(spec: str) -> Circuit:
    from ncd import gallery

    path = Path(spec)
    if spec.endswith(".json") or path.exists():
        if not path.exists():
            raise NcdError(f"{spec}: no such file")
        if path.is_dir():
            raise NcdError(f"{spec}: is a directory, expected a JSON file")
        return io.load(path)
    if spec in gallery.ENTRIES:
        return gallery.get(spec)
    raise NcdError(
        f"{spec!r} is neither a JSON file nor a gallery entry; "
        f"gallery entries: {', '.join(gallery.names())}"
    )


def studio(circuit: Circuit | str | Path | None = None):
    """The JupyterLab editor (`ncd.Studio`) on a Circuit, a JSON spec or a gallery name; its
    load field takes the same (the widget itself knows neither the gallery nor the CLI)."""
    from ncd.widgets import Studio

    if isinstance(circuit, str):
        circuit = load_spec(circuit)
    return Studio(circuit, lookup=load_spec)


def parse_sizes(text: str | None) -> dict[str, int]:
    """`"B=2,T=128"` -> {"B": 2, "T": 128}."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        name, eq, value = item.strip().partition("=")
        name, value = name.strip(), value.strip()
        digits = value.removeprefix("-")
        if not eq or not name.isidentifier() or not (digits.isascii() and digits.isdigit()):
            raise SizeError(
                f"--sizes expects NAME=INTEGER pairs separated by commas, found {_safe(item)!r}"
            )
        if len(digits) > MAX_INT_DIGITS:
            raise SizeError(f"--sizes: {name} has more than {MAX_INT_DIGITS} digits")
        n = int(value)
        if not 1 <= n <= MAX_SIZE:
            raise SizeError(f"--sizes: {name} must be between 1 and 2**40, found {n}")
        if name in out and out[name] != n:
            raise SizeError(f"--sizes: {name} given twice, as {out[name]} and {n}")
        out[name] = n
    return out


def _safe(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


STDOUT = "-"


def output_arg(out: str | None) -> str | None:
    """-o's value for commands whose output is text on stdout without -o: `-o -` means stdout
    too (None)."""
    return None if out == STDOUT else out


def write_text(path: str | Path, data: str | bytes) -> Path:
    """Write a file ncd produces (text or bytes) atomically: a temporary file renamed into
    place, so that a failure or an interrupt never leaves a half-written file; a symbolic
    link is written through and an existing file keeps its mode; a FIFO or a device node is
    written in place. Missing folders are
    created; an unwritable place gives one clear NcdError."""
    try:
        return write_atomic(path, data)
    except OSError as e:
        raise NcdError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
