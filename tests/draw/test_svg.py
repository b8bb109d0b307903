"""What the drawing shows, read back from the SVG: one wire per axis with its label, pass-through
rows for broadcast axes, copies, blocks as titled clusters, collapse and depth, themes, overlay,
escaping, determinism. Expected counts are worked out by hand from the circuits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.draw import RenderError, render
from ncd.circuits.draw.themes import NOTEBOOK, OVERLAY

SVG = "{http://www.w3.org/2000/svg}"
_EDGE_TITLE = re.compile(r"^(n\d+):e->(n\d+):w$")


class Drawing:
    """The SVG as boxes, wires and blocks."""

    def __init__(self, svg: str):
        self.svg = svg
        self.root = ET.fromstring(svg)
        self.nodes: dict[str, ET.Element] = {}  # node id (box:path, input:x) -> <g>
        self.gv: dict[str, str] = {}  # graphviz node name (n3) -> node id
        self.wires: list[dict] = []
        self.blocks: dict[str, ET.Element] = {}
        for g in self.root.iter(SVG + "g"):
            cls = g.get("class", "").split()
            title = g.find(SVG + "title")
            if "node" in cls:
                self.nodes[g.get("id")] = g
                self.gv[title.text] = g.get("id")
            elif "wire" in cls:
                tail, head = _EDGE_TITLE.match(title.text).groups()
                tport = next(c[5:] for c in cls if c.startswith("from-"))
                hport = next(c[3:] for c in cls if c.startswith("to-"))
                label = "".join(t.text or "" for t in g.iter(SVG + "text"))
                d = g.find(SVG + "path").get("d")
                xy = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
                self.wires.append(
                    {"tail": tail, "tport": tport, "head": head, "hport": hport, "label": label,
                     "axis": next((c[5:] for c in cls if c.startswith("axis-")), ""),
                     "scalar": "scalar" in cls, "path": list(zip(xy[0::2], xy[1::2]))}
                )  # fmt: skip
            elif "cluster" in cls:
                self.blocks[g.get("id")] = g
        for w in self.wires:
            w["tail"], w["head"] = self.gv[w["tail"]], self.gv[w["head"]]

    def classes(self, box: str) -> list[str]:
        return self.nodes[box].get("class").split()

    def text(self, element) -> str:
        return "".join("".join(t.itertext()) for t in element.iter(SVG + "text"))

    def into(self, box: str) -> list[dict]:
        return [w for w in self.wires if w["head"] == box]

    def out_of(self, box: str) -> list[dict]:
        return [w for w in self.wires if w["tail"] == box]

    def bbox(self, element) -> tuple[float, float, float, float]:
        xs, ys = [], []
        for shape in element.iter():
            pts = shape.get("points") or ""
            d = shape.get("d") or ""
            nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", pts + " " + d)]
            xs += nums[0::2]
            ys += nums[1::2]
        return min(xs), min(ys), max(xs), max(ys)


def draw(circuit, **kw) -> Drawing:
    return Drawing(render(circuit, **kw))


def test_attention_has_one_wire_per_axis_with_its_name():
    d = draw(gallery.get("attention"))
    # q, k, v [B H T|S K|V] -> scores [B H T S] -> scale -> softmax -> mix [B H T V] -> y.
    # By hand: B and H ride on all 7 tensors; T on q, scores, scaled, p and y; S on k,
    # scores, scaled, p and v; K on q and k; V on v and y.
    assert Counter(w["label"] for w in d.wires) == {
        "B": 7, "H": 7, "T": 5, "S": 5, "K": 2, "V": 2
    }  # fmt: skip
    assert all(w["label"] == w["axis"] for w in d.wires)
    assert sorted(w["label"] for w in d.into("box:scores")) == sorted("BHTKBHSK")
    assert sorted(w["label"] for w in d.out_of("box:mix")) == sorted("BHTV")
    # Inputs and outputs are labelled with their names.
    for name in "qkv":
        assert "role-input" in d.classes(f"input:{name}")
        assert d.text(d.nodes[f"input:{name}"]).strip() == name
    assert "role-output" in d.classes("output:y")


def test_wire_labels_carry_bound_sizes():
    c = gallery.get("attention")  # default sizes B=2 H=4 T=16 S=16 K=8 V=8
    assert {w["label"] for w in draw(c, sizes=True).wires} == {
        "B=2", "H=4", "T=16", "S=16", "K=8", "V=8"
    }  # fmt: skip
    labels = {w["label"] for w in draw(c, sizes={"T": 40, "S": 40}).wires}
    assert "T=40" in labels and "S=40" in labels and "T=16" not in labels


def test_broadcast_axes_pass_through_their_own_rows():
    d = draw(gallery.get("multihead_attention"))
    ins = {w["label"]: w["hport"] for w in d.into("box:q_proj")}
    outs = Counter((w["label"], w["tport"]) for w in d.out_of("box:q_proj"))
    # L^Q maps D to H K; B and T are broadcast: they pass on pass-through rows (t*), the
    # same row in and out, while D ends in the box and H, K leave it from output rows (o*).
    assert ins["B"].startswith("t") and ins["T"].startswith("t") and ins["D"].startswith("i")
    assert {p for (a, p) in outs if a in "BT"} == {ins["B"], ins["T"]}
    assert {a for (a, p) in outs if p.startswith("o")} == {"H", "K"}
    # Softmax over S: only S enters the triangle.
    sm = {w["label"]: w["hport"] for w in d.into("box:softmax")}
    assert [a for a, p in sm.items() if p.startswith("i")] == ["S"]


def test_learned_boxes_bold_with_their_names_and_glyphs_per_kind():
    d = draw(gallery.get("multihead_attention"))
    q = d.nodes["box:q_proj"]
    bold = [t for t in q.iter(SVG + "text") if t.get("font-weight") == "bold"]
    assert "".join(t.text or "" for t in bold) == "L₊Q"  # L^Q with a bias: ₊, Q superscript
    assert any(t.get("baseline-shift") == "super" for t in q.iter(SVG + "text"))
    assert "learned" in d.classes("box:q_proj") and "learned" not in d.classes("box:scores")
    assert "◗" in d.text(d.nodes["box:scores"]) and "Σ K" in d.text(d.nodes["box:scores"])
    assert "◁" in d.text(d.nodes["box:softmax"])
    assert "K−1/2" in d.text(d.nodes["box:scale"])


def test_blocks_are_titled_filled_clusters_around_their_boxes():
    d = draw(gallery.get("transformer_block"))
    titles = {d.text(g).strip() for g in d.blocks.values()}
    assert titles == {"Residual Component", "MLP"}  # each residual branch, its norm included
    mha = d.bbox(d.blocks["block:Residual Component"])
    mlp = d.bbox(d.blocks["block:MLP"])

    def inside(box, region):
        x0, y0, x1, y1 = d.bbox(d.nodes[box])
        return region[0] <= x0 and x1 <= region[2] and region[1] <= y0 and y1 <= region[3]

    for box in ("ln1", "q_proj", "k_proj", "v_proj", "scores", "softmax", "mix", "o_proj"):
        assert inside(f"box:{box}", mha) and not inside(f"box:{box}", mlp)
    for box in ("ln2", "ff_up", "ff_down"):
        assert inside(f"box:{box}", mlp) and not inside(f"box:{box}", mha)
    assert not inside("box:res1", mha) and not inside("box:res1", mlp)
    assert 'fill="#f0f0f0"' in ET.tostring(d.blocks["block:MLP"], encoding="unicode")


def test_a_value_used_twice_splits_at_a_copy_dot():
    d = draw(gallery.get("transformer_block"))
    # x feeds ln1 and the residual add: its three wires meet a copy, which sends two bundles.
    assert "role-copy" in d.classes("box:x/copy")
    assert sorted(w["label"] for w in d.out_of("input:x")) == ["B", "D", "T"]
    assert sorted(w["label"] for w in d.out_of("box:x/copy")) == sorted("BTDBTD")
    assert {w["head"] for w in d.out_of("box:x/copy")} == {"box:ln1", "box:res1"}


def test_collapsed_block_is_one_box_with_the_wires_crossing_its_border():
    d = draw(gallery.get("transformer_block"), collapse=["Residual Component"])
    assert "box:q_proj" not in d.nodes and "block:Residual Component" not in d.blocks
    box = "group:Residual Component"
    assert "role-group" in d.classes(box)
    assert "Residual Component" in d.text(d.nodes[box])
    assert sorted(w["label"] for w in d.into(box)) == ["B", "D", "T"]
    assert sorted(w["label"] for w in d.out_of(box)) == ["B", "D", "T"]
    assert {w["head"] for w in d.out_of(box)} == {"box:res1"}


def test_calls_expand_into_a_repeated_cluster_or_collapse_to_one_box():
    c = gallery.get("transformer")
    d = draw(c)
    block = d.blocks["block:blocks"]
    assert "× N" in d.text(block)
    assert "box:blocks/q_proj" in d.nodes and "block:blocks/Residual Component" in d.blocks
    # The embedding's wires run straight into the called block, where a copy dot splits
    # them between the first layer norm and the residual add.
    assert {w["head"] for w in d.out_of("box:embed")} == {"box:embed/copy"}
    assert {w["head"] for w in d.out_of("box:embed/copy")} == {"box:blocks/ln1", "box:blocks/res1"}
    shallow = render(c, depth=0)
    assert render(c, collapse=["blocks"]) == shallow
    d0 = Drawing(shallow)
    assert "role-call" in d0.classes("box:blocks") and "box:blocks/q_proj" not in d0.nodes
    assert "× N" in d0.text(d0.nodes["box:blocks"])
    assert sorted(w["label"] for w in d0.into("box:blocks")) == ["B", "D", "T"]
    # depth=1 expands the call but a block inside can still be collapsed by its title.
    d1 = draw(c, depth=1, collapse=["MLP"])
    assert "group:blocks/MLP" in d1.nodes and "box:blocks/ff_up" not in d1.nodes


def test_tuple_members_are_separated_by_a_dashed_line():
    b = Builder("tuples")
    x, y = b.input("x", "B T"), b.input("y", "B D")
    parts = b.unpack(b.pack(a=x, b=y, name="pk"), name="up")
    b.output("a", parts["a"])
    b.output("b", parts["b"])
    d = draw(b.build())
    dashed = [e for e in d.nodes["box:pk"].iter(SVG + "polyline") if e.get("stroke-dasharray")]
    assert len(dashed) == 1  # one line, between the two members of the tuple it makes


def test_themes():
    c = gallery.get("transformer_block")
    paper, notebook = render(c), render(c, theme="notebook")
    assert 'font-family="Times"' in paper
    assert not any(colour in paper for colour in NOTEBOOK.box_fill.values() if colour != "#ffffff")
    d = Drawing(notebook)
    q = ET.tostring(d.nodes["box:q_proj"], encoding="unicode")
    assert NOTEBOOK.box_fill["learned"] in q
    assert NOTEBOOK.box_fill["normalisation"] in ET.tostring(d.nodes["box:ln1"], encoding="unicode")


def test_overlay_colours_boxes_and_adds_a_legend():
    c = gallery.get("attention")
    d = draw(c, overlay={"scores": 0.5, "mix": 0.5, "softmax": 0.0}, overlay_title="FLOP share")
    assert OVERLAY[-1] in ET.tostring(d.nodes["box:mix"], encoding="unicode")
    assert OVERLAY[0] in ET.tostring(d.nodes["box:softmax"], encoding="unicode")
    assert "FLOP share" in d.svg and "50%" in d.svg  # the darkest colour is the largest share
    with pytest.raises(RenderError, match=r"\[0, 1\]"):
        render(c, overlay={"mix": 1.5})


def test_text_from_the_circuit_is_escaped():
    b = Builder("hostile", title="<script>")
    x = b.input("x", "B D")
    y = b.linear(x, "D", "E", name="a&b <i>", label="<b>&amp;")
    with b.group("</TD></TABLE>"):
        y = b.relu(y, name="r")
    b.output("y", y)
    d = draw(b.build())  # parses as XML
    assert "<b>&amp;" in d.text(d.nodes["box:a&b <i>"])
    assert "</TD></TABLE>" in d.text(d.blocks["block:</TD></TABLE>"])


def test_the_same_circuit_gives_the_same_bytes():
    c = gallery.get("transformer")
    first = render(c, theme="notebook")
    assert render(c, theme="notebook") == first
    assert "Generated by graphviz" not in first  # no version stamp
    code = (
        "import sys, ncd; from ncd import gallery; "
        "sys.stdout.write(ncd.render(gallery.get('transformer'), theme='notebook'))"
    )
    for seed in ("1", "2"):  # another process, another hash seed: set order must not matter
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env)
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout.decode() == first


def test_circuit_shows_itself_in_jupyter():
    c = gallery.get("attention")
    assert c._repr_svg_() == render(c)
    bundle = c._repr_mimebundle_()
    assert bundle["image/svg+xml"] == render(c) and "attention" in bundle["text/plain"]
    assert "image/svg+xml" not in c._repr_mimebundle_(include=["text/plain"])


def test_a_scalar_has_one_dotted_unlabelled_wire():
    b = Builder("loss")
    x = b.input("x", "B T")
    loss = b.scale(b.reduce(x, "B T", "mean", name="mean"), 2, name="twice")
    b.output("loss", loss)
    b.output("y", b.mul(x, loss, name="weighted"))
    d = draw(b.build())
    scalar = [w for w in d.wires if w["scalar"]]
    # mean -> twice -> copy -> (loss, weighted): four dotted wires, no label, no axis
    assert len(scalar) == 4 and all(w["label"] == "" for w in scalar)
    assert sorted(w["label"] for w in d.into("box:mean")) == ["B", "T"]
    assert sorted(w["label"] for w in d.into("box:weighted")) == ["", "B", "T"]


@pytest.mark.parametrize(
    "name, box, axes",
    [
        ("transformer_block", "scale", "BTHS"),  # ∗K^−1/2 on the scores B T H S
        ("transformer_block", "act", "BTF"),  # ➤gelu➤
        ("linear_attention", "phi_q", "BHTK"),  # ➤φ➤
        ("linear_attention", "phi_k", "BHTK"),
        ("gla_block", "log_gate", "BTHK"),
        ("transformer", "embed", "BT"),  # E looks the whole index tensor up
    ],
)
def test_elementwise_boxes_have_their_whole_bundle_go_through(name, box, axes):
    # An elementwise function applies to every element: each wire of the bundle enters the
    # body on an input row (i*) and leaves it on an output row (o*); none passes by on a
    # pass-through row (t*), which left the box floating above its wires.
    d = draw(gallery.get(name))
    into, out = d.into(f"box:{box}"), d.out_of(f"box:{box}")
    assert sorted(w["label"] for w in into) == sorted(axes)
    assert all(w["hport"].startswith("i") for w in into)
    assert all(w["tport"].startswith("o") for w in out)
    assert sorted(w["label"] for w in out) == sorted(axes + ("D" if box == "embed" else ""))
    # Geometrically: the wires end at the box's left side and start at its right side.
    x0, _, x1, _ = d.bbox(d.nodes[f"box:{box}"])
    assert all(abs(w["path"][-1][0] - x0) <= 2 for w in into)
    assert all(abs(w["path"][0][0] - x1) <= 2 for w in out)


def test_a_sum_keeps_a_row_per_operand_wire():
    # The residual + takes the branch's B T D and the skip's B T D on rows of their own (one
    # bundle above the other): merging wires of one name made 3 crossings per add.
    d = draw(gallery.get("transformer_block"))
    into = d.into("box:res1")
    assert sorted(w["label"] for w in into) == sorted("BTDBTD")
    assert len({w["hport"] for w in into}) == 6
    assert sorted(w["label"] for w in d.out_of("box:res1")) == sorted("BDT")


def test_the_embedding_is_outside_the_repeated_block(tmp_path):
    # transformer: E, then the block × N. E must not be drawn inside the block's frame: its
    # node is outside the call's cluster in the DOT, its box left of the frame, and its wires
    # enter the cluster.
    c = gallery.get("transformer")
    render(c, tmp_path / "t.dot")
    stack, where = [], {}
    for line in (tmp_path / "t.dot").read_text().splitlines():
        s = line.strip()
        if s.startswith("subgraph cluster_"):
            stack.append(s.split()[1])
        elif s == "}" and stack:
            stack.pop()
        m = re.match(r'(n\d+) \[id="[a-z]+:([^"]+)"', s)
        if m:
            where[m.group(2)] = list(stack)
    assert where["embed"] == [] and where["tokens"] == []
    assert where["blocks/ln1"][:1] == ["cluster_0"]
    d = draw(c)
    frame = d.bbox(d.blocks["block:blocks"])
    assert d.bbox(d.nodes["box:embed"])[2] < frame[0]
    assert {w["head"] for w in d.out_of("box:embed")} == {"box:embed/copy"}
    assert d.bbox(d.nodes["box:embed/copy"])[0] > frame[0]  # the copy dot is inside


@pytest.mark.parametrize("name", gallery.names())
def test_no_box_floats_detached_from_its_wires(name):
    # Every box's body is touched by a wire: one entering it on an input row (i*) or leaving
    # it on an output row (o*), not only pass-through rows (t*) going by; a body with none
    # floated above its bundle (the old ∗K^−1/2, ➤gelu➤, ➤φ➤ and E). (A mean over T has only
    # T enter and end in it.) Notebook theme, so that both themes are drawn across the
    # gallery (the paper theme: test_files).
    d = draw(gallery.get(name), theme="notebook")
    for box in d.nodes:
        if {"role-input", "role-output"} & set(d.classes(box)):
            continue
        touching = [w["hport"] for w in d.into(box)] + [w["tport"] for w in d.out_of(box)]
        assert any(p[0] in "io" for p in touching), box
