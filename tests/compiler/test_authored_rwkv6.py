"""An RWKV-6 (Finch) time mix written with the Builder (not a gallery entry), against the
paper's recurrence written by hand, token by token: the token shift x_{t-1} (a slice and a
zero joined along T), the data-dependent lerps through a low-rank map, the per-channel decay
w_t = exp(-exp(d_t)) of a low-rank map, the WKV with its bonus u for the current token, group
norm over the heads and the SiLU gate.

RWKV reads the state before the current token, o_t = r_t (S_{t-1} + diag(u) k_tᵀ v_t), with
S_t = diag(w_t) S_{t-1} + k_tᵀ v_t, the GLA recurrence, whose output o_t = q_t S_t includes
token t. So the GLA box is given the next token's r as its query and its output is shifted
back one token (exact: nothing is approximated); the bonus is its own contraction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncd.circuits.builder import Builder
from tests.compiler.helpers import matches_reference

H, K, R, EPS = 2, 16, 8, 64e-5


def shift(b, x, name, ahead=False):
    """x_{t-1} (x_{t+1} when `ahead`) along T, zero past the end it comes from."""
    zero = b.box("constant", {}, value="0", dtype="float32", name=f"{name}_zero")
    if ahead:
        return b.concat(b.slice(x, "T", 1), zero, axis="T", name=name)
    return b.concat(zero, b.slice(x, "T", 0, "T-1"), axis="T", name=name)


def rwkv6_time_mix():
    sizes = {"B": 2, "T": 16, "H": H, "K": K, "V": K, "M": 5, "R": R, "Q": 8}
    b = Builder("rwkv6_time_mix", sizes=sizes, axes={"D": "H*K", "E": "H*V"})
    x = b.input("x", "B T D")
    with b.group("Token shift (ddlerp)"):
        xx = b.sub(shift(b, x, "x_prev"), x, name="xx")
        xxx = b.add(x, b.mul(xx, b.param("D", name="maa_x", label="μ_x")), name="xxx")
        lo = b.unary(b.linear(xxx, "D", "M R", bias=False, name="maa_w1", label="A"), "tanh")
        m = b.contract(lo, b.param("M R D", name="maa_w2", label="B"), over="R", name="lora")
        mix = b.add(b.param("M D", name="maa", label="μ"), m, name="mu")
        xm = b.add(x, b.mul(xx, mix), name="ddlerp")
        xw, xk, xv, xr, xg = (b.index(xm, "M", i, name=f"x_{n}") for i, n in enumerate("wkvrg"))
    r = b.linear(xr, "D", "H K", bias=False, name="wr", label="L^R")
    k = b.linear(xk, "D", "H K", bias=False, name="wk", label="L^K")
    v = b.linear(xv, "D", "H V", bias=False, name="wv", label="L^V")
    g = b.silu(b.linear(xg, "D", "E", bias=False, name="wg", label="L^G"))
    with b.group("Data-dependent decay"):
        d = b.unary(b.linear(xw, "D", "Q", bias=False, name="decay_w1"), "tanh")
        d = b.linear(d, "Q", "H K", bias=False, name="decay_w2")
        d = b.add(d, b.param("H K", name="time_decay", label="λ_w"), name="d")
        logw = b.unary(b.unary(d, "exp"), "neg", name="log_w", label="log w")
    with b.group("WKV"):
        r_next = shift(b, r, "r_next", ahead=True)
        wkv = b.linear_attention(r_next, k, v, g=logw, key="T", variant="gla", name="wkv")
        u = b.param("H K", name="u", label="u")
        bonus = b.mul(b.contract(r, u, k, over="K", name="ruk"), v, name="bonus")
        o = b.add(shift(b, wkv, "wkv_prev"), bonus, name="o")
    o = b.merge_axes(o, "H V", "E")
    y = b.groupnorm(o, "E", "H", name="ln_x", eps=EPS)
    b.output("y", b.linear(b.mul(y, g), "E", "D", bias=False, name="wo", label="L^O"))
    return b.build()


def lin(p, name, x, *shape):
    y = x @ p[name + ".weight"].T
    return y.view(*x.shape[:-1], *shape) if shape else y


def reference(p, x):
    """Peng et al. 2024 (Eagle and Finch), section 4: Finch's time mixing."""
    B, T, D = x.shape
    xx = F.pad(x, (0, 0, 1, 0))[:, :-1] - x
    lo = torch.tanh(lin(p, "maa_w1", x + xx * p["maa_x.weight"], 5, R))
    m = p["maa.weight"] + torch.einsum("btmr,mrd->btmd", lo, p["maa_w2.weight"])
    xw, xk, xv, xr, xg = (x[:, :, None] + xx[:, :, None] * m).unbind(2)
    r, k, v = lin(p, "wr", xr, H, K), lin(p, "wk", xk, H, K), lin(p, "wv", xv, H, K)
    d = p["time_decay.weight"].flatten() + lin(p, "decay_w2", torch.tanh(lin(p, "decay_w1", xw)))
    w = torch.exp(-torch.exp(d)).view(B, T, H, K, 1)
    u = p["u.weight"][..., None]
    state, out = x.new_zeros(B, H, K, K), []
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", r[:, t], state + u * kv))
        state = w[:, t] * state + kv
    o = torch.stack(out, 1).reshape(B * T, D)
    y = F.group_norm(o, H, p["ln_x.weight"], p["ln_x.bias"], EPS).view(B, T, D)
    return lin(p, "wo", y * F.silu(lin(p, "wg", xg)))


def test_rwkv6_time_mix_matches_the_paper():
    matches_reference(rwkv6_time_mix(), reference)
