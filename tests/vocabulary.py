"""The vocabulary tests' one table: a case per box kind, written by hand from the kinds'
definitions and docs/notation.md (not from the code under test).

A case gives the inputs of a one-box circuit (`{name: "axes[:dtype]"}`), the builder call
that makes the box, the axes each output port must have (None: a tuple), the text the box's
drawing must show, and, for kinds no gallery circuit uses, field values for the editor's
round trip (non-default wherever a field allows one). The shape, drawing, cost and editor
tests all read it; `tests/test_vocabulary.py` checks it names every kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ncd.circuits.builder import Builder


@dataclass(frozen=True)
class Case:
    inputs: dict[str, str]
    make: Callable[[Builder, dict], Any]
    outputs: dict[str, str | None]
    glyph: str
    form: dict[str, Any] | None = field(default=None)


def _double():
    b = Builder("double", title="Doubling")
    x = b.input("x", "B T D")
    b.output("y", b.scale(x, 2))
    return b.build()


CASES: dict[str, Case] = {
    "linear": Case({"x": "B T D"}, lambda b, w: b.linear(w["x"], "D", "H K", label="L^Q"),
                   {"out": "B T H K"}, "L₊Q"),  # a bias (the default): L₊, named Q
    "param": Case({}, lambda b, w: b.param("T D", label="E^pos"), {"out": "T D"}, "Epos"),
    "embedding": Case({"x": "B T:int64"}, lambda b, w: b.embedding(w["x"], "W", "D"),
                      {"out": "B T D"}, "E"),
    "contract": Case({"q": "B H T K", "k": "B H S K"},
                     lambda b, w: b.contract(w["q"], w["k"], over="K"), {"out": "B H T S"}, "◗"),
    "diagonal": Case({"x": "B T S"}, lambda b, w: b.diagonal(w["x"], "T S", "U"),
                     {"out": "B U"}, "●", form={"axes": ["S", "T"], "into": "T"}),
    "unary": Case({"x": "B T"}, lambda b, w: b.relu(w["x"]), {"out": "B T"}, "➤R➤"),
    "binary": Case({"x": "B T", "y": "T D"}, lambda b, w: b.add(w["x"], w["y"]),
                   {"out": "B T D"}, "+"),
    "scale": Case({"x": "B T"}, lambda b, w: b.scale(w["x"], "K**-0.5"), {"out": "B T"},
                  "∗K−1/2"),
    "cast": Case({"x": "B T"}, lambda b, w: b.cast(w["x"], "bfloat16"), {"out": "B T"}, "⇢",
                 form={"dtype": "bfloat16"}),
    "dropout": Case({"x": "B T"}, lambda b, w: b.dropout(w["x"], 0.5), {"out": "B T"}, "Drop",
                    form={"p": 0.25}),
    "mask": Case({"x": "T S"}, lambda b, w: b.mask(w["x"], "T", "S"), {"out": "T S"}, "◣",
                 form={"query": "T", "key": "S", "pattern": "window", "window": 4, "fill": "0"}),
    "softmax": Case({"x": "B T S"}, lambda b, w: b.softmax(w["x"], "S"), {"out": "B T S"}, "◁"),
    "layernorm": Case({"x": "B T D"}, lambda b, w: b.layernorm(w["x"], "D"), {"out": "B T D"},
                      "○"),
    "rmsnorm": Case({"x": "B T D"}, lambda b, w: b.rmsnorm(w["x"], "D"), {"out": "B T D"}, "○"),
    "batchnorm": Case({"x": "B C X"}, lambda b, w: b.batchnorm(w["x"], "C"), {"out": "B C X"},
                      "○"),
    "groupnorm": Case({"x": "B C X"}, lambda b, w: b.groupnorm(w["x"], "C", 2, "X"),
                      {"out": "B C X"}, "○",
                      form={"channel": "C", "over": ["X", "Y"], "groups": 4, "eps": 1e-6,
                            "affine": False}),
    "unifiednorm": Case({"x": "B C X"}, lambda b, w: b.unifiednorm(w["x"], "C"),
                        {"out": "B C X"}, "○", form={"channel": "C", "momentum": 0.2}),
    "normalize": Case({"x": "B T K"}, lambda b, w: b.normalize(w["x"], "K"), {"out": "B T K"},
                      "○"),
    "reduce": Case({"x": "B T D"}, lambda b, w: b.reduce(w["x"], "T", "sum"), {"out": "B D"},
                   "Σ"),
    "scan": Case({"x": "B T D"}, lambda b, w: b.scan(w["x"], "T"), {"out": "B T D"}, "Σ"),
    "topk": Case({"x": "B T"}, lambda b, w: b.topk(w["x"], "T", 3),
                 {"values": "B k", "indices": "B k"}, "top",
                 form={"over": "S", "k": 5, "into": "j"}),
    "split_axis": Case({"x": "B D"}, lambda b, w: b.split_axis(w["x"], "D", "H K"),
                       {"out": "B H K"}, "≺"),
    "merge_axes": Case({"x": "B H K"}, lambda b, w: b.merge_axes(w["x"], "H K", "D"),
                       {"out": "B D"}, "≻"),
    "permute": Case({"x": "B T D"}, lambda b, w: b.permute(w["x"], "D B T"), {"out": "D B T"},
                    "╳"),
    "rename": Case({"x": "B T D"}, lambda b, w: b.rename(w["x"], T="S"), {"out": "B S D"}, "↦"),
    "copy": Case({"x": "B T"}, lambda b, w: b.box("copy", {"x": w["x"]}),
                 {"0": "B T", "1": "B T"}, "", form={"n": 3}),
    "pack": Case({"x": "B T", "y": "B D"}, lambda b, w: b.pack(a=w["x"], b=w["y"]),
                 {"out": None}, "(,)", form={"items": ["a", "b"]}),
    "unpack": Case({"x": "B T", "y": "B D"},
                   lambda b, w: b.unpack(b.pack(a=w["x"], b=w["y"])), {"a": "B T", "b": "B D"},
                   ")(", form={}),
    "concat": Case({"x": "B T", "y": "B T"}, lambda b, w: b.concat(w["x"], w["y"], axis="T"),
                   {"out": "B T"}, "‖", form={"axis": "T", "operands": ["a", "b", "c"]}),
    "split": Case({"x": "B T"},
                  lambda b, w: b.box("split", {"x": w["x"]}, axis="T", sizes=("T-1", "1")),
                  {"0": "B T", "1": "B T"}, "⋔",
                  form={"axis": "D", "sizes": ["4", "H*K"], "names": ["a", "b"]}),
    "index": Case({"x": "B T D"}, lambda b, w: b.index(w["x"], "T", -1), {"out": "B D"}, "⬠",
                  form={"axis": "T", "index": -1}),
    "slice": Case({"x": "B T D"}, lambda b, w: b.slice(w["x"], "T", 1, None, 2),
                  {"out": "B T D"}, "⬠",
                  form={"axis": "T", "start": 1, "stop": "T - 1", "step": 2}),
    "conv": Case({"x": "B C Y X"}, lambda b, w: b.conv(w["x"], "Y X", "C", "O", 3, padding=1),
                 {"out": "B O Y X"}, "★3"),
    "pool": Case({"x": "B C Y X"}, lambda b, w: b.pool(w["x"], "Y X", 2), {"out": "B C Y X"},
                 "Max", form={"spatial": ["X", "Y"], "op": "avg", "window": [2, 2],
                              "stride": [2, 2]}),
    "upsample": Case({"x": "B C X"}, lambda b, w: b.upsample(w["x"], "X"), {"out": "B C X"},
                     "↑2", form={"spatial": ["X"], "factor": 3, "mode": "linear"}),
    "attention": Case({"q": "B H T K", "k": "B H S K", "v": "B H S V", "mask": "B S:bool"},
                      lambda b, w: b.attention(w["q"], w["k"], w["v"], mask=w["mask"]),
                      {"out": "B H T V"}, "◗◁◗",
                      form={"causal": True, "scale": "K**-0.5", "query": "Q", "masked": True}),
    "linear_attention": Case({"q": "B H T K", "k": "B H T K", "v": "B H T V"},
                             lambda b, w: b.linear_attention(w["q"], w["k"], w["v"], key="T"),
                             {"out": "B H T V"}, "◗◗"),
    "call": Case({"x": "B T D"}, lambda b, w: b.call(_double(), x=w["x"], repeat=3),
                 {"out": "B T D"}, "Doubling"),
    "opaque": Case({"x": "B T"}, lambda b, w: b.box("opaque", {"x": w["x"]},
                   target="torch.nn.GRU", outputs={"y": "B T H"}), {"y": "B T H"}, "?",
                   form={"target": "mylib.op", "in_ports": ["x", "y"],
                         "outputs": {"out": ["B", "T"]}}),
}  # fmt: skip


def inputs(b: Builder, kind: str) -> dict:
    """The case's input wires, added to `b`."""
    out = {}
    for name, text in CASES[kind].inputs.items():
        axes, _, dtype = text.partition(":")
        out[name] = b.input(name, axes, dtype or "float32")
    return out


def one_box(kind: str, sizes: dict[str, int] | None = None):
    """The case's circuit: its inputs, its box (plus a pack where unpack needs one), an output
    `y_<port>` per output port."""
    b = Builder(f"one_{kind}", sizes=dict(sizes or {}))
    out = CASES[kind].make(b, inputs(b, kind))
    outs = out if isinstance(out, dict) else {next(iter(CASES[kind].outputs)): out}
    for port, wire in outs.items():
        b.output(f"y_{port}", wire)
    return b.build()


# Integer arithmetic (I-ViT, HAWQ-V3): integer inputs, integer results.
CASES.update({
    "clamp": Case({"x": "B T:int32"}, lambda b, w: b.box("clamp", {"x": w["x"]}, low=-128,
                  high=127), {"out": "B T"}, "clip", form={"low": "-2**7", "high": "2**7 - 1"}),
    "constant": Case({}, lambda b, w: b.box("constant", {}, axes="D", value=7), {"out": "D"},
                     "7", form={"axes": ["D"], "dtype": "int8", "value": "2**6"}),
    "requantize": Case({"x": "B T D:int32"}, lambda b, w: b.box("requantize", {"x": w["x"]},
                       axes="D"), {"out": "B T D"}, "∗b ≫c", form={"axes": ["D"],
                       "dtype": "int32"}),
    "int_linear": Case({"x": "B T D:int8"}, lambda b, w: b.box("int_linear", {"x": w["x"]},
                       over="D", out="F"), {"out": "B T F"}, "L₊",
                       form={"over": ["D"], "out": ["F"], "bias": False}),
})  # fmt: skip

CASES["add_norm"] = Case(
    {"x": "B T D", "h": "B T D"},
    lambda b, w: b.box("add_norm", {"x": w["x"], "h": w["h"]}, over=["D"]),
    {"out": "B T D", "sum": "B T D"},
    "+○",
    form={"norm": "rmsnorm", "over": ["D"], "affine": False, "eps": 1e-6},
)

CASES["short_conv"] = Case(
    {"x": "B T E"},
    lambda b, w: b.box("short_conv", {"x": w["x"]}, axis="T", channel="E", kernel=4),
    {"out": "B T E"},
    "★4",
    form={"axis": "T", "channel": "E", "kernel": 3, "bias": True, "activation": "silu"},
)


# Routing (expert and top-k selection): positions from a top-k of scores s, so that they lie
# within the indexed axis at any size.
def _top2(b, w):
    return b.topk(w["s"], "M", 2, name="top2")["indices"]  # B T k


CASES.update({
    "gather": Case({"x": "B T M", "s": "B T M"},
                   lambda b, w: b.box("gather", {"x": w["x"], "index": _top2(b, w)}, axis="M",
                                      into="k"),
                   {"out": "B T k"}, "⬠", form={"axis": "M", "into": ["k", "j"]}),
    "scatter": Case({"x": "B T k D", "s": "B T M"},
                    lambda b, w: b.box("scatter", {"src": w["x"], "index": _top2(b, w)},
                                       axis="M", over="k"),
                    {"out": "B T M D"}, "⬠−1", form={"axis": "E", "over": ["k", "j"]}),
    "one_hot": Case({"s": "B T M"},
                    lambda b, w: b.box("one_hot", {"x": _top2(b, w)}, into="E"),
                    {"out": "B T k E"}, "1[·]", form={"into": "E", "dtype": "bool"}),
    "compare": Case({"x": "B T", "y": "T D"},
                    lambda b, w: b.box("compare", {"a": w["x"], "b": w["y"]}, fn="ne"),
                    {"out": "B T D"}, "≠", form={"fn": "le"}),
    "where": Case({"x": "B T", "y": "T D", "z": "B T D"},
                  lambda b, w: b.box("where", {"cond": b.box("compare", {"a": w["x"],
                                     "b": w["y"]}, fn="gt"), "a": w["z"], "b": w["y"]}),
                  {"out": "B T D"}, "?:", form={"fill": "-inf"}),
})  # fmt: skip

# Rotary position embedding: positions along T, pairs of the head features K (even).
CASES["rotary"] = Case(
    {"x": "B T H K"},
    lambda b, w: b.rotary(w["x"], "T", "K"),
    {"out": "B T H K"},
    "↻",
    form={"seq": "S", "feature": "E", "base": 500000.0, "rotated": "E/2",
          "pairs": "interleaved", "start": True},
)  # fmt: skip

# Long convolution: a filter per head H of L taps, broadcast over the heads' features K.
CASES["long_conv"] = Case(
    {"x": "B T H K", "filter": "L H"},
    lambda b, w: b.long_conv(w["x"], w["filter"], seq="T"),
    {"out": "B T H K"},
    "★",
    form={"seq": "S"},
)

# Positions along T counted from a start per B row (T given a size: no input carries it).
CASES["positions"] = Case(
    {"s": "B:int64"},
    lambda b, w: b.axis("T", 8) or b.positions("T", start=w["s"]),
    {"out": "B T"},
    "0,1,…",
    form={"axis": "S", "dtype": "int64", "packed": True},
)
