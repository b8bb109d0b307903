"""`ncd analyse`: what a circuit costs, read from the diagram (FLOPs, memory, IO, time)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ncd.circuits.errors import NcdError


def register(sub) -> None:
    p = sub.add_parser(
        "analyse",
        help="FLOPs, parameters, kept and peak memory, HBM traffic and roofline time",
        description="Cost of one or more circuits: per box and in total, as formulas in the "
        "axis sizes, their leading terms and numbers under the sizes. A multiply-add counts "
        "2 FLOPs.",
    )
    p.add_argument("spec", nargs="+", help="JSON files or gallery names")
    p.add_argument("--sizes", help="bind sizes, e.g. B=2,T=128 (on top of the defaults)")
    p.add_argument(
        "--lowering",
        default="fused",
        choices=["fused", "unfused"],
        help="fused: fused regions move only the wires crossing their border",
    )
    p.add_argument(
        "--device",
        default="h200",
        help="roofline profile: h200 (default, measured), h100, b200, a100, l4, rtx4090 (data "
        "sheets scaled by what the H200 reaches of its own), cpu (PyTorch's CPU kernels: what "
        "they keep for the backward; a 96-core EPYC's peaks)",
    )
    p.add_argument("--dtype", help="count floating tensors as this dtype (e.g. bfloat16)")
    p.add_argument(
        "--symbolic", action="store_true",
        help="sizes may stay free: formulas where no size binds them (the defaults still do)",
    )  # fmt: skip
    p.add_argument(
        "--json",
        action="store_true",
        help='{"total": {...}, "boxes": [...]} (a list for several specs)',
    )
    p.add_argument(
        "--plot", metavar="AXIS=LO..HI", help="scaling plot along one axis, e.g. T=256..65536"
    )
    p.add_argument(
        "--tie",
        default=None,
        metavar="A=AXIS,...",
        help="axes that follow the plotted one (default when plotting T: S=T, "
        "self-attention); '' for none",
    )
    p.add_argument(
        "--overlay",
        choices=["flops", "memory"],
        help="write the diagram coloured by each box's share of FLOPs or memory",
    )
    p.add_argument(
        "-o",
        "--output",
        help="the file of --json (.json), or of --plot / --overlay (.png, .svg, .pdf; with "
        "both, or several specs, each overlay's name ends in _NAME)",
    )
    p.set_defaults(run=cmd_analyse)  # fmt: skip


FIGURES = (".png", ".svg", ".pdf")


def _sweep_arg(text: str) -> tuple[str, int, int]:
    axis, eq, rng = text.partition("=")
    lo, dots, hi = rng.partition("..")
    if not eq or not dots or not axis.isidentifier() or not lo.isdigit() or not hi.isdigit():
        raise NcdError(f"--plot expects AXIS=LO..HI such as T=256..65536, found {text!r}")
    return axis, int(lo), int(hi)


def _tie_arg(text: str | None, axis: str | None) -> dict[str, str]:
    if text is None:
        return {"S": "T"} if axis == "T" else {}
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        a, eq, b = item.partition("=")
        if not eq or not a.isidentifier() or not b.isidentifier():
            raise NcdError(f"--tie expects A=AXIS pairs such as S=T, found {item!r}")
        out[a] = b
    return out


def cmd_analyse(args) -> int:
    from ncd.compiler.cost import analyse
    from ncd.compiler.cost.analyse import known_sizes
    from ncd.compiler.cost.plot import overlay_shares, scaling_plot
    from ncd.spec import load_spec, parse_sizes, write_text

    circuits = [load_spec(s) for s in args.spec]
    sizes = parse_sizes(args.sizes)
    # check the options before any output
    sweep = _sweep_arg(args.plot) if args.plot else None
    if sweep:
        from ncd.compiler.cost.plot import check_axis, sweep_points

        sweep_points(sweep[1], sweep[2])
        check_axis(circuits, sweep[0])
    if args.output:  # -o's suffix says which output it names: --json's or the figures'
        suffix = Path(args.output).suffix
        figures = args.plot or args.overlay
        if not ((suffix == ".json" and args.json) or (suffix in FIGURES and figures)):
            asked = [f"--{f}" for f in ("json", "plot", "overlay") if getattr(args, f)]
            raise NcdError(
                "-o names the file of --json (.json) or of --plot / --overlay ("
                f"{', '.join(FIGURES)}), found {args.output!r} with "
                f"{' and '.join(asked) or 'none of them'}"
            )
    if len(circuits) > 1:  # each circuit takes the sizes it has; a size none has is an error
        known = set().union(*(known_sizes(c) for c in circuits))
        unknown = sorted(set(sizes) - known)
        if unknown:
            raise NcdError(f"no circuit has size {', '.join(unknown)}")
    opts = dict(lowering=args.lowering, device=args.device, dtype=args.dtype)
    reports = []
    for c in circuits:
        mine = sizes if len(circuits) == 1 else {
            k: v for k, v in sizes.items() if k in known_sizes(c)
        }  # fmt: skip
        reports.append(analyse(c, sizes=mine, symbolic=args.symbolic, **opts))
    if args.json:
        data = [r.to_dict() for r in reports]
        text = json.dumps(data[0] if len(data) == 1 else data, indent=2)
        if args.output and Path(args.output).suffix == ".json":
            print(f"wrote {write_text(args.output, text + chr(10))}")
        else:
            print(text)
    else:
        print("\n\n".join(r.table() for r in reports))
    notes = sys.stderr if args.json else sys.stdout  # with --json, stdout is the JSON alone
    if sweep:
        axis, lo, hi = sweep
        names = "_".join(c.name for c in circuits)
        out = Path(args.output or f"build/analysis/scaling_{names}_{axis}.png")
        tie = _tie_arg(args.tie, axis)
        data = scaling_plot(circuits, axis, lo, hi, out, sizes=sizes, tie=tie, **opts)
        for name, d in data["circuits"].items():
            tied = f" (with {', '.join(d['tied'])} = {axis})" if d["tied"] else ""
            print(f"{name}: FLOPs grow as {axis}^{d['degree']}{tied}; leading {d['leading']}",
                  file=notes)  # fmt: skip
        print(f"wrote {out}", file=notes)
    if args.overlay:
        from ncd.circuits.draw import render

        for c, r in zip(circuits, reports):
            out = Path(args.output or f"build/analysis/{c.name}_{args.overlay}.svg")
            if args.output and (len(circuits) > 1 or sweep):  # the plot has -o's name
                out = out.with_name(f"{out.stem}_{c.name}{out.suffix}")
            out.parent.mkdir(parents=True, exist_ok=True)
            title = "share of FLOPs" if args.overlay == "flops" else "share of kept memory"
            render(c, out, overlay=overlay_shares(r, args.overlay), overlay_title=title,
                   sizes=True)  # fmt: skip
            print(f"wrote {out}", file=notes)
    return 0


def demo(out_dir: Path) -> None:
    """The cost table of every gallery circuit; softmax against linear attention along T;
    the transformer block coloured by its FLOPs."""
    import warnings

    from ncd import gallery
    from ncd.circuits.draw import render
    from ncd.circuits.draw.api import RenderNote
    from ncd.compiler.cost import analyse
    from ncd.compiler.cost.plot import overlay_shares, scaling_plot

    out = Path(out_dir) / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    print("== cost of every gallery circuit at its default sizes (a multiply-add counts 2 FLOPs)")
    print(
        f"  {'circuit':20} {'FLOPs fwd':>10} {'params':>8} {'kept':>10} {'peak':>10}  dominant term"
    )
    for name in gallery.names():
        report = analyse(gallery.get(name))
        (out / f"{name}.json").write_text(report.to_json())
        t = report.to_dict()["total"]
        print(f"  {name:20} {_si(t['flops']):>10} {_si(t['params']):>8} "
              f"{_bytes(t['activation_bytes']):>10} {_bytes(t['peak_bytes']):>10}  "
              f"{_short(t['flops_dominant'])}")  # fmt: skip
    print(f"  (per-box tables: ncd analyse NAME; JSON reports in {out}/)")
    print()
    print(analyse(gallery.get("transformer_block")).table())
    circuits = [gallery.get("attention"), gallery.get("linear_attention")]
    for suffix in (".png", ".svg"):
        path = out / f"scaling_attention_linear_attention_T{suffix}"
        scaling_plot(circuits, "T", 256, 65536, path, tie={"S": "T"})
    print(f"wrote {path.with_suffix('.png')} and .svg")
    block = gallery.get("transformer_block")
    path = out / "transformer_block_flops.svg"
    with warnings.catch_warnings():  # "drawn in rows to fit a page": the demo's figure is
        warnings.simplefilter("ignore", RenderNote)  # meant to fit one
        render(block, path, overlay=overlay_shares(analyse(block), "flops"),
               overlay_title="share of FLOPs", sizes=True)  # fmt: skip
    print(f"wrote {path}")


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g}"


def _bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
