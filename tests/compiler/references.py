"""Hand-written PyTorch for the attention entries of the gallery (the vision, linear-family and
MLP entries are in tests/gallery/references.py). Written from the papers, in the style of
nanoGPT, not generated: parameters by their circuit names, linear maps' as nn.Linear's
(`q_proj.weight` of the map D -> H K is [H*K, D], its rows split into heads as nanoGPT's
`view(B, T, n_head, C // n_head)`), inputs by name."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(p, q, k, v):
    """softmax(q kᵀ / sqrt(K)) v; q [B, H, T, K], k [B, H, S, K], v [B, H, S, V]."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return {"y": scores.softmax(-1) @ v}


N_HEAD = 4  # the gallery's attention entries: H = 4 heads


def _proj(p, name, x, n_head):
    """nn.Linear's x Wᵀ + b, its output channels split into `n_head` heads."""
    y = F.linear(x, p[f"{name}.weight"], p[f"{name}.bias"])
    return y.view(*y.shape[:-1], n_head, y.shape[-1] // n_head)


def mha(p, x, prefix="", causal=False, n_head=N_HEAD):
    """Multi-head attention on x [B, T, D]: heads split off the projections, attention per
    head, heads merged (head-major) by the output map."""
    q = _proj(p, f"{prefix}q_proj", x, n_head).transpose(1, 2)  # (B, H, T, K)
    k = _proj(p, f"{prefix}k_proj", x, n_head).transpose(1, 2)
    v = _proj(p, f"{prefix}v_proj", x, n_head).transpose(1, 2)  # (B, H, T, V)
    att = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    if causal:
        T = x.shape[1]
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    o = (att.softmax(-1) @ v).transpose(1, 2).flatten(2)  # (B, T, H*V)
    return F.linear(o, p[f"{prefix}o_proj.weight"], p[f"{prefix}o_proj.bias"])


def multihead_attention(p, x):
    return {"y": mha(p, x)}


def block(p, x, prefix="", causal=False):
    d = x.shape[-1]
    h = F.layer_norm(x, (d,), p[f"{prefix}ln1.weight"], p[f"{prefix}ln1.bias"])
    x = x + mha(p, h, prefix, causal)
    h = F.layer_norm(x, (d,), p[f"{prefix}ln2.weight"], p[f"{prefix}ln2.bias"])
    h = F.gelu(F.linear(h, p[f"{prefix}ff_up.weight"], p[f"{prefix}ff_up.bias"]))
    return x + F.linear(h, p[f"{prefix}ff_down.weight"], p[f"{prefix}ff_down.bias"])


def transformer_block(p, x):
    return {"y": block(p, x)}


def transformer(p, tokens, n_blocks=2):
    """Decoder-only: every block's attention is causal."""
    x = F.embedding(tokens, p["embed.weight"])
    for i in range(n_blocks):
        x = block(p, x, f"blocks.{i}.", causal=True)
    x = F.layer_norm(x, (x.shape[-1],), p["ln_f.weight"], p["ln_f.bias"])
    return {"logits": x @ p["unembed.weight"].T}


def linear_attention(p, q, k, v):
    """Katharopoulos et al.: φ = elu + 1, o_t = φ(q_t)ᵀ S_t / φ(q_t)ᵀ z_t, written as the
    masked quadratic form (q kᵀ ⊙ causal) v / rowsum — not the recurrence the circuit draws."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1  # (B, H, T, K)
    T = q.shape[2]
    a = (fq @ fk.transpose(-1, -2)) * torch.ones(T, T, dtype=q.dtype).tril()
    return {"y": (a @ v) / a.sum(-1, keepdim=True)}


REFERENCES = {
    "attention": attention,
    "multihead_attention": multihead_attention,
    "transformer_block": transformer_block,
    "transformer": transformer,
    "linear_attention": linear_attention,
}
