"""`ncd gallery`: every gallery entry on one offline HTML page (figure, paper, equations, cost,
generated code, and the scaling plot along T); the demo step writes build/gallery/index.html."""

from __future__ import annotations

import sys
from pathlib import Path

from ncd.circuits.errors import NcdError


def register(sub) -> None:
    p = sub.add_parser(
        "gallery",
        help="one offline HTML page of every gallery entry (DIR/index.html)",
        description="Write DIR/index.html: for every gallery entry its diagram, paper, the "
        "equations it implements, its cost at the default sizes (numbers and formulas), the "
        "generated PyTorch code, and the scaling plot along T (softmax attention family "
        "against the linear family). Nothing is fetched from the network. An entry that "
        "fails shows its error on the page; the command then exits with status 1.",
    )
    p.add_argument("-o", "--out", default="build/gallery", help="folder (default: build/gallery)")
    p.set_defaults(run=cmd_gallery)


def _check_folder(folder: Path) -> None:
    """Refuses, before any entry is drawn, a folder that could not take the page: a path
    that is a file, or one whose nearest existing parent does not take a new folder (tried
    with a temporary one, removed at once: permissions alone do not tell, e.g. in /proc)."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise NcdError(f"-o {str(folder)!r}: expected a folder, found a file")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    try:
        with tempfile.TemporaryDirectory(dir=parent, prefix=".ncd-"):
            pass
    except OSError as e:
        raise NcdError(f"cannot write in {str(parent)!r}: {e.strerror or e}") from None


def _write(folder: Path) -> Path:
    from ncd.page import write_page

    _check_folder(folder)
    path, page = write_page(folder)
    print(f"wrote {path} ({len(page.cards)} entries)")
    if page.problems:
        raise NcdError(
            f"{len(page.problems)} problem(s) on the gallery page {path}:\n  "
            + "\n  ".join(page.problems)
        )
    return path


def cmd_gallery(args) -> int:
    _write(Path(args.out))
    return 0


def demo(out_dir) -> None:
    """The gallery page, out_dir/gallery/index.html."""
    print("== gallery: one offline page of every entry")
    sys.stdout.flush()
    _write(Path(out_dir) / "gallery")
