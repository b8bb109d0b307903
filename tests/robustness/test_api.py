"""Hostile input through the Python entry points (Builder, Circuit, analyse, render,
compile): an NcdError naming the limit or the place, in bounded time."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import NcdError, SchemaError
from ncd.circuits.io import from_dict
from ncd.circuits.sizes import parse_size

from .corpus import ring, scale, spec, unary


def _fails(fn, *words, seconds=5.0):
    t0 = time.perf_counter()
    with pytest.raises(NcdError) as e:
        fn()
    assert time.perf_counter() - t0 < seconds
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def _builder():
    b = Builder("c", sizes={"B": 2, "T": 3, "D": 4})
    return b, b.input("x", "B T D")


@pytest.mark.parametrize(
    "factor,limit",
    [
        (float("nan"), "not a size"),
        (float("inf"), "not a size"),
        ("nan", "not a size"),
        ("T/0", "division by zero"),
        ("0/0", "division by zero"),
        ("sqrt(0-1)", "not a finite real"),
        ("10**5000", "MAX_EXPONENT"),
        ("2**2**2**2**2**2", "MAX_EXPONENT"),
        ("B**B", "not a number"),
        ("9" * 30, "MAX_INT_DIGITS"),
        ("(A+1)**8*(B+1)**8", "MAX_EXPR_TERMS"),
        ("(" * 40 + "1" + ")" * 40, "MAX_EXPR_DEPTH"),
        (2**80, "MAX_INT_DIGITS"),
    ],
)
def test_builder_refuses_sizes_that_are_not_sizes(factor, limit):
    b, x = _builder()
    _fails(lambda: b.scale(x, factor, name="s"), limit)


@pytest.mark.parametrize(
    "factor,why",
    [
        ("1/(D-4)", "a division by zero"),
        ("(D-4)**-1", "a division by zero"),
        ("T*log(D-4)", "a logarithm of zero"),
        ("(D-5)**0.5", "a root or a logarithm of a negative number"),
        ("log(D-5)", "a root or a logarithm of a negative number"),
    ],
)
def test_expressions_without_value_at_the_bound_sizes_are_located(factor, why):
    """Fine as formulas, but no number at the sizes: refused where written, naming the box,
    the field and the sizes, by check and by compile alike (not a TypeError in lowering)."""
    where = f"box 's', field 'factor': {factor} has no value at "
    bound = from_dict(scale(factor, sizes={"B": 2, "T": 3, "D": 4}))
    _fails(bound.check, where, why)
    msg = _fails(lambda: ncd.compile(bound), where, why)
    assert "TypeError" not in msg and "complex" not in msg
    free = from_dict(scale(factor))  # sizes bound later (--sizes), and only then refused
    free.check()
    _fails(lambda: free.check({"B": 1, "T": 1, "D": 4}), where, why)
    free.check({"B": 1, "T": 1, "D": 9})


def test_cli_validate_reports_a_division_by_zero_in_one_error(tmp_path, capsys):
    from ncd.cli import main

    path = tmp_path / "t.json"
    path.write_text(json.dumps(spec(
        [{"name": "s", "kind": "scale", "factor": "1/(D-8)", "inputs": {"x": "x"}}],
        sizes={"B": 2, "T": 3, "D": 8},
    )))  # fmt: skip
    for argv in (["validate", str(path)], ["compile", str(path)], ["show", str(path)]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "box 's', field 'factor': 1/(D-8) has no value at D=8" in err, err
    path.write_text(json.dumps(scale("1/(D-8)")))  # no sizes in the spec: --sizes binds them
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    assert main(["validate", str(path), "--sizes", "B=1,T=1,D=8"]) == 1
    assert "1/(D-8) has no value at D=8" in capsys.readouterr().err
    assert main(["validate", str(path), "--sizes", "B=1,T=1,D=9"]) == 0


@pytest.mark.parametrize("name", ["e", "NaN", "Inf", "oo"])
def test_names_of_numbers_are_not_sizes(name):
    with pytest.raises(NcdError, match="not a size"):
        parse_size(f"2*{name}")


def test_pi_is_the_number_in_factors_and_no_size():
    """`pi` in a scale's factor is π (angles of positional encodings), drawn as π; an axis
    whose size would be π is refused."""
    b = Builder("c", sizes={"T": 4})
    x = b.input("x", "T")
    b.output("y", b.scale(x, "pi/(2*T)", name="angle"))
    c = b.build()
    xs = torch.arange(4, dtype=torch.float64)
    torch.testing.assert_close(ncd.compile(c, dtype=torch.float64)(xs), xs * math.pi / 8)
    svg = ncd.render(c)
    assert "π/(2" in svg and "pi/" not in svg
    b = Builder("d", sizes={"T": 4}, axes={"D": "pi"})
    b.output("y", b.input("x", "T D"))
    with pytest.raises(NcdError, match="axis D has no valid size"):
        b.build()


def test_upper_case_e_and_i_are_axis_names():
    """An embedding axis E split in halves (rotary embeddings' `x.chunk(2)`), an axis I."""
    b = Builder("c", sizes={"B": 2, "E": 8, "I": 3})
    x = b.input("x", "B E I")
    lo, hi = b.split(x, "E", ["E/2", "E/2"]).values()
    b.output("y", lo)
    y = ncd.compile(b.build())(torch.randn(2, 8, 3))
    assert y.shape == (2, 4, 3)


def test_parse_size_bounds_arithmetic():
    assert parse_size("K**-0.5") == parse_size("K") ** parse_size("-0.5")
    assert str(parse_size("(T+1)**3")) == "(T + 1)**3"
    assert parse_size("2**63") == 2**63
    with pytest.raises(NcdError, match="MAX_NUMBER"):
        parse_size("2**63*2**63")


@pytest.mark.parametrize("name", ["\ud800", "a\u202eb", "a\u2066b", "a\x85b", "n" * 65, "a.b"])
def test_builder_refuses_names_that_mislead(name):
    b, x = _builder()
    _fails(lambda: b.relu(x, name=name))


def test_sizes_are_true_integers():
    for bad in (True, 1.5, -1, 2**41):
        _fails(lambda bad=bad: from_dict(spec([unary("a", "x")], sizes={"B": bad})))
    c = from_dict(spec([unary("a", "x")]))
    _fails(lambda: c.check({"B": True}), "size B")


def test_cycles_are_reported_once_per_component_in_linear_time():
    c = from_dict(ring(20_000))
    msg = _fails(c.check, "wires form a cycle", seconds=10)
    assert msg.count("wires form a cycle") == 1 and len(msg) < 1000
    two = spec([unary("a", "b"), unary("b", "a"), unary("c", "d"), unary("d", "c")])
    msg = _fails(from_dict(two).check)
    assert "a -> b -> a" in msg and "c -> d -> c" in msg


def test_error_lists_are_capped():
    from ncd.circuits.limits import MAX_PROBLEMS_SHOWN

    c = from_dict(spec([unary(f"u{i}", f"nowhere{i}") for i in range(3000)]))
    msg = _fails(c.check, "3,000 problems", f"and {3000 - MAX_PROBLEMS_SHOWN:,} more")
    assert msg.count("\n") == MAX_PROBLEMS_SHOWN + 1


def test_wide_wires_and_boxes_are_refused():
    axes = " ".join(f"a{i}" for i in range(100_000))
    msg = _fails(lambda: from_dict(spec([], inputs=[{"name": "x", "axes": axes}])),
                 "MAX_AXES")  # fmt: skip
    assert len(msg) < 2000


def test_repeat_counts_are_bounded():
    block = spec([unary("u", "x")], name="blk")
    data = spec([{"name": "k", "kind": "call", "circuit": "blk", "repeat": "N",
                  "inputs": {"x": "x"}}], subcircuits={"blk": block},
                sizes={"B": 2, "T": 3, "D": 4})  # fmt: skip
    c = from_dict(data)
    c.check()  # a symbolic repeat is fine until bound
    _fails(lambda: c.check({"N": 10**6}), "MAX_REPEAT")
    _fails(lambda: ncd.compile(c, {"N": 10**6}), "MAX_REPEAT")


def test_a_repeat_at_its_limit_compiles_in_bounded_time():
    """MAX_REPEAT copies of a one-box block (a module each) compile within seconds."""
    from ncd.circuits.limits import MAX_REPEAT

    block = spec([unary("u", "x")], name="blk")
    c = from_dict(spec([{"name": "k", "kind": "call", "circuit": "blk", "repeat": MAX_REPEAT,
                         "inputs": {"x": "x"}}], subcircuits={"blk": block},
                       sizes={"B": 2, "T": 3, "D": 4}))  # fmt: skip
    t0 = time.perf_counter()
    m = ncd.compile(c)
    assert time.perf_counter() - t0 < 60
    assert len(m.k) == MAX_REPEAT


def test_too_long_circuit_fields_name_their_limit():
    from ncd.circuits.io import loads

    data = spec([unary(f"r{i}", "x") for i in range(20_001)], doc="d" * 4001)
    with pytest.raises(SchemaError) as e:
        loads(json.dumps(data))
    assert "(limit MAX_BOXES)" in str(e.value) and "(limit MAX_DOC)" in str(e.value)


def test_dtypes_the_operations_cannot_take():
    for kind, params in (("linear", {"over": "D", "out": "E"}), ("softmax", {"over": "D"})):
        for dtype in ("int64", "bool"):
            data = spec([{"name": "o", "kind": kind, "inputs": {"x": "x"}, **params}],
                        inputs=[{"name": "x", "axes": "B D", "dtype": dtype}])  # fmt: skip
            _fails(from_dict(data).check, "floating-point", dtype)


def test_writing_code_allocates_no_parameters():
    """A model of 2 x 10**12 parameters (8 TB) has its code written and its cost read."""
    data = spec([{"name": "l", "kind": "linear", "over": "D", "out": "F", "inputs": {"x": "x"}}],
                 inputs=[{"name": "x", "axes": "B D"}],
                 sizes={"B": 1, "D": 2**20, "F": 2**20})  # fmt: skip
    c = from_dict(data)
    text = ncd.compiler.to_source(c)
    assert "class C(" in text
    assert ncd.analyse(c).numbers["params"] == 2**40 + 2**20
    assert math.isfinite(ncd.analyse(c).numbers["flops"])


def test_input_ports_of_a_box_are_bounded():
    from ncd.circuits.limits import MAX_BOX_INPUTS

    wide = unary("u", "x") | {"inputs": {f"p{i}": "x" for i in range(MAX_BOX_INPUTS + 1)}}
    msg = _fails(lambda: from_dict(spec([wide])), "box", "'u'", "MAX_BOX_INPUTS")
    assert f"{MAX_BOX_INPUTS + 1} input ports" in msg and len(msg) < 2000
    opaque = {"name": "o", "kind": "opaque", "outputs": {"y": "B"}, "inputs": {"x": "x"},
              "in_ports": [f"p{i}" for i in range(100_000)]}  # fmt: skip
    _fails(lambda: from_dict(spec([opaque])), "'o'", "in_ports", "MAX_BOX_INPUTS")
    from .corpus import WIDE

    call = {"name": "k", "kind": "call", "circuit": "wide", "inputs": {"x": "x"}}
    c = from_dict(spec([call], subcircuits={"wide": WIDE}))
    _fails(c.check, "box 'k'", "subcircuit 'wide'", "300 inputs", "MAX_BOX_INPUTS")
