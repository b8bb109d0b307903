"""Inputs and comparisons shared by the compiler tests."""

from __future__ import annotations

import torch

from ncd.circuits.builder import Builder
from ncd.compiler.fused import example_offsets


def example_inputs(checked, seed=0, dtype=torch.float64, requires_grad=False):
    """Random inputs at the bound sizes: floats normal, integers below the smallest axis."""
    g = torch.Generator().manual_seed(seed)
    xs = []
    for i in checked.circuit.inputs:
        shape = [checked.number(a.size) for a in checked.inputs[i.name].axes]
        if i.dtype.startswith("int"):
            off = example_offsets(checked, i.name, g)  # a packing's offsets: valid ones
            xs.append(torch.randint(0, 5, shape, generator=g) if off is None else off)
        else:
            x = torch.randn(shape, generator=g, dtype=dtype)
            xs.append(x.requires_grad_(requires_grad))
    return xs


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
