"""From a checked circuit to a scene: nodes with one lane per axis, wires, nested blocks.

The scene is what the diagram shows, before Graphviz: every box (or collapsed block) is a
node whose lanes are its axis rows; a wire joins an output lane to an input lane, one wire per
axis. Subcircuit calls are inlined into a cluster, so a wire runs from the caller's box straight
to the first box inside; collapsed blocks and calls become one node whose lanes are the wires
crossing their border.

Order is deterministic: scopes in evaluation order, boxes in `Checked.order`, lanes in axis
order, so ids (`n3`, `o2`, `w17`) are the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from ..sizes import Size, parse_size, same
from ..types import TensorType, TupleType, Value
from .glyphs import Drawing, drawing, port_name
from .markup import esc, size, text


@dataclass
class Lane:
    """One axis row of a node; a wire ends or starts at it."""

    axis: str
    label: str
    """Markup of the wire's label: the axis' name in italics, and its size when shown; its size
    where that is not the axis' own (`T+3`)."""
    port: str = ""
    sep: bool = False
    """First lane of a new operand or tuple member (a dashed line above it)."""
    ends: bool = False
    """The wire stops in the box (a contracted or reduced axis)."""
    name: str = ""
    """Markup of the input port's name, written on the stub of the port's first lane (boxes
    whose kind has `named_ports`)."""


@dataclass
class Node:
    id: str
    path: str
    """Readable name: `blocks/ln1` for box `ln1` inside call `blocks`."""
    role: str
    """box | input | output | copy | group | call"""
    kind: str
    family: str
    learned: bool
    """The box holds learned tensors (`is_learned()`): drawn bold."""
    drawing: Drawing
    cluster: str | None
    tooltip: str = ""
    above: list[Lane] = field(default_factory=list)
    """Pass-through (broadcast) lanes drawn above the body."""
    ins: list[Lane] = field(default_factory=list)
    outs: list[Lane] = field(default_factory=list)
    below: list[Lane] = field(default_factory=list)
    out_map: dict[tuple[str, str], list[Lane]] = field(default_factory=dict)
    """(box, port) of a value this node produces -> its lanes, in the value's axis order."""
    feeds: list[tuple[Scope, tuple[str, str], list[Lane]]] = field(default_factory=list)
    """What flows in: (scope, source (box or '', port), the lanes it lands on)."""
    share: float | None = None
    repeat: str = ""
    """Markup of a collapsed repeated call's count (`N`)."""
    out_groups: list[list[Lane]] = field(default_factory=list)
    """Output bundles whose order is free (a copy's copies), top to bottom."""
    in_groups: list[list[Lane]] = field(default_factory=list)
    """Input bundles whose order is free (a contraction's operands), top to bottom."""


@dataclass
class Wire:
    id: str
    tail: tuple[str, Lane]
    """(node id, the lane it leaves by); the lane's port is read when the DOT is written."""
    head: tuple[str, Lane]
    axis: str
    label: str


@dataclass
class Cluster:
    id: str
    title: str
    """Markup."""
    parent: str | None
    kind: str
    """group | call"""
    depth: int
    repeat: str = ""
    """Markup of the repeat count (`N`), '' when not repeated."""
    nodes: list[str] = field(default_factory=list)
    path: str = ""
    """Readable name: `blocks/MLP` for block MLP inside call `blocks`."""
    name: str = ""
    """The name `collapse` takes for it: a block's title, a call's box name."""


@dataclass
class Scope:
    """One circuit being drawn: the top circuit or an expanded call."""

    path: str
    checked: object
    parent: Scope | None = None
    call: str = ""
    cluster: str | None = None
    level: int = 0
    nodes: dict[str, Node] = field(default_factory=dict)
    subs: dict[str, Scope] = field(default_factory=dict)


@dataclass
class Scene:
    title: str
    """The circuit's title (plain text), the SVG's <title>."""
    nodes: list[Node] = field(default_factory=list)
    wires: list[Wire] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    inputs: list[Node] = field(default_factory=list)
    outputs: list[Node] = field(default_factory=list)
    loose: set[str] = field(default_factory=set)
    """Ids of output nodes drawn beside their source rather than in the last column."""


@dataclass(frozen=True)
class Options:
    collapse: frozenset[str] = frozenset()
    depth: int | None = None
    show_sizes: bool = False
    overlay: dict[str, float] | None = None
    loose: frozenset[str] = frozenset()
    """Output names drawn in the column after their source (an editor's loose ends), not in
    the last column with the circuit's outputs."""


def flat(v: Value) -> list[tuple[str, object]]:
    """The wires of a value: (tuple member or '', Axis), in order."""
    if isinstance(v, TensorType):
        return [("", a) for a in v.axes]
    return [(m, a) for m, t in v.items for a in t.axes]


def call_title(b, sub) -> str:
    """The title a call's block (or box) is drawn with: its label, else the called circuit's
    title, else that circuit's name (plain text, before markup)."""
    return b.label or sub.circuit.title or sub.circuit.name


def collapsible(checked) -> tuple[list[str], list[tuple[str, str]]]:
    """What `collapse` accepts, at every depth, each once in drawing order: the group titles,
    and (name, title) of the call boxes."""
    groups: dict[str, None] = {}
    calls: dict[tuple[str, str], None] = {}

    def walk(c) -> None:
        for b in c.circuit.boxes:
            for title in c.circuit.group_path(b.group):  # the blocks around it too
                groups[title] = None
            if b.kind == "call":
                calls[(b.name, call_title(b, c.calls[b.name]))] = None
        for sub in c.calls.values():
            walk(sub)

    walk(checked)
    return list(groups), list(calls)


def blocks(checked) -> set[str]:
    """Every name `collapse` accepts: group titles, and call boxes by name or by the title
    they are drawn with (`Shiftmax` for the call `softmax`), at every depth."""
    groups, calls = collapsible(checked)
    return set(groups) | {n for n, _ in calls} | {t for _, t in calls}


class _Builder:
    def __init__(self, top, opts: Options):
        self.top = top
        self.opts = opts
        self.scene = Scene(title=top.circuit.title or top.circuit.name)
        self.clusters: dict[tuple[str, str], Cluster] = {}
        self.n_nodes = 0
        self._by_id: dict[str, Cluster] = {}
        self._labels: dict[tuple[int, object], str] = {}
        self._owns: dict[int, dict[str, Size]] = {}

    # -- labels
    def label(self, scope: Scope, axis) -> str:
        """The axis' name in italics (`T`; `T=16` with sizes shown). A wire whose size is not
        its axis' own size is labelled with its size instead, in terms of the axis where that
        can be said (a padded convolution's `T+3`, a concatenation's `2F`, a pooled `Y/2`),
        else as it is (a strided convolution's `⌊Y/2⌋`): under the axis' name alone it would
        read as `T` positions. A size the circuit fixes to a number (its axis table resolving
        every symbol) is written as that number: a slice keeping 1 of `R = 2` is `1`, not
        `R/2`."""
        key = (id(scope.checked), axis)
        if key not in self._labels:
            self._labels[key] = self._label(scope.checked, axis)
        return self._labels[key]

    def _label(self, c, axis) -> str:
        name = f"<I>{text(axis.name)}</I>"
        if self.opts.show_sizes:
            n = c.number(axis.size)
            return name if n is None else f"{name}={esc(n)}"
        own = self._own_size(c, axis.name)
        here = c.resolve(axis.size)
        if same(here, own):
            return name
        if here.is_number:  # fixed by the circuit (a slice of R = 2 keeping 1): `1`, not `R/2`
            return size(here.sympy)
        ratio, extra = (here / own).sympy, (here - own).sympy
        if ratio.is_number:
            return size(ratio * Size.of(axis.name).sympy)
        if extra.is_number:
            return size(Size.of(axis.name).sympy + extra)
        return size(axis.size)

    def _own_size(self, c, name: str) -> Size:
        """The size an axis name stands for: its entry in the circuit's axis table, else the
        size it has where it first appears (a top-k's `k` is 2 throughout)."""
        if id(c) not in self._owns:
            owns = c.axis_sizes()
            owns.update({a: c.resolve(parse_size(e)) for a, e in c.circuit.axes.items()})
            self._owns[id(c)] = owns
        own = self._owns[id(c)].get(name)
        return c.resolve(Size.of(name)) if own is None else own

    def lanes(self, scope: Scope, v: Value) -> list[Lane]:
        """One lane per wire of `v`; a dashed line separates tuple members. A scalar has no
        wires in NCDs; it gets one unlabelled dotted lane, so that one can see where it goes."""
        if not flat(v):
            return [Lane("", "")]
        out, member = [], None
        for i, (m, a) in enumerate(flat(v)):
            out.append(Lane(a.name, self.label(scope, a), sep=m != member and i > 0))
            member = m
        return out

    def cluster(
        self, scope: Scope, key: str, title: str, kind: str, parent: str | None, repeat: str = ""
    ) -> str:
        k = (scope.path, key)
        if k not in self.clusters:
            depth = 0 if parent is None else self._by_id[parent].depth + 1
            c = Cluster(f"cluster_{len(self.clusters)}", title, parent, kind, depth, repeat)
            c.name = key.partition(":")[2]
            c.path = scope.path + c.name
            self.clusters[k] = c
            self.scene.clusters.append(c)
            self._by_id[c.id] = c
        return self.clusters[k].id

    # -- the walk
    def build(self) -> Scene:
        root = Scope("", self.top)
        for name, v in self.top.inputs.items():
            node = self._add(
                name,
                "input",
                "input",
                "structure",
                False,
                Drawing(title=esc(name), note=_dtype(v)),
                None,
            )
            node.outs = self.lanes(root, v)
            node.out_map[("", name)] = node.outs
            node.tooltip = f"input {name} {v}"
            self.scene.inputs.append(node)
        self.scope(root)
        for name, src in self.top.output_sources.items():
            v = self.top.outputs[name]
            node = self._add(
                name, "output", "output", "structure", False, Drawing(title=esc(name)), None
            )
            node.ins = self.lanes(root, v)
            node.feeds.append((root, src, node.ins))
            node.tooltip = f"output {name} {v}"
            self.scene.outputs.append(node)
            if name in self.opts.loose:
                self.scene.loose.add(node.id)
        self.wire()
        return self.scene

    def _add(self, path, role, kind, family, learned, d, cluster) -> Node:
        node = Node(f"n{self.n_nodes}", path, role, kind, family, learned, d, cluster)
        self.n_nodes += 1
        self.scene.nodes.append(node)
        if cluster is not None:
            self._by_id[cluster].nodes.append(node.id)
        return node

    def scope(self, s: Scope) -> None:
        c = s.checked
        group_nodes: dict[str, Node] = {}
        for name in c.order:
            b = c.box(name)
            path = s.path + name
            blocks = c.circuit.group_path(b.group)
            # The outermost collapsed block around the box, which hides the blocks inside it.
            shut = next((t for t in blocks if t in self.opts.collapse), None)
            if shut is not None:
                node = group_nodes.get(shut)
                if node is None:
                    node = self._group_node(s, shut)
                    group_nodes[shut] = node
                s.nodes[name] = node
                continue
            cluster = self._group_cluster(s, blocks)
            if b.kind == "call" and self._expand(s, b):
                sub = c.calls[name]
                title = text(b.label) if b.label else esc(sub.circuit.title or sub.circuit.name)
                reps = _repeat(c, b, self.opts.show_sizes)
                cid = self.cluster(s, "call:" + name, title, "call", cluster, reps)
                s.subs[name] = Scope(path + "/", sub, s, name, cid, s.level + 1)
                self.scope(s.subs[name])
                continue
            s.nodes[name] = self._box_node(s, b, path, cluster)

    def _group_cluster(self, s: Scope, blocks: tuple[str, ...]) -> str | None:
        """The cluster of the innermost of `blocks` (outermost first), each drawn inside the
        one before it, in the scope's own cluster; that cluster when `blocks` is empty."""
        cluster = s.cluster
        for title in blocks:
            cluster = self.cluster(s, "group:" + title, esc(title), "group", cluster)
        return cluster

    def _expand(self, s: Scope, b) -> bool:
        collapse = self.opts.collapse
        if b.name in collapse or call_title(b, s.checked.calls[b.name]) in collapse:
            return False
        return self.opts.depth is None or s.level < self.opts.depth

    def _share(self, *paths: str) -> float | None:
        ov = self.opts.overlay
        if ov is None:
            return None
        found = [ov[p] for p in paths if p in ov]
        return sum(found) if found else None

    def _box_node(self, s: Scope, b, path: str, cluster: str | None) -> Node:
        c = s.checked
        ins, outs = c.ins[b.name], c.outs[b.name]
        role = "copy" if b.kind == "copy" else "call" if b.kind == "call" else "box"
        d = drawing(b)
        if b.kind == "call":
            sub = c.calls[b.name]
            d = Drawing(
                title=text(b.label) if b.label else esc(sub.circuit.title or sub.circuit.name)
            )
        node = self._add(path, role, b.kind, type(b).family, b.is_learned(), d, cluster)
        node.repeat = _repeat(c, b, self.opts.show_sizes) if b.kind == "call" else ""
        node.share = self._share(path)
        node.tooltip = _tooltip(b, ins, outs, c.params[b.name])
        through = _through(b, ins, outs, c)
        if through is not None:
            self._pass_through(s, b, node, through)
        else:
            self._ports(s, b, node)
        return node

    def _pass_through(self, s: Scope, b, node: Node, through: set[str]) -> None:
        """One input, one output: broadcast axes are lines above and below the body."""
        c = s.checked
        (port, x), (out, y) = next(iter(c.ins[b.name].items())), next(iter(c.outs[b.name].items()))
        acted_in = [a for a in x.axes if a.name not in through]
        acted_out = [a for a in y.axes if a.name not in through]
        # The body sits where the axes it makes stand in the output (else where the axes it
        # consumes stood in the input), so that the bundle keeps its order.
        ref, acted = (y, acted_out) if acted_out else (x, acted_in)
        before = set(ref.names[: ref.names.index(acted[0].name)] if acted else ())
        lanes = {a.name: Lane(a.name, self.label(s, a)) for a in x.axes if a.name in through}
        node.above = [lanes[a.name] for a in x.axes if a.name in before and a.name in lanes]
        node.below = [lanes[a.name] for a in x.axes if a.name not in before and a.name in lanes]
        node.ins = [Lane(a.name, self.label(s, a), ends=a.name not in y.names) for a in acted_in]
        node.outs = [Lane(a.name, self.label(s, a)) for a in acted_out] or (
            self.lanes(s, y) if not y.axes else []
        )
        by_in = {ln.axis: ln for ln in node.ins}
        by_out = {ln.axis: ln for ln in node.outs}
        if not x.axes:  # a scalar comes in on its one dotted lane
            node.ins = self.lanes(s, x)
        src = c.sources[b.name][port]
        feed = [lanes.get(a.name) or by_in[a.name] for a in x.axes] or node.ins
        node.feeds.append((s, src, feed))
        node.out_map[(b.name, out)] = [
            lanes.get(a.name) or by_out[a.name] for a in y.axes
        ] or node.outs  # a scalar: its one dotted lane

    def _ports(self, s: Scope, b, node: Node) -> None:
        """A row per wire of every input port and every output port, stacked in port order."""
        c = s.checked
        outs = c.outs[b.name]
        kept = {ax.name for v in outs.values() for _, ax in flat(v)}
        for p, v in c.ins[b.name].items():
            lanes = self.lanes(s, v)
            for ln in lanes:
                ln.ends = ln.axis not in kept
            if type(b).named_ports:
                lanes[0].name = port_name(p)
            node.ins += lanes
            node.feeds.append((s, c.sources[b.name][p], lanes))
            if (
                b.kind == "contract"
                or (b.kind == "binary" and b.fn in _COMMUTATIVE)
                or type(b).named_ports
            ):
                # A product (a sum) does not care in which order its operands come; nor does
                # a box whose ports are named on their stubs (the name says which is which).
                node.in_groups.append(lanes)
        for i, (p, v) in enumerate(outs.items()):
            lanes = self.lanes(s, v)
            # Several results are a tuple: a dashed line between them, as in NCDs (not between
            # copies, which leave a copy bar like the copies the renderer inserts).
            if lanes:
                lanes[0].sep = lanes[0].sep or (i > 0 and b.kind != "copy")
            node.outs += lanes
            node.out_map[(b.name, p)] = lanes
            if b.kind == "copy":  # copies are alike: stacked as their wires go
                node.out_groups.append(lanes)

    def _group_node(self, s: Scope, title: str) -> Node:
        """One box for a collapsed block: its lanes are the wires crossing its border."""
        c = s.checked
        members = [n for n in c.order if title in c.circuit.group_path(c.box(n).group)]
        inside = set(members)
        path = s.path + title
        around = c.circuit.group_path(title)[:-1]  # the blocks it is drawn in
        node = self._add(
            path,
            "group",
            "group",
            "block",
            False,
            Drawing(title=esc(title)),
            self._group_cluster(s, around),
        )
        node.share = self._share(path, *(s.path + m for m in members))
        node.tooltip = f"block {title}: {', '.join(members)}"
        seen_in: list[tuple[str, str]] = []
        for m in members:
            for src in c.sources[m].values():
                if src[0] not in inside and src not in seen_in:
                    seen_in.append(src)
        for src in seen_in:
            lanes = self.lanes(s, c.value(src))
            node.ins += lanes
            node.feeds.append((s, src, lanes))
        consumed = {src for n in c.order if n not in inside for src in c.sources[n].values()}
        consumed |= set(c.output_sources.values())
        for m in members:
            for p, v in c.outs[m].items():
                if (m, p) in consumed:
                    lanes = self.lanes(s, v)
                    if lanes and node.outs:  # several results: a tuple
                        lanes[0].sep = True
                    node.outs += lanes
                    node.out_map[(m, p)] = lanes
        return node

    # -- wires
    def ends(self, s: Scope, src: tuple[str, str]) -> tuple[Node, list[Lane]]:
        box, port = src
        if box == "":
            if s.parent is None:
                node = next(n for n in self.scene.inputs if n.path == port)
                return node, node.outs
            return self.ends(s.parent, s.parent.checked.sources[s.call][port])
        if box in s.subs:
            sub = s.subs[box]
            return self.ends(sub, sub.checked.output_sources[port])
        node = s.nodes[box]
        return node, node.out_map[(box, port)]

    def _common(self, clusters: list[str | None]) -> str | None:
        """The innermost cluster holding all of `clusters` (None: the top level)."""

        def chain(c):
            out = []
            while c is not None:
                out.append(c)
                c = self._by_id[c].parent
            return out[::-1]

        chains = [chain(c) for c in clusters]
        common = None
        for level in zip(*chains, strict=False):
            if len(set(level)) != 1:
                break
            common = level[0]
        return common

    def wire(self) -> None:
        feeds = []
        for node in list(self.scene.nodes):
            for s, src, lanes in node.feeds:
                tail, tails = self.ends(s, src)
                feeds.append((tail, tails, node, lanes))
        # A value used in several places is split by a copy dot, one bundle per use, so that
        # each bundle runs to its consumer without crossing the others (NCD's copy).
        uses: dict[tuple[str, int], list[int]] = {}
        for i, (tail, tails, _, _) in enumerate(feeds):
            uses.setdefault((tail.id, id(tails)), []).append(i)
        pairs = []
        for idx in uses.values():
            tail, tails = feeds[idx[0]][0], feeds[idx[0]][1]
            if len(idx) == 1:
                pairs.append((tail, tails, feeds[idx[0]][2], feeds[idx[0]][3]))
                continue
            dot = self._add(
                tail.path + "/copy",
                "copy",
                "copy",
                "structure",
                False,
                Drawing(),
                self._common([feeds[i][2].cluster for i in idx]),
            )
            dot.tooltip = f"copy of {tail.path} to {len(idx)} places"
            dot.ins = [Lane(t.axis, t.label) for t in tails]
            pairs.append((tail, tails, dot, dot.ins))
            for i in idx:
                group = [Lane(t.axis, t.label, sep=t.sep) for t in tails]
                dot.outs += group
                dot.out_groups.append(group)
                pairs.append((dot, group, feeds[i][2], feeds[i][3]))
        # Ports are named once every lane is known: o/i/t + index within the node.
        for node in self.scene.nodes:
            for k, ln in enumerate(node.above + node.below):
                ln.port = f"t{k}"
            for k, ln in enumerate(node.ins):
                ln.port = f"i{k}"
            for k, ln in enumerate(node.outs):
                ln.port = f"o{k}"
        for tail, tails, head, heads in pairs:
            for t, h in zip(tails, heads, strict=True):
                self.scene.wires.append(
                    Wire(f"w{len(self.scene.wires)}", (tail.id, t), (head.id, h), h.axis, t.label)
                )


def restack(
    scene: Scene,
    ends: dict[str, tuple[float, float]],
    row: float = 15.0,
    heights: dict[str, float] | None = None,
) -> bool:
    """Stack bundles whose order is free as a first layout placed their other ends: a copy's
    copies in the order their wires arrive, then a contraction's (a sum's) operands in the order
    their wires leave, so that bundles do not cross on the way. `ends`: wire id -> (y where it
    starts, y where it ends), larger is higher; `row`: the height of a lane; `heights`: node id
    -> y. Returns whether anything moved.

    A copy's bundles go in the order of their consumers' heights (then of where their wires
    land): where the wires land depends on the order of the consumer's own operands, which the
    first layout chose blindly, and a near tie there once sent a residual's skip bundle over
    its branch.

    The operands are stacked after the copies, from where the restacked copies now send their
    wires (each moved lane shifted by the rows it moved): both ends decided at once from the
    first layout flip together and cross again (a residual's skip and branch did)."""
    heights = heights or {}
    stop: dict[int, list[float]] = {}
    consumer: dict[int, list[float]] = {}
    for w in scene.wires:
        if w.id in ends:
            stop.setdefault(id(w.tail[1]), []).append(ends[w.id][1])
            if w.head[0] in heights:
                consumer.setdefault(id(w.tail[1]), []).append(heights[w.head[0]])

    def height(lanes: list[Lane], at: dict[int, list[float]]) -> float:
        ys = [y for ln in lanes for y in at.get(id(ln), [])]
        return sum(ys) / len(ys) if ys else 0.0

    def stack(node: Node, attr: str, lanes_attr: str, at, prefix: str) -> dict[int, int]:
        """Sort the node's free groups; returns lane id -> rows it moved down."""
        groups = getattr(node, attr)
        if len(groups) < 2:
            return {}
        if attr == "out_groups":
            new = sorted(groups, key=lambda g: (-height(g, consumer), -height(g, at)))
        else:
            new = sorted(groups, key=lambda g: -height(g, at))
        if [id(g) for g in new] == [id(g) for g in groups]:
            return {}
        old = {id(ln): k for k, ln in enumerate(getattr(node, lanes_attr))}
        setattr(node, attr, new)
        lanes = [ln for g in new for ln in g]
        setattr(node, lanes_attr, lanes)
        for k, ln in enumerate(lanes):
            ln.port = f"{prefix}{k}"
        return {id(ln): k - old[id(ln)] for k, ln in enumerate(lanes)}

    down: dict[int, int] = {}
    for node in scene.nodes:
        down.update(stack(node, "out_groups", "outs", stop, "o"))
    start: dict[int, list[float]] = {}
    for w in scene.wires:
        if w.id in ends:
            y = ends[w.id][0] - row * down.get(id(w.tail[1]), 0)
            start.setdefault(id(w.head[1]), []).append(y)
    moved = bool(down)
    for node in scene.nodes:
        moved = bool(stack(node, "in_groups", "ins", start, "i")) or moved
    return moved


_COMMUTATIVE = ("add", "mul", "maximum", "minimum")


def _dtype(v: Value) -> str:
    """The element type of an input, when it is not the usual float32 (`int64` tokens)."""
    return "" if not isinstance(v, TensorType) or v.dtype == "float32" else esc(v.dtype)


def _repeat(c, b, show_sizes: bool = False) -> str:
    """Markup of the count of a repeated call: `N` (`N=2` with sizes shown, `N_iter` with
    `iter` as a subscript); '' for a single call."""
    r = c.resolve(parse_size(b.repeat))
    if r == 1:
        return ""
    n = c.number(r) if show_sizes and not r.is_number else None
    return size(r) + (f"={esc(n)}" if n is not None else "")


def _through(b, ins, outs, c) -> set[str] | None:
    """Axes broadcast through a one-in, one-out box (not named by the operation), or None.

    An elementwise box (➤R➤, ∗K^−1/2, cast, dropout, mask) has the whole bundle go through
    its body: it applies to every element, and a body with no wire in it floats detached
    from the data it transforms. So does a box that broadcasts over no axis (batch norm,
    whose statistics couple every axis but the channel: `broadcasts` False) and a box none of
    whose input wires it names (an embedding looks its whole index tensor up). Axes between
    two named ones go through the body too, so that the body is one block of rows and the
    bundle keeps its order."""
    if len(ins) != 1 or len(outs) != 1 or b.kind in ("call", "opaque"):
        return None
    x, y = next(iter(ins.values())), next(iter(outs.values()))
    if not isinstance(x, TensorType) or not isinstance(y, TensorType):
        return None
    if type(b).family == "elementwise" or not type(b).broadcasts:
        return set()
    acts = set(b.acts_on())
    keep = set()
    for a in x.axes:
        o = y.axis(a.name)
        if a.name not in acts and o is not None and c.resolve(o.size) == c.resolve(a.size):
            keep.add(a.name)
    if not [a for a in x.axes if a.name not in keep]:
        return set()
    for t in (x, y):
        acted = [i for i, n in enumerate(t.names) if n not in keep]
        if acted:
            keep -= set(t.names[min(acted) : max(acted) + 1])
    return keep


@lru_cache(maxsize=4096)
def _shown(v: Value | TensorType) -> str:
    """str(v), kept: printing sizes through sympy is most of a tooltip's cost."""
    return str(v)


def _tooltip(b, ins, outs, params) -> str:
    def sig(d):
        return ", ".join(f"{p} {_shown(v)}" for p, v in d.items())

    t = f"{b.name} ({b.kind})"
    if ins:
        t += f": {sig(ins)}"
    t += f" → {sig(outs)}"
    if params:
        t += f"; params {sig(params)}"
    return t


def build(checked, opts: Options) -> Scene:
    """The scene of a checked circuit under the drawing options."""
    return _Builder(checked, opts).build()


__all__ = [
    "Cluster",
    "Lane",
    "Node",
    "Options",
    "Scene",
    "TupleType",
    "Wire",
    "blocks",
    "build",
    "call_title",
    "collapsible",
]
