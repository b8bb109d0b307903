"""Layout: no crossing spaghetti where the diagram has none. Wires are read back from the SVG
as polylines (Bézier curves sampled) and every pair is tested for crossings, except where
two wires meet at one port (a copy or a merge)."""

from __future__ import annotations

import itertools
import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ncd import gallery
from ncd.circuits.draw import render
from ncd.circuits.draw.api import RenderNote

SVG = "{http://www.w3.org/2000/svg}"


def _polyline(d: str, n: int = 12) -> np.ndarray:
    pts = np.array([float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]).reshape(-1, 2)
    out = [pts[:1]]
    t = np.linspace(0, 1, n + 1)[1:, None]
    for i in range(1, len(pts) - 2, 3):
        p0, p1, p2, p3 = pts[i - 1], pts[i], pts[i + 1], pts[i + 2]
        out.append(
            (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
        )
    return np.concatenate(out)


def crossings(svg: str) -> int:
    root = ET.fromstring(svg)
    wires = [
        _polyline(g.find(SVG + "path").get("d"))
        for g in root.iter(SVG + "g")
        if "wire" in g.get("class", "").split()
    ]
    return _count(wires)


def _count(wires: list[np.ndarray]) -> int:
    """How often the polylines cross (away from a port two of them share)."""
    total = 0
    for a, b in itertools.combinations(wires, 2):
        if np.allclose(a[0], b[0], atol=1) or np.allclose(a[-1], b[-1], atol=1):
            a, b = a[2:-2], b[2:-2]  # they share a port: only crossings away from it count
        if len(a) < 2 or len(b) < 2:
            continue
        if a[:, 0].max() < b[:, 0].min() or b[:, 0].max() < a[:, 0].min():
            continue
        p, r = a[:-1, None, :], (a[1:] - a[:-1])[:, None, :]
        q, s = b[None, :-1, :], (b[1:] - b[:-1])[None, :, :]
        rxs = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
        qp = q - p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / rxs
            u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / rxs
        total += int(((np.abs(rxs) > 1e-9) & (t >= 0) & (t < 1) & (u >= 0) & (u < 1)).sum())
    return total


def test_crossing_counter_sees_a_crossing():
    # Two wires swapping places (a permutation drawn as wires) must count as one crossing.
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg">'
        '<g class="edge wire"><path d="M0,0C10,0 20,10 30,10"/></g>'
        '<g class="edge wire"><path d="M0,10C10,10 20,0 30,0"/></g></svg>'
    )
    assert crossings(svg) == 1


@pytest.mark.parametrize(
    "name, most",
    [
        ("attention", 0),
        ("multihead_attention", 0),  # copies, projections, both contractions: no crossing
        ("kronecker_attention", 0),  # operands restacked to where their wires come from
        ("mlp", 0),
        # A sum keeps a row per operand wire (the branch's bundle above the skip's), and a
        # copy stacks its bundles in the order of its consumers: no residual crosses.
        ("transformer_block", 0),
        ("transformer", 0),
        ("resnet_block", 0),
        ("mobilenetv2_block", 0),
        ("sesr_block", 0),
        ("vision_transformer", 0),
        # The output gate U's bundle passes the lightning box's output on its way to ⊙.
        ("transnormer_block", 2),
        # The gate's bundle L^α1 → L^α2 → logsigmoid crosses two wires into the fused box.
        ("gla_block", 2),
        ("deltanet_block", 2),
        # φ(q) feeds both contractions, which φ(k)'s two paths also reach: the state bundle
        # must cross the normaliser's on the way to the numerator (measured: 33; Graphviz's
        # own order drew 76).
        ("linear_attention", 33),
        # The copy boxes' bundles go as their wires do: the skips no longer cross the
        # down path at their copy bars (76 crossings before).
        ("unet", 0),
    ],
)
def test_no_crossing_spaghetti(name, most):
    assert crossings(render(gallery.get(name))) <= most


def test_a_layout_graphviz_cannot_route_falls_back_to_a_looser_one():
    # Found by the property test: with the columns kept in order, Graphviz's spline router
    # fails on this circuit ("triangulation failed", exit 1); the drawing must still come.
    from ncd.circuits.builder import Builder

    b = Builder("fan")
    x = b.input("x", "B")
    b0 = b.relu(x, name="b0")
    with b.group("Block A"):
        b1 = b.relu(x, name="b1")
    b.relu(x, name="b2")
    b.relu(b1, name="b3")
    for i in (4, 5, 6, 7):
        b.relu(x, name=f"b{i}")
    with b.group("Block A"):
        b.relu(b0, name="b8")
    b.output("y0", b0)
    svg = render(b.build())
    assert svg.count("wire axis&#45;B") >= 10  # graphviz writes '-' as &#45; in attributes


def test_the_order_search_beats_graphvizs_own_order_on_linear_attention(monkeypatch):
    # The same drawing with the column order left to Graphviz (order.improve switched off)
    # has more than twice the crossings: the search, not luck, keeps linear attention tidy.
    from ncd.circuits.draw import api

    c = gallery.get("linear_attention")
    searched = crossings(render(c))
    monkeypatch.setattr(api, "improve", lambda *args: [])
    assert 2 * searched < crossings(render(c))


def test_the_renderers_own_crossing_count_agrees_with_the_tests():
    # order.crossings picks between layouts; on gallery drawings it must count what the
    # SVG reader above counts (within 20 %: the curves are sampled more coarsely, and the
    # pieces left out next to a shared port differ), and see a plain crossing.
    import numpy as np

    from ncd.circuits.draw.order import _bezier
    from ncd.circuits.draw.order import crossings as model_count

    x = [np.array([[0, 0], [10, 0], [20, 10], [30, 10.0]])]
    x.append(np.array([[0, 10], [10, 10], [20, 0], [30, 0.0]]))
    assert model_count(x) == 1
    fan = [np.array([[0, 0], [5, 0], [10, 5], [30, 5.0]]), np.array([[0, 0], [30, -5.0]])]
    assert model_count(fan) == 0  # two wires leaving one port (a copy) do not cross there
    for name in ("linear_attention", "gla_block", "transformer_block"):
        svg = render(gallery.get(name))
        paths = [
            np.array(
                [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", g.find(SVG + "path").get("d"))]
            ).reshape(-1, 2)
            for g in ET.fromstring(svg).iter(SVG + "g")
            if "wire" in g.get("class", "").split()
        ]
        ours = model_count([_bezier(p) for p in paths])
        assert abs(ours - crossings(svg)) <= max(2, crossings(svg) // 5), name


def _into(svg: str, box: str) -> list[np.ndarray]:
    """The wires into a box (by its id), as polylines."""
    root = ET.fromstring(svg)
    name = {g.find(SVG + "title").text: g.get("id") for g in root.iter(SVG + "g")
            if "node" in g.get("class", "").split()}  # fmt: skip
    return [
        _polyline(g.find(SVG + "path").get("d"), 24)
        for g in root.iter(SVG + "g")
        if "wire" in g.get("class", "").split()
        and name[g.find(SVG + "title").text.split("->")[1].split(":")[0]] == box
    ]


def _together(a: np.ndarray, b: np.ndarray, near: float = 1.5, ends: float = 8.0) -> float:
    """How long (points) wire a runs within `near` of wire b, away from a's ends (where wires
    meet at ports)."""
    steps = np.linspace(0, 1, 4)[:, None, None]
    pts = (a[:-1] + steps * (a[1:] - a[:-1])).reshape(-1, 2)  # a sampled about 1 pt apart
    away = (np.hypot(*(pts - a[0]).T) > ends) & (np.hypot(*(pts - a[-1]).T) > ends)
    p, q = b[:-1], b[1:]
    t = np.clip(((pts[:, None] - p) * (q - p)).sum(-1) / np.maximum(((q - p) ** 2).sum(-1), 1e-9),
                0, 1)  # fmt: skip
    d = np.hypot(*(pts[:, None] - (p + t[..., None] * (q - p))).transpose(2, 0, 1)).min(1)
    step = np.hypot(*(a[1:] - a[:-1]).T).sum() / len(pts)
    return float(((d < near) & away).sum() * step)


def test_the_wires_into_mambas_fused_box_run_apart():
    # Mamba's fused box names its inputs q, k, v, g on their stubs but took them in that
    # order whatever the heights of their sources: its 15 input wires crossed 60 times and
    # ran down its left edge on top of each other (27 pairs within 1.5 pt for up to 70 pt).
    # Its inputs are now stacked as their wires come (the names say which is which), and in
    # the figure that fits a page they come in level from their connectors.
    c = gallery.get("mamba_block")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RenderNote)
        wires = _into(render(c), "box:mixer")
    assert len(wires) == 15
    assert max(_together(a, b) for a, b in itertools.permutations(wires, 2)) < 4
    # Drawn whole (one row), its bundles cross 6 times (60 before).
    assert _count(_into(render(c, max_width=None), "box:mixer")) <= 6


def _rwkv_time_mix():
    """An RWKV-6 style time mix as a new user wrote it: a token shift (the last token sliced
    off, a zero row joined at the front), a lerp with a learned μ, the WKV of a gla box plus
    the bonus (r · u · k) v, whose contraction takes a learned u; a group norm and a gate."""
    from ncd.circuits.builder import Builder

    b = Builder("rwkv_time_mix", axes={"D": "H*K", "E": "H*V"},
                sizes={"B": 2, "T": 16, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "B T D")
    with b.group("Token shift"):
        zero = b.box("constant", {}, "zero", dtype="float32", value=0)
        shifted = b.concat(zero, b.slice(x, "T", 0, "T-1", name="drop_last"), axis="T")
    mu = b.param("D", name="mu", label="μ")
    xm = b.add(x, b.mul(b.sub(shifted, x, name="delta"), mu, name="dmix"), name="lerp")
    r = b.linear(xm, "D", "H K", bias=False, name="r_proj", label="L^R")
    k = b.linear(xm, "D", "H K", bias=False, name="k_proj", label="L^K")
    v = b.linear(xm, "D", "H V", bias=False, name="v_proj", label="L^V")
    w = b.scale(b.unary(b.linear(xm, "D", "H K", name="w_proj"), "exp"), -1, name="log_w")
    with b.group("WKV"):
        u = b.param("H K", name="u", label="u")
        bonus = b.contract(r, u, k, over="K", out="B T H", name="bonus")
        now = b.contract(bonus, v, over="", out="B T H V", name="bonus_v")
        o = b.linear_attention(r, k, v, key="T", variant="gla", g=w, name="wkv")
        o = b.add(o, now, name="wkv_plus")
    o = b.groupnorm(b.merge_axes(o, "H V", "E"), "E", 2, name="ln_x")
    gate = b.silu(b.linear(xm, "D", "E", bias=False, name="g_proj"), name="swish")
    b.output("y", b.linear(b.mul(o, gate, name="gate"), "E", "D", bias=False, name="o_proj"))
    return b.build()


def test_a_parameter_is_drawn_beside_the_box_it_feeds():
    """RWKV's u sat in the column of the copy bars of r, k and v, the other sources of the
    bonus contraction, stacked under v's bar: its wires rose across v's bundles (16
    crossings), and μ likewise under the column of its product's other operand. A box that
    a parameter feeds now sits two columns after its other sources: the parameter has the
    column between to itself, and its wires cross none."""
    from ncd.circuits.draw.dot import columns
    from ncd.circuits.draw.scene import Options, build

    c = _rwkv_time_mix()
    scene = build(c.check(), Options())
    col = {nid: k for k, column in enumerate(columns(scene)) for nid in column}
    by_path = {n.path: n.id for n in scene.nodes}
    for param, box in (("u", "bonus"), ("mu", "dmix")):
        sources = {w.tail[0] for w in scene.wires if w.head[0] == by_path[box]}
        assert col[by_path[param]] == col[by_path[box]] - 1
        others = sources - {by_path[param]}
        assert others and all(col[s] <= col[by_path[box]] - 2 for s in others)
    svg = render(c, max_width=None)
    root = ET.fromstring(svg)
    names = {g.find(SVG + "title").text: g.get("id") for g in root.iter(SVG + "g")
             if "node" in g.get("class", "").split()}  # fmt: skip
    from_u, rest = [], []
    for g in root.iter(SVG + "g"):
        if "wire" in g.get("class", "").split():
            tail = g.find(SVG + "title").text.split("->")[0].split(":")[0]
            path = _polyline(g.find(SVG + "path").get("d"))
            (from_u if names[tail] == "box:u" else rest).append(path)
    assert len(from_u) == 2
    assert _count(from_u + rest) == _count(rest)  # u's wires cross nothing
    assert crossings(svg) <= 90  # 100 with u under v's bar


def test_the_two_best_orders_of_the_search_are_laid_out():
    """The order search models wires as straight lines, which Graphviz routes round boxes:
    Mamba's block drawn whole came out with 110 crossings from the order the model liked
    best, where its second best lays out with 40. The two best orders are laid out and the
    real crossings choose."""
    assert crossings(render(gallery.get("mamba_block"), max_width=None)) <= 40
