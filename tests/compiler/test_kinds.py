"""Every kind lowers: compiled module, interpreter and generated source agree, box kind by box
kind, on small odd sizes in float64 (outputs and input gradients)."""

from __future__ import annotations

import pytest
import torch

from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, to_source
from ncd.compiler.names import class_name

from .helpers import as_dict, example_inputs, load_source, randomise
from .kinds_table import OPAQUE, TABLE


def _float_outs(d):
    return {k: v for k, v in d.items() if v.is_floating_point()}


@pytest.mark.parametrize("entry", sorted(TABLE))
def test_compiled_interpreted_and_source_agree(entry):
    circuit = TABLE[entry]()
    checked = circuit.check()
    model = randomise(ncd_compile(circuit, dtype=torch.float64, opaque=OPAQUE)).eval()
    xs = example_inputs(checked, requires_grad=True)
    got = as_dict(model(*xs), checked)
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    want = as_dict(interpret(circuit, xs, params, opaque=OPAQUE), checked)
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-10, msg=k)
    floats = [x for x in xs if x.is_floating_point()]
    outs = _float_outs(got)
    if floats and outs:
        gen = torch.Generator().manual_seed(3)
        w = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in outs.items()}

        def loss(d):
            return sum((torch.nan_to_num(d[k], neginf=0.0) * w[k]).sum() for k in w)

        g1 = torch.autograd.grad(loss(got), floats, allow_unused=True)
        g2 = torch.autograd.grad(loss(_float_outs(want)), floats, allow_unused=True)
        for a, b in zip(g1, g2, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    src = load_source(to_source(circuit), class_name(circuit.name), opaque=(
        OPAQUE if entry == "opaque" else None)).to(torch.float64).eval()  # fmt: skip
    src.load_state_dict(model.state_dict())
    again = as_dict(src(*xs), checked)
    for k in got:
        assert torch.equal(again[k], got[k]), k


def test_norms_in_training_update_running_statistics_alike():
    circuit = TABLE["channel_norms"]()
    checked = circuit.check()
    model = randomise(ncd_compile(circuit, dtype=torch.float64)).train()
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    xs = example_inputs(checked)
    got = model(*xs)
    want = interpret(circuit, xs, params, training=True)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-10)
    for k, v in model.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, params[k], rtol=1e-10, atol=1e-12, msg=k)


def test_dropout_drops_in_training_only():
    circuit = TABLE["dropout"]()
    model = ncd_compile(circuit)
    x = torch.ones(2, 5, 6)
    assert torch.equal(model.eval()(x), x)
    y = model.train()(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0} and (y == 0).any()


def test_dead_boxes_and_common_subexpressions_are_removed():
    from ncd.circuits.builder import Builder

    b = Builder("passes", sizes={"B": 2, "T": 3, "D": 4})
    x = b.input("x", "B T D")
    b.linear(x, "D", "D", name="unused")  # dead: no output depends on it
    s1 = b.softmax(x, "D", name="first")
    s2 = b.softmax(x, "D", name="again")  # the same computation as `first`
    b.output("y", b.add(s1, s2, name="sum"))
    c = b.build()
    m = ncd_compile(c, dtype=torch.float64)
    assert not list(m.parameters())
    calls = [n for n in m.graph.nodes if n.op == "call_function"]
    assert len(calls) == 2  # one softmax, one add
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), interpret(c, [x], {}))
    torch.testing.assert_close(m(x), 2 * torch.softmax(x, -1))
