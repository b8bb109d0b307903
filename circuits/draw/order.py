"""The order of boxes within a column: barycentre sweeps over lanes, so that bundles cross less.

Graphviz orders each rank to reduce crossings, but on circuits where a value feeds two
branches that meet again (recurrent linear attention: φ(q) and φ(k) each feed two paths into
two contractions) its order left 70 wire crossings where one with 33 exists. Here a simple
model of the drawing is searched instead: boxes stacked in their columns, each lane at its own
row, a wire a straight line from its tail lane to its head lane. Sweeps left to right (each box
where its incoming wires come from) and right to left (where its outgoing wires go), with the
free bundles (a copy's copies, a sum's operands) restacked after each; the orders of fewest
modelled crossings, if fewer than the first layout's own order, are laid out (two: the model
misjudges wires that Graphviz routes round boxes), and the real crossings choose. Blocks stay
contiguous (a block's boxes sort as one item), as Graphviz draws them.

Only the order is decided here; Graphviz still places and routes (the order reaches it as the
invisible chains of `dot.to_dot(order=...)`).
"""

from __future__ import annotations

import numpy as np

from .scene import Node, Scene, restack

SWEEPS = 4
MAX_WIRES = 800  # the crossing count is quadratic in the wires; past this the first order stays


def _rows(node: Node) -> int:
    if node.role in ("input", "output"):
        return max(len(node.outs), len(node.ins), 1)
    return len(node.above) + max(len(node.ins), len(node.outs), 1) + len(node.below)


def _offsets(node: Node) -> tuple[dict[int, float], dict[int, float]]:
    """Lane id -> row (from the node's top, in rows) where wires arrive / leave."""
    if node.role in ("input", "output"):
        lanes = node.outs or node.ins
        at = {id(ln): k + 0.5 for k, ln in enumerate(lanes)}
        return at, at
    a, n = len(node.above), max(len(node.ins), len(node.outs), 1)
    through = {id(ln): k + 0.5 for k, ln in enumerate(node.above)}
    through.update({id(ln): a + n + k + 0.5 for k, ln in enumerate(node.below)})
    ins = dict(through)
    ins.update({id(ln): a + (k + 0.5) * n / len(node.ins) for k, ln in enumerate(node.ins)})
    outs = dict(through)
    outs.update({id(ln): a + (k + 0.5) * n / len(node.outs) for k, ln in enumerate(node.outs)})
    return ins, outs


class _Model:
    def __init__(self, scene: Scene, cols: list[list[str]]):
        self.scene = scene
        self.by_id = {n.id: n for n in scene.nodes}
        self.col = {nid: k for k, column in enumerate(cols) for nid in column}
        self.cols = [list(c) for c in cols]
        parent = {c.id: c.parent for c in scene.clusters}
        self.chain: dict[str, list[str]] = {}
        for n in scene.nodes:
            chain, c = [], n.cluster
            while c is not None:
                chain.append(c)
                c = parent[c]
            self.chain[n.id] = chain[::-1]
        self.wires = scene.wires
        self.rows = {n.id: _rows(n) for n in scene.nodes}
        self.top: dict[str, float] = {}
        # Wires by the column they arrive in (from the left) and leave from (to the right).
        self.arriving: list[list] = [[] for _ in cols]
        self.leaving: list[list] = [[] for _ in cols]
        for w in scene.wires:
            t, h = self.col[w.tail[0]], self.col[w.head[0]]
            if t < h:
                self.arriving[h].append(w)
                self.leaving[t].append(w)
        self.measure()
        self.place()

    def measure(self) -> None:
        """Lane offsets (they change when bundles are restacked)."""
        self.offs = {n.id: _offsets(n) for n in self.scene.nodes}

    def place(self, k: int | None = None) -> None:
        """The row of each node's top, stacking column `k` (every column: None) in its current
        order, centred on the others as Graphviz centres ranks."""
        for column in self.cols if k is None else [self.cols[k]]:
            y = 0.0
            for nid in column:
                self.top[nid] = y
                y += self.rows[nid] + 1
            for nid in column:
                self.top[nid] -= (y - 1) / 2

    def ends(self, w) -> tuple[float, float]:
        t, h = w.tail[0], w.head[0]
        return (
            self.top[t] + self.offs[t][1].get(id(w.tail[1]), 0.5),
            self.top[h] + self.offs[h][0].get(id(w.head[1]), 0.5),
        )

    def crossings(self) -> int:
        if not self.wires:
            return 0
        e = np.array([(self.col[w.tail[0]], y0, self.col[w.head[0]], y1)
                      for w in self.wires for y0, y1 in [self.ends(w)]])  # fmt: skip
        x0, y0, x1, y1 = (e[:, i] for i in range(4))
        lo = np.maximum(x0[:, None], x0[None, :])
        hi = np.minimum(x1[:, None], x1[None, :])
        span = np.maximum(x1 - x0, 1e-9)

        def at(x):  # y of every wire (rows) at x (pairs), straight from tail to head
            t = (x - x0[:, None]) / span[:, None]
            ya = y0[:, None] + t * (y1 - y0)[:, None]
            tb = (x - x0[None, :]) / span[None, :]
            yb = y0[None, :] + tb * (y1 - y0)[None, :]
            return ya - yb

        with np.errstate(invalid="ignore"):
            d = at(lo) * at(hi)
        return int(np.triu((hi > lo) & (d < -1e-9), 1).sum())

    def sweep(self, forward: bool) -> None:
        # The inputs keep their order (the circuit's, or the first layout's): the reader
        # meets them first, and straight wires from them misjudge where they run. A wrapped
        # figure's connectors into a row (wrap.py) are no inputs: they go where their wires do.
        first = 0 if all(self.by_id[n].kind == "link" for n in self.cols[0]) else 1
        rng = range(1, len(self.cols)) if forward else range(len(self.cols) - 2, first - 1, -1)
        for k in rng:
            want: dict[str, list[float]] = {}
            for w in self.arriving[k] if forward else self.leaving[k]:
                y0, y1 = self.ends(w)
                if forward:
                    h = w.head[0]
                    want.setdefault(h, []).append(y0 - self.offs[h][0].get(id(w.head[1]), 0.5))
                else:
                    t = w.tail[0]
                    want.setdefault(t, []).append(y1 - self.offs[t][1].get(id(w.tail[1]), 0.5))
            key = {
                nid: (sum(want[nid]) / len(want[nid]) if nid in want else self.top[nid])
                for nid in self.cols[k]
            }
            self.cols[k] = self._sorted(self.cols[k], key, 0)
            self.place(k)

    def _sorted(self, nodes: list[str], key: dict[str, float], depth: int) -> list[str]:
        """Nodes by key, the nodes of one block (at this depth) kept together."""
        items: dict[str, list[str]] = {}
        for nid in nodes:
            chain = self.chain[nid]
            items.setdefault(chain[depth] if len(chain) > depth else nid, []).append(nid)
        groups = [
            (sum(key[n] for n in members) / len(members), k, members)
            for k, (_, members) in enumerate(items.items())
        ]
        out = []
        for _, _, members in sorted(groups):
            if len(members) > 1 or len(self.chain[members[0]]) > depth:
                members = self._sorted(members, key, depth + 1) if len(members) > 1 else members
            out += members
        return out

    def restack(self) -> None:
        """Free bundles stacked as the current order places their other ends (scene.restack,
        with the model's rows; larger is higher there, so rows are negated)."""
        ends = {w.id: tuple(-y for y in self.ends(w)) for w in self.wires}
        heights = {nid: -(t + self.rows[nid] / 2) for nid, t in self.top.items()}
        restack(self.scene, ends, 1.0, heights)
        self.measure()


def _groups(scene: Scene):
    return [(n, list(n.out_groups), list(n.in_groups)) for n in scene.nodes
            if n.out_groups or n.in_groups]  # fmt: skip


def _set_groups(saved) -> None:
    for node, outs, ins in saved:
        for attr, lanes_attr, groups, prefix in (
            ("out_groups", "outs", outs, "o"),
            ("in_groups", "ins", ins, "i"),
        ):
            if not groups:
                continue
            setattr(node, attr, list(groups))
            lanes = [ln for g in groups for ln in g]
            setattr(node, lanes_attr, lanes)
            for k, ln in enumerate(lanes):
                ln.port = f"{prefix}{k}"


def improve(
    scene: Scene, cols: list[list[str]], heights: dict[str, float], n: int = 1
) -> list[tuple[dict[str, float], list]]:
    """Orders for every column (node id -> height, larger is higher, for `to_dot(order=)`),
    each with the stacking of the scene's free bundles that goes with it (`use` sets it):
    the `n` orders of fewest modelled crossings that the sweeps met, among those modelling
    fewer than `heights` (the first layout, with the scene already restacked to it). Empty
    when none does. The scene is left stacked as the first order, or as it came."""
    initial = _groups(scene)
    out = [
        ({nid: -float(k) for col in key for k, nid in enumerate(col)}, groups)
        for key, groups in _search(scene, cols, heights, n)
    ]
    _set_groups(out[0][1] if out else initial)
    return out


def _search(scene: Scene, cols, heights, n: int) -> list[tuple[tuple, list]]:
    """The `n` best orders (each a tuple of columns, with its stacking) met by the sweeps,
    fewest modelled crossings first, then the earliest."""
    m = _Model(scene, [sorted(c, key=lambda nid: -heights.get(nid, 0.0)) for c in cols])
    if len(scene.wires) > MAX_WIRES:
        return []
    start = m.crossings()
    met: dict[tuple, tuple[int, int, list]] = {}
    best, stale = start, 0
    for i in range(2 * SWEEPS):
        m.sweep(forward=i % 2 == 0)
        m.restack()
        c = m.crossings()
        key = tuple(tuple(col) for col in m.cols)
        if c < start and (key not in met or c < met[key][0]):
            met[key] = (c, i, _groups(scene))
        if c < best:
            best, stale = c, 0
        else:
            stale += 1
        if best == 0 or stale == 2:  # a sweep each way without gain: settled
            break
    found = sorted(met.items(), key=lambda kv: kv[1][:2])[:n]
    return [(key, groups) for key, (_, _, groups) in found]


def use(groups) -> None:
    """Stack the scene's free bundles as `improve` found them for an order."""
    _set_groups(groups)


def _bezier(pts: np.ndarray, n: int = 8) -> np.ndarray:
    """Cubic Bézier pieces (as Graphviz routes wires: p0 c c p1 c c p2 …) as points."""
    out = [pts[:1]]
    t = np.linspace(0, 1, n + 1)[1:, None]
    for i in range(1, len(pts) - 2, 3):
        p0, p1, p2, p3 = pts[i - 1], pts[i], pts[i + 1], pts[i + 2]
        out.append(
            (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
        )
    return np.concatenate(out)


def wire_paths(layout: dict) -> list[np.ndarray]:
    """The wires of a Graphviz JSON layout as polylines."""
    paths = []
    for e in layout.get("edges", []):
        if not e.get("id", "").startswith("wire:") or not e.get("pos"):
            continue
        pts = [p for p in e["pos"].split() if not p.startswith(("s,", "e,"))]
        xy = np.array([[float(v) for v in p.split(",")[:2]] for p in pts])
        if len(xy) >= 4:
            paths.append(_bezier(xy))
    return paths


def crossings(paths: list[np.ndarray]) -> int:
    """How often the polylines cross; two that start (end) at one port, as a copy's do, count
    only away from it (their first and last two pieces are left out)."""
    if len(paths) < 2:
        return 0
    lo = np.array([p.min(0) for p in paths])
    hi = np.array([p.max(0) for p in paths])
    start = np.array([p[0] for p in paths])
    end = np.array([p[-1] for p in paths])
    seg = [np.stack([p[:-1], p[1:]], 1) for p in paths]  # (pieces, 2 ends, xy)
    total = 0
    for i in range(len(paths) - 1):
        js = (
            i
            + 1
            + np.flatnonzero(np.all(lo[i + 1 :] <= hi[i], 1) & np.all(lo[i] <= hi[i + 1 :], 1))
        )
        if not len(js):
            continue
        shared = np.all(np.abs(start[js] - start[i]) <= 1, 1) | np.all(
            np.abs(end[js] - end[i]) <= 1, 1
        )
        b = np.concatenate([seg[j] for j in js])
        owner = np.concatenate([np.full(len(seg[j]), k) for k, j in enumerate(js)])
        pos = np.concatenate([np.arange(len(seg[j])) for j in js])
        n_b = np.concatenate([np.full(len(seg[j]), len(seg[j])) for j in js])
        a = seg[i]
        p, r = a[:, None, 0], (a[:, 1] - a[:, 0])[:, None]
        q, t_ = b[None, :, 0], (b[:, 1] - b[:, 0])[None]
        rxs = r[..., 0] * t_[..., 1] - r[..., 1] * t_[..., 0]
        qp = q - p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (qp[..., 0] * t_[..., 1] - qp[..., 1] * t_[..., 0]) / rxs
            u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / rxs
        hit = (np.abs(rxs) > 1e-9) & (t >= 0) & (t < 1) & (u >= 0) & (u < 1)
        ia = np.arange(len(a))[:, None]
        near = (ia < 2) | (ia >= len(a) - 2) | (pos < 2)[None] | (pos >= n_b - 2)[None]
        hit &= ~(shared[owner][None] & near)
        total += int(hit.sum())
    return total
