"""What a box's drawing claims about the operation, read back from the SVG: which axes are
broadcast past it, whether it is learned (bold), what its wires hold, what its ports are.

The expectations are written from the operations' definitions (batch norm's statistics, which
boxes hold weights, the sizes a convolution's padding makes), not from the renderer's code."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.draw import render

SVG = "{http://www.w3.org/2000/svg}"
_EDGE_TITLE = re.compile(r"^(n\d+):e->(n\d+):w$")


class Figure:
    """The SVG as nodes (by id: `box:path`, `input:x`, `output:y`) and wires (tail node, head
    node, ports, label)."""

    def __init__(self, svg: str):
        root = ET.fromstring(svg)
        self.nodes: dict[str, ET.Element] = {}
        gv: dict[str, str] = {}
        self.wires: list[dict] = []
        for g in root.iter(SVG + "g"):
            cls = g.get("class", "").split()
            if "node" in cls:
                self.nodes[g.get("id")] = g
                gv[g.find(SVG + "title").text] = g.get("id")
            elif "wire" in cls:
                tail, head = _EDGE_TITLE.match(g.find(SVG + "title").text).groups()
                self.wires.append(
                    {"tail": tail, "head": head,
                     "tport": next(c[5:] for c in cls if c.startswith("from-")),
                     "hport": next(c[3:] for c in cls if c.startswith("to-")),
                     "label": "".join("".join(t.itertext()) for t in g.iter(SVG + "text"))}
                )  # fmt: skip
        for w in self.wires:
            w["tail"], w["head"] = gv[w["tail"]], gv[w["head"]]

    def into(self, box: str) -> list[dict]:
        return [w for w in self.wires if w["head"] == f"box:{box}"]

    def out_of(self, box: str) -> list[dict]:
        return [w for w in self.wires if w["tail"] == f"box:{box}"]

    def texts(self, box: str) -> list[ET.Element]:
        return list(self.nodes[f"box:{box}"].iter(SVG + "text"))

    def text(self, box: str) -> str:
        return "".join("".join(t.itertext()) for t in self.texts(box))

    def bold(self, box: str) -> str:
        """The text of the box set in bold."""
        return "".join(t.text or "" for t in self.texts(box) if t.get("font-weight") == "bold")


def figure(circuit, **kw) -> Figure:
    """The circuit's whole figure (not wrapped or collapsed to fit a page: these tests read
    what each box's drawing says)."""
    return Figure(render(circuit, **{"max_width": None, **kw}))


# ---------------------------------------------------------------- 1. what is broadcast
def _channel_norms() -> Builder:
    b = Builder("norms")
    x = b.input("x", "B C Y X")
    b.output("y_bn", b.batchnorm(x, "C", name="bn"))
    b.output("y_un", b.unifiednorm(x, "C", name="un"))
    b.output("y_gn", b.groupnorm(x, "C", 2, "Y X", name="gn"))
    return b


def test_batch_and_unified_norm_take_the_whole_bundle_into_the_box():
    # Batch (and unified) norm: per channel, statistics over every other axis, B included. No
    # axis is applied to position by position, so none passes the box by on a pass-through
    # row (t*): every wire enters the body on an input row (i*) and leaves on an output row.
    f = figure(_channel_norms().build())
    for box in ("bn", "un"):
        assert sorted((w["label"], w["hport"][0]) for w in f.into(box)) == [
            ("B", "i"), ("C", "i"), ("X", "i"), ("Y", "i")
        ]  # fmt: skip
        assert {w["tport"][0] for w in f.out_of(box)} == {"o"}
    # Group norm is per sample: B is broadcast (passes by), C Y X enter.
    gn = {w["label"]: w["hport"][0] for w in f.into("gn")}
    assert gn == {"B": "t", "C": "i", "Y": "i", "X": "i"}


def test_resnet_batch_norms_take_the_whole_bundle():
    f = figure(gallery.get("resnet_block"))
    for box in ("bn1", "bn2"):
        assert sorted(w["label"] for w in f.into(box)) == sorted("BCYX")
        assert all(w["hport"].startswith("i") for w in f.into(box))


def test_layer_norm_still_broadcasts_over_the_positions():
    b = Builder("ln")
    b.output("y", b.layernorm(b.input("x", "B T D"), "D", name="ln"))
    ln = {w["label"]: w["hport"][0] for w in figure(b.build()).into("ln")}
    assert ln == {"B": "t", "T": "t", "D": "i"}


# ---------------------------------------------------------------- 2. bold means learned
def _learned_and_not() -> Builder:
    b = Builder("bold")
    x = b.input("x", "B C T")
    b.output("y1", b.rmsnorm(x, "C", affine=False, name="srms", label="SRMS"))
    b.output("y2", b.rmsnorm(x, "C", name="rms"))
    b.output("y3", b.box("batchnorm", {"x": x}, "bn_fixed", channel="C", affine=False))
    b.output("y4", b.conv(x, "T", "C", "O", 3, padding=1, name="conv"))
    b.output("y5", b.linear(x, "C", "O", name="biased", label="L^R"))
    b.output("y6", b.linear(x, "C", "O", bias=False, name="plain", label="L^Q"))
    b.output("y7", b.normalize(x, "C", name="l2"))
    return b


@pytest.mark.parametrize(
    "box, bold",
    [
        ("srms", ""),  # RMS norm without a learned scale: nothing bold
        ("rms", "RMS"),  # with one: its name bold
        ("bn_fixed", ""),
        ("conv", "★3"),  # a convolution has weights, labelled or not
        ("biased", "L₊R"),  # L^R with a bias: the ₊ of L₊ is kept, before the superscript
        ("plain", "LQ"),
        ("l2", ""),  # dividing by the l2 norm learns nothing
    ],
)
def test_bold_marks_exactly_the_boxes_that_hold_learned_tensors(box, bold):
    c = _learned_and_not().build()
    f = figure(c)
    assert f.bold(box) == bold
    checked = c.check()
    holds = bool(checked.params[box])  # the box's learned tensors, from its shape rule
    assert ("learned" in f.nodes[f"box:{box}"].get("class").split()) == holds == bool(bold)


def test_an_imported_models_buffers_are_fixed_data_not_bold(tmp_path):
    """An imported model's buffers (one in its state_dict, one not) and a plain tensor its
    code holds are data it does not train: param boxes marked `trained` False, drawn with
    their names not bold, where its parameter is bold. They were all three bold. Read from the
    Graphviz source (bold is a <B> in a node's label) and from the SVG."""
    import torch
    from torch import nn

    from ncd.compiler import from_torch

    class Scaled(nn.Module):
        def __init__(self, d=6):
            super().__init__()
            self.lin = nn.Linear(d, d)
            self.gain = nn.Parameter(torch.rand(d))
            self.register_buffer("scale", torch.linspace(0.5, 2.0, d))
            self.register_buffer("table", torch.linspace(-1.0, 1.0, d), persistent=False)
            self.shift = torch.linspace(0.0, 1.0, d)  # a plain attribute

        def forward(self, x):
            return self.lin(x) * self.scale * self.gain + self.table + self.shift

    c = from_torch(Scaled(), torch.randn(2, 5, 6))
    kinds = {b.name: (b.kind, b.is_learned()) for b in c.boxes if b.kind == "param"}
    assert kinds == {"gain": ("param", True), "scale": ("param", False),
                     "table": ("param", False), "shift": ("param", False)}  # fmt: skip
    render(c, tmp_path / "scaled.dot", max_width=None)
    dot = (tmp_path / "scaled.dot").read_text()
    labels = dict(re.findall(r'id="box:(\w+)".*?label=<(.*)> pos=', dot))
    assert "<B>gain</B>" in labels["gain"]
    for fixed in ("scale", "table", "shift"):
        assert "<B>" not in labels[fixed] and f">{fixed}<" in labels[fixed], labels[fixed]
    f = figure(c)
    assert [f.bold(b) for b in ("gain", "scale", "table", "shift")] == ["gain", "", "", ""]
    assert "learned" not in f.nodes["box:scale"].get("class").split()


def test_unlabelled_linear_maps_are_told_apart_by_name():
    """A linear map without a label (any the Builder makes unlabelled, every one an import
    makes) is `L` or `L₊` like any other; its name goes small below, so that a router and two
    expert projections, or an imported q, k, v, o, are not four identical boxes."""
    b = Builder("unlabelled")
    x = b.input("x", "B D")
    b.output("r", b.linear(x, "D", "E", bias=False, name="router"))
    b.output("g", b.linear(x, "D", "F", name="w_gate"))
    b.output("q", b.linear(x, "D", "F", bias=False, name="q", label="L^Q"))
    f = figure(b.build())
    assert (f.bold("router"), f.bold("w_gate"), f.bold("q")) == ("L", "L₊", "LQ")
    assert (f.text("router"), f.text("w_gate")) == ("Lrouter", "L₊w_gate")
    assert f.text("q") == "LQ"  # a label names the map already


def test_a_parameter_named_in_python_is_drawn_as_its_name():
    """A parameter's name is drawn with scripts only where it is written as a symbol with one
    (W_q: W, subscript q); an imported Python name (log_A_real, dt_bias) is drawn as written,
    not as log with subscript A followed by 'real'."""
    b = Builder("names", sizes={"D": 3})
    x = b.input("x", "D")
    for name in ("log_A_real", "dt_bias", "W_q"):
        x = b.mul(x, b.param("D", name=name))
    b.output("y", x)
    texts = re.findall(r">([^<]+)</text>", render(b.build()))
    assert "log_A_real" in texts and "dt_bias" in texts
    assert texts[texts.index("W") : texts.index("W") + 2] == ["W", "q"]


def test_srms_is_not_bold_and_says_rms_once():
    # TransNormer's SRMSNorm has no learned scale (`affine=False`).
    f = figure(gallery.get("transnormer_block"))
    for box in ("norm1", "out_norm", "norm2"):
        assert f.bold(box) == ""
        assert f.text(box).count("RMS") == 1
    assert f.bold("q_proj") == "LQ"  # no bias: no ₊


def test_gla_labelled_maps_with_a_bias_keep_their_plus():
    f = figure(gallery.get("gla_block"))
    assert f.bold("g_up") == "L₊α2" and f.bold("r_proj") == "L₊R"
    assert f.bold("g_down") == "Lα1"  # no bias
    assert f.bold("norm") == "RMS"  # RMS norm with its learned scale


def test_unlabelled_convolutions_are_bold():
    f = figure(gallery.get("convolutions"))
    for box, star in [("strided", "★4"), ("dilated", "★3"), ("depthwise", "★3")]:
        assert f.bold(box) == star
    assert f.bold("transposed") == "★T4"


# ---------------------------------------------------------------- 4. a wire's size
def _labels(wires) -> list[str]:
    return sorted(w["label"] for w in wires)


def test_a_wire_whose_size_changed_is_labelled_with_its_size():
    # DeltaNet's short convolution pads T by 3 at both ends: a kernel of 4 gives T + 6 - 3 =
    # T + 3 positions, of which the causal slice keeps the first T. Under the name alone the
    # slice read as T -> T, a no-op.
    f = figure(gallery.get("deltanet_block"))
    assert _labels(f.out_of("q_conv")) == ["B", "E", "T+3"]
    assert "T+3" in _labels(f.into("q_causal"))
    assert _labels(f.out_of("q_causal")) == ["B", "E", "T"]
    # Hedgehog's feature map concatenates [softmax(x), softmax(-x)] along F: 2F features.
    f = figure(gallery.get("hedgehog_attention"))
    assert _labels(f.out_of("phi_q")) == ["2F", "B", "H", "T"]
    # U-Net (Y = 4M): each 2×2 pool halves Y and X, said in terms of the axis.
    f = figure(gallery.get("unet"))
    assert _labels(f.out_of("pool1")) == ["B", "F1", "X/2", "Y/2"]
    assert _labels(f.out_of("pool2")) == ["B", "F2", "X/4", "Y/4"]


def test_a_strided_or_transposed_convolution_labels_its_new_sizes():
    # Kernel 4, stride 2, padding 1: floor((Y + 2 - 4) / 2) + 1 = floor(Y / 2) positions;
    # transposed: (Y - 1)·2 - 2 + 4 = 2Y.
    f = figure(gallery.get("convolutions"))
    assert _labels(f.out_of("strided")) == ["B", "O", "⌊X/2⌋", "⌊Y/2⌋"]
    assert _labels(f.out_of("transposed")) == ["2X", "2Y", "B", "O"]
    assert _labels(f.out_of("dilated")) == ["B", "O", "X", "Y"]  # padding 2 = dilation·1


def test_a_size_the_circuit_fixes_is_written_as_its_number():
    # RoPE by hand: the head features K split into R = 2 halves of P = K/2, each half taken by
    # a slice along R. A slice keeps 1 of the 2 positions: `1`, not `R/2` (which says the same
    # only to one who looks R up); P, a symbol of the circuit, keeps its name.
    b = Builder("rope_halves", axes={"R": 2, "P": "K/2"}, sizes={"B": 2, "T": 4, "K": 8})
    p = b.split_axis(b.input("x", "B T K"), "K", "R P", name="pairs")
    b.output("a", b.slice(p, "R", 0, 1, name="first"))
    b.output("c", b.slice(p, "R", 1, 2, name="second"))
    f = figure(b.build())
    assert _labels(f.out_of("pairs")) == ["B", "P", "R", "T"]
    assert _labels(f.out_of("first")) == _labels(f.out_of("second")) == ["1", "B", "P", "T"]
    f = figure(b.build(), sizes=True)
    assert _labels(f.out_of("first")) == ["B=2", "P=4", "R=1", "T=4"]


def test_with_sizes_shown_a_changed_wire_keeps_name_and_number():
    # T = 32 (the gallery's default), padded by 3: 35.
    f = figure(gallery.get("deltanet_block"), sizes=True)
    assert _labels(f.out_of("q_conv")) == ["B=2", "E=16", "T=35"]
    assert _labels(f.out_of("q_causal")) == ["B=2", "E=16", "T=32"]


# ---------------------------------------------------------------- 7. port names
_NAMED_STUB = re.compile(
    r'<TD PORT="(i\d+)"[^>]*><TABLE[^>]*><TR><TD[^>]*><FONT POINT-SIZE="\d+">([^<]*)</FONT>'
)


def _stub_names(dot: str, box: str) -> dict[str, str]:
    """Port id -> the name written on that input stub, from the box's DOT label."""
    line = next(ln for ln in dot.splitlines() if f'[id="box:{box}"' in ln)
    return {port: name for port, name in _NAMED_STUB.findall(line)}


@pytest.mark.parametrize("name", ["gated_deltanet_block", "deltanet_packed"])
def test_a_fused_linear_attention_names_its_ports_on_their_stubs(name, tmp_path):
    # Gated DeltaNet's g and beta are both B T H (q and k both B T H K): the stubs say which
    # is which. Each name must sit on the stub of a wire coming from the box the circuit
    # wires to that port.
    c = gallery.get(name)
    render(c, tmp_path / "c.dot", max_width=None)
    names = _stub_names((tmp_path / "c.dot").read_text(), "mixer")
    shown = {"beta": "β"}  # beta is written as in the papers
    wiring = next(b for b in c.boxes if b.name == "mixer").inputs
    assert sorted(names.values()) == sorted(shown.get(p, p) for p in wiring)
    f = figure(c)
    tails = {w["hport"]: w["tail"] for w in f.into("mixer")}
    for port, source in wiring.items():
        at = next(i for i, n in names.items() if n == shown.get(port, port))
        # from the source itself (a box or an input), or from the copy dot that splits it
        tail = tails[at].partition(":")[2].removesuffix("/copy")
        assert tail == source.split(".")[0], port


def test_boxes_whose_inputs_are_told_apart_by_their_wires_name_no_ports(tmp_path):
    render(gallery.get("transformer_block"), tmp_path / "t.dot")
    dot = (tmp_path / "t.dot").read_text()
    for box in ("res1", "scores", "mix", "q_proj"):
        assert _stub_names(dot, box) == {}


# ---------------------------------------------------------------- 8. linear attention's options
@pytest.mark.parametrize(
    "name, box, shows, not_shown",
    [
        # the two layers differ only in their decay: c = 1/2 in layer 1, c = 0 in layer 2
        ("lightning_block", "l1_mixer", ["lightning", "causal", "decay c=1/2"], ["no decay"]),
        ("lightning_block", "l2_mixer", ["lightning", "causal", "no decay"], ["c="]),
        # TransNormer: c = 1 - l/L in layer l of L
        ("transnormer_block", "mixer", ["decay c=1−l/L"], []),
        ("hedgehog_attention", "linear_attention", ["linear", "causal", "norm"], ["decay"]),
        ("ecoformer_attention", "hamming_attn", ["linear", "norm"], ["causal"]),
        ("gla_block", "mixer", ["gla", "causal"], ["norm", "decay"]),
    ],
)
def test_linear_attention_shows_what_tells_two_apart(name, box, shows, not_shown):
    c = gallery.get(name)
    b = next(x for x in c.boxes if x.name == box)
    assert b.kind == "linear_attention"
    text = figure(c).text(box)
    for part in shows:
        assert part in text, (part, text)
    for part in not_shown:
        assert part not in text, (part, text)


# ---------------------------------------------------------------- 10. text that overlaps
def _line_extents(texts: list[ET.Element]) -> list[tuple[float, float]]:
    """(top, bottom) of each text run as a font sets it: capitals reach 0.72 of the size
    above the baseline, brackets 0.22 below; a subscript is lowered by a third of the size."""
    out = []
    for t in texts:
        y, pt = float(t.get("y")), float(t.get("font-size"))
        y += pt / 3 if t.get("baseline-shift") == "sub" else 0
        y -= pt / 3 if t.get("baseline-shift") == "super" else 0
        out.append((y - 0.72 * pt, y + 0.22 * pt))
    return out


@pytest.mark.parametrize("name, box", [("sea_attention", "selected"), ("mom_block", "routed_hot")])
def test_the_one_hot_glyph_does_not_run_into_its_note(name, box):
    texts = figure(gallery.get(name)).texts(box)
    glyph = [t for t in texts if t.get("font-family") == "DejaVu Sans"]
    note = [t for t in texts if t.get("font-family") != "DejaVu Sans"]
    assert "".join(t.text for t in glyph) == "1[·]" and note
    lowest = max(bottom for _, bottom in _line_extents(glyph))
    highest = min(top for top, _ in _line_extents(note))
    assert lowest <= highest


# ---------------------------------------------------------------- 13. small text
def _block_texts(svg: str, block: str) -> list[ET.Element]:
    g = next(g for g in ET.fromstring(svg).iter(SVG + "g") if g.get("id") == f"block:{block}")
    return [t for t in g.iter(SVG + "text")]


def test_a_repeat_count_writes_its_subscript_as_labels_do():
    # soft_attention's Newton step repeats N_iter times: N with `iter` as a subscript.
    for sizes, after in ((None, ""), (True, "=20")):
        svg = render(gallery.get("soft_attention"), sizes=sizes, max_width=None)
        texts = _block_texts(svg, "newton")
        title = "".join(t.text or "" for t in texts)
        assert "_" not in title and title.endswith("× Niter" + after)
        assert [t.text for t in texts if t.get("baseline-shift") == "sub"] == ["iter"]


@pytest.mark.parametrize(
    "name, box, shown",
    [
        ("gla_block", "temperature", "∗1/τ1/16"),  # the label, its value small below
        ("transnormer_block", "phi_q", "➤φ➤silu"),  # a labelled function says which it is
        ("sea_attention", "phi_q", "➤φ➤elu+1"),
        ("gated_deltanet_block", "dt", "➤Δ➤softplus"),
        ("gla_block", "swish", "➤silu➤"),  # unlabelled: the function is the glyph, once
        ("vision_transformer", "patchify", "★4↓4×4"),  # the stride said once
        ("unified_norm_block", "un1", "○UN"),
        ("transnormer_block", "norm1", "○SRMS"),
    ],
)
def test_each_fact_is_shown_once_and_labels_are_shown(name, box, shown):
    assert figure(gallery.get(name)).text(box) == shown


def test_a_factor_written_as_a_decimal_is_shown_rounded():
    # 2πf/T with f = 1e-4 (Hyena's positional features) is the fraction
    # 3141592653589793/(5000000000000000000 T): past reading, so ≈ and 4 digits, T exact.
    b = Builder("decimals", sizes={"B": 2, "T": 8})
    x = b.input("x", "B T")
    x = b.scale(x, f"{-2 * 3.141592653589793e-4!r}/T", name="angle", label="−2πf/T")
    x = b.scale(x, "0.1234567891234", name="plain")  # unlabelled: the glyph itself
    x = b.scale(x, "0.5773502691896258", name="inv_sqrt3")  # recognised: √3/3, exact
    x = b.scale(x, "1/16384", name="short")  # a fraction one can read stays exact
    b.output("y", b.scale(x, "-1/(T-1)", name="sized"))
    f = figure(b.build())
    assert f.text("angle") == "∗−2πf/T≈−0.0006283/T"
    assert f.text("plain") == "∗≈0.1235"
    assert f.text("inv_sqrt3") == "∗31/2/3"
    assert f.text("short") == "∗1/16384"
    assert f.text("sized") == "∗−(T−1)−1"


def test_a_large_power_of_two_is_written_as_one():
    # I-ViT's integer layer norm divides by 2^30: written 2 with superscript 30.
    svg = render(gallery.get("ivit_block"), max_width=None)
    assert "1073741824" not in svg
    texts = Figure(svg).texts("ln1/big")
    assert [t.text for t in texts if t.get("baseline-shift") == "super"] == ["30"]
    assert "".join(t.text or "" for t in texts).startswith("230")


# ---------------------------------------------------------------- 14. routing
def test_top_k_says_the_axis_it_selects_from():
    """A top-k keeps the k largest entries along one axis, as a reduction reduces one: its
    box names that axis (MoM's router picks 2 of the memories M; the box said only `k=2`),
    then the axis the kept entries run along, of size k."""
    text = figure(gallery.get("mom_block")).text("topk")
    assert text == "topM → k=2"
    b = Builder("top", sizes={"B": 2, "T": 8, "E": 4})
    b.output("y", b.topk(b.input("x", "B T E"), "T", 3, into="j", name="top3")["values"])
    assert figure(b.build()).text("top3") == "topT → j=3"


def test_gather_and_scatter_pictograms_hold_no_axis_name():
    """Indexing is the pentagon tag; scatter, gather's inverse, was `⬠ᵀ`, whose T read as
    the axis T in a circuit that has one (the positions T of a MoE's tokens). Axis names are
    ASCII identifiers, so a pictogram without ASCII letters cannot be taken for one; the
    axes each box acts on are in its note, in italics."""
    b = Builder("route", sizes={"B": 2, "T": 8, "E": 4, "D": 3})
    x, s = b.input("x", "B T E D"), b.input("s", "B T E")
    idx = b.topk(s, "E", 2, name="top2")["indices"]  # B T k
    picked = b.box("gather", {"x": x, "index": idx}, "pick", axis="E", into="k")  # B T k D
    b.output("y", b.box("scatter", {"src": picked, "index": idx}, "back", axis="E", over="k"))
    fig = figure(b.build())
    for box, glyph, note in (("pick", "⬠", "E[k]"), ("back", "⬠−1", "k → E")):
        texts = fig.texts(box)
        drawn = "".join(t.text or "" for t in texts if t.get("font-family") == "DejaVu Sans")
        assert drawn == "⬠" and not re.search(r"[A-Za-z_]", fig.text(box).removesuffix(note))
        assert fig.text(box) == glyph + note


def test_a_subscripted_label_does_not_run_into_the_line_below():
    """A label with a subscript (RWKV-6's μ_x and λ_w over their axes, `GN_h` over its
    groups) ran into the line below it: Graphviz lowers a subscript without giving it room,
    as the one-hot glyph's did. Every run of text on a later line starts below it."""
    b = Builder("subscripts", sizes={"B": 2, "H": 2, "K": 4})
    x = b.input("x", "B H K")
    y = b.mul(x, b.param("H K", name="decay", label="λ_w"))
    y = b.add(y, b.param("K", name="mix", label="μ_x"))
    y = b.merge_axes(y, "H K", "D")
    b.output("y", b.groupnorm(y, "D", "H", name="gn", label="GN_h"))
    f = figure(b.build())
    for box in ("decay", "mix", "gn"):
        texts = f.texts(box)
        assert any(t.get("baseline-shift") == "sub" for t in texts), box
        runs = [(t, e) for t, e in zip(texts, _line_extents(texts)) if (t.text or "").strip()]
        for t, (_, bottom) in runs:
            if t.get("baseline-shift") != "sub":
                continue
            below = [top for u, (top, _) in runs if float(u.get("y")) > float(t.get("y")) + 1]
            assert below and bottom <= min(below), (box, t.text)


def test_scatter_reads_as_the_inverse_of_gather():
    """Scatter's ⁻¹, in the pictograms' font beside the pentagon, was as tall as it and level
    with it, and was read as "⬠ −1" (an index less one). The −1 is an exponent: smaller than
    the pentagon, in the text's font, its baseline (as every renderer places it: no
    baseline-shift, which browsers and Cairo raise by different amounts) above the pentagon's
    middle; the note stays under both."""
    b = Builder("route", sizes={"B": 2, "T": 8, "E": 4})
    x, s = b.input("x", "B T E"), b.input("s", "B T E")
    idx = b.topk(s, "E", 2, name="top2")["indices"]  # B T k
    picked = b.box("gather", {"x": x, "index": idx}, "pick", axis="E", into="k")
    b.output("y", b.box("scatter", {"src": picked, "index": idx}, "back", axis="E", over="k"))
    for theme in ("paper", "notebook"):
        texts = {t.text: t for t in figure(b.build(), theme=theme).texts("back")}
        tag, exp, note = texts["⬠"], texts["−1"], texts["k"]
        assert exp.get("font-family") != tag.get("font-family")
        assert float(exp.get("font-size")) < float(tag.get("font-size"))
        assert exp.get("baseline-shift") is None
        rise = float(tag.get("y")) - float(exp.get("y"))  # SVG's y grows downwards
        assert rise >= 0.5 * float(tag.get("font-size")), rise
        assert float(exp.get("x")) > float(tag.get("x"))  # to its right
        assert float(note.get("y")) > float(tag.get("y"))  # the note below
