"""Import keeps the model, on five public reference designs written here at small sizes:
a LLaMA-style decoder block, a ConvNeXt block, a RetNet retention layer, a nanoGPT block and a
torchvision ResNet basic block. Each imports with no opaque box, goes through `ncd import -o
spec.json` (spec + safetensors) and `ncd compile` to a generated module whose outputs are the
model's, and its FLOPs (ncd.analyse) are the hand count written beside it.

Conventions of the hand counts (the cost model's): 2 FLOPs per multiply-add; a bias adds 1 per
output; 1 per element for add, mul, neg, square, rsqrt, exp, relu, clamp (one bound),
comparisons and a mean's reduction (1 per input element); silu 4 (sigmoid 3, mul 1), gelu 5;
layer norm 5 per element (+2 with affine), RMS norm 3 (+1 with its weight), eval batch norm 7;
causal attention 4·K per visible (query, key) pair of each head (scores and output, 2 each),
T(T+1)/2 pairs per head; reshapes, slices, copies, casts and constants 0.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import ncd
from ncd.cli import main
from ncd.compiler import from_torch
from ncd.compiler.names import class_name
from tests.compiler.nanogpt import GPTBlock


class LlamaRMSNorm(nn.Module):
    """RMSNorm as Meta's LLaMA reference writes it (Zhang & Sennrich 2019)."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    """The rotate-half form of rotary embeddings (RoFormer, Su et al. 2021), as in HF LLaMA."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    """LLaMA decoder block (Touvron et al. 2023): pre-norm RMSNorm (one nn.RMSNorm, one written
    out), rotary embeddings from cos/sin buffers, grouped-query attention (Ainslie et al. 2023;
    Meta's repeat_kv: a None index, expand, reshape) through causal SDPA, SwiGLU feed-forward
    (Shazeer 2020)."""

    def __init__(self, d=32, heads=4, kv_heads=2, hidden=48, max_t=16, theta=10000.0):
        super().__init__()
        self.h, self.kvh, self.hd = heads, kv_heads, d // heads
        self.wq = nn.Linear(d, heads * self.hd, bias=False)
        self.wk = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.wo = nn.Linear(heads * self.hd, d, bias=False)
        self.w1 = nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)
        self.w3 = nn.Linear(d, hidden, bias=False)
        self.attention_norm = nn.RMSNorm(d, eps=1e-6)
        self.ffn_norm = LlamaRMSNorm(d)
        inv = 1.0 / theta ** (torch.arange(0, self.hd, 2).float() / self.hd)
        freqs = torch.outer(torch.arange(max_t).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x):
        B, T, _ = x.shape
        h = self.attention_norm(x)
        q = self.wq(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        cos, sin = self.cos[:T], self.sin[:T]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kvh
        k = k[:, :, None, :, :].expand(B, self.kvh, rep, T, self.hd).reshape(B, self.h, T, self.hd)
        v = v[:, :, None, :, :].expand(B, self.kvh, rep, T, self.hd).reshape(B, self.h, T, self.hd)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022, the official code's Block): depthwise 7x7 convolution,
    channels-last LayerNorm, inverted bottleneck 4C with GELU, layer scale, residual."""

    def __init__(self, dim=8, layer_scale=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x):
        inp = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return inp + x


class Retention(nn.Module):
    """RetNet multi-scale retention, parallel form (Sun et al. 2023, eqs. 5 and 8):
    (Q Kᵀ ⊙ D) V with D[n, m] = γ^(n−m) for n >= m, else 0, γ = 1 − 2^(−5−h) per head; a
    per-head RMS norm without weights (as torchscale), a swish gate, the output map. The xPos
    rotation is left out. D is built from torch.arange, a comparison, clamp, exp and where."""

    def __init__(self, d=32, heads=4, value_factor=2):
        super().__init__()
        self.h, self.kd, self.vd = heads, d // heads, value_factor * d // heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, value_factor * d, bias=False)
        self.g = nn.Linear(d, value_factor * d, bias=False)
        self.out = nn.Linear(value_factor * d, d, bias=False)
        gamma = 1 - 2.0 ** (-5 - torch.arange(heads).float())
        self.register_buffer("log_gamma", torch.log(gamma))
        self.norm = nn.RMSNorm(self.vd, eps=1e-6, elementwise_affine=False)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.h, self.kd).transpose(1, 2)
        k = self.k(x).view(B, T, self.h, self.kd).transpose(1, 2) * self.kd**-0.5
        v = self.v(x).view(B, T, self.h, self.vd).transpose(1, 2)
        idx = torch.arange(T, device=x.device)
        diff = (idx[:, None] - idx[None, :]).to(x.dtype)
        decay = torch.exp(diff.clamp(min=0) * self.log_gamma[:, None, None])
        decay = torch.where(diff >= 0, decay, 0.0)
        s = (q @ k.transpose(-1, -2)) * decay
        o = (s @ v).transpose(1, 2)
        o = self.norm(o).reshape(B, T, self.h * self.vd)
        return self.out(F.silu(self.g(x)) * o)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (He et al. 2016) with its strided 1x1 downsample."""

    expansion = 1

    def __init__(self, inplanes=8, planes=16, stride=2):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
        )

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x)
        out += identity
        return self.relu(out)


# -- factories (`ncd import test_import_reference:NAME`)


def _made(cls, *shape):
    torch.manual_seed(0)
    model = cls().eval()
    for m in model.modules():  # weights and statistics away from their initial values
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
        if isinstance(m, (nn.RMSNorm, nn.LayerNorm, LlamaRMSNorm)) and m.weight is not None:
            m.weight.data.uniform_(0.5, 1.5)
    if isinstance(model, ConvNeXtBlock):
        model.gamma.data.uniform_(0.5, 1.5)
    return model, torch.randn(*shape)


def llama():
    return _made(LlamaBlock, 2, 8, 32)


def convnext():
    return _made(ConvNeXtBlock, 2, 8, 8, 8)


def retention():
    return _made(Retention, 2, 8, 32)


def nanogpt():
    return _made(GPTBlock, 2, 8, 32)


def resnet_basic():
    return _made(BasicBlock, 2, 8, 8, 8)


# -- the hand counts (sizes of the factories above)
B, T, D = 2, 8, 32
N = B * T  # tokens
CAUSAL_PAIRS = T * (T + 1) // 2

# LLaMA: H = 4 query heads, G = 2 key/value heads, K = 8, F = 48 (SwiGLU hidden).
H, G, K, F_ = 4, 2, 8, 48
LLAMA = (
    4 * N * D  # attention_norm: nn.RMSNorm with weight
    + 2 * N * D * H * K
    + 2 * 2 * N * D * G * K  # wq; wk and wv (no bias)
    # rotary on q, one box: two products and a sum per element; an angle, its cos and sin per
    # (position, pair); the frequencies (a division, a power, a reciprocal per pair)
    + (3 * N * H * K + 3 * T * K // 2 + 3 * K // 2)
    + (3 * N * G * K + 3 * T * K // 2 + 3 * K // 2)  # on k (G heads: before the free repeat)
    + 4 * K * B * H * CAUSAL_PAIRS  # causal attention over H heads
    + 2 * N * H * K * D  # wo
    + N * D  # residual
    + (3 * N * D + N * D)  # ffn_norm written out: imported as an RMS norm, then ·weight
    + 3 * 2 * N * D * F_  # w1, w3, w2
    + 4 * N * F_
    + N * F_  # silu, the gate product
    + N * D  # residual
)

# ConvNeXt: C = 8 channels on 8x8, P positions; depthwise 7x7 with bias.
C, P = 8, 2 * 8 * 8
CONVNEXT = (
    2 * P * C * 49
    + P * C  # dwconv (one input channel per output channel)
    + 7 * P * C  # LayerNorm over channels, affine
    + 2 * P * C * 4 * C
    + P * 4 * C  # pwconv1
    + 5 * P * 4 * C  # GELU
    + 2 * P * 4 * C * C
    + P * C  # pwconv2
    + P * C  # layer scale gamma·x
    + P * C  # residual
)

# RetNet retention: H = 4 heads, K = 8 key dims, V = 16 value dims per head (value factor 2).
V = 16
RETENTION = (
    2 * 2 * N * D * D  # q, k maps
    + N * D  # k·K^-1/2
    + 2 * 2 * N * D * 2 * D  # v and gate maps (2D outputs)
    + (T * T + T * T + H * T * T + H * T * T + H * T * T)
    # decay: n − m, clamp(min=0), ·log γ, exp; the where over n − m >= 0 (a comparison of
    # positions alone) is a causal mask with fill 0, one select per element
    + 2 * B * H * T * T * K  # Q Kᵀ
    + B * H * T * T  # ⊙ D
    + 2 * B * H * T * T * V  # · V
    + 3 * N * H * V  # per-head RMS norm, no weight
    + 4 * N * 2 * D
    + N * 2 * D  # swish gate, product
    + 2 * N * 2 * D * D  # output map
)

# nanoGPT: H = 4 heads of K = 8, biases everywhere.
NANOGPT = (
    7 * N * D  # ln_1
    + 2 * N * D * 3 * D
    + N * 3 * D  # c_attn
    + 4 * K * B * H * CAUSAL_PAIRS  # causal attention
    + 2 * N * D * D
    + N * D  # c_proj
    + N * D  # residual
    + 7 * N * D  # ln_2
    + 2 * N * D * 4 * D
    + N * 4 * D  # c_fc
    + 5 * N * 4 * D  # GELU
    + 2 * N * 4 * D * D
    + N * D  # mlp c_proj
    + N * D  # residual
)

# ResNet BasicBlock: 8 -> 16 channels, stride 2: 8x8 -> 4x4, Q output positions.
CIN, COUT, Q = 8, 16, 2 * 4 * 4
RESNET = (
    2 * Q * COUT * CIN * 9  # conv1 3x3, stride 2
    + 7 * Q * COUT
    + Q * COUT  # bn1, relu
    + 2 * Q * COUT * COUT * 9  # conv2 3x3
    + 7 * Q * COUT  # bn2
    + 2 * Q * COUT * CIN
    + 7 * Q * COUT  # downsample: 1x1 conv stride 2, batch norm
    + Q * COUT
    + Q * COUT  # residual, relu
)

CASES = {
    # (the RMSNorm written out imports as an rmsnorm box, its eps no constant box)
    "llama": (LLAMA, {"attention", "rmsnorm", "param", "concat", "rotary"}),
    "convnext": (CONVNEXT, {"conv", "layernorm", "param", "permute"}),
    "retention": (RETENTION, {"positions", "clamp", "cast", "contract", "rmsnorm", "mask"}),
    "nanogpt": (NANOGPT, {"attention", "split", "split_axis", "merge_axes", "layernorm"}),
    "resnet_basic": (RESNET, {"conv", "batchnorm"}),
}


@pytest.mark.parametrize("factory", list(CASES))
def test_reference_model_imports_round_trips_and_counts(factory, tmp_path, monkeypatch):
    flops, kinds = CASES[factory]
    model, x = globals()[factory]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of these models is dropped
        circuit = from_torch(model, x)
    got = [b.kind for b in circuit.boxes]
    assert "opaque" not in got
    assert kinds <= set(got)
    # axes named by role; no generated names past the role lists (D4, D5, ...)
    assert not [a for a in circuit.sizes if a[0] == "D" and a[1:].isdigit()]
    assert ncd.analyse(circuit).number(ncd.analyse(circuit).formulas["flops"]) == flops

    # ncd import -o spec.json (spec + safetensors), ncd compile -o block.py
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(Path(__file__).parent), *sys.path])
    spec, out = tmp_path / "spec.json", tmp_path / "block.py"
    assert main(["import", f"{Path(__file__).stem}:{factory}", "-o", str(spec)]) == 0
    assert (tmp_path / "spec.safetensors").is_file()
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    loaded = ncd.Circuit.from_json(spec.read_text())
    mod_spec = importlib.util.spec_from_file_location(f"ncd_ref_{factory}", out)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    generated = getattr(mod, class_name(loaded.name))().eval()
    generated.load_state_dict(load_file(str(tmp_path / "block.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(generated(x), model(x), rtol=1e-5, atol=1e-5)


class CommonOps(nn.Module):
    """Ops the reference models do not use: unbind, repeat_interleave, SDPA with grouped heads,
    cumsum, F.pad, a where of two tensors, clamp from above, a cast."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 3 * 8)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, 4, 2).permute(2, 0, 3, 1, 4).unbind(0)
        k, v = k[:, :2], v[:, :2]  # 2 key/value heads for 4 query heads
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        r = F.scaled_dot_product_attention(
            q, torch.repeat_interleave(k, 2, dim=1), torch.repeat_interleave(v, 2, dim=1)
        )
        y = (o + r).transpose(1, 2).reshape(B, T, 8).cumsum(1)
        y = torch.where(y > 0, y, 0.5 * x).clamp(max=2.0)
        return F.pad(y.float().double(), (1, 2))


def test_common_ops_map_to_named_kinds():
    torch.manual_seed(0)
    model, x = CommonOps().double().eval(), torch.randn(2, 5, 8, dtype=torch.float64)
    circuit = from_torch(model, x)
    kinds = {b.kind for b in circuit.boxes}
    assert "opaque" not in kinds
    assert {"index", "concat", "scan", "clamp", "attention", "slice"} <= kinds
    module = ncd.compile(ncd.Circuit.from_json(circuit.to_json()), dtype=torch.float64,
                         weights=ncd.compiler.attached.weights(circuit)).eval()  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x), rtol=1e-12, atol=1e-12)


class Dropping(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Sequential(nn.Linear(4, 4))

    def forward(self, x):
        q = self.attn(x).unsqueeze(1)
        return F.scaled_dot_product_attention(q, q, q, dropout_p=0.1).squeeze(1).detach()


def test_what_the_import_drops_is_warned_with_its_place():
    x = torch.randn(2, 3, 4)
    with pytest.warns(UserWarning) as ws:
        from_torch(Dropping().eval(), x)
    text = [str(w.message) for w in ws]
    assert any("dropout_p=0.1" in t and "scaled_dot_product_attention" in t for t in text)
    assert any("detach" in t and t.startswith("Dropping") for t in text)
