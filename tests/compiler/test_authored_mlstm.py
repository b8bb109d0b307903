"""An xLSTM mLSTM cell written with the Builder (not a gallery entry) through linear
attention's scalar `decay` variant, against the paper's stabilised parallel form written by
hand: C_t = f_t C_{t-1} + i_t v_t k_tᵀ, n_t = f_t n_{t-1} + i_t k_t, h_t = o_t ⊙ C_t q_t /
max(|n_tᵀ q_t|, 1), f_t = σ(f̃_t) (its log the decay), i_t = exp(ĩ_t) folded into the keys.

The normaliser n_tᵀ q_t is the same recurrence over a value of ones: v gets one more column
of 1 (a concat along V) and the box's last column is the denominator. What differs from the
paper: no running maximum m_t. It cancels in exact arithmetic (the stabilised quotient is
the unstabilised one, max(|n q| e^(-m), e^(-m)) = e^(-m) max(|n q|, 1)), but without it
exp(ĩ) overflows where ĩ passes about 88 in float32 (11 in float16); the reference keeps m_t,
so the test checks that the two forms agree."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ncd.circuits.builder import Builder
from tests.compiler.helpers import matches_reference

H, K, V = 2, 8, 8


def mlstm():
    b = Builder("mlstm", sizes={"B": 2, "T": 16, "D": 32, "H": H, "K": K, "V": V})
    x = b.input("x", "B T D")
    q = b.linear(x, "D", "H K", bias=False, name="wq", label="L^Q")
    k = b.scale(b.linear(x, "D", "H K", bias=False, name="wk", label="L^K"), "K**-0.5")
    v = b.linear(x, "D", "H V", bias=False, name="wv", label="L^V")
    i_gate = b.unary(b.linear(x, "D", "H", name="wi", label="L^I"), "exp", name="i_gate")
    log_f = b.unary(b.linear(x, "D", "H", name="wf", label="L^F"), "logsigmoid", name="log_f")
    o = b.unary(b.linear(x, "D", "H V", name="wo", label="L^O"), "sigmoid", name="o_gate")
    one = b.box("constant", {}, value="1", dtype="float32", name="one")
    v1 = b.concat(v, one, axis="V", name="v_1")
    c = b.linear_attention(q, b.mul(k, i_gate), v1, g=log_f, key="T", variant="decay")
    parts = b.split(c, "V", ["V", 1], names=("num", "den"), name="cell")
    den = b.unary(b.index(parts["den"], "V", 0), "abs")
    den = b.box("clamp", {"x": den}, low=1.0, name="max_1")
    h = b.mul(o, b.div(parts["num"], den), name="h")
    b.output("y", b.linear(h, "H V", "D", bias=False, name="proj", label="L^P"))
    return b.build()


def lin(p, name, x, *shape):
    y = x @ p[name + ".weight"].T + p.get(name + ".bias", 0)
    return y.view(*x.shape[:-1], *shape) if shape else y


def reference(p, x):
    """Beck et al. 2024 (xLSTM), appendix: the mLSTM's stabilised parallel form."""
    q, k, v = lin(p, "wq", x, H, K), lin(p, "wk", x, H, K) / math.sqrt(K), lin(p, "wv", x, H, V)
    i_pre, f_pre = lin(p, "wi", x).transpose(1, 2), lin(p, "wf", x).transpose(1, 2)  # B H T
    cum = F.logsigmoid(f_pre).cumsum(-1)
    log_d = cum[..., :, None] - cum[..., None, :] + i_pre[..., None, :]
    T = x.shape[1]
    log_d = log_d.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -math.inf)
    m = log_d.amax(-1, keepdim=True)
    c = torch.einsum("bthk,bshk->bhts", q, k) * torch.exp(log_d - m)
    n = torch.maximum(c.sum(-1, keepdim=True).abs(), torch.exp(-m))
    h = torch.sigmoid(lin(p, "wo", x, H, V)) * torch.einsum("bhts,bshv->bthv", c / n, v)
    return lin(p, "proj", h.flatten(2))


def test_mlstm_matches_the_paper():
    matches_reference(mlstm(), reference)
