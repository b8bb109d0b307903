"""A Mixture-of-Depths routed FFN written with the Builder (not a gallery entry), against the
paper's routing written by hand: router weights per token, the top k tokens of each sequence
gathered, through the FFN, scaled by their router weight (the gradient's path to the router)
and scattered back onto the residual; the other tokens pass by. The capacity is a share of
the tokens, `k = T/4`, as the paper sets it (12.5% there): a size that follows T."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

import ncd
from ncd.circuits.builder import Builder
from tests.compiler.helpers import matches_reference


def mod_ffn(T=16):
    b = Builder("mod_ffn", sizes={"B": 2, "T": T, "D": 32, "F": 64})
    x = b.input("x", "B T D")
    with b.group("Router"):
        top = b.topk(b.linear(x, "D", "", bias=False, name="router", label="L^R"), "T", "T/4")
    xs = b.box("gather", {"x": x, "index": top["indices"]}, axis="T", into="k", name="take")
    with b.group("FFN"):
        f = b.gelu(b.linear(b.layernorm(xs, "D", name="ln"), "D", "F", name="fc1"))
        f = b.linear(f, "F", "D", name="fc2")
    w = b.mul(f, top["values"], name="weigh")
    back = b.box("scatter", {"src": w, "index": top["indices"]}, axis="T", over="k", name="put")
    b.output("y", b.add(x, back, name="res"))
    return b.build()


def lin(p, name, x):
    return x @ p[name + ".weight"].T + p.get(name + ".bias", 0)


def reference(p, x):
    """Raposo et al. 2024 (Mixture-of-Depths), eq. (1): x + r_i f(x̃_i) on the top-k tokens."""
    T, D = x.shape[1:]
    weight, idx = lin(p, "router", x)[..., 0].topk(T // 4, dim=1)
    idx = idx[..., None].expand(-1, -1, D)
    h = F.layer_norm(x.gather(1, idx), (D,), p["ln.weight"], p["ln.bias"])
    f = lin(p, "fc2", F.gelu(lin(p, "fc1", h)))
    return x.scatter_add(1, idx, f * weight[..., None])


@pytest.mark.parametrize("T", [16, 32])
def test_mod_ffn_matches_the_paper(T):
    matches_reference(mod_ffn(T), reference)


def test_the_capacity_is_drawn_and_priced_as_a_share_of_the_tokens():
    c = mod_ffn()
    assert "k=T/4" in ncd.render(c)
    # fc1 runs on the B·T/4 tokens kept: 2·D·F FLOPs each, and F for its bias
    fc1 = next(b for b in ncd.analyse(c).boxes if b.name == "fc1")
    assert str(fc1.flops) == "B*D*F*T/2 + B*F*T/4"
