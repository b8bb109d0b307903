"""`ncd render`: draw a circuit as a neural circuit diagram (SVG, PDF, PNG or DOT); the demo
step draws every gallery circuit into build/gallery/."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

OVERLAYS = ("flops", "memory")


def register(sub) -> None:
    p = sub.add_parser(
        "render",
        help="draw a circuit as a neural circuit diagram (.svg .pdf .png .dot)",
        description="Draw a circuit: one wire per axis, learned maps bold, blocks as shaded "
        "regions. The output's suffix picks the format; without -o the SVG goes to stdout.",
    )
    p.add_argument("spec", help="a JSON file or a gallery name")
    p.add_argument(
        "-o",
        "--out",
        help="FILE.svg, FILE.pdf, FILE.png or FILE.dot (default, or -: SVG on stdout)",
    )
    p.add_argument("--theme", default="paper", help="paper (print, serif) or notebook (colour)")
    p.add_argument(
        "--collapse",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME",
        help="draw these blocks (group titles) or call boxes (by name or title) as single boxes",
    )
    p.add_argument("--depth", type=int, help="expand subcircuit calls this deep (0: none)")
    p.add_argument(
        "--sizes",
        help="label wires with sizes: B=2,T=128 binds sizes, 'default' shows the circuit's own",
    )
    p.add_argument(
        "--max-width",
        type=float,
        metavar="POINTS",
        help="widest the figure may be drawn (default 1000 pt, a page at half size: wider ones "
        "are wrapped into rows, and if still too tall drawn with calls or blocks collapsed); "
        "0 draws it whole",
    )
    p.add_argument(
        "--overlay",
        choices=sorted(OVERLAYS),
        help="colour boxes by their share of FLOPs or of the activation memory kept for the "
        "backward pass (from ncd analyse, at the bound sizes)",
    )
    p.set_defaults(run=cmd_render)


def cmd_render(args) -> int:
    from ncd.circuits.draw import render
    from ncd.circuits.draw.api import RenderNote
    from ncd.spec import output_arg

    from .language import load_bound

    args.out = output_arg(args.out)
    default = args.sizes is not None and args.sizes.strip() == "default"
    c, bound = load_bound(args.spec, None if default else args.sizes)
    sizes = True if default else (bound if args.sizes is not None else None)
    overlay, title = None, "cost share"
    if args.overlay:
        overlay = overlay_shares(c, sizes if isinstance(sizes, dict) else None, args.overlay)
        title = {"flops": "FLOP share", "memory": "activation memory share"}[args.overlay]
    made = _make_folders(args.out)
    try:
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always", RenderNote)
            svg = render(
                c,
                args.out,
                theme=args.theme,
                collapse=args.collapse,
                depth=args.depth,
                sizes=sizes,
                overlay=overlay,
                overlay_title=title,
                **({} if args.max_width is None else {"max_width": args.max_width or None}),
            )
    except BaseException:
        for folder in made:  # a failed render leaves no empty folders behind
            folder.rmdir()
        raise
    for note in notes:
        print(f"ncd: note: {note.message}", file=sys.stderr)
    wide = _too_wide(svg, c, args)
    if wide:
        print(f"ncd: note: {wide}", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(svg)
    return 0


# Widest figure drawn without a note: about two page widths of a paper (points).
WIDE_PT = 1000


def _too_wide(svg: str, circuit, args) -> str:
    """A note for a figure wider than WIDE_PT that the user has not narrowed yet: how wide,
    and which blocks or calls --collapse takes ('' otherwise)."""
    import re

    m = re.search(r'<svg[^>]*\bwidth="([0-9.]+)pt"', svg)
    if not m or float(m.group(1)) <= WIDE_PT or args.collapse or args.depth is not None:
        return ""
    from ncd.circuits.draw.scene import collapsible

    groups, calls = collapsible(circuit.check())
    names = [*groups, *(t or n for n, t in calls)]
    inches = float(m.group(1)) / 72
    how = "--depth 0 or --collapse NAME" if calls else "--collapse NAME"
    shown = ", ".join(repr(n) for n in names[:4]) + (", …" if len(names) > 4 else "")
    return (
        f"the figure is {inches:.0f} in wide (a page about 7): {how} draws a block as one box"
        + (f" ({shown})" if names else "")
    )


def _make_folders(out: str | None) -> list[Path]:
    """Create the missing folders above `out`, as every ncd writer does; returns those made,
    innermost first."""
    if not out:
        return []
    missing = []
    folder = Path(out).parent
    while str(folder) not in ("", ".") and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        try:
            f.mkdir()
        except OSError as e:
            from ncd.circuits.errors import NcdError

            for g in missing[missing.index(f) + 1 :]:
                g.rmdir()
            raise NcdError(f"cannot write {out!r}: cannot create folder {str(f)!r}: "
                           f"{e.strerror or e}") from None  # fmt: skip
    return missing


def overlay_shares(circuit, sizes, what: str) -> dict[str, float]:
    """Box path -> share of the circuit's FLOPs or kept activation memory, from the cost
    model (ncd.analyse, fused lowering, at the bound sizes); boxes in a call are `call/box`."""
    from ncd.compiler.cost import analyse
    from ncd.compiler.cost.plot import overlay_shares as shares

    return shares(analyse(circuit, sizes), what)


def demo(out_dir) -> None:
    """Draw every gallery circuit as SVG, PDF and PNG (paper theme) into out_dir/gallery/."""
    from ncd import gallery
    from ncd.circuits.draw import render
    from ncd.circuits.draw.api import RenderNote

    folder = Path(out_dir) / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"== render: every gallery circuit as a neural circuit diagram -> {folder}/")
    for name in gallery.names():
        c = gallery.get(name)
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # "wrapped to fit a page" for each format: not news
            warnings.simplefilter("ignore", RenderNote)
            for fmt in ("svg", "pdf", "png"):
                render(c, folder / f"{name}.{fmt}")
            render(c, folder / f"{name}.notebook.svg", theme="notebook")
        print(f"  {name:22} .svg .pdf .png .notebook.svg  ({time.perf_counter() - t0:.1f} s)")
    sys.stdout.flush()
