"""Labels of long wires near where the wires start.

Graphviz writes an edge's label halfway along it. A wire to the next column is labelled in
the gap after its tail, but one that skips columns (a U-Net's skip from its copy bar to the
concatenation far right, a residual's skip) was labelled in the middle of nowhere, and where
it left its copy bar the reader saw unlabelled wires. Here, in a finished layout, such a
label moves along its wire from the gap after the tail, where the labels of the wires to the
next column stand, to the first place where the wire runs level enough to be read beside and
the label overlaps no wire, label or box (if there is none close by, it stays).
"""

from __future__ import annotations

import re

import numpy as np

from .dot import GAP, WIRE_PT, columns
from .order import _bezier
from .placed import Layout
from .scene import Scene

REACH = 4 * GAP  # how far past the gap after its tail a label may move along its wire
STEP = 2.0  # points between the places tried
LEVEL = 0.6  # the steepest a wire may run where a label is put beside it
_MARKUP = re.compile(r"<[^>]*>|&[a-z#0-9]+;")


def near_tails(layout: Layout, scene: Scene) -> list[str]:
    """Move the labels of wires that skip columns near their tail (in the layout, in
    place); returns the ids of the wires whose label moved."""
    col = {nid: k for k, column in enumerate(columns(scene)) for nid in column}
    edges = layout.edges()
    wires = {"wire:" + w.id: w for w in scene.wires if "wire:" + w.id in edges}
    lines = {wid: _bezier(_points(e["pos"]), 8) for wid, e in edges.items() if e.get("pos")}
    long = [
        wid
        for wid, w in wires.items()
        if col[w.head[0]] - col[w.tail[0]] >= 2 and "lp" in edges[wid] and wid in lines
    ]
    if not long:
        return []
    room = _Obstacles(layout, wires, lines, col)
    moved = []
    for wid in long:
        line, c = lines[wid], col[wires[wid].tail[0]]
        start = float(np.median(room.gap_x[c])) if c in room.gap_x else line[0, 0] + GAP / 2
        w, h = _size(wires[wid].label)
        for x in np.arange(start, min(start + REACH, line[-1, 0]), STEP):
            box = _place(line, x, w, h, room.lift, lambda b, wid=wid: room.clear(b, wid))
            if box is not None:
                edges[wid]["lp"] = f"{x:.2f},{(box[1] + box[3]) / 2:.2f}"
                room.move(wid, box)
                moved.append(wid)
                break
    return moved


class _Obstacles:
    """What a label must not overlap in a layout: wires (as dense points, sorted by x, so
    that a box is checked against the points in its x range alone), labels (boxes), nodes
    (boxes); and where labels stand: their x in the gap after each column, how far above
    their wire."""

    def __init__(self, layout: Layout, wires, lines, col) -> None:
        edges = layout.edges()
        boxes = []
        for name, o in layout.objects().items():
            if name in col and "pos" in o:  # not the invisible nodes that make room for titles
                x, y = (float(v) for v in o["pos"].split(","))
                w, h = float(o["width"]) * 36, float(o["height"]) * 36
                boxes.append((x - w, y - h, x + w, y + h))
        self.nodes = np.array(boxes) if boxes else np.zeros((0, 4))
        labels: dict[str, tuple[float, float, float, float]] = {}
        self.gap_x: dict[int, list[float]] = {}
        above = []
        for wid, w in wires.items():
            if "lp" not in edges[wid]:
                continue
            x, y = (float(v) for v in edges[wid]["lp"].split(","))
            bw, bh = _size(w.label)
            labels[wid] = (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)
            if col[w.head[0]] - col[w.tail[0]] == 1 and wid in lines:
                self.gap_x.setdefault(col[w.tail[0]], []).append(x)
                at = _y_at(lines[wid], x)
                if at is not None:
                    above.append(y - at)
        self.lift = float(np.median(above)) if above else WIRE_PT
        self.label_row = {wid: k for k, wid in enumerate(labels)}  # wire id -> row of boxes
        self.boxes = np.array(list(labels.values())).reshape(-1, 4)
        dense = {wid: _dense(line) for wid, line in lines.items()}
        points = np.concatenate(list(dense.values()))
        owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(dense.values())])
        by_x = np.argsort(points[:, 0], kind="stable")
        self.points, self.owner = points[by_x], owner[by_x]
        self.index = {wid: i for i, wid in enumerate(dense)}

    def move(self, wid: str, box) -> None:
        """The label of wire `wid` now stands at `box`."""
        self.boxes[self.label_row[wid]] = box

    def clear(self, box, wid: str) -> bool:
        """Whether `box` overlaps no wire but `wid`, no other label and no node."""
        x0, y0, x1, y1 = box
        xs = self.points[:, 0]
        lo, hi = np.searchsorted(xs, x0, side="right"), np.searchsorted(xs, x1, side="left")
        p, owner = self.points[lo:hi], self.owner[lo:hi]  # the points with x0 < x < x1
        if np.any((p[:, 1] > y0) & (p[:, 1] < y1) & (owner != self.index[wid])):
            return False
        q = self.boxes
        hit = (q[:, 0] < x1) & (x0 < q[:, 2]) & (q[:, 1] < y1) & (y0 < q[:, 3])
        if wid in self.label_row:
            hit[self.label_row[wid]] = False
        if np.any(hit):
            return False
        n = self.nodes
        return not np.any((n[:, 0] < x1) & (x0 < n[:, 2]) & (n[:, 1] < y1) & (y0 < n[:, 3]))


def _place(line: np.ndarray, x: float, w: float, h: float, lift: float, clear):
    """The box of a w × h label beside the wire at x, above it or else below, where the wire
    runs level and the box is clear; None if neither is."""
    y0, slope = _y_at(line, x), _slope(line, x)
    if y0 is None or abs(slope) > LEVEL:
        return None
    for y in (y0 + lift, y0 - lift):
        box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        if clear(box):
            return box
    return None


def _points(pos: str) -> np.ndarray:
    pts = [p for p in pos.split() if not p.startswith(("s,", "e,"))]
    return np.array([[float(v) for v in p.split(",")[:2]] for p in pts])


def _size(label: str) -> tuple[float, float]:
    """Width and height (points) of a wire's label: italic letters at about half an em."""
    text = _MARKUP.sub("x", label)
    return 0.5 * WIRE_PT * len(text) + 2, WIRE_PT + 2


def _segment(line: np.ndarray, x: float):
    """The first piece of the polyline that spans x, or None."""
    for (x0, y0), (x1, y1) in zip(line[:-1], line[1:], strict=False):
        if min(x0, x1) <= x <= max(x0, x1):
            return x0, y0, x1, y1
    return None


def _y_at(line: np.ndarray, x: float) -> float | None:
    """The wire's height where it first reaches x, None if it does not."""
    seg = _segment(line, x)
    if seg is None:
        return None
    x0, y0, x1, y1 = seg
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _slope(line: np.ndarray, x: float) -> float:
    """dy/dx of the wire where it first reaches x (infinite where it runs upright)."""
    seg = _segment(line, x)
    if seg is None or seg[2] == seg[0]:
        return float("inf")
    x0, y0, x1, y1 = seg
    return (y1 - y0) / (x1 - x0)


def _dense(line: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Points along a polyline at most `step` apart: its first point, then each piece from a
    to b cut into k = max(length // step, 1) steps, a + (b - a) * j / k for j = 1 … k."""
    if len(line) < 2:
        return line[:1]
    a, d = line[:-1], line[1:] - line[:-1]
    k = np.maximum((np.hypot(d[:, 0], d[:, 1]) / step).astype(int), 1)
    piece = np.repeat(np.arange(len(k)), k)
    j = np.arange(len(piece)) - np.repeat(np.cumsum(k) - k, k) + 1
    t = j / k[piece]
    return np.concatenate([line[:1], a[piece] + d[piece] * t[:, None]])
