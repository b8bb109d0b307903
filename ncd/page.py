"""The gallery as one offline HTML page: for every entry of `ncd.gallery.ENTRIES`, its figure
(inline SVG), its paper, the equations it implements (the `Implements:` paragraph of the
builder's docstring, the rest of the docstring below it), its cost at the
default sizes (numbers and formulas, from `ncd.analyse`), and the generated PyTorch code; then
the scaling plot of the entries along T, the softmax attention family against the linear family.

Nothing is fetched: styles are inline, figures are inline SVG, the plot is an inline PNG. The
page is the same bytes for the same gallery. An entry that fails to draw, analyse or compile
shows the error in its card; the others are built as usual, and `build_page` lists the failure.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

# Cost figures of an entry's table, titled as in the cost report (compiler.cost.report.FIGURES).
COST_ROWS = (
    "flops", "flops_backward", "params", "activation_bytes", "peak_bytes", "io_bytes",
    "io_bytes_backward",
)  # fmt: skip
SWEEP_AXIS, SWEEP_LO, SWEEP_HI = "T", 256, 65536
FAMILIES = {
    2: "softmax attention family (FLOPs grow as T², S = T)",
    1: "linear family (FLOPs grow as T)",
}


@dataclass
class Card:
    """What the page shows of one entry; `errors` maps a step (render, analyse, compile) to
    the message of its failure."""

    name: str
    title: str
    paper: str
    equations: str = ""
    description: str = ""  # the builder's docstring without its Implements: paragraph
    doc: str = ""
    svg: str = ""
    parts: list[tuple[str, str]] = field(default_factory=list)  # (subcircuit, its figure)
    cost: str = ""
    code: str = ""
    report: object = None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Page:
    html: str
    cards: list[Card]
    plot_png: bytes | None
    plot_error: str = ""

    @property
    def problems(self) -> list[str]:
        """'entry: step: message' for every failure on the page."""
        out = [f"{c.name}: {step}: {msg}" for c in self.cards for step, msg in c.errors.items()]
        return out + ([f"scaling plot: {self.plot_error}"] if self.plot_error else [])


def _message(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def make_card(entry) -> Card:
    """Build, draw, analyse and compile one gallery entry; a failing step is recorded in
    `errors` and the steps that do not need it still run."""
    from ncd.circuits.draw import render
    from ncd.compiler import to_source
    from ncd.compiler.cost import analyse

    card = Card(entry.name, entry.title, entry.paper)
    card.equations, card.description = implements(inspect.getdoc(entry.build) or "")
    try:
        circuit = entry.build()
    except Exception as err:  # noqa: BLE001 - shown in the card, listed in the problems
        card.errors["build"] = _message(err)
        return card
    card.doc = circuit.doc.strip()
    for step, run in (
        # whole figures (scrolled in their card), not wrapped to fit a paper's page
        ("render", lambda: _figure(circuit, partial(render, max_width=None))),
        ("analyse", lambda: analyse(circuit)),
        ("compile", lambda: to_source(circuit)),
    ):
        try:
            value = run()
        except Exception as err:  # noqa: BLE001 - shown in the card, listed in the problems
            card.errors[step] = _message(err)
            continue
        if step == "render":
            svg, parts = value
            card.svg = inline_svg(svg, prefix=entry.name)
            card.parts = [(n, inline_svg(v, prefix=f"{entry.name}-{n}")) for n, v in parts]
        elif step == "analyse":
            card.report = value
            try:
                card.cost = cost_table(value)
            except Exception as err:  # noqa: BLE001
                card.errors["analyse"] = _message(err)
        else:
            card.code = value
    return card


def implements(doc: str) -> tuple[str, str]:
    """(the paragraph of `doc` that starts with `Implements:`, the other paragraphs); the
    first is empty when `doc` has no such paragraph. Paragraphs are separated by blank lines;
    the Implements paragraph's lines are joined into one."""
    paras = [p.strip() for p in re.split(r"\n[ \t]*\n", doc) if p.strip()]
    for i, para in enumerate(paras):
        if para.startswith("Implements:"):
            return " ".join(para.split()), "\n\n".join(paras[:i] + paras[i + 1 :])
    return "", "\n\n".join(paras)


MAX_FIGURE_PT = 4000  # wider drawings draw their calls as boxes, each subcircuit below


def _figure(circuit, render) -> tuple[str, list[tuple[str, str]]]:
    """The entry's drawing with every call expanded; where that would be wider than
    MAX_FIGURE_PT (nested subcircuits of subcircuits), the calls drawn as boxes and each
    subcircuit drawn on its own after it, in the order they are called."""
    svg = render(circuit)
    m = re.search(r'<svg[^>]*\bwidth="([\d.]+)pt"', svg)
    if not m or float(m.group(1)) <= MAX_FIGURE_PT or not circuit.subcircuits:
        return svg, []
    parts, todo = {}, list(circuit.subcircuits.items())
    while todo:  # subcircuits of subcircuits too, each once
        name, sub = todo.pop(0)
        if name not in parts:
            parts[name] = render(sub, depth=0)
            todo += sub.subcircuits.items()
    return render(circuit, depth=0), list(parts.items())


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element to place inside HTML: the XML prolog, doctype and
    comments before <svg> dropped, every id (and reference to one) prefixed so that several
    figures on one page do not share ids."""
    start = svg.find("<svg")
    if start < 0:
        raise ValueError(f"{prefix}: the renderer's output has no <svg> element")
    body = svg[start:]
    body = re.sub(r'\bid="([^"]*)"', lambda m: f'id="{prefix}-{m.group(1)}"', body)
    body = re.sub(r"url\(#([^)]*)\)", lambda m: f"url(#{prefix}-{m.group(1)})", body)
    body = re.sub(r'href="#([^"]*)"', lambda m: f'href="#{prefix}-{m.group(1)}"', body)
    return body


def cost_table(report) -> str:
    """The entry's totals at its default sizes: number, formula and leading order per figure."""
    from ncd.compiler.cost.report import FIGURES, box_cells, human
    from ncd.compiler.cost.symbolic import big_o

    e = html.escape
    numbers = report.numbers
    rows = []
    for key in COST_ROWS:
        title, unit = FIGURES[key]
        f = report.peak_formula() if key == "peak_bytes" else report.formulas[key]
        f = report.readable(f)
        order = "" if f.is_number else big_o(f)
        rows.append(
            f'<tr data-figure="{key}"><th>{e(title)}</th>'
            f'<td class=num data-value="{numbers.get(key)}">{e(human(numbers.get(key), unit))}</td>'
            f"<td><code>{e(report.show(f))}</code></td><td>{e(order)}</td></tr>"
        )
    sizes = ", ".join(f"{k} = {v}" for k, v in sorted(report.sizes.items())) or "none"
    derived = "".join(
        f"<p class=note>In the formulas, {e(a)} = {e(v)} (the size of axis {e(a)}).</p>"
        for a, v in report.derived_sizes().items()
    )
    boxes = []
    for r in report.box_rows():
        boxes.append(
            "<tr>"
            + "".join(f"<td>{e(str(x))}</td>" for x in box_cells(r)[:6])
            + f"<td><code>{e(r['flops_formula'])}</code></td></tr>"
        )
    return (
        f"<p class=sizes>At the default sizes {e(sizes)}; lowering {e(report.lowering)}, "
        f"device {e(report.device.name)}.</p>"
        "<table class=cost><thead><tr><th>figure</th><th>value</th><th>formula</th>"
        "<th>order</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>" + derived
        + "<details><summary>per box</summary><table class=boxes><thead><tr><th>box</th>"
        "<th>kind</th><th>FLOPs</th><th>params</th><th>kept</th><th>IO</th>"
        "<th>FLOPs formula</th></tr></thead><tbody>" + "".join(boxes) + "</tbody></table>"
        "</details>"
    )  # fmt: skip


def family(report) -> int | None:
    """The degree in T of an entry's forward FLOPs with S = T (2: the softmax attention family,
    1: the linear family); None when the formulas have no size T."""
    from ncd.circuits.sizes import symbol
    from ncd.compiler.cost.symbolic import degree

    t, s = symbol(SWEEP_AXIS), symbol("S")
    flops = report.formulas["flops"]
    if t not in flops.free_symbols:
        return None
    return degree(flops.xreplace({s: t}), SWEEP_AXIS)


def scaling_png(cards: list[Card]) -> tuple[bytes | None, list[tuple[str, int]]]:
    """One PNG: FLOPs, kept memory, IO and roofline time of every entry of the two families
    against T (S = T), from each entry's cost formulas at its other default sizes. Returns the
    image (None when no entry has a size T) and (entry, degree) for the entries drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ncd.compiler.cost.plot import PANELS, style_panel, sweep_points

    drawn = []
    for c in cards:
        if c.report is not None and "analyse" not in c.errors:
            d = family(c.report)
            if d in FAMILIES:
                drawn.append((c, d))
    if not drawn:
        return None, []
    drawn.sort(key=lambda cd: -cd[1])  # the softmax family first, then gallery order
    points = sweep_points(SWEEP_LO, SWEEP_HI)
    colours = {2: plt.get_cmap("autumn"), 1: plt.get_cmap("winter")}
    count = {d: sum(1 for _, dd in drawn if dd == d) for d in FAMILIES}
    seen = dict.fromkeys(FAMILIES, 0)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 4.2))
    for c, d in drawn:
        colour = colours[d](0.8 * seen[d] / max(count[d] - 1, 1))
        seen[d] += 1
        style = "-" if d == 2 else "--"
        for ax, (key, _title, _unit) in zip(axes, PANELS):
            ys = [c.report.at(key, **{SWEEP_AXIS: p, "S": p}) for p in points]
            ax.loglog(points, ys, style, marker="o", ms=3, color=colour, label=c.name)
    for ax, (_key, title, unit) in zip(axes, PANELS):
        style_panel(ax, title, unit, f"{SWEEP_AXIS} (= S)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9,
               frameon=False)  # fmt: skip
    rows = (len(labels) + 5) // 6
    fig.suptitle(
        "Cost against T: softmax attention family (solid, warm) and linear family (dashed, "
        "cool); other sizes at each entry's defaults; fused lowering, H200 roofline",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue(), [(c.name, d) for c, d in drawn]


STYLE = """
body { font: 15px/1.45 Georgia, 'DejaVu Serif', serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #222; background: #fdfdfb; }
h1 { font-size: 1.7em; margin-bottom: .2em; }
nav ol { columns: 3 16em; font-size: .9em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: .5em 1.2em 1em; margin: 1.5em 0;
        background: #fff; }
.card.failed { border: 2px solid #c00; }
.card h2 { margin: .3em 0 .1em; font-size: 1.3em; }
.card h2 code { font-size: .75em; color: #555; font-weight: normal; margin-left: .5em; }
.paper { color: #555; font-style: italic; margin: 0 0 .6em; }
.figure { overflow-x: auto; text-align: center; margin: .5em 0; }
.figure svg { max-width: 100%; height: auto; }
.equations { white-space: pre-wrap; background: #f6f6f0; padding: .6em .8em;
             border-left: 3px solid #aa9; font-size: .95em; }
.description { white-space: pre-wrap; font-size: .9em; margin: .5em 0; }
.missing { color: #a60; }
.error { white-space: pre-wrap; color: #900; background: #fee; padding: .5em .8em; }
table { border-collapse: collapse; font-size: .85em; margin: .4em 0; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { border-bottom: 1px solid #e4e4e4; padding: .2em .6em; text-align: left;
         vertical-align: top; }
td.num { text-align: right; white-space: nowrap; }
code, pre { font-family: 'DejaVu Sans Mono', monospace; font-size: .85em; }
pre.code { background: #f4f4f4; padding: .6em; overflow-x: auto; max-height: 40em; }
details summary { cursor: pointer; color: #335; margin: .3em 0; }
.sizes, .note { font-size: .85em; color: #555; margin: .2em 0; }
img.plot { max-width: 100%; }
@media (max-width: 600px) { body { padding: .5em .8em; } .card { padding: .4em .6em .8em; } }
"""


def render_card(card: Card) -> str:
    e = html.escape
    parts = [
        f'<section class="card{" failed" if card.errors else ""}" id="{e(card.name)}" '
        f'data-entry="{e(card.name)}">',
        f"<h2>{e(card.title)}<code>{e(card.name)}</code></h2>",
        f"<p class=paper>{e(card.paper)}</p>",
    ]
    for step, msg in card.errors.items():
        parts.append(f"<pre class=error>{e(step)} failed: {e(msg)}</pre>")
    if card.svg:
        parts.append(f"<div class=figure>{card.svg}</div>")
    for name, svg in card.parts:
        parts.append(f"<h3>Subcircuit <code>{e(name)}</code></h3><div class=figure>{svg}</div>")
    parts.append("<h3>Equations it implements</h3>")
    if card.equations:
        text = card.equations.removeprefix("Implements:").strip()
        parts.append(f"<div class=equations>{e(text)}</div>")
    elif card.description:
        parts.append("<p class=missing>The builder's docstring has no Implements: paragraph.</p>")
    else:
        parts.append("<p class=missing>The builder function has no docstring.</p>")
    if card.description:
        parts.append(f"<div class=description>{e(card.description)}</div>")
    doc, shown = inspect.cleandoc(card.doc), (card.equations, card.description)
    if doc and doc not in shown and implements(doc) != shown:  # the circuit's doc, when new
        parts.append(f"<p class=note>Circuit doc: {e(card.doc)}</p>")
    if card.cost:
        parts.append(f"<h3>Cost</h3>{card.cost}")
    if card.code:
        lines = card.code.count("\n")
        parts.append(
            f"<details class=code><summary>generated PyTorch code ({lines} lines, "
            f"<code>ncd compile {e(card.name)}</code>)</summary>"
            f"<pre class=code><code>{e(card.code)}</code></pre></details>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def build_page(entries=None) -> Page:
    """The page for `entries` (default: every entry of `ncd.gallery.ENTRIES`, in its order)."""
    from ncd import gallery
    from ncd.compiler.cost import CONVENTIONS

    entries = list(gallery.ENTRIES.values()) if entries is None else list(entries)
    cards = [make_card(entry) for entry in entries]
    e = html.escape
    try:
        png, drawn = scaling_png(cards)
        plot_error = ""
    except Exception as err:  # noqa: BLE001 - shown on the page, listed in the problems
        png, drawn, plot_error = None, [], _message(err)
    toc = "".join(
        f'<li><a href="#{e(c.name)}">{e(c.name)}</a>{" (failed)" if c.errors else ""}</li>'
        for c in cards
    )
    failed = [c for c in cards if c.errors]
    head = (
        f"<p class=error>{len(failed)} of {len(cards)} entries failed: "
        + ", ".join(e(c.name) for c in failed)
        + "</p>"
        if failed
        else ""
    )
    if png:
        members = "".join(
            f"<li data-family={d}>{e(FAMILIES[d])}: "
            + ", ".join(f'<a href="#{e(n)}">{e(n)}</a>' for n, dd in drawn if dd == d)
            + "</li>"
            for d in FAMILIES
            if any(dd == d for _, dd in drawn)
        )
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        plot = (
            "<p>Entries with a size T, grouped by the degree in T of their forward FLOPs "
            f"(with S = T), from T = {SWEEP_LO} to {SWEEP_HI}; every other size at the "
            f"entry's default.</p><ul>{members}</ul>"
            f'<img class=plot id=scaling-plot alt="cost against T" src="{src}">'
        )
    elif plot_error:
        plot = f"<pre class=error>scaling plot failed: {e(plot_error)}</pre>"
    else:
        plot = "<p>No entry has a size T.</p>"
    body = "\n".join(render_card(c) for c in cards)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ncd gallery</title><style>{STYLE}</style></head>
<body>
<h1>The ncd gallery</h1>
<p>{len(cards)} architectures as neural circuit diagrams: each with its paper, the equations
it implements, its cost read from the diagram and the PyTorch code ncd compiles it to.
Made by <code>ncd gallery -o DIR</code>.</p>
{head}
<nav><ol>{toc}</ol></nav>
<section id=scaling><h2>Scaling along T</h2>{plot}</section>
{body}
<p class=note>{e(CONVENTIONS)}</p>
</body></html>
"""
    return Page(text, cards, png, plot_error)


def write_page(out_dir, entries=None) -> tuple[Path, Page]:
    """Write `out_dir/index.html` (and the scaling plot beside it, scaling_T.png)."""
    from ncd.spec import write_text

    out_dir = Path(out_dir)
    page = build_page(entries)
    path = write_text(out_dir / "index.html", page.html)
    if page.plot_png:
        write_text(out_dir / "scaling_T.png", page.plot_png)
    return path, page
