"""Inputs and comparisons shared by the compiler tests."""

from __future__ import annotations

import torch

from ncd.circuits.builder import Builder
from ncd.compiler import compile as ncd_compile
from ncd.compiler import examples, from_torch


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


def rand64(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def same_import(model, *xs, rtol=1e-10, atol=1e-10):
    """The circuit imported from `model` (float64), after checking that its compiled module
    gives the model's outputs and the gradients of a random weighting of them with respect to
    the float inputs and to every parameter (found in the compiled module by its value)."""
    model = model.double().eval()
    circuit = from_torch(model, tuple(xs))
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    check_import(model, compiled, xs, rtol, atol)
    return circuit, compiled


def check_import(model, compiled, xs, rtol=1e-10, atol=1e-10):
    mine = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    theirs = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    got, want = compiled(*mine), model(*theirs)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    if not want.requires_grad:
        return
    w = rand64(*want.shape, seed=99)
    params = dict(model.named_parameters())
    held = dict(compiled.named_parameters())
    pairs = {}
    for name, p in params.items():  # the compiled parameter holding the same tensor
        match = [k for k, q in held.items() if q.shape == p.shape and torch.equal(q, p)]
        assert len(match) == 1, (name, match)
        pairs[name] = match[0]
    ins = [x for x in mine if x.requires_grad]
    wrt = [*ins, *(held[pairs[k]] for k in params)]
    g_got = torch.autograd.grad((got * w).sum(), wrt, allow_unused=True)
    ins = [x for x in theirs if x.requires_grad]
    wrt = [*ins, *params.values()]
    g_want = torch.autograd.grad((want * w).sum(), wrt, allow_unused=True)
    for a, b, t in zip(g_got, g_want, wrt, strict=True):  # (None: an input read for its shape)
        zero = torch.zeros_like(t)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b,
                                   rtol=rtol, atol=atol)  # fmt: skip


def _rel_err(a, b) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def matches_reference(circuit, reference, tol=1e-10) -> float:
    """`ncd.compile`'s module of `circuit` (float64, every parameter randomised) against
    `reference(params, *inputs)`, PyTorch written by hand from the paper that reads the
    module's parameters by name: the output, and the gradients of the float inputs and of
    every parameter, within `tol` relative to their largest entry. The standalone file
    `ncd compile` writes is run the same way with torch alone (ncd.ops hidden, so its own
    fallbacks run) and must agree too. Returns the largest relative error seen."""
    from unittest import mock

    from ncd.compiler import to_source
    from ncd.compiler.names import class_name

    checked = circuit.check()
    model = randomise(ncd_compile(circuit, dtype=torch.float64))
    xs = example_inputs(checked, requires_grad=True)
    out, grads, names = outputs_and_grads(model, xs, checked)
    (y,) = out.values()
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    ref = reference(params, *xs)
    floats = [x for x in xs if x.is_floating_point()]
    weight = torch.linspace(-1, 1, ref.numel(), dtype=ref.dtype).view(ref.shape)
    want = torch.autograd.grad((ref * weight).sum(), [*floats, *params.values()])
    want = dict(zip([f"input {i}" for i in range(len(floats))] + list(params), want))
    worst = _compare(y, grads, names, ref, want, tol, "ncd.compile")
    text = to_source(circuit)
    with mock.patch.dict("sys.modules", {"ncd.ops": None}):  # torch alone
        alone = load_source(text, class_name(circuit.name)).to(torch.float64)
    alone.load_state_dict(model.state_dict())
    out, grads, names = outputs_and_grads(alone, xs, checked)
    (y,) = out.values()
    return max(worst, _compare(y, grads, names, ref, want, tol, "the standalone file"))


def _compare(y, grads, names, ref, want, tol, what) -> float:
    inputs = [f"input {i}" for i in range(len(grads) - len(names))]
    errs = {"output": _rel_err(y, ref)}
    errs.update({n: _rel_err(g, want[n]) for n, g in zip(inputs + names, grads)})
    name, worst = max(errs.items(), key=lambda kv: kv[1])
    assert worst < tol, f"{what}: {name} has relative error {worst:.2e}"
    return worst
