"""Equivalence of the compiler's outputs with things it did not produce.

- the attention entries of the gallery against hand-written PyTorch (references.py), outputs
  and gradients in float64, weights mapped by name;
- every gallery circuit: compiled module = interpreter = generated source, and pattern
  rewrites on = off (the fused ops of ncd.ops run their references on the CPU);
- a few optimiser steps lower the loss on a synthetic task.
"""

from __future__ import annotations

import pytest
import torch

from ncd import gallery
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, to_source
from ncd.compiler.names import class_name
from ncd.compiler.rewrites import apply_rewrites

from .helpers import as_dict, example_inputs, load_source, randomise
from .references import REFERENCES


def _grads(outs, leaves, seed=5):
    gen = torch.Generator().manual_seed(seed)
    loss = sum(
        (v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum() for v in outs.values()
    )
    return torch.autograd.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_hand_written_reference(name):
    circuit = gallery.get(name)
    checked = circuit.check()
    model = randomise(ncd_compile(circuit, dtype=torch.float64))
    params = dict(model.named_parameters())
    xs = example_inputs(checked, requires_grad=True)
    got = as_dict(model(*xs), checked)
    names = [i.name for i in circuit.inputs]
    want = REFERENCES[name](params, **dict(zip(names, xs, strict=True)))
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-10)
    leaves = [x for x in xs if x.is_floating_point()] + list(params.values())
    for a, b in zip(_grads(got, leaves), _grads(want, leaves), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", gallery.names())
def test_compiled_interpreter_source_and_rewrites_agree(name):
    circuit = gallery.get(name)
    checked = circuit.check()
    model = randomise(ncd_compile(circuit, dtype=torch.float64)).eval()
    xs = example_inputs(checked, requires_grad=True)
    torch.manual_seed(0)  # a sampled backward (linear's wtacrs) draws alike in both runs
    got = as_dict(model(*xs), checked)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    want = as_dict(interpret(circuit, xs, state), checked)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-10)
    src = load_source(to_source(circuit), class_name(circuit.name)).to(torch.float64).eval()
    src.load_state_dict(model.state_dict())
    again = as_dict(src(*xs), checked)
    for k in got:
        assert torch.equal(again[k], got[k])
    fused = ncd_compile(circuit, dtype=torch.float64, rewrites=True).eval()
    fused.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    res = as_dict(fused(*xs), checked)
    for k in got:  # the linear-attention kernel adds 1e-10 to its normaliser
        torch.testing.assert_close(res[k], got[k], rtol=1e-8, atol=1e-9)
    leaves = [x for x in xs if x.is_floating_point()] + list(fused.parameters())
    if not leaves:  # integer inference (ivit_block): nothing to differentiate
        return
    g_fused = _grads(res, leaves)
    leaves = [x for x in xs if x.is_floating_point()] + list(model.parameters())
    for a, b in zip(g_fused, _grads(got, leaves), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


REWRITTEN = {
    "attention": "attention",
    "multihead_attention": "attention",
    "transformer_block": "attention",
    "vision_transformer": "attention",
    "linear_attention": "linear_attention",
}


@pytest.mark.parametrize("name", sorted(REWRITTEN))
def test_rewrites_find_the_fused_pattern(name):
    """The equivalence above would pass vacuously if nothing were rewritten."""
    before = gallery.get(name)
    after = apply_rewrites(before)

    def kinds(c):
        out = [b.kind for b in c.boxes]
        for s in c.subcircuits.values():
            out += kinds(s)
        return out

    assert REWRITTEN[name] in kinds(after) and REWRITTEN[name] not in kinds(before)
    assert len(kinds(after)) < len(kinds(before))
    fused = ncd_compile(before, rewrites=True)
    targets = {getattr(n.target, "__name__", "") for n in fused.graph.nodes}
    sub = [m for m in fused.modules() if isinstance(m, torch.fx.GraphModule)]
    for m in sub:
        targets |= {getattr(n.target, "__name__", "") for n in m.graph.nodes}
    assert {"softmax_attention", "linear_attention"} & targets


def test_masked_attention_is_rewritten_causal():
    from ncd.circuits.builder import Builder

    b = Builder("causal", sizes={"B": 2, "T": 7, "S": 7, "K": 4, "V": 3})
    q, k, v = b.input("q", "B T K"), b.input("k", "B S K"), b.input("v", "B S V")
    s = b.mask(b.scale(b.contract(q, k, over="K"), "K**-0.5"), "T", "S")
    b.output("y", b.contract(b.softmax(s, over="S"), v, over="S"))
    c = b.build()
    after = apply_rewrites(c)
    assert [(x.kind, x.causal) for x in after.boxes] == [("attention", True)]
    xs = example_inputs(c.check())
    torch.testing.assert_close(
        ncd_compile(c, dtype=torch.float64, rewrites=True)(*xs),
        ncd_compile(c, dtype=torch.float64, rewrites=False)(*xs),
    )


@pytest.mark.parametrize("name", gallery.names())
def test_training_lowers_the_loss(name):
    """Synthetic task: match a teacher, the same circuit with other random weights."""
    circuit = gallery.get(name)
    checked = circuit.check()
    torch.manual_seed(0)
    model = ncd_compile(circuit).train()
    teacher = randomise(ncd_compile(circuit), seed=7).eval()
    xs = example_inputs(checked, dtype=torch.float32)
    with torch.no_grad():
        target = as_dict(teacher(*xs), checked)
    params = list(model.parameters())
    if not params:  # parameter-free circuits: learn the inputs instead
        xs = [x.requires_grad_(x.is_floating_point()) for x in xs]
        params = [x for x in xs if x.is_floating_point()]
        if not params:
            pytest.skip("inference only: integer arithmetic, no parameter or float input")
        with torch.no_grad():
            target = {k: v * 0.5 for k, v in target.items()}
    opt = torch.optim.Adam(params, lr=1e-2)

    def loss():
        out = as_dict(model(*xs), checked)
        return sum(((out[k] - target[k]) ** 2).mean() for k in out)

    first = loss().item()
    for _ in range(10):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < 0.95 * first


def test_heads_wider_than_the_kernels_take_stay_in_pytorch():
    c = gallery.get("attention")
    m = ncd_compile(c, sizes={"K": 300}, rewrites=True)
    targets = {getattr(n.target, "__module__", "") for n in m.graph.nodes}
    assert not any(t.startswith("ncd.ops") for t in targets)
    xs = example_inputs(c.check({"K": 300}), dtype=torch.float32)
    torch.testing.assert_close(m(*xs), ncd_compile(c, sizes={"K": 300})(*xs))


def test_linear_attention_heads_wider_than_its_kernels_take_run_the_chunked_form():
    """K = 192 is within the softmax kernels' widths but over the linear-attention kernels'
    (128): the op is called with backend="reference" (its chunked PyTorch form on every
    device), and agrees with the uncompiled maths."""
    from ncd import ops

    c = gallery.get("linear_attention")
    m = ncd_compile(c, sizes={"K": 192}, rewrites=True)
    calls = [n for n in m.graph.nodes if n.target is ops.linear_attention]
    assert calls and all(n.kwargs.get("backend") == "reference" for n in calls)
    narrow = ncd_compile(c, sizes={"K": 64}, rewrites=True)
    calls = [n for n in narrow.graph.nodes if n.target is ops.linear_attention]
    assert calls and all("backend" not in n.kwargs for n in calls)
    xs = example_inputs(c.check({"K": 192}), dtype=torch.float32)
    torch.testing.assert_close(m(*xs), ncd_compile(c, sizes={"K": 192})(*xs))
