"""Inputs and comparisons shared by the compiler tests."""

from __future__ import annotations

import torch

from ncd.circuits.builder import Builder
from ncd.compiler import compile as ncd_compile
from ncd.compiler import examples


def example_inputs(checked, seed=0, dtype=torch.float64, requires_grad=False):
    """The compiler's example inputs (compiler/examples.py), in float64 unless told."""
    return examples.example_inputs(checked, seed, dtype=dtype, requires_grad=requires_grad)


def as_dict(y, checked):
    return y if isinstance(y, dict) else {next(iter(checked.outputs)): y}


def randomise(module, seed=1):
    """Non-trivial values for every parameter (norm weights start at 1, biases at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 + 0.1)
    return module


def load_source(text: str, class_name: str, opaque=None):
    """Run a generated file in a fresh namespace; an instance of its class."""
    ns: dict = {"__name__": "ncd_generated"}
    exec(compile(text, "<generated>", "exec", dont_inherit=True), ns)  # our generated code
    cls = ns[class_name]
    return cls(opaque=opaque) if opaque is not None else cls()


def positions_circuit():
    """y[b, t, d] = (x[b, t, d] + pos[t, d]) * gate[b, t]: the learned `pos` fixes T and D,
    nothing fixes B (the input-check tests' circuit)."""
    b = Builder("positions", sizes={"B": 2, "T": 16, "D": 32})
    x, gate = b.input("x", "B T D"), b.input("gate", "B T")
    pos = b.param("T D", name="pos")
    b.output("y", b.mul(b.add(x, pos, name="shift"), gate, name="gated"))
    return b.build()


def outputs_and_grads(model, xs, checked):
    out = as_dict(model(*xs), checked)
    loss = sum(
        (v * torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view(v.shape)).sum()
        for v in out.values()
    )
    floats = [x for x in xs if x.is_floating_point()]
    grads = torch.autograd.grad(loss, [*floats, *model.parameters()])
    return out, grads, [n for n, _ in model.named_parameters()]


def same_with_rewrites(circuit, rewrites, patch=None, exact=True, **options):
    """The compiled circuit without rewrites and with `rewrites` (compiled after `patch()`,
    which may choose another lowering, and with compile `options`), one state_dict, one
    input: outputs and gradients (inputs and parameters) equal bit for bit (`exact`), else to
    float64 rounding. Returns the rewritten module."""

    def eq(x, y):
        if exact:
            return torch.equal(x, y)
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
        return True

    checked = circuit.check()
    plain = randomise(ncd_compile(circuit, dtype=torch.float64, rewrites=False))
    if patch is not None:
        patch()
    fused = ncd_compile(circuit, dtype=torch.float64, rewrites=rewrites, **options)
    fused.load_state_dict(plain.state_dict())
    assert set(fused.state_dict()) == set(plain.state_dict())
    xs = example_inputs(checked, requires_grad=True)
    a, ga, na = outputs_and_grads(plain, xs, checked)
    b, gb, nb = outputs_and_grads(fused, xs, checked)
    assert a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)
    k = sum(x.is_floating_point() for x in xs)
    order = dict(zip(nb, gb[k:]))
    for x, y in zip(ga[:k], gb[:k]):
        assert eq(x, y)
    for n, g in zip(na, ga[k:]):
        assert eq(g, order[n]), n
    return fused
