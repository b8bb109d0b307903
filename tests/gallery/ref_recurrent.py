"""Hand-written PyTorch references for the gated / linear-recurrence entries of the gallery,
written from the papers' equations (token by token where the paper defines a recurrence),
not from the circuits.

Each takes the parameters by their circuit names (a linear map's as nn.Linear's: D -> (H, K)
has weight [H*K, D], its output channels head-major; a depthwise convolution over T has weight
[C, 1, width]) and the inputs by name, and returns the outputs by name. Layout inside:
[B, T, ...].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5  # the norms' epsilon (inside the square root, as in RMSNorm and LayerNorm)
HEADS = 2  # the heads of the gallery's TransNormerLLM, Lightning and GLA blocks


def _lin(x, w, b=None, n_in=1, heads=None):
    """nn.Linear's x Wᵀ + b (W [out, in]) on x's `n_in` trailing axes taken as one; the
    output split into `heads` heads (head-major channels) where given."""
    y = F.linear(x.flatten(x.dim() - n_in), w, b)
    return y if heads is None else _heads(y, heads)


def _rms(x, dims, weight=None):
    """x / sqrt(mean over the last `dims` axes of x² + eps) (times a weight)."""
    axes = tuple(range(-dims, 0))
    y = x * torch.rsqrt(x.pow(2).mean(axes, keepdim=True) + EPS)
    return y if weight is None else y * weight


def _causal_conv_silu(x, w, b=None):
    """SiLU of the causal depthwise convolution y_t = Σ_j w_j x_{t-W+1+j} (zeros before the
    start) of x [B, T, C] with w [C, 1, W]."""
    y = F.conv1d(F.pad(x.transpose(1, 2), (w.shape[-1] - 1, 0)), w, b, groups=x.shape[-1])
    return F.silu(y.transpose(1, 2))


def _heads(x, h):
    """[B, T, H*F] -> [B, T, H, F] (head-major channels)."""
    return x.reshape(*x.shape[:-1], h, x.shape[-1] // h)


# ---------------------------------------------------------------- TransNormerLLM / TNL
def _srms(x, dims=1):
    """SimpleRMSNorm (Lightning Attention paper eq. 14): x / (‖x‖₂ / √d)."""
    return _rms(x, dims)


def tnl_layer(p, x, rate, prefix="", heads=HEADS):
    """One TransNormerLLM layer. Token mixing (eq. 11): O = SRMSNorm(Lightning(Q, K, V)) ⊙ U
    with Q = Swish(X W_q), K = Swish(X W_k), V = X W_v, U = X W_u, the decayed causal linear
    attention o_t = Σ_{s<=t} λ^{t-s} (q_t·k_s) v_s run as its recurrence kv_t = λ kv_{t-1} +
    k_tᵀ v_t, o_t = q_t kv_t, λ_h = exp(-rate 2^(-8h/H)) (eq. 10 with the ALiBi rate);
    channel mixing (eq. 12) SGLU O = [(X W_v) ⊙ (X W_u)] W_o; pre-norm SRMSNorm both."""
    w = {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}
    h = _srms(x)
    q = F.silu(_lin(h, w["q_proj.weight"], heads=heads))
    k = F.silu(_lin(h, w["k_proj.weight"], heads=heads))
    v, u = (_lin(h, w[f"{n}.weight"], heads=heads) for n in ("v_proj", "u_proj"))  # [B T H V]
    B, T, H, K = q.shape
    lam = torch.exp(-rate * 2.0 ** (-8.0 * torch.arange(1, H + 1, dtype=x.dtype) / H))
    kv = x.new_zeros(B, H, K, v.shape[-1])
    outs = []
    for t in range(T):
        kv = lam[:, None, None] * kv + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], kv))
    o = _srms(torch.stack(outs, 1), dims=2) * u  # SRMSNorm over all heads' channels
    x = x + _lin(o, w["o_proj.weight"], n_in=2)
    h = _srms(x)
    glu = _lin(h, w["glu_v.weight"]) * _lin(h, w["glu_u.weight"])
    return x + _lin(glu, w["glu_o.weight"])


def transnormer_block(p, x, layer=1, layers=4):
    return {"y": tnl_layer(p, x, 1.0 - layer / layers)}


def lightning_block(p, x):
    for layer, rate in ((1, 0.5), (2, 0.0)):  # 1 - l/L for L = 2
        x = tnl_layer(p, x, rate, prefix=f"l{layer}_")
    return {"y": x}


# ---------------------------------------------------------------- GLA
def gla_block(p, x, tau=16.0, heads=HEADS):
    """GLA §4.1/§4.4: α_t = σ(x_t W_α1 W_α2 + b_α)^{1/τ}; S_t = (α_tᵀ 1) ⊙ S_{t-1} + k_tᵀ v_t,
    o_t = q_t S_t per head; O' = LN(O^h); Y = (Swish(X W_r + b_r) ⊙ O') W_O; + x."""
    h = F.rms_norm(x, (x.shape[-1],), p["norm.weight"], eps=EPS)
    q, k, v = (_lin(h, p[f"{n}.weight"], heads=heads) for n in ("q_proj", "k_proj", "v_proj"))
    low = _lin(h, p["g_down.weight"])
    alpha = torch.sigmoid(_lin(low, p["g_up.weight"], p["g_up.bias"], heads=heads)) ** (1.0 / tau)
    B, T, H, K = q.shape
    S = x.new_zeros(B, H, K, v.shape[-1])
    outs = []
    for t in range(T):
        S = alpha[:, t, :, :, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, 1)
    o = F.layer_norm(o, (o.shape[-1],), p["out_norm.weight"], p["out_norm.bias"], eps=EPS)
    r = F.silu(_lin(h, p["r_proj.weight"], p["r_proj.bias"], heads=heads))
    return {"y": x + _lin(r * o, p["o_proj.weight"], n_in=2)}


# ---------------------------------------------------------------- delta rules
def _delta_inputs(p, h, heads):
    """q, k, v through their short convolutions and SiLU; q and k L2-normalised per head."""
    q = _heads(_causal_conv_silu(h @ p["q_proj.weight"].T, p["q_conv.weight"]), heads)
    k = _heads(_causal_conv_silu(h @ p["k_proj.weight"].T, p["k_conv.weight"]), heads)
    v = _heads(_causal_conv_silu(h @ p["v_proj.weight"].T, p["v_conv.weight"]), heads)
    return F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6), v


def _gated_delta(q, k, v, alpha, beta):
    """S_t = S_{t-1} (α_t (I - β_t k_t k_tᵀ)) + β_t v_t k_tᵀ, o_t = S_t q_t, with S [V, K]
    (the papers' column form); α = 1 is DeltaNet's S_t = S_{t-1} - β_t (S_{t-1} k_t - v_t) k_tᵀ."""
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, v.shape[-1], K)
    eye = torch.eye(K, dtype=q.dtype)
    outs = []
    for t in range(T):
        kt, bt, at = k[:, t], beta[:, t, :, None, None], alpha[:, t, :, None, None]
        S = S @ (at * (eye - bt * kt[..., :, None] * kt[..., None, :]))
        S = S + bt * v[:, t, :, :, None] * kt[..., None, :]
        outs.append((S @ q[:, t, :, :, None])[..., 0])
    return torch.stack(outs, 1)  # [B, T, H, V]


def deltanet_block(p, x):
    """DeltaNet: the delta rule with β_t = σ(x_t W_β), L2-normalised SiLU(conv) q and k,
    SiLU(conv) v, the output RMS-normalised per head, W_O; + x."""
    h = F.rms_norm(x, (x.shape[-1],), p["norm.weight"], eps=EPS)
    heads = p["b_proj.weight"].shape[0]
    q, k, v = _delta_inputs(p, h, heads)
    beta = torch.sigmoid(h @ p["b_proj.weight"].T)
    o = _gated_delta(q, k, v, torch.ones_like(beta), beta)
    o = _rms(o, 1, p["out_norm.weight"])
    return {"y": x + _lin(o, p["o_proj.weight"], n_in=2)}


def _mamba2_alpha(p, h, proj):
    """Δ = softplus(x W + b_Δ), A = -exp(A_log): α = exp(Δ A) per head and token."""
    dt = F.softplus(h @ p[f"{proj}.weight"].T + p["dt_bias.weight"])
    return torch.exp(-torch.exp(p["A_log.weight"]) * dt), dt


def gated_deltanet_block(p, x):
    """Gated DeltaNet (eq. 10): the gated delta rule with α_t from Mamba-2's parametrisation,
    β_t = σ(x_t W_β); output RMSNorm(o) ⊙ SiLU(x W_g), W_O; + x."""
    h = F.rms_norm(x, (x.shape[-1],), p["norm.weight"], eps=EPS)
    heads = p["b_proj.weight"].shape[0]
    q, k, v = _delta_inputs(p, h, heads)
    alpha, _ = _mamba2_alpha(p, h, "a_proj")
    beta = torch.sigmoid(h @ p["b_proj.weight"].T)
    o = _rms(_gated_delta(q, k, v, alpha, beta), 1, p["out_norm.weight"])
    o = o * F.silu(_lin(h, p["g_proj.weight"], heads=heads))
    return {"y": x + _lin(o, p["o_proj.weight"], n_in=2)}


# ---------------------------------------------------------------- Mamba
NGROUPS = 1  # the gallery's mamba_block: B and C in one group, as the Mamba-2 reference models


def mamba_block(p, x, ngroups=NGROUPS):
    """Mamba-2's block with its SSM as a state recurrence, scalar A per head: for head h,
    reading B and C of group g = h // (H / G),
    h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_{t,g}ᵀ (h [P, N] per head), y_t = h_t C_{t,g} + D x_t;
    x, B, C from linear maps through causal depthwise convolutions (with bias) and SiLU;
    RMSNormGated(y, z) = RMSNorm(y ⊙ SiLU(z)) over each group's heads' channels together
    (group_size = d_inner / ngroups), W_out; + the input."""
    u = F.rms_norm(x, (x.shape[-1],), p["norm.weight"], eps=EPS)
    heads = p["dt_proj.weight"].shape[0]
    xs = _heads(_causal_conv_silu(u @ p["x_proj.weight"].T, p["x_conv.weight"],
                                  p["x_conv.bias"]), heads)  # fmt: skip
    Bm = _heads(_causal_conv_silu(u @ p["B_proj.weight"].T, p["B_conv.weight"],
                                  p["B_conv.bias"]), ngroups)  # fmt: skip
    Cm = _heads(_causal_conv_silu(u @ p["C_proj.weight"].T, p["C_conv.weight"],
                                  p["C_conv.bias"]), ngroups)  # fmt: skip
    abar, dt = _mamba2_alpha(p, u, "dt_proj")
    B_, T, H, P = xs.shape  # B and C: [B, T, G, N]
    group = torch.arange(H) // (H // ngroups)  # the group each head reads
    state = x.new_zeros(B_, H, P, Bm.shape[-1])
    ys = []
    for t in range(T):
        inp = (dt[:, t, :, None] * xs[:, t])[..., :, None] * Bm[:, t, group, None, :]
        state = abar[:, t, :, None, None] * state + inp
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Cm[:, t, group]))
    y = torch.stack(ys, 1) + p["D_skip.weight"][:, None] * xs
    y = y * F.silu(_lin(u, p["z_proj.weight"], heads=heads))
    y = _rms(y.reshape(B_, T, ngroups, -1), 1).reshape(B_, T, H, P) * p["out_norm.weight"]
    return {"y": x + _lin(y, p["out_proj.weight"], n_in=2)}


REFERENCES = {
    "transnormer_block": transnormer_block,
    "lightning_block": lightning_block,
    "gla_block": gla_block,
    "deltanet_block": deltanet_block,
    "gated_deltanet_block": gated_deltanet_block,
    "mamba_block": mamba_block,
}
