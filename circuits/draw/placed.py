"""Figures drawn from a finished layout.

`dot` lays a figure out and draws it in one go, with no say in between. Here the layout
(Graphviz's JSON: every node's and cluster's place, every wire's spline and label) is written
back into the DOT source, which Graphviz's `nop2` engine then draws as it stands. In between,
the layout can be changed (labels.py moves the labels of long wires near their start) and
several layouts can be stacked into one figure (the rows of a wrapped figure, fit.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NODE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*) \[")
_EDGE = re.compile(r'^\s*\S+ -> \S+ \[id="(wire:[^"]*)"')
_CHAIN = re.compile(r"^\s*\S+( -> \S+)+ \[style=invis\]$")
_CLUSTER = re.compile(r"^\s*subgraph (cluster_[A-Za-z0-9_]*) \{$")


@dataclass
class Layout:
    """A DOT source (as dot.to_dot writes it) and Graphviz's JSON layout of it."""

    source: str
    data: dict

    @property
    def bb(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = (float(v) for v in self.data["bb"].split(","))
        return x0, y0, x1, y1

    @property
    def width(self) -> float:
        x0, _, x1, _ = self.bb
        return x1 - x0

    @property
    def height(self) -> float:
        _, y0, _, y1 = self.bb
        return y1 - y0

    def objects(self) -> dict[str, dict]:
        """Nodes and clusters by name."""
        return {o["name"]: o for o in self.data.get("objects", [])}

    def edges(self) -> dict[str, dict]:
        """Wires by id (`wire:w17`)."""
        return {e["id"]: e for e in self.data.get("edges", []) if "id" in e}


def _shift(value: str, dy: float) -> str:
    """A position attribute (`x,y`, a spline `e,x,y x,y …`, a box `x0,y0,x1,y1`) moved up by
    dy points."""
    if dy == 0:
        return value
    out = []
    for part in value.split():
        nums = part.split(",")
        head = [nums.pop(0)] if nums[0] in ("e", "s") else []
        vals = [float(v) for v in nums]
        for i in range(1, len(vals), 2):
            vals[i] += dy
        out.append(",".join(head + [f"{v:g}" for v in vals]))
    return " ".join(out)


def _attrs(obj: dict, keys: tuple[str, ...], dy: float) -> str:
    shifted = ("pos", "lp", "bb")
    parts = []
    for k in keys:
        if k in obj:
            v = _shift(obj[k], dy) if k in shifted else obj[k]
            parts.append(f'{k}="{v}"')
    return " ".join(parts)


def body(layout: Layout, dy: float = 0.0) -> list[str]:
    """The lines of the layout's source inside `digraph {…}`, after its defaults, with every
    position written in (moved up by dy points): nodes, clusters and wires; the invisible
    edges that only steered the layout are left out (the rank groups stay: where a node is
    first named decides the order nodes are drawn in)."""
    objects, edges = layout.objects(), layout.edges()
    lines = layout.source.rstrip("\n").split("\n")
    start = next(i for i, ln in enumerate(lines) if _opens_body(ln))
    out = []
    cluster = None
    for ln in lines[start:-1]:
        if _CHAIN.match(ln):
            continue
        m = _CLUSTER.match(ln)
        if m:
            cluster = m.group(1)
            out.append(ln)
            continue
        if cluster is not None and ln.lstrip().startswith("graph ["):
            at = _attrs(objects[cluster], ("bb", "lp", "lwidth", "lheight"), dy)
            out.append(_append(ln, at))
            cluster = None
            continue
        m = _EDGE.match(ln)
        if m:
            out.append(_append(ln, _attrs(edges[m.group(1)], ("pos", "lp"), dy)))
            continue
        m = _NODE.match(ln)
        if m and m.group(2) in objects and "pos" in objects[m.group(2)]:
            out.append(_append(ln, _attrs(objects[m.group(2)], ("pos",), dy)))
            continue
        out.append(ln)
    return out


def _append(line: str, attrs: str) -> str:
    """The statement with attributes added at the end of its list (`… label=<…>]`)."""
    return f"{line[:-1]} {attrs}]" if attrs else line


def _opens_body(line: str) -> bool:
    """Whether the line is the first after the graph's defaults: a rank group or a node."""
    if line.startswith("  {rank=same"):
        return True
    return bool(_NODE.match(line)) and not line.lstrip().startswith(("graph", "node", "edge"))


def header(layout: Layout, bb: tuple[float, float, float, float], more: str = "") -> list[str]:
    """The opening lines of the layout's source (the digraph and its defaults, not its label)
    for a figure of bounding box `bb` drawn by nop2; `more`: further graph attributes."""
    lines = layout.source.split("\n")
    out = [lines[0]]
    for ln in lines[1:]:
        s = ln.lstrip()
        if s.startswith("graph ["):
            bbox = ",".join(f"{v:g}" for v in bb)
            out.append(ln.replace("graph [", f'graph [layout=nop2 bb="{bbox}" {more}', 1))
        elif s.startswith(("node [", "edge [")):
            out.append(ln)
        elif not s.startswith("label="):
            break
    return out


def _legend(layout: Layout) -> str:
    """The source's graph label line (a cost overlay's legend), '' when it has none."""
    return next((ln for ln in layout.source.split("\n") if ln.startswith("  label=")), "")


def source(layouts: list[Layout], gap: float = 0.0, legend: str = "") -> str:
    """One DOT source drawing `layouts` as laid out, the first on top and each further one
    below the one before, `gap` points apart, all flush left. Invisible points at the
    corners of each layout's box keep nop2 from trimming the margins dot left.

    A single layout keeps its legend where dot put it; `legend` (a graph label line, for
    layouts laid out without one) goes below all of them, placed by nop2."""
    heights = [ly.height for ly in layouts]
    width = max(ly.width for ly in layouts)
    total = sum(heights) + gap * (len(layouts) - 1)
    more = ""
    if len(layouts) == 1 and _legend(layouts[0]):
        legend = _legend(layouts[0])
        more = _attrs(layouts[0].data, ("lp", "lwidth", "lheight"), 0.0) + " "
    lines = header(layouts[0], (0.0, 0.0, width, total), more)
    if legend:
        lines.append(legend)
    top = total
    for k, ly in enumerate(layouts):
        x0, y0, _, y1 = ly.bb
        dy = top - y1
        lines += body(ly, dy)
        for j, (x, y) in enumerate(((x0, y0 + dy), (x0 + width, y1 + dy))):
            lines.append(
                f'  corner_{k}_{j} [pos="{x:g},{y:g}" shape=point width=0 height=0 '
                'style=invis label=""]'
            )
        top -= heights[k] + gap
    lines.append("}")
    return "\n".join(lines) + "\n"
