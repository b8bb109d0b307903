"""What the CLI's SPEC argument means: a JSON file, or the name of a gallery entry."""

from __future__ import annotations

from pathlib import Path

from ncd.circuits import io
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError, SizeError


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
        if not eq or not name.isidentifier() or not value.lstrip("-").isdigit():
            raise SizeError(
                f"--sizes expects NAME=INTEGER pairs separated by commas, found {item!r}"
            )
        n = int(value)
        if not 1 <= n <= 2**40:
            raise SizeError(f"--sizes: {name} must be between 1 and 2**40, found {n}")
        out[name] = n
    return out


def write_text(path: str | Path, text: str) -> Path:
    """Write a CLI output file atomically (a temp file renamed into place), so that a failure
    never leaves a half-written file; unwritable places give one clear NcdError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise NcdError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    return path
