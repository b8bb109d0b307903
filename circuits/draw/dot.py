"""From a scene to Graphviz DOT text: HTML-like tables with one port per axis row.

A box is a table of three columns: input stubs, the body (the operation's pictogram), output
stubs. Broadcast axes are rows above or below the body holding a drawn line, so the wire visibly
passes alongside the operation. The text is built by hand (not through graphviz.Digraph) to keep
it byte-stable and fast on circuits of thousands of boxes.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from ..ids import node_id, scene_id
from .markup import esc
from .scene import Cluster, Lane, Node, Scene
from .themes import OVERLAY, Theme, overlay_colour

ROW = 15  # height of one axis row (points)
STUB = 5  # width of the stub a wire enters or leaves by
TUPLE_STUB = 14  # wider where a dashed line must show between tuple members
GLYPH_PT = 13
TITLE_PT = 12
PAD = 10.8  # points of margin around the figure
GAP = 22  # points between two columns at the least: ranksep, and the wire labels' rank
NOTE_PT = 8
PORT_PT = 7
WIRE_PT = 8
GLYPH_FONT = "DejaVu Sans"
_TAG = re.compile(r"<[^>]*>")


def _plain_len(markup: str) -> int:
    """Characters of the longest line of `markup` (lines split at <BR/>)."""
    lines = (_TAG.sub("", line) for line in markup.split("<BR/>"))
    return max(len(re.sub(r"&[a-z#0-9]+;", "x", s)) for s in lines)


def _body_width(node: Node) -> int:
    d = node.drawing
    w = max(
        _plain_len(d.glyph) * (GLYPH_PT if _plain_len(d.glyph) <= 3 else GLYPH_PT - 2) * 0.72
        + len(d.mark) * NOTE_PT * 0.6,
        _plain_len(d.title) * TITLE_PT * 0.62,
        _plain_len(d.note) * NOTE_PT * 0.6,
        _plain_len(node.repeat) * NOTE_PT * 0.7 + 14,
    )
    return int(max(w + 10, 24))


def _bar(width: int, colour: str) -> str:
    # A 1-point high filled cell: the broadcast wire drawn across the box.
    return (
        '<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0"><TR>'
        f'<TD BGCOLOR="{colour}" HEIGHT="1" WIDTH="{width}" FIXEDSIZE="TRUE"></TD>'
        "</TR></TABLE>"
    )


def _body(node: Node, theme: Theme, colour: str = "") -> str:
    d = node.drawing
    parts = []
    if d.glyph:
        # Pictograms from a font that has them all at one size (◗ ◁ ○ ★ ⬠ …); text fonts
        # either lack them or fall back to tiny ones.
        # A word-like pictogram (➤gelu➤, ∗K^−1/2) a size smaller than a symbol (◗, ◁).
        pt = GLYPH_PT if _plain_len(d.glyph) <= 3 else GLYPH_PT - 2
        # Bold marks a learned box: its title, or its pictogram where it has no title (`★3`).
        g = f"<B>{d.glyph}</B>" if node.learned and not d.title else d.glyph
        parts.append(f'<FONT POINT-SIZE="{pt}" FACE="{GLYPH_FONT}">{g}</FONT>')
    if d.title:
        t = f"<B>{d.title}</B>" if node.learned or node.role in ("group", "call") else d.title
        parts.append(f'<FONT POINT-SIZE="{TITLE_PT}">{t}</FONT>')
    if d.note:
        parts.append(f'<FONT POINT-SIZE="{NOTE_PT}">{d.note}</FONT>')
    if node.repeat:
        parts.append(f'<FONT POINT-SIZE="{NOTE_PT + 1}">× {node.repeat}</FONT>')
    if d.mark and d.glyph:
        return _marked(node, parts, colour)
    text = "<BR/>".join(_room_below_subscripts(parts)) or " "
    return f'<FONT COLOR="{colour}">{text}</FONT>' if colour else text


def _marked(node: Node, parts: list[str], colour: str) -> str:
    """The body of a pictogram with an exponent (scatter's ⬠⁻¹): the exponent in the text's
    font, smaller and thinner than the pictogram, its baseline level with the pictogram's
    top. Cells place it, in a table of the body's own size (a table in a cell otherwise
    stretches to the cell's height): as <SUP>, Graphviz's PNG and PDF raised it only halfway
    up the pentagon, to be read as "⬠ −1", while browsers raise an SVG's <SUP> higher."""

    def ink(s: str) -> str:
        return f'<FONT COLOR="{colour}">{s}</FONT>' if colour else s

    d, rest = node.drawing, parts[1:]
    lines = [GLYPH_PT] + [
        pt for p in rest for pt in [int(p.split('"')[1])] * (p.count("<BR/>") + 1)
    ]  # each part is one <FONT POINT-SIZE="…"> element
    height = sum(round(pt * 1.2) for pt in lines)
    mark = f'<FONT POINT-SIZE="{NOTE_PT + 1}">{ink(d.mark)}</FONT>'
    return (
        '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0" FIXEDSIZE="TRUE" '
        f'WIDTH="{_body_width(node) - 4}" HEIGHT="{height}">'
        f'<TR><TD ROWSPAN="2" ALIGN="RIGHT" VALIGN="BOTTOM">{ink(parts[0])}</TD>'
        f'<TD ALIGN="LEFT" VALIGN="BOTTOM">{mark}</TD></TR>'
        f'<TR><TD HEIGHT="{round(GLYPH_PT * 0.6)}"></TD></TR>'
        + (f'<TR><TD COLSPAN="2">{ink("<BR/>".join(rest))}</TD></TR>' if rest else "")
        + "</TABLE>"
    )


# Graphviz lowers a <SUB> without making its line taller, so a subscripted line (μ_x, λ_w)
# ran into the line below it: an empty line this tall between them gives the room.
SUBSCRIPT_ROOM_PT = 5


def _room_below_subscripts(parts: list[str]) -> list[str]:
    out = []
    for i, part in enumerate(parts):
        out.append(part)
        if "<SUB>" in part and i + 1 < len(parts):
            out.append(f'<FONT POINT-SIZE="{SUBSCRIPT_ROOM_PT}"> </FONT>')
    return out


def _spans(k: int, n: int) -> list[int]:
    """Split n rows among k cells as evenly as possible (extra rows to the middle cells)."""
    base, extra = divmod(n, k)
    spans = [base] * k
    mid = (k - extra) // 2
    for i in range(extra):
        spans[mid + i] += 1
    return spans


def _stub_width(lanes: list[Lane]) -> int:
    named = max((_plain_len(ln.name) for ln in lanes), default=0)
    if named:  # wide enough for the port's name
        return max(int(named * PORT_PT * 0.6) + 4, STUB)
    return TUPLE_STUB if any(ln.sep for ln in lanes) else STUB


def _stub(ln: Lane, theme: Theme, span: int = 1, width: int = STUB) -> str:
    # The wire is drawn on into the body, so that it visibly enters it.
    attrs = f'PORT="{ln.port}" WIDTH="{width}" HEIGHT="{ROW * span}"'
    if span > 1:
        attrs += f' ROWSPAN="{span}"'
    if ln.sep:
        attrs += f' BORDER="1" SIDES="T" STYLE="dashed" COLOR="{theme.ink}"'
    bar = _bar(width, theme.wire)
    if ln.name:
        # The port's name just above the line, an empty row as high below it, so that the line
        # stays in the middle of the row, where the wire arrives.
        half = (ROW - 1) // 2
        bar = (
            '<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0">'
            f'<TR><TD HEIGHT="{half}" VALIGN="BOTTOM"><FONT POINT-SIZE="{PORT_PT}">{ln.name}'
            f"</FONT></TD></TR><TR><TD>{bar}</TD></TR>"
            f'<TR><TD HEIGHT="{half}"></TD></TR></TABLE>'
        )
    return f"<TD {attrs}>{bar}</TD>"


def node_label(node: Node, theme: Theme, scale: float = 1.0) -> str:
    if node.role in ("input", "output"):
        return _terminal(node, theme)
    width = _body_width(node)
    n = max(len(node.ins), len(node.outs), 1)
    rows = []
    total = width + _stub_width(node.ins) + _stub_width(node.outs)
    for ln in node.above:
        rows.append(_through_row(ln, total, theme))
    fill, ink = theme.box_fill.get(node.family, ""), ""
    if node.share is not None:
        fill = overlay_colour(min(node.share / scale, 1.0))
        ink = "white" if node.share / scale > 0.7 else ""  # readable on the dark reds
    if node.role == "copy":
        # The copy dot of a whole bundle: a bar the wires meet and leave in copies.
        body = (
            f'<TD ROWSPAN="{n}" WIDTH="4" HEIGHT="{ROW * n}" FIXEDSIZE="FALSE" '
            f'BGCOLOR="{theme.ink}" STYLE="rounded"></TD>'
        )
    else:
        bare = node.kind == "rename"  # drawn as a relabelled wire, even under an overlay
        body_attrs = (
            f'ROWSPAN="{n}" WIDTH="{width}" HEIGHT="{ROW * n}" CELLPADDING="2" '
            f'BORDER="{0 if bare else 1}" COLOR="{theme.ink}" STYLE="rounded"'
        )
        if fill and not bare:
            body_attrs += f' BGCOLOR="{fill}"'
        body = f"<TD {body_attrs}>{_body(node, theme, ink)}</TD>"
    left = _column(node.ins, n, theme)
    right = _column(node.outs, n, theme)
    for r in range(n):
        rows.append("<TR>" + left[r] + (body if r == 0 else "") + right[r] + "</TR>")
    for ln in node.below:
        rows.append(_through_row(ln, total, theme))
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">'
        + "".join(rows)
        + "</TABLE>>"
    )


def _through_row(ln: Lane, width: int, theme: Theme) -> str:
    bar = _bar(width, theme.wire)
    return f'<TR><TD PORT="{ln.port}" COLSPAN="3" HEIGHT="{ROW}">{bar}</TD></TR>'


def _column(lanes: list[Lane], n: int, theme: Theme) -> list[str]:
    """Cells of the stub column, one string per body row ('' where a rowspan covers it)."""
    if not lanes:
        return [f'<TD ROWSPAN="{n}" WIDTH="{STUB}"></TD>'] + [""] * (n - 1)
    cells, w = [], _stub_width(lanes)
    for ln, span in zip(lanes, _spans(len(lanes), n), strict=True):
        cells.append(_stub(ln, theme, span, w))
        cells += [""] * (span - 1)
    return cells


def _terminal(node: Node, theme: Theme) -> str:
    """An input or output: its name beside the stubs of its wires."""
    lanes = node.outs if node.role == "input" else node.ins
    n = max(len(lanes), 1)
    note = node.drawing.note
    note = f'<BR/><FONT POINT-SIZE="{NOTE_PT}">{note}</FONT>' if note else ""
    # A name is set like a size symbol, in italics; a wrapped figure's connector (①) upright.
    title = node.drawing.title
    if node.kind == "link":
        title = f'<FONT FACE="{GLYPH_FONT}">{title}</FONT>'
    else:
        title = f"<I>{title}</I>"
    name = (
        f'<TD ROWSPAN="{n}" CELLPADDING="3"><FONT POINT-SIZE="{TITLE_PT}">{title}</FONT>{note}</TD>'
    )
    rows = []
    for r, ln in enumerate(lanes or [None]):
        stub = _stub(ln, theme, 1, _stub_width(lanes)) if ln else f'<TD WIDTH="{STUB}"></TD>'
        cells = (
            (name if r == 0 else "") + stub
            if node.role == "input"
            else stub + (name if r == 0 else "")
        )
        rows.append(f"<TR>{cells}</TR>")
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">'
        + "".join(rows)
        + "</TABLE>>"
    )


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _cls(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", s)


FREEZE = ""  # experiment: "all" columns, "inputs" only, or "" (none)


def node_statement(node: Node, theme: Theme, scale: float = 1.0) -> str:
    """The DOT statement of one node (`n3 [id=… label=<…>]`), as `to_dot` writes it."""
    cls = f"box kind-{_cls(node.kind)} family-{_cls(node.family)} role-{node.role}"
    if node.learned:
        cls += " learned"
    return (
        f"{node.id} [id={_q(scene_id(node))} class={_q(cls)} "
        f"tooltip={_q(node.tooltip or node.path)} label={node_label(node, theme, scale)}]"
    )


def restated(source: str, nodes: list[Node], theme: Theme, scale: float = 1.0) -> str:
    """`source` (as `to_dot` wrote it) with the statements of `nodes` written afresh, each
    in its place, so that a layout of the source still holds (nothing else changes)."""
    lines = source.split("\n")
    where = {}
    for i, ln in enumerate(lines):
        head = ln.lstrip().split(" [", 1)[0]
        if head and " " not in head:
            where.setdefault(head, i)
    for node in nodes:
        i = where[node.id]
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = indent + node_statement(node, theme, scale)
    return "\n".join(lines)


def to_dot(
    scene: Scene,
    theme: Theme,
    *,
    legend: str = "",
    scale: float = 1.0,
    order: dict[str, float] | None = None,
    graph_attrs: str = "",
) -> str:
    """DOT source of the scene. `legend`: a title for the cost-overlay legend (none when empty);
    `scale`: the share drawn in the darkest colour; `order`: node id -> height in an earlier
    layout, which each column keeps (top to bottom); `graph_attrs`: more graph attributes
    (`nslimit=0.5`), written after the others."""
    f = _q(theme.font)
    lines = [
        f"digraph {_q(scene.title)} {{",
        f"  graph [rankdir=LR newrank=true nodesep=0.05 ranksep=0.2 splines=true "
        f'fontname={f} bgcolor="{theme.background}" pad={PAD / 72:g}'
        + (" " + graph_attrs if graph_attrs else "")
        + "]",
        f'  node [shape=plain fontname={f} fontcolor="{theme.ink}"]',
        f'  edge [arrowhead=none fontname={f} fontsize={WIRE_PT} color="{theme.wire}" '
        f'fontcolor="{theme.wire_label}" penwidth=0.9]',
    ]
    if legend:
        lines.append(legend_line(legend, theme, scale))
    children: dict[str | None, list[Cluster]] = {}
    for c in scene.clusters:
        children.setdefault(c.parent, []).append(c)
    by_id = {n.id: n for n in scene.nodes}
    placed = {nid for c in scene.clusters for nid in c.nodes}

    def emit_node(node: Node, indent: str) -> None:
        lines.append(indent + node_statement(node, theme, scale))

    def emit_cluster(c: Cluster, indent: str) -> None:
        fill = theme.cluster_fill[c.depth % len(theme.cluster_fill)]
        title = _cluster_title(c)
        line = theme.repeat_line if c.repeat else theme.cluster_line
        style = '"filled,rounded,bold"' if c.repeat else '"filled,rounded"'
        place = titles.get(c.id)
        lines.append(f"{indent}subgraph {c.id} {{")
        lines.append(
            f'{indent}  graph [id={_q(node_id("block", c.path))} class="block block-{c.kind}" '
            f"label=<<B>{title}</B>> labeljust={place.side if place else 'l'} labelloc=t "
            f'fontsize=11 style={style} fillcolor="{fill}" color="{line}" margin=10]'
        )
        if place and place.width:
            lines.append(
                f'{indent}  {place.id} [id={_q("title:" + c.path)} class="title-space" '
                f'shape=box label="" width={place.width / 72:.3f} height=0.01 fixedsize=true '
                "style=invis]"
            )
        for nid in c.nodes:
            emit_node(by_id[nid], indent + "  ")
        for child in children.get(c.id, []):
            emit_cluster(child, indent + "  ")
        lines.append(f"{indent}}}")

    # Columns as in the paper's figures: each box as far left as its inputs allow, inputs in
    # the first column and outputs in the last (dot alone would drift boxes rightwards).
    cols = columns(scene)
    titles = _titles(scene, cols, theme)
    chains = []
    for k, column in enumerate(cols):
        spaces = [t.id for t in titles.values() if t.width and t.column == k]
        lines.append("  {rank=same " + " ".join(column + spaces) + "}")
        if order and len(column) > 1:
            # Invisible edges within a column keep its nodes in the order of the first layout,
            # for which bundles were restacked (dot places an edge's tail above its head).
            ranked = sorted(column, key=lambda n: -order.get(n, 0.0))
            chains.append("  " + " -> ".join(ranked) + " [style=invis]")
    for node in scene.nodes:
        if node.id not in placed:
            emit_node(node, "  ")
    for c in children.get(None, []):
        emit_cluster(c, "  ")
    for w in scene.wires:
        # Classes name the axis and the ports, so that the SVG can be styled and checked.
        kind = f"axis-{_cls(w.axis)}" if w.axis else "scalar"
        cls = f"wire {kind} from-{w.tail[1].port} to-{w.head[1].port}"
        # the label is markup: the axis' name (or size) in italics, as the paper sets sizes
        attrs = f"id={_q(node_id('wire', w.id))} class={_q(cls)} label=<{w.label}>"
        if not w.axis:
            attrs += " style=dotted"
        lines.append(
            f"  {w.tail[0]}:{w.tail[1].port}:e -> {w.head[0]}:{w.head[1].port}:w [{attrs}]"
        )
    lines += chains
    lines.append("}")
    return "\n".join(lines) + "\n"


def _chains(scene: Scene) -> dict[str, list[str]]:
    """Node id or cluster id -> the clusters it is in (a cluster: it and those around it),
    outermost first."""
    parent = {c.id: c.parent for c in scene.clusters}

    def chain(c: str | None) -> list[str]:
        out = []
        while c is not None:
            out.append(c)
            c = parent[c]
        return out[::-1]

    out = {c.id: chain(c.id) for c in scene.clusters}
    out.update({n.id: chain(n.cluster) for n in scene.nodes})
    return out


@dataclass(frozen=True)
class _Title:
    """Where a cluster's title goes: its side (`l` left, `r` right), and an invisible node
    of the cluster (`id`, in `column`, `width` points wide; none when width is 0) that
    widens the column under the title. Where in the column the node lies does not matter:
    the column is as wide as its widest node."""

    side: str
    id: str = ""
    column: int = 0
    width: float = 0.0


def _titles(scene: Scene, cols: list[list[str]], theme: Theme) -> dict[str, _Title]:
    """Cluster id -> where its title goes, for the clusters whose title a wire could cross
    at the top left; the others keep it there with nothing added.

    Graphviz keeps wires off nodes, not off cluster labels, in two ways. A wire that enters
    or leaves a cluster between two of its columns crosses the cluster's top edge there,
    through the title when that gap lies under it (the wires from q into φ(q) in
    hedgehog_attention): an invisible node in the cluster's first column, wide enough for
    the first such gap to lie right of the title, keeps them off. And a wire into the
    cluster that passes its first column bends at a point that Graphviz lets lie anywhere
    in the cluster, the title's strip included (dot's keepout_othernodes spares the
    cluster's own edges; two blocks of I-ViT's ShiftGELU): then the title goes to the top
    right, where the same two checks are made mirrored, if no wire reaches it there. Widths
    are lower bounds (a table cell's WIDTH is its least width; wire labels only widen a
    gap), the title's an upper bound."""
    col = {nid: k for k, column in enumerate(cols) for nid in column}
    by_id = {n.id: n for n in scene.nodes}
    width = [max((_node_width(by_id[n]) for n in column), default=0.0) for column in cols]
    chains = _chains(scene)
    span: dict[str, tuple[int, int]] = {}
    for nid, chain in chains.items():
        if nid in col:
            for c in chain:
                lo, hi = span.get(c, (col[nid], col[nid]))
                span[c] = (min(lo, col[nid]), max(hi, col[nid]))
    # Per cluster, the wires crossing its border: (column of the end inside, of the end
    # outside).
    border: dict[str, list[tuple[int, int]]] = {}
    for w in scene.wires:
        tail, head = set(chains[w.tail[0]]), set(chains[w.head[0]])
        t, h = col[w.tail[0]], col[w.head[0]]
        for c in tail ^ head:
            border.setdefault(c, []).append((h, t) if c in head else (t, h))
    out = {}
    for c in scene.clusters:
        if c.id not in border:
            continue
        space = "title_" + c.id.removeprefix("cluster_")  # unique in rows stacked (wrap.py)
        lo, hi = span[c.id]
        need = _title_width(_cluster_title(c), theme)

        def own(x: int, cid: str = c.id) -> float:  # the cluster's widest node in column x
            return max(_node_width(by_id[n]) for n, ch in chains.items()
                       if col.get(n) == x and cid in ch)  # fmt: skip

        left = _side(lo, border[c.id], width, own(lo), need)
        if left == 0.0:
            continue
        if left is not None:
            out[c.id] = _Title("l", space, lo, left)
            continue
        # The right side is the left side of the cluster mirrored (column x -> lo + hi - x).
        mirror = [(lo + hi - i, lo + hi - o) for i, o in border[c.id]]
        right = _side(lo, mirror, {lo + hi - x: width[x] for x in range(lo, hi + 1)},
                      own(hi), need)  # fmt: skip
        if right is not None:
            out[c.id] = _Title("r", space, hi, right)
        else:  # reached on both sides: the left, kept off the wires in the gaps at least
            gap_wires = [(i, o) for i, o in border[c.id] if not o < lo < i]
            room = _side(lo, gap_wires, width, own(lo), need) or 0.0
            out[c.id] = _Title("l", space, lo, room)
    return out


def _side(c0: int, border, width, own: float, need: float) -> float | None:
    """For a title at the left of a cluster whose first column is c0: None when a wire into
    the cluster passes column c0 (its bend may lie in the title's strip); else the width of
    the invisible node that keeps the wires crossing the border in later gaps right of the
    title (0: none needed). `border`: (column inside, column outside) of each wire crossing
    the cluster's border; `width`: column -> least width; `own`: the least width of the
    cluster's widest node in column c0; `need`: the title's width at the most."""
    if any(o < c0 < i for i, o in border):
        return None
    gaps = [g for i, o in border if (g := i - 1 if o < i else i) >= c0]
    if not gaps:
        return 0.0
    g = min(gaps)
    # From the right of column c0 to gap g (which lies between columns g and g + 1); the
    # title starts about where the cluster's widest node in column c0 does.
    beyond = sum(width[x] for x in range(c0 + 1, g + 1)) + GAP * (g - c0)
    return 0.0 if (width[c0] + own) / 2 + beyond >= need else need - beyond


def _node_width(node: Node) -> float:
    """Points a node's table takes at the least (its cells' WIDTHs; a name's letters at 0.4
    em)."""
    if node.role in ("input", "output"):
        return STUB + _plain_len(node.drawing.title) * TITLE_PT * 0.4
    body = 4 if node.role == "copy" else _body_width(node)
    return body + _stub_width(node.ins) + _stub_width(node.outs)


def _cluster_title(c: Cluster) -> str:
    """The markup of a cluster's title: its title, and `× N` for a repeated call."""
    return c.title + (f'  <FONT POINT-SIZE="{TITLE_PT}">× {c.repeat}</FONT>' if c.repeat else "")


def _title_width(title: str, theme: Theme) -> float:
    """Points a bold cluster title (markup) takes from the left of its cluster's first
    column, a little more than Graphviz measures for the gallery's titles: Times about half
    an em a character, Helvetica about 0.65 em, and Graphviz's margin."""
    em = 0.5 if theme.font == "Times" else 0.65
    return _plain_len(title) * 11 * em + 8


def legend_line(title: str, theme: Theme, scale: float) -> str:
    """The graph label line of the cost overlay's legend, at the bottom right."""
    return f"  label={_legend(title, theme, scale)} labelloc=b labeljust=r"


def _legend(title: str, theme: Theme, scale: float) -> str:
    cells = "".join(
        f'<TD BGCOLOR="{c}" WIDTH="22" HEIGHT="10" BORDER="1" COLOR="{theme.ink}"></TD>'
        for c in OVERLAY
    )
    n = len(OVERLAY)
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
        f'<TR><TD COLSPAN="{n + 2}"><FONT POINT-SIZE="10"><B>{esc(title)}</B></FONT></TD></TR>'
        f'<TR><TD><FONT POINT-SIZE="8">0%</FONT></TD>{cells}'
        f'<TD><FONT POINT-SIZE="8">{scale:.0%}</FONT></TD></TR></TABLE>>'
    )


def columns(scene: Scene) -> list[list[str]]:
    """Node ids by column: longest path from the inputs; a node that no circuit input reaches
    (a parameter, a constant, and whatever is computed from such alone: a copy of a
    constant, `exp` of a parameter) sits just before its earliest consumer, so that it is
    drawn where it is used rather than in the first columns, and a box it feeds that has
    other inputs sits two columns after them, the column between left to the parameter;
    outputs share the last column,
    except the scene's loose ones, which stay in the column after their source. (A collapsed
    block can close a loop; the nodes on it keep column 0 and Graphviz places them
    freely.)"""
    succ: dict[str, dict[str, None]] = {n.id: {} for n in scene.nodes}
    for w in scene.wires:
        succ[w.tail[0]][w.head[0]] = None
    indeg = {n.id: 0 for n in scene.nodes}
    for u in succ:
        for v in succ[u]:
            indeg[v] += 1
    inputs = {n.id for n in scene.inputs}
    reached, todo = set(inputs), list(inputs)
    while todo:
        for v in succ[todo.pop()]:
            if v not in reached:
                reached.add(v)
                todo.append(v)
    col = {n.id: 0 for n in scene.nodes}
    # A box that an unreached node (a parameter) also feeds sits two columns after its
    # other sources, so that the parameter gets the column between to itself, beside the
    # box, rather than one shared with those sources, where it stacks above or below them:
    # RWKV's u went under the copy bar of v, its wires across v's bundles, to the bonus
    # contraction of r, u and k. Not for a parameter's copy bar, itself tall and feeding
    # boxes in several places (ecoformer's anchors, shared by two blocks): there the extra
    # column only widened the figure.
    copies = {n.id for n in scene.nodes if n.role == "copy"}
    fed = {v for u in succ if u not in reached and u not in copies for v in succ[u]}
    order, ready = [], deque(n.id for n in scene.nodes if indeg[n.id] == 0)
    while ready:
        u = ready.popleft()
        order.append(u)
        for v in succ[u]:
            col[v] = max(col[v], col[u] + (2 if v in fed and u in reached else 1))
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    # In reverse order a node's consumers are placed before it, so a chain of floating nodes
    # (a constant, its copy bar) moves up to its consumer as a whole.
    for u in reversed(order):
        if u not in reached and succ[u]:
            col[u] = min(col[v] for v in succ[u]) - 1
    _gather(scene, order, succ, col)
    last = max(col.values(), default=0)
    for n in scene.outputs:
        if n.id not in scene.loose:
            col[n.id] = last
    out: dict[int, list[str]] = {}
    for n in scene.nodes:
        out.setdefault(col[n.id], []).append(n.id)
    return [out[k] for k in sorted(out)]


def _gather(scene: Scene, order: list[str], succ, col: dict[str, int]) -> None:
    """Move a block's stragglers right, in place: a box that sits in columns left of every
    other box of its block (a residual's skip requantised as soon as x is known, while the
    rest of the block waits for the branch) goes as late as its consumers allow, but no
    later than the block's next box, so that the block does not stretch over columns where
    it holds nothing else."""
    parent = {c.id: c.parent for c in scene.clusters}
    members: dict[str, list[str]] = {}
    for n in scene.nodes:
        c = n.cluster
        while c is not None:
            members.setdefault(c, []).append(n.id)
            c = parent[c]
    cluster = {n.id: n.cluster for n in scene.nodes}
    for u in reversed(order):
        c = cluster[u]
        if c is None or not succ[u]:
            continue
        others = [col[v] for v in members[c] if v != u]
        if not others:
            continue
        target = min(min(col[v] for v in succ[u]) - 1, min(others))
        if target > col[u]:
            col[u] = target
