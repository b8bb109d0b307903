"""Every kind of the vocabulary has a shape rule, and the rule gives the axes a hand-written
table expects. The table must name every kind: adding a kind without a case here fails."""

from __future__ import annotations

import pytest
import sympy

from ncd.circuits.builder import Builder
from ncd.circuits.kinds import KINDS, BoxBase

# kind -> (inputs {name: "axes[:dtype]"}, builder call, expected axes of each output port)
CASES = {
    "linear": ({"x": "B T D"}, lambda b, w: b.linear(w["x"], "D", "H K"), {"out": "B T H K"}),
    "param": ({}, lambda b, w: b.param("T D"), {"out": "T D"}),
    "embedding": ({"x": "B T:int64"}, lambda b, w: b.embedding(w["x"], "W", "D"),
                  {"out": "B T D"}),
    "contract": ({"q": "B H T K", "k": "B H S K"}, lambda b, w: b.contract(w["q"], w["k"],
                 over="K"), {"out": "B H T S"}),
    "diagonal": ({"x": "B T S"}, lambda b, w: b.diagonal(w["x"], "T S", "U"), {"out": "B U"}),
    "unary": ({"x": "B T"}, lambda b, w: b.relu(w["x"]), {"out": "B T"}),
    "binary": ({"x": "B T", "y": "T D"}, lambda b, w: b.add(w["x"], w["y"]), {"out": "B T D"}),
    "scale": ({"x": "B T"}, lambda b, w: b.scale(w["x"], "K**-0.5"), {"out": "B T"}),
    "cast": ({"x": "B T"}, lambda b, w: b.cast(w["x"], "bfloat16"), {"out": "B T"}),
    "dropout": ({"x": "B T"}, lambda b, w: b.dropout(w["x"], 0.5), {"out": "B T"}),
    "mask": ({"x": "T S"}, lambda b, w: b.mask(w["x"], "T", "S"), {"out": "T S"}),
    "softmax": ({"x": "B T S"}, lambda b, w: b.softmax(w["x"], "S"), {"out": "B T S"}),
    "layernorm": ({"x": "B T D"}, lambda b, w: b.layernorm(w["x"], "D"), {"out": "B T D"}),
    "rmsnorm": ({"x": "B T D"}, lambda b, w: b.rmsnorm(w["x"], "D"), {"out": "B T D"}),
    "batchnorm": ({"x": "B C X"}, lambda b, w: b.batchnorm(w["x"], "C"), {"out": "B C X"}),
    "groupnorm": ({"x": "B C X"}, lambda b, w: b.groupnorm(w["x"], "C", 2, "X"),
                  {"out": "B C X"}),
    "unifiednorm": ({"x": "B C X"}, lambda b, w: b.unifiednorm(w["x"], "C"), {"out": "B C X"}),
    "normalize": ({"x": "B T K"}, lambda b, w: b.normalize(w["x"], "K"), {"out": "B T K"}),
    "reduce": ({"x": "B T D"}, lambda b, w: b.reduce(w["x"], "T", "mean"), {"out": "B D"}),
    "scan": ({"x": "B T D"}, lambda b, w: b.scan(w["x"], "T"), {"out": "B T D"}),
    "topk": ({"x": "B T"}, lambda b, w: b.topk(w["x"], "T", 3),
             {"values": "B k", "indices": "B k"}),
    "split_axis": ({"x": "B D"}, lambda b, w: b.split_axis(w["x"], "D", "H K"),
                   {"out": "B H K"}),
    "merge_axes": ({"x": "B H K"}, lambda b, w: b.merge_axes(w["x"], "H K", "D"),
                   {"out": "B D"}),
    "permute": ({"x": "B T D"}, lambda b, w: b.permute(w["x"], "D B T"), {"out": "D B T"}),
    "rename": ({"x": "B T D"}, lambda b, w: b.rename(w["x"], T="S"), {"out": "B S D"}),
    "copy": ({"x": "B T"}, lambda b, w: b.box("copy", {"x": w["x"]}), {"0": "B T", "1": "B T"}),
    "pack": ({"x": "B T", "y": "B D"}, lambda b, w: b.pack(a=w["x"], b=w["y"]), {"out": None}),
    "unpack": ({"x": "B T", "y": "B D"}, lambda b, w: b.unpack(b.pack(a=w["x"], b=w["y"])),
               {"a": "B T", "b": "B D"}),
    "concat": ({"x": "B T", "y": "B T"}, lambda b, w: b.concat(w["x"], w["y"], axis="T"),
               {"out": "B T"}),
    "split": ({"x": "B T"}, lambda b, w: b.box("split", {"x": w["x"]}, axis="T",
              sizes=("T-1", "1")), {"0": "B T", "1": "B T"}),
    "index": ({"x": "B T D"}, lambda b, w: b.index(w["x"], "T", -1), {"out": "B D"}),
    "slice": ({"x": "B T D"}, lambda b, w: b.slice(w["x"], "T", 1, None, 2), {"out": "B T D"}),
    "conv": ({"x": "B C Y X"}, lambda b, w: b.conv(w["x"], "Y X", "C", "O", 3, padding=1),
             {"out": "B O Y X"}),
    "pool": ({"x": "B C Y X"}, lambda b, w: b.pool(w["x"], "Y X", 2), {"out": "B C Y X"}),
    "upsample": ({"x": "B C X"}, lambda b, w: b.upsample(w["x"], "X"), {"out": "B C X"}),
    "attention": ({"q": "B H T K", "k": "B H S K", "v": "B H S V"},
                  lambda b, w: b.attention(w["q"], w["k"], w["v"]), {"out": "B H T V"}),
    "linear_attention": ({"q": "B H T K", "k": "B H T K", "v": "B H T V"},
                         lambda b, w: b.linear_attention(w["q"], w["k"], w["v"], key="T"),
                         {"out": "B H T V"}),
    "call": ({"x": "B T D"}, lambda b, w: b.call(_double(), x=w["x"], repeat=3),
             {"out": "B T D"}),
    "opaque": ({"x": "B T"}, lambda b, w: b.box("opaque", {"x": w["x"]}, target="torch.nn.GRU",
               outputs={"y": "B T H"}), {"y": "B T H"}),
}  # fmt: skip


def _double():
    b = Builder("double")
    x = b.input("x", "B T D")
    b.output("y", b.scale(x, 2))
    return b.build()


def _inputs(b, spec):
    out = {}
    for name, text in spec.items():
        axes, _, dtype = text.partition(":")
        out[name] = b.input(name, axes, dtype or "float32")
    return out


def test_every_kind_has_a_case_and_a_shape_rule():
    assert set(CASES) == set(KINDS), "kinds without a case: " + " ".join(set(KINDS) - set(CASES))
    for kind, cls in KINDS.items():
        assert cls.infer is not BoxBase.infer, f"{kind} has no shape rule"
        assert cls.__doc__ and cls.__doc__.strip(), f"{kind} has no docstring"
        for fname, f in cls.model_fields.items():
            if fname not in ("kind",) and fname not in BoxBase.model_fields:
                assert f.description, f"{kind}.{fname} has no docstring"
    assert len(KINDS) >= 30


@pytest.mark.parametrize("kind", sorted(CASES))
def test_shape_rule(kind):
    spec, make, expected = CASES[kind]
    b = Builder(f"case_{kind}")
    out = make(b, _inputs(b, spec))
    outs = out if isinstance(out, dict) else {"out": out}
    if len(outs) == 1 and len(expected) == 1:
        outs = {next(iter(expected)): next(iter(outs.values()))}
    for port, axes in expected.items():
        if axes is not None:
            assert " ".join(outs[port].axes) == axes, (kind, port, outs[port])
        b.output(f"o_{port}", outs[port])
    c = b.build()
    assert c.boxes[-1].kind == kind or kind in ("unpack",)


def _sizes_of(c, port_ref, sizes):
    checked = c.check(sizes)
    box, _, port = port_ref.partition(".")
    t = checked.outs[box][port or next(iter(checked.outs[box]))]
    return [checked.number(a.size) for a in t.axes]


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel=3, padding=1),
        dict(kernel=(3, 5), stride=2),
        dict(kernel=3, dilation=2, padding=2),
        dict(kernel=4, stride=2, padding=1, transposed=True),
        dict(kernel=3, stride=2, padding=1, output_padding=1, transposed=True),
        dict(kernel=3, groups=4, padding=1),
    ],
)
def test_conv_sizes_match_torch(kw):
    """Inferred output sizes equal what PyTorch's own convolution produces."""
    torch = pytest.importorskip("torch")
    b = Builder("conv")
    x = b.input("x", "B C Y X")
    b.output("y", b.conv(x, "Y X", "C", "O", name="c", **kw))
    c = b.build()
    sizes = {"B": 2, "C": 4, "O": 8, "Y": 11, "X": 16}
    got = _sizes_of(c, "c", sizes)
    k = kw["kernel"] if isinstance(kw["kernel"], tuple) else (kw["kernel"],) * 2
    args = dict(stride=kw.get("stride", 1), padding=kw.get("padding", 0),
                dilation=kw.get("dilation", 1), groups=kw.get("groups", 1))  # fmt: skip
    if kw.get("transposed"):
        m = torch.nn.ConvTranspose2d(4, 8, k, output_padding=kw.get("output_padding", 0), **args)
    else:
        m = torch.nn.Conv2d(4, 8, k, **args)
    want = list(m(torch.zeros(2, 4, 11, 16)).shape)
    assert got == want


@pytest.mark.parametrize("window,stride,padding", [(2, None, 0), (3, 2, 1), (3, 1, 0)])
def test_pool_sizes_match_torch(window, stride, padding):
    torch = pytest.importorskip("torch")
    b = Builder("pool")
    x = b.input("x", "B C X")
    kw = {"padding": padding} | ({"stride": stride} if stride else {})
    b.output("y", b.pool(x, "X", window, name="p", **kw))
    got = _sizes_of(b.build(), "p", {"B": 1, "C": 2, "X": 17})
    want = torch.nn.MaxPool1d(window, stride=stride, padding=padding)(torch.zeros(1, 2, 17)).shape
    assert got == list(want)


@pytest.mark.parametrize("start,stop,step", [(0, None, 1), (1, None, 2), (2, "T-3", 3), (0, 5, 1)])
def test_slice_sizes_match_python(start, stop, step):
    b = Builder("slice")
    x = b.input("x", "T")
    b.output("y", b.slice(x, "T", start, stop, step, name="s"))
    for t in (9, 10, 17):
        stop_n = None if stop is None else (t - 3 if stop == "T-3" else stop)
        assert _sizes_of(b.build(), "s", {"T": t}) == [len(range(t)[start:stop_n:step])]


def test_symbolic_sizes_stay_formulas():
    b = Builder("m", axes={"D": "H*K"})
    x = b.input("x", "B T D")
    y = b.split_axis(x, "D", "H K", name="heads")
    b.output("y", b.merge_axes(y, "H K", "E", name="back"))
    checked = b.build().check()
    e = checked.outs["back"]["out"].axis("E").size
    assert sympy.simplify(checked.resolve(e) - sympy.Symbol("H", positive=True, integer=True)
                          * sympy.Symbol("K", positive=True, integer=True)) == 0  # fmt: skip
