"""A compiled module checks its inputs against the circuit's axes before running: the rank,
the sizes the module is specialised to, that a free size (the batch) agrees across inputs, and
the dtype class; each error names the input and the axis."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from ncd.circuits.errors import NcdError
from ncd.compiler import compile as ncd_compile
from ncd.compiler.errors import InputError

from .helpers import positions_circuit


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return ncd_compile(positions_circuit())


def _error(module, *args) -> str:
    with pytest.raises(InputError) as e:
        module(*args)
    assert isinstance(e.value, NcdError)
    return str(e.value)


def test_a_different_free_batch_size_runs(module):
    x, gate = torch.randn(5, 16, 32), torch.randn(5, 16)
    pos = dict(module.named_parameters())["pos.weight"]
    want = (x + pos[None]) * gate[:, :, None]
    torch.testing.assert_close(module(x, gate), want)


def test_a_passing_call_does_not_excuse_the_next(module):
    """The check remembers the shapes and dtypes of the last call that passed and skips them
    when they repeat: a call with other shapes or dtypes is checked in full."""
    x, gate = torch.randn(2, 16, 32), torch.randn(2, 16)
    module(x, gate)
    module(x, gate)
    assert _error(module, x, torch.randn(3, 16)).startswith("input 'gate': axis B has size 2")
    assert "kind int" in _error(module, x, torch.ones(2, 16, dtype=torch.int64))
    module(x, gate)


def test_wrong_rank_names_the_axes(module):
    msg = _error(module, torch.randn(16, 32), torch.randn(2, 16))
    assert msg == "input 'x': expected 3 axes (B T D), found 2 (x.shape = (16, 32))"


def test_wrong_bound_size_names_the_axis(module):
    msg = _error(module, torch.randn(2, 12, 32), torch.randn(2, 12))
    assert msg == "input 'x': axis T has size 16 in the circuit, found 12 (x.shape = (2, 12, 32))"


def test_inconsistent_free_size_names_the_axis(module):
    msg = _error(module, torch.randn(3, 16, 32), torch.randn(2, 16))
    assert "input 'gate': axis B has size 3 in input 'x'" in msg
    assert "found 2 (gate.shape = (2, 16))" in msg


def test_wrong_dtype_class_names_the_input(module):
    msg = _error(module, torch.zeros(2, 16, 32, dtype=torch.int64), torch.randn(2, 16))
    assert "input 'x'" in msg and "float32" in msg and "torch.int64" in msg
    msg = _error(module, torch.randn(2, 16, 32), torch.zeros(2, 16, dtype=torch.bool))
    assert "input 'gate'" in msg and "torch.bool" in msg


def test_other_float_dtypes_pass(module):
    m = copy.deepcopy(module).double()
    assert m(torch.randn(2, 16, 32).double(), torch.randn(2, 16).double()).dtype == torch.float64


@pytest.mark.parametrize("other", [torch.float64, torch.float16])
def test_a_float_input_of_another_dtype_than_the_module_names_both(module, other):
    """Unchecked, torch would promote silently here (float32 + float64 runs in float64,
    float16 + float32 in float32) and a linear layer would fail inside."""
    x, gate = torch.randn(2, 16, 32), torch.randn(2, 16)
    msg = _error(module, x.to(other), gate)
    assert msg == (
        f"input 'x': the module's parameters are torch.float32, found {other} (convert the "
        f"input with .to(torch.float32), the module with .to({other}), or run under "
        "torch.autocast)"
    )
    assert _error(module, x, gate.to(other)).startswith("input 'gate': the module's parameters")


def test_the_dtype_expected_follows_the_module(module):
    """A call that passed is not excused after the module changes dtype."""
    m = copy.deepcopy(module)
    x, gate = torch.randn(2, 16, 32), torch.randn(2, 16)
    m(x, gate)
    m.double()
    assert "the module's parameters are torch.float64, found torch.float32" in _error(m, x, gate)
    assert m(x.double(), gate.double()).dtype == torch.float64


def test_a_mixed_precision_module_takes_any_of_its_dtypes(module):
    m = copy.deepcopy(module)
    m.pos.half()
    m.register_buffer("scale", torch.ones(()))  # float32, beside the float16 parameter
    for dtype in (torch.float16, torch.float32):
        m(torch.randn(2, 16, 32, dtype=dtype), torch.randn(2, 16, dtype=dtype))
    assert "float16 or torch.float32, found torch.float64" in _error(
        m, torch.randn(2, 16, 32).double(), torch.randn(2, 16).double()
    )


def test_autocast_mixes_dtypes_without_the_check(module):
    x, gate = torch.randn(2, 16, 32), torch.randn(2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module(x.bfloat16(), gate.bfloat16())
    pos = dict(module.named_parameters())["pos.weight"]
    want = (x.bfloat16() + pos) * gate.bfloat16()[:, :, None]  # torch's own promotion
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want)
    _error(module, x.bfloat16(), gate.bfloat16())  # the same call outside autocast


def test_keyword_inputs_are_checked(module):
    msg = _error_kw(module, x=torch.randn(2, 16, 32), gate=torch.randn(2, 15))
    assert msg.startswith("input 'gate': axis T has size 16 in the circuit, found 15")


def _error_kw(module, **kwargs) -> str:
    with pytest.raises(InputError) as e:
        module(**kwargs)
    return str(e.value)


def test_not_a_tensor(module):
    msg = _error(module, [[0.0]], torch.randn(2, 16))
    assert msg == "input 'x': expected a tensor with axes B T D, found list"


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_check_too(module, how):
    m = copy.deepcopy(module) if how == "deepcopy" else pickle.loads(pickle.dumps(module))
    msg = _error(m, torch.randn(2, 12, 32), torch.randn(2, 12))
    assert "axis T has size 16" in msg


def test_tracing_and_torch_compile_still_work(module):
    x, gate = torch.randn(2, 16, 32), torch.randn(2, 16)
    traced = torch.fx.symbolic_trace(module)
    torch.testing.assert_close(traced(x, gate), module(x, gate))
    compiled = torch.compile(module, backend="eager")
    torch.testing.assert_close(compiled(x, gate), module(x, gate))
    with pytest.raises(InputError, match="axis T has size 16"):
        compiled(torch.randn(2, 12, 32), torch.randn(2, 12))


def test_a_free_multiple_is_checked_as_one():
    """unet's image sides are `4*M` and `4*N` (two poolings by 2): the module is not
    specialised to M, so any multiple of 4 runs, and a side that is not one is refused
    before torch.cat fails deep inside the skip connection."""
    from ncd import gallery

    m = ncd_compile(gallery.get("unet"))
    assert m(torch.randn(1, 3, 12, 8)).shape[-2:] == (12, 8)
    msg = _error(m, torch.randn(1, 3, 10, 8))
    assert msg == (
        "input 'image': axis Y has size 4*M in the circuit, a multiple of 4, found 10 "
        "(image.shape = (1, 3, 10, 8))"
    )


def _routing_circuit(back: bool):
    """Top-2 routing with a capacity, as a sparse mixture of experts dispatches tokens:
    gates scattered from each token's two choices onto the experts E, each expert's C = 3
    highest-gated tokens gathered along T (positions over C E), and, with `back`, the tokens
    scattered back along T (whose size the circuit then fixes: a scatter's new axis takes
    its size from the circuit). B stays free, and T where nothing is scattered onto it."""
    from ncd.circuits.builder import Builder

    b = Builder("routing_free", sizes={"B": 2, "T": 6, "D": 3, "E": 4})
    x = b.input("x", "B T D")
    top = b.topk(b.input("logits", "B T E"), "E", 2, into="k", name="top")
    gates = b.box("scatter", {"src": top["values"], "index": top["indices"]}, "gates",
                  axis="E", over="k")  # fmt: skip
    pick = b.topk(gates, "T", 3, into="C", name="pick")  # B C E
    xs = b.box("gather", {"x": x, "index": pick["indices"]}, "tokens", axis="T", into="C E")
    b.output("gates", gates)
    b.output("tokens", xs)
    if back:
        b.output("y", b.box("scatter", {"src": xs, "index": pick["indices"]}, "back",
                            axis="T", over="C E"))  # fmt: skip
    return b.build()


def _routing_reference(x, logits, back: bool):
    """The same routing with torch's indexing, entry by entry for the scatters."""
    vals, idx = logits.topk(2, dim=-1)
    gates = torch.zeros_like(logits)
    for j in range(2):
        gates += torch.nn.functional.one_hot(idx[..., j], logits.shape[-1]) * vals[..., j, None]
    pos = gates.topk(3, dim=1).indices  # B C E
    tokens = torch.stack([x[i][pos[i]] for i in range(x.shape[0])])  # B C E D
    if not back:
        return gates, tokens
    y = torch.zeros_like(x)
    for i, c, e in torch.cartesian_prod(*(torch.arange(n) for n in pos.shape)).tolist():
        y[i, pos[i, c, e]] += tokens[i, c, e]
    return gates, tokens, y


@pytest.mark.parametrize(
    "shape, back",
    [((2, 6), True), ((5, 6), True), ((1, 9), False)],
    ids=["compiled", "batch", "length"],
)
def test_gather_and_scatter_leave_the_batch_and_length_free(shape, back):
    """Routing compiled at B=2, T=6 runs at other batch sizes, and lengths, in the module and
    in the written file (the lowerings once read every size of their operands)."""
    from ncd.compiler import to_source

    from .helpers import load_source

    circuit = _routing_circuit(back)
    module = ncd_compile(circuit, dtype=torch.float64)
    written = load_source(to_source(circuit), "RoutingFree").to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    logits = torch.randn(*shape, 4, generator=gen, dtype=torch.float64)
    want = dict(zip(("gates", "tokens", "y"), _routing_reference(x, logits, back)))
    torch.testing.assert_close(module(x, logits), want)
    torch.testing.assert_close(written(x, logits), want)
