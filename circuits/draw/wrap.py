"""A figure too wide for a page, wrapped into rows.

The columns are cut into runs, each a row drawn below the one before, as a line of text
wraps. A wire from one row to a later one ends at a numbered connector at the right of its
row (①) and starts again at the same number at the left of the row it goes on in; a block
cut by a break is drawn in each row it reaches, its later parts titled "(cont.)". Breaks go
where few bundles cross and no block is cut, each row as full as the width allows.
"""

from __future__ import annotations

from dataclasses import replace

from .glyphs import Drawing
from .scene import Cluster, Lane, Node, Scene, Wire

CUT_BUNDLE = 1.0  # cost of a bundle of wires cut at a break (one pair of connectors)
CUT_BLOCK = 3.0  # cost of a block cut at a break
MIN_FILL = 0.4  # the narrowest a row may be, as a share of the width
HEIGHT_UNIT = 60.0  # points of a row's height that cost as much as a bundle cut
LINK = 40.0  # points a connector and its gap add to a row (a guess; rows are measured)


def breaks(
    col: dict[str, int],
    extents: list[tuple[float, float, float, float]],
    scene: Scene,
    width: float,
    fill: float = MIN_FILL,
) -> list[tuple[int, int]]:
    """Runs of columns (first, last), each at most `width` points wide by the columns'
    `extents` (left, bottom, right, top in points, from a layout of the whole figure): the
    fewest rows, then the cheapest (bundles and blocks cut at the breaks, and the rows'
    heights, which are least where a row holds all of what runs side by side), then the
    fullest rows (the last one too). No row is narrower than `fill` times the width where
    that can be helped: a figure a little too wide is not wrapped by moving a box or two
    onto a row of their own. A column wider than `width` is a row of its own."""
    n = len(extents)
    cost = [_break_cost(k, col, scene) for k in range(n)]  # cost[k]: a break after column k
    inf = (float("inf"),) * 3
    best: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] + [inf] * n
    back = [0] * (n + 1)
    for end in range(1, n + 1):  # rows ending with column end - 1
        low, high = float("inf"), float("-inf")
        for start in range(end - 1, -1, -1):
            w = extents[end - 1][2] - extents[start][0] + LINK * ((start > 0) + (end < n))
            if w > width and start < end - 1:
                break
            low, high = min(low, extents[start][1]), max(high, extents[start][3])
            if best[start] == inf or (w < fill * width and (start > 0 or end < n)):
                continue
            rows, cut, ragged = best[start]
            cand = (
                rows + 1,
                cut + (cost[end - 1] if end < n else 0.0) + (high - low) / HEIGHT_UNIT,
                ragged + ((width - w) / width) ** 2,
            )
            if cand < best[end]:
                best[end], back[end] = cand, start
    if best[n] == inf:  # no breaks fill every row enough: any will do
        return breaks(col, extents, scene, width, fill=0.0)
    out, end = [], n
    while end > 0:
        out.append((back[end], end - 1))
        end = back[end]
    return out[::-1]


def _break_cost(k: int, col: dict[str, int], scene: Scene) -> float:
    bundles = {(w.tail[0], w.head[0]) for w in scene.wires if col[w.tail[0]] <= k < col[w.head[0]]}
    parent = {c.id: c.parent for c in scene.clusters}
    sides: dict[str, set[bool]] = {}
    for node in scene.nodes:
        c = node.cluster
        while c is not None:
            sides.setdefault(c, set()).add(col[node.id] <= k)
            c = parent[c]
    return CUT_BUNDLE * len(bundles) + CUT_BLOCK * sum(len(s) == 2 for s in sides.values())


def rows(scene: Scene, col: dict[str, int], runs: list[tuple[int, int]]) -> list[Scene]:
    """The scene cut into one scene per run of columns (its nodes, blocks and wires move
    into them; connectors join what a break cuts)."""
    row = {nid: next(r for r, (a, b) in enumerate(runs) if a <= k <= b) for nid, k in col.items()}
    out = [Scene(title=scene.title) for _ in runs]
    parent = {c.id: c.parent for c in scene.clusters}
    reach: dict[str, list[int]] = {}  # cluster id -> the rows it has nodes in
    for node in scene.nodes:
        c = node.cluster
        while c is not None:
            if row[node.id] not in reach.setdefault(c, []):
                reach[c].append(row[node.id])
            c = parent[c]

    def part(cid: str | None, r: int) -> str | None:
        if cid is None:
            return None
        return cid if r == min(reach[cid]) else f"{cid}_{r}"

    parts: dict[str, Cluster] = {}
    for c in scene.clusters:
        for r in sorted(reach.get(c.id, [])):
            first = r == min(reach[c.id])
            p = replace(
                c,
                id=part(c.id, r),
                parent=part(c.parent, r),
                nodes=[],
                title=c.title if first else f"{c.title} (cont.)",
                path=c.path if first else f"{c.path} (cont. {r + 1})",
            )
            parts[p.id] = p
            out[r].clusters.append(p)
    for node in scene.nodes:
        r = row[node.id]
        node.cluster = part(node.cluster, r)
        out[r].nodes.append(node)
        if node.cluster is not None:
            parts[node.cluster].nodes.append(node.id)
    ins, outs = {n.id for n in scene.inputs}, {n.id for n in scene.outputs}
    for s in out:
        s.inputs = [n for n in s.nodes if n.id in ins]
        s.outputs = [n for n in s.nodes if n.id in outs]
    cut: dict[tuple[str, str], list[Wire]] = {}
    for w in scene.wires:
        if row[w.tail[0]] == row[w.head[0]]:
            out[row[w.tail[0]]].wires.append(w)
        else:
            cut.setdefault((w.tail[0], w.head[0]), []).append(w)
    # Connectors numbered by the row they leave, then the row they reach; `read_in_order`
    # numbers them as they are read once the rows are laid out.
    order = sorted(cut.items(), key=lambda kv: (row[kv[0][0]], row[kv[0][1]]))
    first = len(scene.nodes)  # connectors are numbered after the scene's nodes (n0, n1, …)
    for k, ((tail, head), wires) in enumerate(order, start=1):
        exit_ = _link(f"n{first + 2 * k - 2}", k, "output", wires)
        entry = _link(f"n{first + 2 * k - 1}", k, "input", wires)
        a, b = out[row[tail]], out[row[head]]
        a.nodes.append(exit_)
        a.outputs.append(exit_)
        b.nodes.insert(0, entry)
        b.inputs.append(entry)
        for w, lin, lout in zip(wires, exit_.ins, entry.outs, strict=True):
            a.wires.append(Wire(w.id, w.tail, (exit_.id, lin), w.axis, w.label))
            b.wires.append(Wire(w.id + "c", (entry.id, lout), w.head, w.axis, w.label))
    return out


def read_in_order(scenes: list[Scene], heights: list[dict[str, float]]) -> list[Node]:
    """Numbers the connectors as they are read (`rows` could not: where its exits stand is
    known only from the layouts): by the row they leave, then from the top of its end down
    (`heights`: per row, node id -> y in its layout, larger higher). Returns the connectors
    whose number changed (their drawing, path and tooltip now say the new one)."""
    exits = sorted(
        ((r, -heights[r][n.id], _number(n)) for r, s in enumerate(scenes)
         for n in s.nodes if n.kind == "link" and n.role == "output"),
    )  # fmt: skip
    new = {old: k for k, (_, _, old) in enumerate(exits, start=1)}
    changed = []
    for s in scenes:
        for n in s.nodes:
            if n.kind != "link" or new[_number(n)] == _number(n):
                continue
            k, side = new[_number(n)], n.path.split()[1]
            n.path, n.drawing = f"{k} {side}", replace(n.drawing, title=mark(k))
            n.tooltip = f"continued {'at' if side == 'out' else 'from'} {mark(k)}"
            changed.append(n)
    return changed


def _number(link: Node) -> int:
    """A connector's number, as its path (`3 out`, `3 in`) holds it."""
    return int(link.path.split()[0])


def mark(k: int) -> str:
    """The connector's number: ① … ⑩, then (11) and on (DejaVu Sans, which the figures'
    pictograms are set in, has no circled number past ⑩)."""
    return chr(0x2460 + k - 1) if k <= 10 else f"({k})"


def _link(nid: str, k: int, role: str, wires: list[Wire]) -> Node:
    """Connector number k: where the cut wires leave a row (an output) or come in (an
    input); its id is `link:K out` or `link:K in` (circuits/ids.py)."""
    side = "out" if role == "output" else "in"
    node = Node(
        nid,
        f"{k} {side}",
        role,
        "link",
        "structure",
        False,
        Drawing(title=mark(k)),
        None,
    )
    node.tooltip = f"continued at {mark(k)}" if role == "output" else f"continued from {mark(k)}"
    # Tuple members keep their dashed line between them; none above the first lane (a
    # dashed top on a table's first cell crashes Graphviz 2.43).
    lanes = [Lane(w.axis, w.label, sep=w.tail[1].sep and j > 0) for j, w in enumerate(wires)]
    prefix = "i" if role == "output" else "o"
    for j, ln in enumerate(lanes):
        ln.port = f"{prefix}{j}"
    if role == "output":
        node.ins = lanes
    else:
        node.outs = lanes
    return node
