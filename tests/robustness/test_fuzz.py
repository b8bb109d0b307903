"""A structural fuzzer over the schema: circuits made of every box kind with field values
drawn from hostile pools (odd names, huge and odd numbers, size expressions, wrong types).
Loading, validating, reading the cost and writing the code either succeed or raise an
NcdError, each within seconds. The budget is fixed: a set number of examples, derandomised,
so that `make test` takes the same time on every run."""

from __future__ import annotations

import contextlib
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncd
from ncd.circuits import io
from ncd.circuits.errors import NcdError
from ncd.circuits.kinds import KINDS

AXES = ["B", "T", "D", "H", "K", "S", "E"]
NAMES = ["a", "b", "c", "x", "a.b", "", "self", "meta", "training", "\u202e", "n" * 70, "σ"]
SIZES = ["T", "H*K", "K**-0.5", "T/0", "2**2**2**2**2**2", "B**B", "sqrt(0-1)", "(T+1)**64",
         "9" * 30, "floor(T/2)", "nan", "-1", "0", "1.5", ""]  # fmt: skip
FIELDS = ["over", "out", "axis", "axes", "fn", "factor", "repeat", "circuit", "sizes", "into",
          "query", "key", "head", "value", "mapping", "order", "p", "k", "start", "stop",
          "dtype", "spatial", "channel", "kernel", "window", "items", "names", "index",
          "groups", "n", "variant", "op", "pattern", "fill"]  # fmt: skip
SECONDS = 5.0

leaf = st.one_of(
    st.sampled_from(AXES + NAMES + SIZES),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.lists(st.sampled_from(AXES), max_size=4).map(" ".join),
)
value = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(AXES + NAMES), inner, max_size=3),
    ),
    max_leaves=8,
)


# Boxes that validate on `x: B T D`, each then given one field from the hostile pools.
TEMPLATES = [
    {"kind": "unary", "fn": "relu"},
    {"kind": "linear", "over": "D", "out": "E"},
    {"kind": "softmax", "over": "T"},
    {"kind": "scale", "factor": "D**-0.5"},
    {"kind": "layernorm", "over": "D"},
    {"kind": "rename", "mapping": {"T": "S"}},
    {"kind": "reduce", "over": "D", "op": "sum"},
    {"kind": "split_axis", "axis": "D", "into": {"H": 2, "K": "D/2"}},
    {"kind": "slice", "axis": "T", "start": 0, "stop": 2},
    {"kind": "dropout", "p": 0.1},
]


@st.composite
def box(draw, names: list[str]):
    if draw(st.booleans()):
        d = {"name": draw(st.sampled_from(names)), **draw(st.sampled_from(TEMPLATES))}
        d["inputs"] = {"x": draw(st.sampled_from(names + ["x"]))}
        if draw(st.booleans()):
            d[draw(st.sampled_from([k for k in d if k not in ("name", "kind", "inputs")]))] = draw(
                value
            )
        return d
    kind = draw(st.sampled_from(sorted(KINDS)))
    d = {"name": draw(st.sampled_from(names)), "kind": kind}
    ports = draw(st.lists(st.sampled_from(["x", "a", "b", "q", "k", "v"]), max_size=3))
    d["inputs"] = {p: draw(st.sampled_from(names + ["x", "x.0"])) for p in ports}
    for f in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        d[f] = draw(value)
    return d


@st.composite
def chains(draw):
    """A chain of template boxes, each reading the one before, one field perhaps spoiled."""
    boxes, src = [], "x"
    for i in range(draw(st.integers(1, 8))):
        d = {"name": f"b{i}", **draw(st.sampled_from(TEMPLATES)), "inputs": {"x": src}}
        if draw(st.integers(0, 5)) == 0:
            d[draw(st.sampled_from([k for k in d if k not in ("name", "kind", "inputs")]))] = draw(
                value
            )
        boxes.append(d)
        src = f"b{i}"
    data = {"name": "c", "inputs": [{"name": "x", "axes": "B T D"}], "boxes": boxes,
            "outputs": [{"name": "y", "source": src}]}  # fmt: skip
    if draw(st.booleans()):
        data["sizes"] = {"B": 2, "T": 3, "D": 4, "E": 5, "H": 2, "S": 3}
    if draw(st.integers(0, 3)) == 0:
        data["axes"] = {draw(st.sampled_from(AXES)): draw(st.sampled_from(SIZES))}
    return data


@st.composite
def specs(draw):
    names = [f"b{i}" for i in range(draw(st.integers(1, 6)))] + draw(
        st.lists(st.sampled_from(NAMES), max_size=2)
    )
    boxes = draw(st.lists(box(names), min_size=1, max_size=6))
    seen: set[str] = set()
    boxes = [b for b in boxes if not (b["name"] in seen or seen.add(b["name"]))]
    data = {
        "name": draw(st.sampled_from(["c", "net", "Net", "a.b", ""])),
        "inputs": [{"name": "x", "axes": " ".join(draw(st.permutations(AXES))[:3])}],
        "boxes": boxes,
        "outputs": [{"name": "y", "source": draw(st.sampled_from(names))}],
    }
    if draw(st.booleans()):
        data["sizes"] = draw(st.dictionaries(st.sampled_from(AXES), value, max_size=3))
    if draw(st.booleans()):
        data["axes"] = draw(st.dictionaries(st.sampled_from(AXES), st.sampled_from(SIZES),
                                            max_size=2))  # fmt: skip
    return data


def _bounded(fn):
    t0 = time.perf_counter()
    with contextlib.suppress(NcdError):
        fn()
    assert time.perf_counter() - t0 < SECONDS


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(st.one_of(chains(), specs()))
def test_structural_fuzz(data):
    try:
        c = io.from_dict(data)
    except NcdError:
        return
    _bounded(c.check)
    _bounded(lambda: ncd.analyse(c, symbolic=True))
    _bounded(lambda: c.check(require_bound=True) and ncd.compiler.to_source(c))
