"""Figures that fit a page.

A figure wider than a page allows is wrapped into rows (wrap.py), which hides nothing. Where
the rows would stack taller than the page, parts are drawn collapsed as well, as `depth=` and
`collapse=` draw them (one box with the wires crossing their border), a step at a time until
the figure fits: first the calls, the most deeply nested first (a call is a circuit of its
own, which can be drawn by itself), then the blocks, the innermost and largest first. The
page is a page's text (6.5 × 9 in) at half size, the smallest at which 8 pt wire labels
still read (4 pt).

Rows are measured as they are drawn (laid out, restacked, reordered): a single layout, which
places the breaks, can come out a good deal taller or shorter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .dot import GAP, PAD, _node_width, columns
from .placed import Layout
from .scene import Scene
from .wrap import breaks, rows

MAX_WIDTH = 1000.0  # points: 13.9 in, a page's text width at half size
PAGE_ASPECT = 1.4  # height / width of a page's text (9 in by 6.5)
ROW_GAP = 24.0  # points between two rows of a wrapped figure
SLACK = 2.0  # a single pass this many times taller than the page: not laid out as drawn
TRIES = 3  # times the breaks are chosen again, narrower, when a row came out too wide


@dataclass(frozen=True)
class Level:
    """What a step of fitting draws collapsed: calls deeper than `depth` (None: all open)
    and the blocks named in `collapse`."""

    depth: int | None = None
    collapse: frozenset[str] = frozenset()

    def describe(self) -> str:
        parts = []
        if self.depth == 0:
            parts.append("every call drawn as a box (depth=0)")
        elif self.depth is not None:
            parts.append(f"calls nested {self.depth} deep drawn as boxes (depth={self.depth})")
        if self.collapse:
            parts.append(", ".join(map(repr, sorted(self.collapse))) + " collapsed")
        return " and ".join(parts)


@dataclass
class Plan:
    """What to draw: the scenes of the figure's rows (one when it is not wrapped), what it
    collapses to fit, and the rows' layouts once made."""

    rows: list[Scene]
    level: Level = Level()
    layouts: list[Layout] | None = None


def levels(scene: Scene) -> list[Level]:
    """The steps of fitting the scene, all open first and each collapsing more than the one
    before: calls from the most deeply nested up (`depth`), then, with every call a box, the
    blocks of each nesting level from the innermost out, one more block a step, the largest
    (most boxes) first."""
    by_id = {c.id: c for c in scene.clusters}

    def around(c) -> list:  # the clusters c is drawn in, innermost first
        out, p = [], c.parent
        while p is not None:
            out.append(by_id[p])
            p = by_id[p].parent
        return out

    calls = sorted(
        {sum(p.kind == "call" for p in around(c)) for c in scene.clusters if c.kind == "call"},
        reverse=True,
    )
    out = [Level()] + [Level(depth=d) for d in calls]
    size: dict[str, int] = {}  # a block (by name) -> nodes it holds, outside calls
    nest: dict[str, int] = {}
    for c in scene.clusters:
        if c.kind == "group" and all(p.kind != "call" for p in around(c)):
            nest[c.name] = max(nest.get(c.name, 0), len(around(c)))
            size.setdefault(c.name, 0)
    for node in scene.nodes:
        c = node.cluster
        while c is not None:
            if by_id[c].name in size and by_id[c].kind == "group":
                size[by_id[c].name] += 1
            c = by_id[c].parent
    shut, done = (0 if calls else None), frozenset()
    for n in sorted(set(nest.values()), reverse=True):
        for name in sorted((k for k, v in nest.items() if v == n), key=lambda k: -size[k]):
            done = done | {name}
            out.append(Level(shut, done))
    return out


def fit(
    build: Callable[[Level], Scene],
    measure: Callable[[Scene], Layout],
    lay_out: Callable[[Scene], Layout],
    steps: list[Level],
    width: float = MAX_WIDTH,
    height: float = MAX_WIDTH * PAGE_ASPECT,
) -> Plan:
    """The plan of the first of `steps` that fits `width` × `height` points wrapped (or
    not), else of the last, with its rows laid out; found by bisection (a step collapses
    what the one before does and more, so if one fits, so do the later ones).
    `build(level)` makes the scene drawn so; `measure(scene)` lays one out in a single pass,
    which places the breaks; `lay_out(scene)` lays one out as it is drawn, as the rows are
    measured unless a single pass shows them far too tall (it can be a good deal taller or
    shorter than the drawing)."""
    plan, ok = _try(build, measure, lay_out, steps[0], width, height)
    if ok:
        return plan
    lo, hi, found = 1, len(steps) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        p, ok = _try(build, measure, lay_out, steps[mid], width, height)
        if ok:
            found, hi = p, mid - 1
        else:
            lo = mid + 1
    if found is None:  # nothing fits: the most collapsed, as it comes, laid out
        last = plan if len(steps) == 1 else None
        if last is None or last.layouts is None:
            last = _try(build, measure, lay_out, steps[-1], width, float("inf"))[0]
        found = last
    return found


def fits(layouts: list[Layout], width: float, height: float) -> bool:
    """Whether rows so laid out, stacked, fit `width` × `height` points, margins included."""
    tall = sum(ly.height for ly in layouts) + ROW_GAP * (len(layouts) - 1)
    return max(ly.width for ly in layouts) + 2 * PAD <= width and tall + 2 * PAD <= height


def _try(build, measure, lay_out, level: Level, width: float, height: float):
    """The plan at `level`, wrapped if it must be to fit `width` (margins included), and
    whether it fits `height` too; its rows are laid out (`Plan.layouts`) unless single
    passes show them SLACK times too tall."""
    inner, tall = width - 2 * PAD, height - 2 * PAD
    scene = build(level)
    whole = measure(scene)
    if whole.width <= inner:
        if whole.height > tall * SLACK:
            return Plan([scene], level), False
        layout = lay_out(scene)
        if layout.width <= inner:
            return Plan([scene], level, [layout]), fits([layout], width, height)
    # Breaks chosen on the whole figure's column extents, then again narrower while a row
    # comes out too wide.
    target = inner
    for _ in range(TRIES):
        scene = build(level)
        col = {nid: k for k, column in enumerate(columns(scene)) for nid in column}
        extents = _extents(whole, col)
        runs = breaks(col, extents, scene, target)
        scenes = rows(scene, col, runs)
        quick = [measure(s) for s in scenes]
        widest = max(ly.width for ly in quick)
        if widest <= inner or len(runs) == len(extents):
            break
        target *= inner / widest * 0.97
    if sum(ly.height for ly in quick) + ROW_GAP * (len(quick) - 1) > tall * SLACK:
        return Plan(scenes, level), False
    layouts = [lay_out(s) for s in scenes]
    return Plan(scenes, level, layouts), fits(layouts, width, height)


def _extents(layout: Layout, col: dict[str, int]) -> list[tuple[float, float, float, float]]:
    """Per column, the box its nodes take in the layout: (left, bottom, right, top), in
    points."""
    n = max(col.values()) + 1
    inf = float("inf")
    box = [[inf, inf, -inf, -inf] for _ in range(n)]
    for name, o in layout.objects().items():
        if name in col and "pos" in o:
            x, y = (float(v) for v in o["pos"].split(","))
            w, h = float(o["width"]) * 36, float(o["height"]) * 36
            b = box[col[name]]
            b[:] = min(b[0], x - w), min(b[1], y - h), max(b[2], x + w), max(b[3], y + h)
    for k, b in enumerate(box):  # a column none of whose nodes was placed: empty, after the last
        if b[0] == inf:
            b[:] = [box[k - 1][2], box[k - 1][1], box[k - 1][2], box[k - 1][1]] if k else [0.0] * 4
    return [tuple(b) for b in box]


def estimate_width(scene: Scene) -> float:
    """Points the scene is wide at the least: its columns' widest nodes, the gaps between
    them and the figure's margins (Graphviz adds the wire labels' room and the blocks'
    margins)."""
    by_id = {n.id: n for n in scene.nodes}
    cols = columns(scene)
    inner = sum(max(_node_width(by_id[n]) for n in c) for c in cols) + GAP * (len(cols) - 1)
    return inner + 2 * PAD
