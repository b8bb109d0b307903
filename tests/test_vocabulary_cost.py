"""On a one-box circuit of each kind (tests/vocabulary.py) the cost rule agrees with the
compiled module: matmul FLOPs with FlopCounterMode, kept bytes with saved-tensor hooks (fused
kinds excepted: on the CPU they run a reference, not the kernel), the model's "cpu" profile."""

from __future__ import annotations

import pytest

import ncd
from ncd.circuits.kinds import KINDS, UNARY
from ncd.compiler.cost.rules import UNARY_FLOPS, UNARY_SAVES

from .cost import measure
from .vocabulary import one_box

FUSED = {"attention", "linear_attention"}


def test_every_unary_function_has_a_cost():
    fns = sorted(set(UNARY) - set(UNARY_FLOPS) | set(UNARY) - set(UNARY_SAVES))
    assert not fns, "unary functions without FLOPs or kept tensors: " + " ".join(fns)


def _case(kind):
    c = one_box(kind)
    sizes = dict.fromkeys(c.check().symbols(), 4)
    if kind == "scale":
        sizes["K"] = 4  # named only in the factor K**-0.5
    return c, sizes


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cost_rule_matches_the_compiled_box(kind):
    c, sizes = _case(kind)
    report = ncd.analyse(c, sizes=sizes, lowering="unfused", device="cpu")
    n = report.numbers
    assert n["flops"] is not None and n["flops"] >= 0
    assert n["peak_bytes"] >= n["activation_bytes"]
    if kind in FUSED or kind == "opaque":
        return  # fused: the kernel's formulas (ops/*/cost.py); opaque: stated on the box
    module = ncd.compile(c, sizes=sizes)
    xs = measure.make_inputs(c, sizes)
    fwd, bwd, _ = measure.flop_counts(module, xs)
    assert fwd == n["mm_flops"], (kind, fwd, n["mm_flops"])
    want_bwd = n["mm_flops_backward"]
    if kind == "short_conv":
        # FlopCounterMode prices a grouped convolution's input gradient as if ungrouped (it
        # counts the forward's products C times for C depthwise channels); the rule counts
        # the products done.
        want_bwd += (sizes["E"] - 1) * n["mm_flops"]
    assert bwd == want_bwd, (kind, bwd, n["mm_flops_backward"])
    kept, tensors = measure.saved_bytes(module, measure.make_inputs(c, sizes))
    assert abs(kept - n["activation_bytes"]) <= 0.1 * max(kept, 1), (kind, kept, tensors, n)
