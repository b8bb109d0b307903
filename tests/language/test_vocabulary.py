"""Every kind of the vocabulary has a shape rule, and the rule gives the axes the shared table
(tests/vocabulary.py, written by hand) expects; sizes of convolutions, pools and slices agree
with PyTorch and Python."""

from __future__ import annotations

import pytest
import sympy

from ncd.circuits.builder import Builder
from ncd.circuits.kinds import KINDS, BoxBase
from ncd.circuits.types import TupleType

from ..vocabulary import CASES, one_box


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_shape_rule(kind):
    c = one_box(kind)
    assert any(box.kind == kind for box in c.boxes)
    outs = c.check().outputs
    for port, axes in CASES[kind].outputs.items():
        t = outs[f"y_{port}"]
        if axes is None:
            assert isinstance(t, TupleType), (kind, port, t)
        else:
            assert " ".join(t.names) == axes, (kind, port, t)


def test_every_kind_has_a_docstring_and_field_docstrings():
    from ncd.circuits.fielddocs import attach

    attach()
    for kind, cls in KINDS.items():
        assert cls.infer is not BoxBase.infer, f"{kind} has no shape rule"
        assert cls.__doc__ and cls.__doc__.strip(), f"{kind} has no docstring"
        for fname, f in cls.model_fields.items():
            if fname not in ("kind",) and fname not in BoxBase.model_fields:
                assert f.description, f"{kind}.{fname} has no docstring"
    assert len(KINDS) >= 30


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


def test_one_element_type_list():
    """Every field that takes an element type takes exactly DTYPES (or their floating part),
    and the pattern the schema states for opaque boxes agrees with the list."""
    import re

    from ncd.circuits.circuit import Input
    from ncd.circuits.types import DTYPE_PATTERN, DTYPES, FLOAT_DTYPES

    assert DTYPES == ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8",
                      "bool")  # fmt: skip
    assert FLOAT_DTYPES == ("float32", "float16", "bfloat16", "float64")

    def enum(model, field):
        return tuple(model.model_json_schema()["properties"][field]["enum"])

    assert enum(KINDS["cast"], "dtype") == DTYPES
    assert enum(Input, "dtype") == DTYPES
    assert enum(KINDS["param"], "dtype") == enum(KINDS["embedding"], "dtype") == FLOAT_DTYPES
    for d in (*DTYPES, "uint8", "int16", "float8", "complex64", "float32 "):
        assert bool(re.match(DTYPE_PATTERN, d)) == (d in DTYPES), d


def test_element_sizes_and_promotion():
    torch = pytest.importorskip("torch")
    from ncd.circuits.types import DTYPE_BYTES, DTYPES, promote

    for d in DTYPES:
        assert DTYPE_BYTES[d] == torch.empty(0, dtype=getattr(torch, d)).element_size(), d
    assert promote(["bool", "int8"]) == "int8"
    assert promote(["int64", "float16"]) == "float16"
    assert promote(["bfloat16", "float16"]) == "float32"
    assert promote(["float32", "bfloat16"]) == "float32"
    assert promote(["float64", "float32"]) == "float64"
    assert promote(["int32", "int64"]) == "int64"
