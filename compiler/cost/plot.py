"""Scaling plots: how the cost of one or several circuits grows along one axis, and the
per-box shares that colour the diagram (the cost overlay)."""

from __future__ import annotations

import math
from pathlib import Path

from .analyse import analyse, known_sizes
from .devices import CostError
from .report import FIGURES, human

PANELS = tuple(
    (key, *FIGURES[key]) for key in ("flops", "activation_bytes", "io_bytes", "time_train_s")
)  # (key, title, unit), titled as in the cost report


def style_panel(ax, title: str, unit: str, xlabel: str) -> None:
    """A cost panel's title, axis label, grid and tick labels in `unit` (report.human); a
    byte axis is ticked at powers of two, so that its labels are round binary sizes."""
    import matplotlib.ticker as ticker

    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(True, which="both", alpha=0.3)
    if unit == "B":
        ax.yaxis.set_major_locator(ticker.LogLocator(base=2, numticks=8))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: human(v, unit)))


def sweep_points(lo: int, hi: int, n: int | None = None) -> list[int]:
    """Powers of two from lo to hi (both kept), or n points spaced evenly in log scale."""
    from ncd.circuits.limits import MAX_SIZE

    if lo < 1 or hi <= lo:
        raise CostError(f"a sweep needs 1 <= LO < HI, found {lo}..{hi}")
    if hi > MAX_SIZE:
        raise CostError(f"a sweep ends at most at {MAX_SIZE:,} (limit MAX_SIZE), found {hi:,}")
    if n is None:
        pts = [lo]
        p = 2 ** math.ceil(math.log2(lo))
        while p < hi:
            if p > lo:
                pts.append(p)
            p *= 2
        return [*pts, hi]
    return sorted({round(lo * (hi / lo) ** (i / (n - 1))) for i in range(n)})


def check_axis(circuits, axis: str) -> list[set[str]]:
    """Refuses a sweep along an axis some circuit does not have, naming the sizes it has, or
    along one the circuit defines by others (S = T, D = H*K: it cannot vary alone), naming
    those; returns each circuit's size names (`known_sizes`)."""
    out = []
    for c in circuits:
        checked = c.check()
        known = known_sizes(c, checked)
        if axis not in known:
            raise CostError(f"circuit '{c.name}' has no axis {axis}; its sizes: {sorted(known)}")
        _free_axis(c.name, checked, axis)
        out.append(known)
    return out


def _free_axis(name: str, checked, axis: str) -> None:
    """Refuses `axis` where the circuit has learned it equals an expression in other sizes."""
    from ncd.circuits.sizes import Size, show

    if axis not in checked.unifier.bound:
        return
    defined = checked.resolve(Size.of(axis))
    others = sorted(defined.names())
    instead = f"; plot along {' or '.join(others)}" if others else ""
    raise CostError(
        f"circuit '{name}' defines {axis} = {show(defined)}, so {axis} cannot vary on its "
        f"own{instead}"
    )


def sweep(circuits, axis: str, points, *, sizes=None, tie=None, **options) -> dict:
    """{circuit name: {figure: [value per point]}} with `axis` (and the axes tied to it,
    e.g. S following T in self-attention) set to each point."""
    tie = dict(tie or {})
    out = {}
    for c, known in zip(circuits, check_axis(circuits, axis)):
        given = {k: v for k, v in (sizes or {}).items() if k in known}
        tied = [
            a for a, follows in tie.items() if follows == axis and a in known and a not in given
        ]
        base = {k: v for k, v in given.items() if k != axis and k not in tied}
        report = analyse(c, sizes=base, symbolic=True, **options)
        data = {key: [] for key, _, _ in PANELS}
        data["peak_bytes"] = []
        for p in points:
            at = {axis: p, **dict.fromkeys(tied, p)}
            for key in data:
                data[key].append(report.at(key, **at))
        data["tied"] = tied
        data["degree"], data["leading"] = _along(report, axis, tied)
        out[c.name] = data
    return out


def _along(report, axis, tied):
    """(degree, leading) of the FLOPs along `axis`, the axes in `tied` following it: the
    degree in that axis and the big-O of the part of that degree (softmax attention with
    S = T: 2, O(T^2·B·H·(K + V))); (None, the every-size big-O) where the FLOPs are not a
    polynomial in it."""
    import sympy

    from ncd.circuits.sizes import symbol

    from .symbolic import as_constants, big_o

    a = symbol(axis)
    f = report.formulas["flops"]
    if a in report.derived:  # an axis named for a size expression (the ViT's tokens)
        f = report.readable(f)
    f = as_constants(f.xreplace({symbol(t): a for t in tied}))
    try:
        poly = sympy.Poly(sympy.expand(f), a)
    except sympy.PolynomialError:
        return None, report.big_o("flops")
    d = poly.degree()
    rest = big_o(report.readable(poly.coeff_monomial(a**d)))  # O(...) in the other sizes
    power = "" if d == 0 else axis if d == 1 else f"{axis}^{d}"
    inner = rest[2:-1]
    return d, f"O({'·'.join(p for p in (power, '' if inner == '1' else inner) if p) or '1'})"


def scaling_plot(circuits, axis: str, lo: int, hi: int, path, *, sizes=None, tie=None,
                 **options) -> dict:  # fmt: skip
    """Plot FLOPs, kept memory, HBM traffic and roofline time of `circuits` against `axis`
    from lo to hi (log-log), side by side; writes `path` (.png or .svg). Returns the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix not in (".png", ".svg", ".pdf"):
        raise CostError(f"plot file must end in .png, .svg or .pdf, found {path.name!r}")
    points = sweep_points(lo, hi)
    data = sweep(circuits, axis, points, sizes=sizes, tie=tie, **options)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.8))
    for ax, (key, title, unit) in zip(axes, PANELS):
        for name, d in data.items():
            ys = d[key]
            label = f"{name} ({d['leading']})" if key == "flops" else name
            ax.loglog(points, ys, marker="o", ms=3, label=label)
        xl = axis + "".join(f" = {t}" for t in next(iter(data.values()))["tied"])
        style_panel(ax, title, unit, xl)
    axes[0].legend(fontsize=8)
    dev = options.get("device", "h200")
    fig.suptitle(
        f"Cost against {axis} ({options.get('lowering', 'fused')} lowering, roofline "
        f"{getattr(dev, 'name', dev)}); other sizes: the circuits' defaults",
        fontsize=10,
    )
    fig.tight_layout()
    import io

    from ncd.circuits.atomic import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, dpi=130, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())  # a full disk leaves the old figure, not a part
    return {"points": points, "circuits": data, "path": str(path)}


def overlay_shares(report, figure: str = "flops") -> dict[str, float]:
    """Box name -> share of the circuit's total `figure` ("flops" or "memory": activation kept),
    with the boxes inside a call named `call/box` (the renderer's overlay)."""
    attr = {"flops": "flops", "memory": "activation_bytes"}.get(figure)
    if attr is None:
        raise CostError(f"overlay is 'flops' or 'memory', found {figure!r}")
    total = report.numbers["flops" if attr == "flops" else "activation_bytes"] or 0
    shares: dict[str, float] = {}
    if not total:
        return shares
    for b in report.boxes:
        val = report.number(getattr(b, attr)) or 0
        shares[b.name] = val / total
        if b.sub is not None:
            n = report.number(b.repeat) or 1
            for s in b.sub.boxes:
                shares[f"{b.name}/{s.name}"] = n * (report.number(getattr(s, attr)) or 0) / total
    return shares
