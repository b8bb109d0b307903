"""Which boxes fuse: what `ncd.analyse` prices as a fused kernel is what `ncd.compile`'s rewrite
replaces by a fused box, for every gallery circuit and a table of attention and
linear-attention chains, and each rewritten chain computes what the unfused interpreter does.

Each side is read from its own result, not from the matcher they share: the compiled side
from the rewritten circuit (each fused box with the removed boxes that fed it) and the fx
graph's kernel calls, the priced side from the report's boxes (each box priced inside a
fused region names that region in its kernel).
"""

from __future__ import annotations

import re

import pytest
import torch

import ncd
from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret
from ncd.compiler.rewrites import apply_rewrites

from .helpers import as_dict, example_inputs, randomise

FUSED = ("attention", "linear_attention")
# the kernel a fused region's boxes name: ncd.ops' or, for softmax attention, PyTorch's SDPA
REGION = re.compile(
    r"^(?:ncd\.ops\.\w+|F\.scaled_dot_product_attention).*"
    r" \((attention|linear_attention)\[[^\]]*\]\)$"
)


def compiled_regions(circuit, sizes=None) -> set[tuple[str, str, frozenset[str]]]:
    """(circuit, fused kind, boxes it replaced) for each fused box the rewrite makes."""
    out: set[tuple[str, str, frozenset[str]]] = set()

    def walk(before, after, checked):
        was = {b.name: b for b in before.boxes}
        removed = set(was) - {b.name for b in after.boxes}
        for b in after.boxes:
            if b.kind not in FUSED or was[b.name].kind == b.kind:
                continue
            group, todo = {b.name}, [b.name]
            while todo:
                for src, _ in checked.sources[todo.pop()].values():
                    if src in removed and src not in group:
                        group.add(src)
                        todo.append(src)
            out.add((before.name, b.kind, frozenset(group)))
        for key, sub in before.subcircuits.items():
            walk(sub, after.subcircuits[key], sub.check())

    walk(circuit, apply_rewrites(circuit, sizes), circuit.check(sizes))
    return out


def priced_regions(circuit, sizes=None) -> tuple[set[tuple[str, str, frozenset[str]]], int]:
    """(circuit, fused kind, boxes) for each fused attention region the fused cost prices, and
    how many times the kernels run (a call's regions once per repetition)."""
    report = ncd.analyse(circuit, sizes=sizes, lowering="fused", symbolic=True)
    out: set[tuple[str, str, frozenset[str]]] = set()

    def walk(name, boxes) -> int:
        groups: dict[str, set[str]] = {}
        runs = 0
        for bc in boxes:
            if bc.sub is not None:
                runs += int(report.number(bc.repeat)) * walk(
                    bc.sub.checked.circuit.name, bc.sub.boxes
                )
            m = REGION.match(bc.kernel)
            if m:
                groups.setdefault(bc.kernel, set()).add(bc.name)
        for label, group in groups.items():
            out.add((name, REGION.match(label).group(1), frozenset(group)))
        return runs + len(groups)

    runs = walk(circuit.name, report.boxes)
    return out, runs


def fused_calls(circuit, rewrites=True) -> int:
    """The fused-kernel calls in the module `ncd.compile` builds (a repeated call's graph once
    per repetition)."""
    module = ncd_compile(circuit, rewrites=rewrites)
    graphs = [m.graph for m in module.modules() if isinstance(m, torch.fx.GraphModule)]
    names = [getattr(n.target, "__name__", "") for g in graphs for n in g.nodes]
    return sum(n in ("softmax_attention", "masked_attention", "linear_attention") for n in names)


def rewritten_calls(circuit) -> int:
    """The fused-kernel calls the rewrite adds (drawn fused boxes call them too)."""
    return fused_calls(circuit, rewrites=True) - fused_calls(circuit, rewrites=False)


# ---------------------------------------------------------------- the chains
SIZES = {"B": 2, "H": 2, "T": 5, "S": 5, "K": 3, "V": 4}


def _attention(steps=("scale",), *, before_softmax=None, after_softmax=None, **kw):
    """contract(q, k over K) → steps → softmax over S → [after] → contract(·, v over S)."""
    sizes = {**SIZES, **kw.pop("sizes", {})}
    b = Builder("chain", sizes=sizes)
    q = b.input("q", kw.pop("q", "B H T K"))
    k = b.input("k", kw.pop("k", "B H S K"))
    v = b.input("v", kw.pop("v", "B H S V"))
    s = b.contract(q, k, over=kw.pop("over", "K"), name="scores")
    for i, step in enumerate(steps):
        name = f"{step}{i}"
        if step == "scale":
            s = b.scale(s, kw.get("factor", "K**-0.5"), name=name)
        elif step == "negscale":
            s = b.scale(s, "-1", name=name)
        elif step == "mask":
            s = b.mask(s, "T", "S", name=name)
        elif step == "window":
            s = b.mask(s, "T", "S", pattern="window", window=2, name=name)
        elif step == "cast":
            s = b.cast(s, "float32", name=name)
        elif step == "cast16":
            s = b.cast(s, "float16", name=name)
            s = b.cast(s, "float32", name=f"back{i}")
        elif step == "dropout":
            s = b.dropout(s, 0.1, name=name)
        elif step == "output":  # a second reader of the wire so far
            b.output("scores", s)
    p = b.softmax(s, over="S", name="softmax")
    if after_softmax == "dropout":
        p = b.dropout(p, 0.1, name="drop")
    b.output("y", b.contract(p, v, over="S", name="mix"))
    return b.build()


def _two_summed_axes():
    b = Builder("chain", sizes={**SIZES, "J": 2})
    q, k = b.input("q", "B T K J"), b.input("k", "B S K J")
    v = b.input("v", "B S V")
    s = b.scale(b.contract(q, k, over="K J", name="scores"), "K**-0.5", name="scale")
    b.output("y", b.contract(b.softmax(s, over="S", name="softmax"), v, over="S", name="mix"))
    return b.build()


def _two_attentions():
    """Two chains sharing their inputs (the second causal): both fuse."""
    b = Builder("chain", sizes=SIZES)
    q, k, v = b.input("q", "B T K"), b.input("k", "B S K"), b.input("v", "B S V")
    for i in (1, 2):
        s = b.scale(b.contract(q, k, over="K", name=f"scores{i}"), "K**-0.5", name=f"scale{i}")
        if i == 2:
            s = b.mask(s, "T", "S", name="mask2")
        p = b.softmax(s, over="S", name=f"softmax{i}")
        b.output(f"y{i}", b.contract(p, v, over="S", name=f"mix{i}"))
    return b.build()


def _linear(*, normalise=True, reverse=False, scaled_state=False, raw_den=False):
    """φk vᵀ → running sum over T → read with φq [÷ φq · running sum of φk]."""
    b = Builder("chain", sizes={"B": 2, "H": 2, "T": 6, "K": 3, "V": 4})
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H T K"), b.input("v", "B H T V")
    fq = b.unary(q, "elu_plus_one", name="phi_q")
    fk = b.unary(k, "elu_plus_one", name="phi_k")
    state = b.scan(b.contract(fk, v, over="", name="outer"), "T", reverse=reverse, name="state")
    if scaled_state:
        state = b.scale(state, "0.5", name="decay")
    num = b.contract(fq, state, over="K", name="read")
    if not normalise:
        b.output("y", num)
        return b.build()
    z = b.scan(fk, "T", name="norm_state")
    den = b.contract(b.unary(q, "sigmoid", name="raw") if raw_den else fq, z, over="K", name="den")
    b.output("y", b.div(num, den, name="normalise"))
    return b.build()


# name: (circuit, the fused kinds expected, causal of the attention box if any)
CHAINS = {
    "plain": (lambda: _attention(("scale",)), ["attention"]),
    "multihead, q k v axes in other orders": (
        lambda: _attention(q="H B T K", k="H B K S", v="H B V S"),
        ["attention"],
    ),
    "causal (scale, then mask)": (lambda: _attention(("scale", "mask")), ["attention"]),
    "mask before scale": (lambda: _attention(("mask", "scale")), ["attention"]),
    "mask before a negative scale": (lambda: _attention(("mask", "negscale")), []),
    "cast (to the scores' type) before scale": (
        lambda: _attention(("cast", "scale")),
        ["attention"],
    ),
    "cast to float16 and back": (lambda: _attention(("cast16", "scale")), []),
    "two scales around a mask": (
        lambda: _attention(("scale", "mask", "scale"), factor="2"),
        ["attention"],
    ),
    "dropout after scale": (lambda: _attention(("scale", "dropout")), []),
    "dropout after softmax": (lambda: _attention(("scale",), after_softmax="dropout"), []),
    "scale missing": (lambda: _attention(()), ["attention"]),
    "window mask": (lambda: _attention(("scale", "window")), []),
    "causal mask, T != S": (lambda: _attention(("scale", "mask"), sizes={"S": 7}), []),
    "two masks": (lambda: _attention(("mask", "scale", "mask")), []),
    "two summed axes": (_two_summed_axes, []),
    "inner wire with a second reader": (lambda: _attention(("scale", "output")), []),
    "two chains sharing q, k, v": (_two_attentions, ["attention", "attention"]),
    "linear attention, normalised": (_linear, ["linear_attention"]),
    "linear attention, no normaliser": (
        lambda: _linear(normalise=False),
        ["linear_attention"],
    ),
    "linear attention, normaliser of another query": (
        lambda: _linear(raw_den=True),
        ["linear_attention"],
    ),
    "linear attention, reverse scan": (lambda: _linear(reverse=True), []),
    "linear attention, state scaled before the read": (lambda: _linear(scaled_state=True), []),
}


@pytest.mark.parametrize("name", gallery.names())
def test_gallery_priced_fused_is_compiled_fused(name):
    circuit = gallery.get(name)
    compiled = compiled_regions(circuit)
    priced, runs = priced_regions(circuit)
    assert priced == compiled
    assert rewritten_calls(circuit) == runs


def test_gallery_has_fused_regions_to_compare():
    """The comparison above would pass vacuously if nothing fused."""
    kinds = {k for n in gallery.names() for _, k, _ in compiled_regions(gallery.get(n))}
    assert kinds == set(FUSED)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_priced_fused_is_compiled_fused(name):
    build, want = CHAINS[name]
    circuit = build()
    compiled = compiled_regions(circuit)
    assert sorted(k for _, k, _ in compiled) == sorted(want)
    priced, runs = priced_regions(circuit)
    assert priced == compiled
    assert rewritten_calls(circuit) == runs == len(compiled)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_compiled_fused_equals_the_interpreter(name):
    """Rewrites on: outputs and gradients of the unfused interpreter (float32: a cast to
    float32 is exact only there; dropout off, in eval mode; a negative scale after a -inf
    mask gives NaN, which the fused kernel would not)."""
    circuit = CHAINS[name][0]()
    checked = circuit.check()
    fused = randomise(ncd_compile(circuit, rewrites=True)).eval()
    xs = example_inputs(checked, dtype=torch.float32, requires_grad=True)
    got = as_dict(fused(*xs), checked)
    want = as_dict(interpret(circuit, xs, fused.state_dict()), checked)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, equal_nan=True)
    gen = torch.Generator().manual_seed(3)
    weights = {k: torch.randn(w.shape, generator=gen) for k, w in want.items()}
    g_got = torch.autograd.grad(sum((got[k] * w).sum() for k, w in weights.items()), xs)
    g_want = torch.autograd.grad(sum((want[k] * w).sum() for k, w in weights.items()), xs)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_mask_before_scale_runs_causal_with_the_scale():
    after = apply_rewrites(_attention(("mask", "scale")))
    (box,) = after.boxes
    assert (box.kind, box.causal, box.scale) == ("attention", True, "K**-0.5")
    after = apply_rewrites(_attention(("scale", "mask", "scale"), factor="2"))
    assert after.boxes[0].scale == "(2)*(2)"
