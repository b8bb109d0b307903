"""A RetNet block written with the Builder (not a gallery entry), against the paper's parallel
form written by hand: multi-scale retention with the fixed per-head decays
γ_h = 1 - 2^(-5-h), drawn from the positions along H, as linear attention's `decay` variant;
group norm over the heads, the swish gate, the output map, the residual, then an FFN.

Rotary angles are RoPE's θ_i = 10000^(-2i/K) over interleaved pairs (the official code's
`theta_shift` pairs, with its own frequencies); xPos's scaling is left out as that code does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncd.circuits.builder import Builder
from tests.compiler.helpers import matches_reference

H, K, V = 4, 8, 16


def retnet_block():
    b = Builder("retnet_block", sizes={"B": 2, "T": 16, "D": 32, "H": H, "K": K, "V": V, "F": 64})
    b.axis("E", "H*V")
    x = b.input("x", "B T D")
    h = b.layernorm(x, "D", name="ln1")
    with b.group("Multi-scale retention"):
        q = b.linear(h, "D", "H K", bias=False, name="wq", label="L^Q")
        k = b.linear(h, "D", "H K", bias=False, name="wk", label="L^K")
        q, k = (b.rotary(t, "T", "K", pairs="interleaved") for t in (q, k))
        v = b.linear(h, "D", "H V", bias=False, name="wv", label="L^V")
        five = b.box("constant", {}, value="5", dtype="float32", name="five")
        one = b.box("constant", {}, value="1", dtype="float32", name="one")
        e = b.scale(b.add(b.positions("H"), five), "-log(2)", name="exponent")
        g = b.unary(b.sub(one, b.unary(e, "exp")), "log", name="log_gamma", label="log γ")
        r = b.linear_attention(
            q, k, v, g=g, key="T", variant="decay", scale="K**-0.5", name="retention"
        )
        y = b.groupnorm(b.merge_axes(r, "H V", "E"), "E", "H", name="gn")
        gate = b.silu(b.linear(h, "D", "E", bias=False, name="wg", label="L^G"))
        o = b.linear(b.mul(gate, y), "E", "D", bias=False, name="wo", label="L^O")
    x1 = b.add(x, o, name="res1")
    with b.group("FFN"):
        f = b.gelu(b.linear(b.layernorm(x1, "D", name="ln2"), "D", "F", name="fc1"))
        f = b.linear(f, "F", "D", name="fc2")
    b.output("y", b.add(x1, f, name="res2"))
    return b.build()


def lin(p, name, x, *shape):
    y = x @ p[name + ".weight"].T + p.get(name + ".bias", 0)
    return y.view(*x.shape[:-1], *shape) if shape else y


def rope_interleaved(x, base=10000.0):  # [B T H K], pairs (2i, 2i+1)
    T, K_ = x.shape[1], x.shape[-1]
    theta = base ** (-torch.arange(0, K_, 2, dtype=x.dtype) / K_)
    angle = torch.arange(T, dtype=x.dtype)[:, None] * theta
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)


def reference(p, x):
    """Sun et al. 2023, eqs. (5)-(9): Retention(X) = (Q Kᵀ ⊙ D) V, D_nm = γ^(n-m) (n >= m)."""
    B, T, D = x.shape
    h = F.layer_norm(x, (D,), p["ln1.weight"], p["ln1.bias"])
    q, k = rope_interleaved(lin(p, "wq", h, H, K)), rope_interleaved(lin(p, "wk", h, H, K))
    gamma = 1 - 2.0 ** (-5 - torch.arange(H, dtype=x.dtype))
    n = torch.arange(T)
    lag = (n[:, None] - n[None]).to(x.dtype)
    decay = torch.where(lag >= 0, gamma[:, None, None] ** lag.clamp_min(0), 0.0)  # H T T
    s = torch.einsum("bthk,bshk->bhts", q, k) * K**-0.5 * decay
    r = torch.einsum("bhts,bshv->bthv", s, lin(p, "wv", h, H, V)).reshape(B * T, H * V)
    y = F.group_norm(r, H, p["gn.weight"], p["gn.bias"], 1e-5).view(B, T, H * V)
    x1 = x + lin(p, "wo", F.silu(lin(p, "wg", h)) * y)
    f = F.gelu(lin(p, "fc1", F.layer_norm(x1, (D,), p["ln2.weight"], p["ln2.bias"])))
    return x1 + lin(p, "fc2", f)


def test_retnet_block_matches_the_paper():
    matches_reference(retnet_block(), reference)
