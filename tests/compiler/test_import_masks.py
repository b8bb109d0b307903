"""Import of attention masks onto the attention box's `mask` port: SDPA's `attn_mask` (a boolean
keep-mask, True: attend; a float bias), nn.MultiheadAttention's `key_padding_mask` and
`attn_mask` (a boolean one True where not attended; its [B*H, T, S] form; both given). Each
model is compared with its compiled import in float64: outputs, and the gradients of the float
inputs and of every parameter (MHA's packed in-projection against the three maps it is split
into)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch

from .helpers import randomise


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _keep(*shape, seed=0, p=0.6):
    """A random boolean keep-mask, True along the last dim's first entry (no row empty)."""
    keep = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p
    keep[..., 0] = True
    return keep


def _grads(out, wrt, seed=99):
    w = _x(*out.shape, seed=seed)
    return torch.autograd.grad((out * w).sum(), wrt, allow_unused=True)


def same(model, *xs, packed=None):
    """The circuit imported from `model`, after checking that its compiled module gives the
    model's outputs and gradients (its parameters made random first): of the float inputs and
    of every parameter, found in the compiled module by value (`packed`: by the names of the
    compiled ones it is the concatenation of)."""
    model = randomise(model.double().eval())
    circuit = from_torch(model, tuple(xs))
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    mine = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    theirs = [x.clone().requires_grad_(x.is_floating_point()) for x in xs]
    got, want = compiled(*mine), model(*theirs)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    held = dict(compiled.named_parameters())
    parts = {}
    for name, p in model.named_parameters():
        parts[name] = (packed or {}).get(name) or [  # (its size-1 dims may be left out)
            k for k, q in held.items() if q.numel() == p.numel() and torch.equal(q.flatten(),
                                                                                 p.flatten())
        ]  # fmt: skip
        assert len(parts[name]) >= 1, name
        assert torch.equal(torch.cat([held[k].flatten() for k in parts[name]]), p.flatten())
    floats = [x for x in mine if x.requires_grad]
    g_got = _grads(got, [*floats, *(held[k] for ks in parts.values() for k in ks)])
    g_want = _grads(want, [x for x in theirs if x.requires_grad] + list(model.parameters()))
    got_in, got_p = g_got[: len(floats)], list(g_got[len(floats) :])
    for a, b in zip(got_in, g_want[: len(floats)], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for ks, b in zip(parts.values(), g_want[len(floats) :], strict=True):
        a = torch.cat([got_p.pop(0).flatten() for _ in ks])
        torch.testing.assert_close(a, b.flatten(), rtol=1e-9, atol=1e-10)
    return circuit


def kinds(circuit) -> list[str]:
    return [b.kind for b in circuit.boxes]


def attention_of(circuit):
    (att,) = [b for b in circuit.boxes if b.kind == "attention"]
    return att


def port(circuit, port: str):
    """The type of the wire on a port of the attention box."""
    return circuit.check().ins[attention_of(circuit).name][port]


def mask_axes(circuit) -> list[str]:
    """The axes of the wire on the attention box's mask port."""
    assert attention_of(circuit).masked
    return list(port(circuit, "mask").names)


def input_axes(circuit, name: str) -> list[str]:
    return list(circuit.check().inputs[name].names)


# -- F.scaled_dot_product_attention
class SdpaPadding(nn.Module):
    """Key padding given to SDPA as a boolean [B, 1, 1, S] keep-mask (True: attend)."""

    def forward(self, q, k, v, keep):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])


def test_sdpa_keep_mask_is_the_mask_port_over_batch_and_keys():
    q, k, v = _x(2, 3, 5, 4, seed=1), _x(2, 3, 7, 4, seed=2), _x(2, 3, 7, 4, seed=3)
    keep = _keep(2, 7)
    circuit = same(SdpaPadding(), q, k, v, keep)
    assert kinds(circuit) == ["rename", "rename", "attention"]  # (v's value axis; the mask's)
    att = attention_of(circuit)
    assert not att.causal
    b = port(circuit, "q").names[0]
    assert mask_axes(circuit) == [b, att.key]
    # the compiled import follows another padding
    other = _keep(2, 7, seed=5, p=0.3)
    compiled = ncd_compile(circuit, dtype=torch.float64)
    torch.testing.assert_close(compiled(q, k, v, other), SdpaPadding()(q, k, v, other))


class SdpaAlibi(nn.Module):
    """ALiBi (Press et al. 2022) as a float bias: -m_h |t - s|, the slopes a buffer, the
    distances made from positions; and a learned per-head scale of it."""

    def __init__(self, H=4):
        super().__init__()
        self.register_buffer("slopes", 2.0 ** (-8.0 * torch.arange(1, H + 1) / H))
        self.gain = nn.Parameter(torch.rand(H, 1, 1) + 0.5)

    def forward(self, q, k, v):
        T, S = q.shape[-2], k.shape[-2]
        dist = torch.arange(S, dtype=q.dtype)[None, :] - torch.arange(T, dtype=q.dtype)[:, None]
        bias = -self.slopes[:, None, None].to(q.dtype) * dist.abs() * self.gain
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class SdpaBias(nn.Module):
    """A float bias given as an input, one per batch entry and query, shared by the heads."""

    def forward(self, q, k, v, bias):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def test_sdpa_float_bias_is_the_mask_port():
    q, k, v = _x(2, 4, 6, 8, seed=1), _x(2, 4, 6, 8, seed=2), _x(2, 4, 6, 8, seed=3)
    circuit = same(SdpaAlibi(), q, k, v)
    assert "opaque" not in kinds(circuit)
    att = attention_of(circuit)
    heads = port(circuit, "q").names[1]
    assert sorted(mask_axes(circuit)) == sorted([heads, att.query, att.key])
    # the bias' own gradient too (a float input), over [B, 1, T, S]
    circuit = same(SdpaBias(), q, k, v, _x(2, 1, 6, 6, seed=4))
    assert kinds(circuit) == ["rename", "rename", "index", "rename", "attention"]
    b = port(circuit, "q").names[0]
    assert mask_axes(circuit) == [b, att.query, att.key]


class SdpaCausalPadding(nn.Module):
    """is_causal=True with a padding keep-mask: torch's documentation calls the pair an error
    and its math kernel refuses it, but its CPU kernel applies both."""

    def forward(self, q, k, v, keep):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                              is_causal=True)  # fmt: skip


def test_sdpa_causal_with_a_mask_applies_both_as_torch_did():
    q, k, v = _x(2, 3, 6, 4, seed=1), _x(2, 3, 6, 4, seed=2), _x(2, 3, 6, 4, seed=3)
    keep = _keep(2, 6)
    both = keep[:, None, None, :] & torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(  # what torch ran: the two masks together
        SdpaCausalPadding()(q, k, v, keep), F.scaled_dot_product_attention(q, k, v, both)
    )
    circuit = same(SdpaCausalPadding(), q, k, v, keep)
    att = attention_of(circuit)
    assert att.causal and att.masked and "opaque" not in kinds(circuit)


class SdpaGrouped(nn.Module):
    """Grouped heads (enable_gqa) with a keep-mask per query head."""

    def forward(self, q, k, v, keep):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=True)


def test_sdpa_mask_with_grouped_heads_is_over_the_query_heads():
    q, k, v = _x(2, 4, 5, 3, seed=1), _x(2, 2, 5, 3, seed=2), _x(2, 2, 5, 3, seed=3)
    keep = _keep(2, 4, 5, 5)
    circuit = same(SdpaGrouped(), q, k, v, keep)
    att = attention_of(circuit)
    assert att.heads is not None and att.kv_heads is not None
    assert att.heads in mask_axes(circuit) and att.kv_heads not in mask_axes(circuit)


# -- nn.MultiheadAttention
_MHA_PACKED = {
    "mha.in_proj_weight": [f"mha_{r}_proj.weight" for r in "qkv"],
    "mha.in_proj_bias": [f"mha_{r}_proj.bias" for r in "qkv"],
}


class Mha(nn.Module):
    """Queries over padded memories through nn.MultiheadAttention: key_padding_mask and
    attn_mask ([T, S] or [B*H, T, S]) boolean (True: not attended) or float (added)."""

    def __init__(self, batch_first, pad=True, attn=False, weights=False):
        super().__init__()
        self.pad, self.attn, self.weights = pad, attn, weights
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)

    def forward(self, x, memory, pad, mask):
        kw = {"key_padding_mask": pad} if self.pad else {}
        if self.attn:
            kw["attn_mask"] = mask
        return self.mha(x, memory, memory, need_weights=self.weights, **kw)[0]


def _mha_inputs(batch_first, B=3, T=4, S=5, pad="bool", mask="bool", heads3=False):
    x, mem = _x(B, T, 8, seed=1), _x(B, S, 8, seed=2)
    if not batch_first:
        x, mem = x.transpose(0, 1).contiguous(), mem.transpose(0, 1).contiguous()
    p = ~_keep(B, S, seed=3)
    m = ~_keep(*((B * 2,) if heads3 else ()), T, S, seed=4)
    p = p if pad == "bool" else _x(B, S, seed=5)
    m = m if mask == "bool" else _x(*m.shape, seed=6)
    return x, mem, p, m


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dtype", ["bool", "float"])
def test_mha_key_padding_mask_is_the_mask_port(batch_first, dtype):
    xs = _mha_inputs(batch_first, pad=dtype)
    circuit = same(Mha(batch_first, weights=dtype == "float"), *xs, packed=_MHA_PACKED)
    assert "opaque" not in kinds(circuit)
    # four maps, keys and values renamed to the key axis, the attention; a boolean padding
    # mask made a keep-mask (compared with 0, and a constant to compare with)
    n = 7 + (2 if dtype == "bool" else 0) + 1  # (+1: the mask renamed onto B S)
    assert len(circuit.boxes) == n, kinds(circuit)
    att = attention_of(circuit)
    batch = input_axes(circuit, "x")[0 if batch_first else 1]
    assert mask_axes(circuit) == [batch, att.key]
    assert port(circuit, "mask").dtype == ("bool" if dtype == "bool" else
                                                               "float64")  # fmt: skip


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dtype", ["bool", "float"])
@pytest.mark.parametrize("heads3", [False, True])
def test_mha_attn_mask_is_the_mask_port(batch_first, dtype, heads3):
    xs = _mha_inputs(batch_first, mask=dtype, heads3=heads3)
    model = Mha(batch_first, pad=False, attn=True)
    circuit = same(model, *xs, packed=_MHA_PACKED)
    assert "opaque" not in kinds(circuit)
    att = attention_of(circuit)
    want = {att.query, att.key}
    if heads3:  # B*H split into the query's batch axis and the heads
        batch = input_axes(circuit, "x")[0 if batch_first else 1]
        heads = [a for a in port(circuit, "q").names if a not in (att.query, att.head, batch)]
        want |= {batch, *heads}
        assert "split_axis" in kinds(circuit)
    assert set(mask_axes(circuit)) == want


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(("pad", "mask"), [("bool", "bool"), ("float", "float"),
                                           ("bool", "float")])  # fmt: skip
def test_mha_both_masks_are_one_mask(batch_first, pad, mask):
    """torch makes both masks floats and adds them: keep-masks where both keep, biases
    summed, a boolean mask beside a bias made 0 and -inf."""
    xs = _mha_inputs(batch_first, pad=pad, mask=mask, heads3=True)
    circuit = same(Mha(batch_first, attn=True), *xs, packed=_MHA_PACKED)
    assert "opaque" not in kinds(circuit)
    fns = [b.fn for b in circuit.boxes if b.kind == "binary"]
    assert fns == ["minimum" if pad == mask == "bool" else "add"]


class MhaCausalPadding(nn.Module):
    """A causal attn_mask made from sizes and a key padding mask from an input."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, pad):
        T = x.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).triu(1)
        return self.mha(x, x, x, key_padding_mask=pad, attn_mask=causal, need_weights=False)[0]


def test_mha_causal_mask_and_padding_are_causal_and_the_port():
    x, pad = _x(2, 6, 8, seed=1), ~_keep(2, 6, seed=2)
    circuit = same(MhaCausalPadding(), x, pad, packed=_MHA_PACKED)
    att = attention_of(circuit)
    assert att.causal and att.masked and "opaque" not in kinds(circuit)
    assert len(mask_axes(circuit)) == 2


def test_mha_weights_read_stay_opaque():
    class Weights(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x, pad):
            y, w = self.mha(x, x, x, key_padding_mask=pad)
            return y + w.mean(dim=-1, keepdim=True)

    x, pad = _x(2, 6, 8, seed=1), ~_keep(2, 6, seed=2)
    circuit = from_torch(Weights().double().eval(), (x, pad))
    assert "opaque" in kinds(circuit)
