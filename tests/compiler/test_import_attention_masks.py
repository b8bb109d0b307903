"""Masks that a model gives torch's attention (SDPA's `attn_mask`, nn.MultiheadAttention's
`key_padding_mask`, a transformer layer's `src_key_padding_mask`) import onto the attention
box's `mask` port: no opaque box, the model's weights in the circuit, and the compiled circuit
gives the model's outputs, other paddings included."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch


def _whole(model, *xs):
    """The circuit of `model` (float64), checked to have no opaque box, one masked attention
    box, and every parameter of the model."""
    circuit = from_torch(model, xs)
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds, kinds
    assert [b.masked for b in circuit.boxes if b.kind == "attention"] == [True]
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    assert sum(p.numel() for p in compiled.parameters()) == sum(
        p.numel() for p in model.parameters()
    )
    return compiled


def _follows(compiled, model, *xs):
    with torch.no_grad():
        torch.testing.assert_close(compiled(*xs), model(*xs), rtol=1e-10, atol=1e-10)


class AlibiGQA(nn.Module):
    """Causal ALiBi attention with grouped key/value heads, written as papers' code does: the
    slopes a buffer, the bias a float `attn_mask` with -inf above the diagonal."""

    def __init__(self, d=32, h=8, g=2):
        super().__init__()
        self.h, self.g, self.k = h, g, d // h
        self.wq = nn.Linear(d, d, bias=False)
        self.wkv = nn.Linear(d, 2 * g * self.k, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.register_buffer("slopes", torch.tensor([2 ** (-8 * (i + 1) / h) for i in range(h)]))

    def forward(self, x):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.h, self.k).transpose(1, 2)
        k, v = self.wkv(x).view(B, T, 2, self.g, self.k).permute(2, 0, 3, 1, 4)
        pos = torch.arange(T, device=x.device)
        bias = self.slopes[:, None, None] * (pos[None, :] - pos[:, None]).to(x.dtype)
        bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))  # [H T S]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True)
        return self.wo(o.transpose(1, 2).reshape(B, T, -1))


def _alibi_reference(model, x):
    """Press et al.'s attention from the equations: scores q·k/√K − m_h (t − s), s ≤ t."""
    B, T, _ = x.shape
    q = (x @ model.wq.weight.T).view(B, T, model.h, model.k).transpose(1, 2)
    k, v = (x @ model.wkv.weight.T).view(B, T, 2, model.g, model.k).permute(2, 0, 3, 1, 4)
    k, v = (t.repeat_interleave(model.h // model.g, 1) for t in (k, v))
    t = torch.arange(T, dtype=x.dtype)
    m = torch.tensor([2 ** (-8 * (i + 1) / model.h) for i in range(model.h)], dtype=x.dtype)
    s = q @ k.transpose(-1, -2) / math.sqrt(model.k) - m[:, None, None] * (t[:, None] - t)
    s = s.masked_fill(t[None, :] > t[:, None], float("-inf"))
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1) @ model.wo.weight.T


def test_sdpa_with_a_float_bias_is_the_masked_attention_box():
    torch.manual_seed(0)
    model = AlibiGQA().double().eval()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    compiled = _whole(model, x)
    box = next(b for b in from_torch(model, (x,)).boxes if b.kind == "attention")
    assert (box.heads, box.kv_heads) != (None, None)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _alibi_reference(model, x))


class BertEncoder(nn.Module):
    """A post-norm encoder layer (GELU) over padded sequences, as BERT runs it."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            16, 2, 32, dropout=0.0, activation="gelu", batch_first=True
        )

    def forward(self, x, pad):
        return self.layer(x, src_key_padding_mask=pad)


def test_an_encoder_layer_with_a_key_padding_mask_imports_whole():
    torch.manual_seed(0)
    model = BertEncoder().double().eval()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    pad = torch.arange(6) >= torch.tensor([6, 3])[:, None]
    compiled = _whole(model, x, pad)
    x.requires_grad_()  # torch's fast path (nested tensors) would zero the padded rows
    _follows(compiled, model, x, pad)
    _follows(compiled, model, x, torch.arange(6) >= torch.tensor([4, 6])[:, None])
