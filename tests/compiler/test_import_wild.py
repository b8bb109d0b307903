"""Import of model code as it is found: code that asks its tensors concrete questions while it
runs (`*x.shape[:-1]`, `len(x)`, `torch.finfo(x.dtype)`), Hugging Face's GPT-2 block, torch's
transformer layers inside a model. Each is compared with the model it came from."""

from __future__ import annotations

import math
import re

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

import ncd
from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch
from ncd.compiler.errors import TorchImportError
from ncd.compiler.rewrites import apply_rewrites
from tests.compiler.helpers import randomise, same_import
from tests.compiler.hf_gpt2 import GPT2Block


def _imported(model, *xs, rewrites=False):
    """The circuit of `model` in float64, after checking that its compiled module gives the
    model's outputs."""
    model = model.double().eval()
    xs = tuple(x.double() for x in xs)
    circuit = from_torch(model, xs)
    compiled = ncd_compile(circuit, dtype=torch.float64, rewrites=rewrites).eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(*xs), model(*xs), rtol=1e-10, atol=1e-10)
    return circuit


class Questions(nn.Module):
    """Star-unpacked sizes, len(), a dtype's limits, a loop over the chunks of a tensor."""

    def __init__(self, d=8):
        super().__init__()
        self.lin = nn.Linear(d, 2 * d)

    def forward(self, x):
        h = self.lin(x).reshape(*x.shape[:-1], 2, -1)
        parts = [p * (i + 1) for i, p in enumerate(h.unbind(-2))]
        lo = torch.finfo(x.dtype).min
        return sum(parts).clamp(min=lo) / len(x)


def test_sizes_lengths_and_dtypes_are_answered_while_tracing():
    circuit = _imported(randomise(Questions()), torch.randn(3, 5, 8))
    assert "opaque" not in [b.kind for b in circuit.boxes]


def test_hf_gpt2_block_imports_whole_and_its_attention_fuses():
    """Conv1D (addmm, weight [in, out]) is a linear box keeping the weight as [out, in]; the
    boolean buffer's causal slice under torch.where with finfo.min is a causal mask; the
    0-dim scale tensor is a scale; the tanh GELU written out is one box. Under the rewrites
    the attention chain is one causal attention box."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 32)
    circuit = _imported(GPT2Block(), x, rewrites=True)
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and kinds.count("linear") == 4
    (mask,) = [b for b in circuit.boxes if b.kind == "mask"]
    assert mask.pattern == "causal" and mask.fill == "-inf"
    fused = apply_rewrites(circuit)
    (att,) = [b for b in fused.boxes if b.kind == "attention"]
    assert att.causal and "softmax" not in [b.kind for b in fused.boxes]
    assert [b.fn for b in circuit.boxes if b.kind == "unary"] == ["gelu_tanh"]  # written out
    names = {b.name for b in circuit.boxes if b.kind == "linear"}
    assert names == {"attn_c_attn", "attn_c_proj", "mlp_c_fc", "mlp_c_proj"}
    state = ncd_compile(circuit).state_dict()
    w = GPT2Block().attn.c_attn.weight  # [in, out] in the model, [out, in] in the box
    assert state["attn_c_attn.weight"].shape == w.t().shape


def test_a_very_negative_fill_is_a_mask_only_before_a_softmax():
    """-1e9 (or finfo.min) weighs masked scores 0 in a softmax, as -inf does; read by
    anything else it is a number, and the where stays elementwise boxes."""

    class Fill(nn.Module):
        def __init__(self, softmax):
            super().__init__()
            self.softmax = softmax

        def forward(self, s):
            T = s.shape[-1]
            keep = torch.ones(T, T, dtype=torch.bool).tril()
            s = torch.where(keep, s, -1e9)
            return s.softmax(-1) if self.softmax else s.amax(-1)

    s = torch.randn(2, 5, 5)
    assert "mask" in [b.kind for b in _imported(Fill(True), s).boxes]
    assert "mask" not in [b.kind for b in from_torch(Fill(False).double(), s.double()).boxes]


class PatchEncoder(nn.Module):
    """A ViT's trunk: patches by a strided convolution, flattened to tokens, a position
    embedding, torch's encoder layer, a norm."""

    def __init__(self, d=32, p=4, img=16):
        super().__init__()
        self.patch = nn.Conv2d(3, d, p, stride=p)
        self.pos = nn.Parameter(torch.randn(1, (img // p) ** 2, d) * 0.02)
        self.enc = nn.TransformerEncoderLayer(d, 4, 64, batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.norm(self.enc(x)).mean(1)


class ClassToken(nn.Module):
    """The original ViT's input: a learned class token before the patch tokens, read out at
    position 0."""

    def __init__(self, d=32):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(x[:, 0] + x[:, 1:].mean(1))


def test_a_class_token_joins_the_patches_as_one_position():
    circuit = _imported(ClassToken(), torch.randn(2, 3, 16, 16))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "concat" in kinds


def test_torch_encoder_layer_inside_a_model_becomes_boxes():
    torch.manual_seed(0)
    circuit = _imported(PatchEncoder(), torch.randn(2, 3, 16, 16))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "attention" in kinds and kinds.count("layernorm") == 3
    assert any(b.group == "enc" for b in circuit.boxes)  # the layer's boxes form its block


def test_functional_linear_with_held_weights_is_a_linear_box():
    class Fn(nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.b = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(6))

        def forward(self, x):
            return F.linear(x, self.w, self.b)

    circuit = _imported(Fn(), torch.randn(3, 4))
    assert [b.kind for b in circuit.boxes] == ["linear"]


class BatchStats(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(x) * 2


def test_importing_leaves_the_model_and_the_inputs_as_they_were():
    """A batch norm in training mode updates its running statistics on every forward; the
    import runs the forward twice and puts them back; an in-place op leaves the inputs."""
    model = BatchStats().train()
    before = model.bn.running_mean.clone()
    x = torch.randn(8, 4) + 3
    x0 = x.clone()
    from_torch(model, x)
    torch.testing.assert_close(model.bn.running_mean, before, rtol=0, atol=0)
    assert int(model.bn.num_batches_tracked) == 0

    class InPlace(nn.Module):
        def forward(self, x):
            return x.mul_(2) + 1

    from_torch(InPlace(), x)
    torch.testing.assert_close(x, x0, rtol=0, atol=0)


def test_imported_gpt2_block_prices_its_fused_attention():
    circuit = from_torch(GPT2Block().eval(), torch.randn(2, 16, 32))
    report = ncd.analyse(circuit)
    kernels = {r["name"]: r["kernel"] for r in report.box_rows()}
    assert "attention" in kernels["where"] and "attention" in kernels["softmax"]
    # the causal kernel reads half of k and v per query block: T^2/32, not 0.03125*T^2
    assert not report.formulas["io_bytes"].atoms(sympy.Float)


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # control flow on values: fx cannot trace it
            return x * 2
        return x


class WithBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.gate = nn.Linear(4, 4), Branchy()

    def forward(self, x):
        return self.gate(self.lin(x))


@pytest.mark.parametrize("keep", ["gate", Branchy])
def test_an_untraceable_submodule_is_named_and_can_be_kept_whole(keep):
    """The error names the submodule fx failed in; kept whole it is one opaque box running
    the module itself, so both branches stay right."""
    model, x = WithBranch(), torch.randn(2, 4)
    with pytest.raises(TorchImportError, match=r"in `gate`.*keep=\['gate'\]"):
        from_torch(model, x)
    circuit = from_torch(model, x, keep=[keep])
    assert [b.kind for b in circuit.boxes] == ["linear", "opaque"]
    compiled = ncd_compile(circuit)
    with torch.no_grad():
        for sign in (1, -1):
            torch.testing.assert_close(compiled(sign * x), model(sign * x))
    with pytest.raises(TorchImportError, match="no submodule 'gat'"):
        from_torch(model, x, keep=["gat"])


def _freqs(dim, end, theta=10000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].double() / dim))
    angles = torch.outer(torch.arange(end, dtype=torch.float64), freqs)
    return torch.polar(torch.ones_like(angles), angles)


class MetaRotary(nn.Module):
    """Meta's LLaMA rotary embedding: pairs of features as complex numbers times a complex
    buffer (`torch.polar`), back to real pairs."""

    def __init__(self, d=32, heads=4, positions=16):
        super().__init__()
        self.h = heads
        self.wq = nn.Linear(d, d, bias=False)
        self.register_buffer("freqs_cis", _freqs(d // heads, positions), persistent=False)

    def forward(self, x):
        B, T, D = x.shape
        xq = self.wq(x).view(B, T, self.h, D // self.h)
        xq_ = torch.view_as_complex(xq.reshape(*xq.shape[:-1], -1, 2))
        fc = self.freqs_cis[:T].view(1, T, 1, xq_.shape[-1])
        return torch.view_as_real(xq_ * fc).flatten(3).type_as(xq)


def test_computations_on_complex_tensors_are_one_opaque_box():
    """Complex tensors have no type in a circuit: the ops from the first complex value to the
    real result are one box that runs them (the complex buffer travels with it)."""
    torch.manual_seed(0)
    model, x = MetaRotary(), torch.randn(2, 8, 32)
    circuit = _imported(model, x)
    (box,) = [b for b in circuit.boxes if b.kind == "opaque"]
    assert "view_as_complex" in box.target and "view_as_real" in box.target
    model = model.float()  # float32 parameters; the buffer keeps its complex128 values
    compiled = ncd_compile(from_torch(model, x))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_a_complex_output_is_refused_with_a_reason():
    class Spectrum(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x)

    with pytest.raises(TorchImportError, match="complex tensor"):
        from_torch(Spectrum(), torch.randn(2, 8))


class Written(nn.Module):
    """Activations as code writes them out."""

    def __init__(self, form):
        super().__init__()
        self.form = form

    def forward(self, x):
        if self.form == "gelu_tanh":  # GPT-2, BERT's gelu_new
            return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))
        if self.form == "gelu":  # BERT's gelu
            return x * 0.5 * (1.0 + torch.erf(x / 1.4142135623730951))
        if self.form == "silu":
            return x * torch.sigmoid(x)
        if self.form == "softplus":
            return torch.log(1 + torch.exp(x)) * 1.0
        return x * torch.sigmoid(1.702 * x)  # quick GELU: no function of the vocabulary


@pytest.mark.parametrize("form", ["gelu_tanh", "gelu", "silu", "softplus", "quick"])
def test_written_out_activations_are_recognised_by_value(form):
    circuit = _imported(Written(form), torch.randn(3, 7))
    kinds = [(b.kind, getattr(b, "fn", None)) for b in circuit.boxes]
    if form == "quick":
        assert ("unary", "sigmoid") in kinds and len(kinds) > 1
    else:
        assert kinds == [("unary", form)]


class TimmAttention(nn.Module):
    """timm's vision-transformer attention: one qkv map reshaped to (3, heads, features),
    unbound; the queries scaled before their product with the keys; dropouts of rate 0."""

    def __init__(self, dim=32, num_heads=4):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(0.0), nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


def test_timm_attention_fuses_with_its_query_scale():
    """A scale of q (or k) read by the scores alone multiplies into the kernel's scale; the
    heads and their features are named H and K; dropouts of rate 0 are no boxes."""
    torch.manual_seed(0)
    model, x = TimmAttention(), torch.randn(2, 16, 32)
    circuit = _imported(model, x, rewrites=True)
    kinds = [b.kind for b in circuit.boxes]
    assert "dropout" not in kinds and {"H", "K"} <= set(circuit.sizes)
    (att,) = [b for b in apply_rewrites(circuit).boxes if b.kind == "attention"]
    assert not att.causal and att.scale == "K**-0.5"  # the number, named by its size
    assert "scale" not in [b.kind for b in apply_rewrites(circuit).boxes]


def test_a_scale_that_is_a_root_of_the_head_size_is_written_with_it():
    """0.25 with heads of 16 features is K**-0.5; a 0.25 elsewhere stays a number."""
    circuit = from_torch(TimmAttention(dim=64, num_heads=4), torch.randn(2, 5, 64))
    (scale,) = [b.factor for b in circuit.boxes if b.kind == "scale"]
    assert scale == "K**-0.5" and circuit.sizes["K"] == 16

    class Quarter(nn.Module):
        def forward(self, x):
            return x * 0.25

    (box,) = from_torch(Quarter(), torch.randn(16, 3)).boxes
    assert box.factor == "0.25"


class UpBlock(nn.Module):
    """A U-Net decoder step: upsample, join the skip connection's channels, convolve."""

    def __init__(self, mode, c=4):
        super().__init__()
        self.mode = mode
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(2 * c, c, 3, padding=1)

    def forward(self, x, skip):
        if self.mode == "module":
            x = self.up(x)
        else:
            x = F.interpolate(x, scale_factor=2, mode=self.mode)
        return self.conv(torch.cat([x, skip], dim=1))


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "module"])
def test_upsampling_is_an_upsample_box(mode):
    circuit = _imported(UpBlock(mode), torch.randn(2, 4, 3, 5), torch.randn(2, 4, 6, 10))
    (up,) = [b for b in circuit.boxes if b.kind == "upsample"]
    assert up.factor == 2 and up.mode == ("linear" if mode == "bilinear" else "nearest")
    assert "opaque" not in [b.kind for b in circuit.boxes]


class Router(nn.Module):
    """A mixture-of-experts router: the top-2 gate weights per token, an output begun as
    zeros and summed over the experts."""

    def __init__(self, d=8, experts=4):
        super().__init__()
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(nn.Linear(d, d) for _ in range(experts))

    def forward(self, x):
        top, idx = self.gate(x).softmax(-1).topk(2, dim=-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + (top * (idx == e)).sum(-1, keepdim=True) * expert(x)
        return out


def test_topk_and_zeros_like_are_boxes():
    circuit = _imported(Router(), torch.randn(2, 5, 8))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "topk" in kinds and "constant" in kinds


class FusedKV(nn.Module):
    """Grouped-query attention with keys and values from one map of width 2 G K, which with
    G = H / 2 equals the model's width D = H K."""

    def __init__(self, d=32, heads=4, groups=2):
        super().__init__()
        self.h, self.g, self.k = heads, groups, d // heads
        self.q, self.kv, self.o = (
            nn.Linear(d, d),
            nn.Linear(d, 2 * groups * self.k),
            nn.Linear(d, d),
        )

    def forward(self, x):
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.h, self.k).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 2, self.g, self.k).unbind(2)
        k = k.transpose(1, 2).repeat_interleave(self.h // self.g, 1)
        v = v.transpose(1, 2).repeat_interleave(self.h // self.g, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(B, T, D))


def test_a_map_as_wide_as_the_model_split_otherwise_gets_its_own_axis_name():
    """The kv map's output first takes D's name (same width), whose size is H K; its split
    into (2, G, K) then cannot hold, and the import names that output apart."""
    circuit = _imported(FusedKV(), torch.randn(2, 8, 32))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "attention" in kinds
    (kv,) = [b for b in circuit.boxes if b.name == "kv"]
    assert kv.out != "D"


class EinopsAttention(nn.Module):
    """Attention as einops code writes it: heads split by `rearrange` (imported by name and
    through the module), patches by the `Rearrange` layer, pooling by `reduce`."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        import einops.layers.torch as el

        self.h = heads
        self.patches = nn.Sequential(
            el.Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4), nn.Linear(48, d)
        )
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, img):
        import einops
        from einops import rearrange, reduce

        x = self.patches(img)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.h) for t in self.qkv(x).chunk(3, -1))
        a = (torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5).softmax(-1)
        y = einops.rearrange(torch.einsum("bhij,bhjd->bhid", a, v), "b h n d -> b n (h d)")
        return reduce(self.o(y), "b n d -> b d", "mean")


def test_einops_rearrange_and_reduce_are_boxes():
    circuit = _imported(EinopsAttention(), torch.randn(2, 3, 16, 16), rewrites=True)
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "reduce" in kinds
    assert "attention" in [b.kind for b in apply_rewrites(circuit).boxes]


class LucidViTInput(nn.Module):
    """vit-pytorch's input (lucidrains): patches by the Rearrange layer, the class token
    repeated over the batch by einops, joined, a sliced position table added in place."""

    def __init__(self, d=32):
        super().__init__()
        import einops.layers.torch as el

        self.to_patch = nn.Sequential(
            el.Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4), nn.Linear(48, d)
        )
        self.pos = nn.Parameter(torch.randn(1, 17, d))
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))

    def forward(self, img):
        from einops import repeat

        x = self.to_patch(img)
        b, n, _ = x.shape
        x = torch.cat((repeat(self.cls_token, "1 1 d -> b 1 d", b=b), x), dim=1)
        x += self.pos[:, : (n + 1)]
        return x[:, 0] + x[:, 1:].amax(1)


def test_einops_repeat_of_a_class_token_is_copies():
    circuit = _imported(LucidViTInput(), torch.randn(2, 3, 16, 16))
    assert "opaque" not in [b.kind for b in circuit.boxes]


class TokenShift(nn.Module):
    """RWKV-4's token shift: each token mixed with the one before it, by a zero padding
    layer that pads one position at the front and crops one at the end."""

    def __init__(self, d=8):
        super().__init__()
        self.shift = nn.ZeroPad2d((0, 0, 1, -1))
        self.mix = nn.Parameter(torch.rand(1, 1, d))

    def forward(self, x):
        return x * self.mix + self.shift(x) * (1 - self.mix) + F.pad(x, (0, 0, -2, 2))


def test_zero_padding_layers_and_crops_are_boxes():
    circuit = _imported(TokenShift(), torch.randn(2, 6, 8))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "slice" in kinds and "concat" in kinds


class AdditiveMask(nn.Module):
    """Scores plus torch's square subsequent mask (0 on and below the diagonal, -inf above)."""

    def forward(self, q, k, v):
        mask = nn.Transformer.generate_square_subsequent_mask(q.shape[-2], dtype=q.dtype)
        s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + mask
        return s.softmax(-1) @ v


def test_an_additive_causal_mask_is_a_mask_box_and_fuses():
    q, k, v = (torch.randn(2, 3, 6, 4) for _ in range(3))
    circuit = _imported(AdditiveMask(), q, k, v, rewrites=True)
    (mask,) = [b for b in circuit.boxes if b.kind == "mask"]
    assert mask.pattern == "causal" and mask.fill == "-inf"
    (att,) = [b for b in apply_rewrites(circuit).boxes if b.kind == "attention"]
    assert att.causal


class CausalEncoder(nn.Module):
    """torch's encoder layer given the square subsequent mask, as nn.Transformer users write."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.enc(x, src_mask=mask, is_causal=True)


class MaskedMHA(nn.Module):
    """nn.MultiheadAttention with a boolean causal mask (True: not attended), or with a key
    padding mask from an input (the attention box's mask port)."""

    def __init__(self, padding=False):
        super().__init__()
        self.padding = padding
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x, pad):
        if self.padding:
            return self.mha(x, x, x, key_padding_mask=pad > 0, need_weights=False)[0]
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]


def test_causal_masks_given_to_torch_attention_layers_are_causal_attention():
    x, pad = torch.randn(2, 6, 16), (torch.arange(6) > 3).float().expand(2, 6)
    for model, xs in ((CausalEncoder(), (x,)), (MaskedMHA(), (x, pad))):
        circuit = _imported(model, *xs)
        kinds = [b.kind for b in circuit.boxes]
        assert "opaque" not in kinds, kinds
        assert [b.causal for b in circuit.boxes if b.kind == "attention"] == [True]
    circuit = _imported(MaskedMHA(padding=True), x, pad)  # (output, None): the output
    assert "opaque" not in [b.kind for b in circuit.boxes]
    assert [b.masked for b in circuit.boxes if b.kind == "attention"] == [True]


def test_nanogpt_whole_with_its_length_assert_and_tied_head():
    """A condition on sizes alone (`assert t <= block_size`) takes the example's answer; the
    output map tied to the token embedding stays one parameter."""
    from tests.compiler.nanogpt import GPT

    model, idx = GPT().eval(), torch.randint(0, 64, (2, 12))
    circuit = from_torch(model, idx)
    assert "opaque" not in [b.kind for b in circuit.boxes]
    assert list(circuit.tied) == ["lm_head.weight"]
    compiled = ncd_compile(circuit).eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(idx), model(idx))
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in compiled.parameters()) == count
    assert ncd.analyse(circuit).numbers["params"] == count


def _compiled_follows(model, circuit, *inputs):
    """The compiled circuit gives the model's outputs on inputs other than the example's."""
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs), rtol=1e-10, atol=1e-10)


def test_hf_bert_layer_imports_whole_with_the_padding_mask_of_its_inputs():
    """BERT's `(1 - mask) * finfo(dtype).min`, past the language's number limit, is read only
    by the softmax (added to the scores): a scale by -1e4, which weighs the padded keys 0 as
    the dtype's minimum does. The compiled layer follows other paddings."""
    from tests.compiler.hf_bert import BertLayer

    torch.manual_seed(0)
    model = BertLayer().double().eval()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    circuit = from_torch(model, (x, mask))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds, kinds
    # the mask's size-1 dims (`mask[:, None, None, :]`) stay off its wires through the cast,
    # 1 - mask and the scale: no unit axes split off and indexed away again
    assert "index" not in kinds and kinds.count("split_axis") == 3, kinds
    assert [b.factor for b in circuit.boxes if b.kind == "scale" and b.factor.startswith("-")] == [
        "-10000.0"
    ]
    _compiled_follows(model, circuit, x, mask)
    _compiled_follows(model, circuit, x, torch.tensor([[1, 1, 0, 0, 0, 0, 0], [1] * 6 + [0]]))


class PaddedAttention(nn.Module):
    """The Annotated Transformer's masking: keys of padding tokens (id 0) filled with -1e9
    before the softmax, the mask made from the token ids; `how` picks the spelling."""

    def __init__(self, how="masked_fill", d=16, vocab=11):
        super().__init__()
        self.how, self.emb = how, nn.Embedding(vocab, d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, ids):
        x = self.emb(ids)
        scores = self.q(x) @ self.k(x).transpose(-2, -1) / 4
        mask = (ids != 0).unsqueeze(-2)
        if self.how == "masked_fill":
            scores = scores.masked_fill(mask == 0, -1e9)
        elif self.how == "where":
            scores = torch.where(mask.int().bool(), scores, float("-inf"))
        else:  # the complement, filled first
            scores = torch.where(~mask, torch.finfo(scores.dtype).min, scores)
        return scores.softmax(-1) @ self.v(x)


@pytest.mark.parametrize("how, compares", [("masked_fill", 2), ("where", 1), ("not", 1)])
def test_a_padding_mask_from_the_inputs_is_a_compare_and_a_where_box(how, compares):
    """`mask == 0` of a boolean mask compares again (as the code does); `~mask` and a cast to
    bool add no comparison."""
    torch.manual_seed(0)
    model = PaddedAttention(how).double().eval()
    ids = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    circuit = from_torch(model, (ids,))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "mask" not in kinds, kinds
    assert [b.fill for b in circuit.boxes if b.kind == "where"] == ["-inf"]
    assert kinds.count("compare") == compares
    _compiled_follows(model, circuit, ids)
    _compiled_follows(model, circuit, torch.tensor([[7, 0, 0, 0, 0], [0, 2, 0, 4, 0]]))


class Selects(nn.Module):
    """where over two tensors, one of them infinite in places (no product form), and a
    masked_fill by a value read only by a later sum (not a softmax: no fill)."""

    def forward(self, x):
        y = torch.where(x > 0, x, x.exp().masked_fill(x < -1, float("inf")))
        return y.clamp(max=5) + x.masked_fill(x.abs() > 1, -1e9).sum(-1, keepdim=True)


def test_where_of_two_tensors_and_a_fill_no_softmax_reads():
    x = torch.randn(3, 8, dtype=torch.float64) * 2
    circuit = _imported(Selects(), x)
    wheres = [b for b in circuit.boxes if b.kind == "where"]
    assert sorted(str(b.fill) for b in wheres) == ["None", "None", "inf"]


class HugeFactor(nn.Module):
    """The dtype's minimum as a factor whose product is returned (no softmax reads it)."""

    def forward(self, x, m):
        return x + (1.0 - m.to(x.dtype)) * torch.finfo(x.dtype).min


def test_a_factor_past_the_number_limit_that_no_softmax_reads_stays_opaque():
    x, m = torch.randn(2, 4, dtype=torch.float64), torch.tensor([[1, 0, 1, 1], [1, 1, 1, 0]])
    circuit = from_torch(HugeFactor(), (x, m))
    assert [b.kind for b in circuit.boxes if b.kind == "opaque"] == ["opaque"]
    _compiled_follows(HugeFactor(), circuit, x, m)


class T5RelativeBias(nn.Module):
    """T5's relative position buckets (exact near, logarithmic far, capped by `torch.min` of
    two tensors, `torch.where` between integer tensors, a sign bucket `(rel > 0).long() * n`),
    looked up per head and added to the scores."""

    def __init__(self, heads=2, buckets=8, max_distance=16):
        super().__init__()
        self.bias = nn.Embedding(buckets, heads)
        self.buckets, self.max_distance = buckets, max_distance

    def bucket(self, rel):
        n = self.buckets // 2
        out = (rel > 0).to(torch.long) * n
        rel = torch.abs(rel)
        exact = n // 2
        far = exact + (
            torch.log(rel.float() / exact) / math.log(self.max_distance / exact) * (n - exact)
        ).to(torch.long)
        far = torch.min(far, torch.full_like(far, n - 1))
        return out + torch.where(rel < exact, rel, far)

    def forward(self, x):
        T = x.shape[2]
        rel = torch.arange(T)[None, :] - torch.arange(T)[:, None]
        scores = torch.einsum("bhtd,bhsd->bhts", x, x)
        return (scores + self.bias(self.bucket(rel)).permute(2, 0, 1)).softmax(-1)


def test_t5_relative_position_buckets_import_as_integer_boxes():
    circuit = _imported(T5RelativeBias(), torch.randn(2, 2, 9, 4))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds, kinds
    assert {"compare", "where", "embedding"} <= set(kinds)
    assert [b.fn for b in circuit.boxes if b.kind == "binary" and b.fn == "minimum"] == ["minimum"]


class WindowShift(nn.Module):
    """Swin's pieces: a cyclic shift (`torch.roll` and `.roll`), a relative position bias read
    from its table by an integer index buffer, a batch of windows regrouped by `view(B, nW,
    ...)` after a merge, and `int()` of a size computed from shapes."""

    def __init__(self, ws=2, heads=2, d=8):
        super().__init__()
        self.ws = ws
        self.table = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads))
        i = torch.arange(ws * ws)
        rel = (i[:, None] // ws - i[None, :] // ws + ws - 1) * (2 * ws - 1)
        self.register_buffer("index", rel + i[:, None] % ws - i[None, :] % ws + ws - 1)
        self.qk = nn.Linear(d, 2 * heads * d)

    def forward(self, x):  # x [B, H, W, d]
        B, H, W, d = x.shape
        x = torch.roll(x, shifts=(-1, 1), dims=(1, 2)).roll(1, 2)
        w = x.view(B, H // self.ws, self.ws, W // self.ws, self.ws, d).permute(0, 1, 3, 2, 4, 5)
        w = w.reshape(-1, self.ws * self.ws, d)  # windows of every image, one batch
        nw = int(w.shape[0] / B)
        q, k = self.qk(w).view(w.shape[0], w.shape[1], 2, -1, d).permute(2, 0, 3, 1, 4)
        bias = self.table[self.index.view(-1)].view(self.ws**2, self.ws**2, -1)
        scores = q @ k.transpose(-2, -1) + bias.permute(2, 0, 1).unsqueeze(0)
        return scores.softmax(-1).view(B, nw, -1, self.ws**2, self.ws**2).sum(1)


def test_swin_shift_windows_and_bias_table_import_as_boxes():
    circuit = _imported(WindowShift(), torch.randn(2, 4, 6, 8))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds, [b.name for b in circuit.boxes if b.kind == "opaque"]
    assert kinds.count("concat") == 3 and "embedding" in kinds and "constant" in kinds


class Regroup(nn.Module):
    """Rows of every (batch, a, b) position through a linear map, then back as (batch, a b)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 5)

    def forward(self, x):
        y = self.lin(x.reshape(-1, x.shape[-1]))
        return y.view(x.shape[0], -1, x.shape[-1]).softmax(1)


def test_a_split_into_products_of_merged_axes_regroups_them():
    """(B, A, C) merged, then split as (B, A C): one split, its second axis declared A*C."""
    circuit = _imported(Regroup(), torch.randn(2, 3, 4, 5))
    kinds = [b.kind for b in circuit.boxes if b.kind in ("split_axis", "merge_axes", "opaque")]
    assert kinds == ["merge_axes", "split_axis"]
    split = next(b for b in circuit.boxes if b.kind == "split_axis")
    merged = next(b for b in circuit.boxes if b.kind == "merge_axes")
    assert sympy.sympify(circuit.axes[split.into[1]]) == sympy.sympify("*".join(merged.axes[1:]))


def test_a_swin_block_imports_whole():
    from tests.compiler.swin import SwinBlock

    torch.manual_seed(0)
    circuit = _imported(SwinBlock(), torch.randn(2, 64, 16))
    assert "opaque" not in [b.kind for b in circuit.boxes]


def _splits(circuit) -> list[tuple[str, tuple[str, ...]]]:
    return [(b.axis, b.into) for b in circuit.boxes if b.kind == "split_axis"]


def test_swin_axes_are_named_from_what_their_splits_split():
    """Swin's tokens on their grid (`x.view(B, H, W, C)`) were named as heads and head
    features (T → H K), its windows as more heads (H → H2 K2, K → H3 K3) and the positions
    within a window K4: the parts of a split are now named from what it splits. The tokens
    T are a grid, Y X; an axis of the grid splits into its parts, the windows along it and
    the positions within one, Y → Y_1 Y_2 (drawn Y₁ Y₂); a window's positions read in order
    are a sequence (T2), the heads the attention's own H K; the windows the shifted mask
    is added over (`view(B_ // nW, nW, ...)`), Y_1 X_1 read in order, index windows, a batch
    (B3 = Y_1*X_1; it was named as a sequence, T3); and the window reverse merges Y_1 Y_2
    back into Y, Y X into T."""
    from tests.compiler.swin import SwinBlock

    torch.manual_seed(0)
    circuit = _imported(SwinBlock(), torch.randn(2, 64, 16))
    splits = _splits(circuit)
    assert splits[:3] == [("T", ("Y", "X")), ("Y", ("Y_1", "Y_2")), ("X", ("X_1", "X_2"))]
    assert ("F", ("E", "H", "K")) in splits  # qkv: 3, heads, head features
    merges = {b.axes: b.into for b in circuit.boxes if b.kind == "merge_axes"}
    assert merges[("Y_2", "X_2")] == "T2" and merges[("B", "Y_1", "X_1")] == "B2"
    assert merges[("Y_1", "Y_2")] == "Y" and merges[("Y", "X")] == "T"
    assert ("B2", ("B", "B3")) in splits and circuit.axes["B3"] == "Y_1*X_1"
    names = {a for b in circuit.boxes for a in getattr(b, "into", ()) or ()}
    assert not {"H2", "K2", "H3", "K3", "K4"} & names
    # drawn as the notation writes a part of Y, on the wires and in the boxes' notes: Y₁
    from ncd.circuits.draw import render

    svg = render(circuit, max_width=None)
    split = svg[svg.index('id="box:view_1_split"') :].split("</g>", 1)[0]
    assert re.search(r'italic"[^>]*>Y</text>\s*<text[^>]*baseline-shift="sub"[^>]*>1<', split)


class ChunkedMean(nn.Module):
    """Each chunk of 4 tokens averaged, the chunk length written as a number."""

    def forward(self, x):
        B, T, D = x.shape
        return x.view(B, T // 4, 4, D).mean(2) + x.reshape(B, -1, 4, D).amax(2)


class GridMean(nn.Module):
    """A vision transformer's tokens on their square grid (both sides computed), averaged
    over its rows."""

    def forward(self, x):
        B, T, D = x.shape
        side = int(T**0.5)
        return x.view(B, side, side, D).mean(1)


def test_a_sequence_cut_into_chunks_is_named_as_chunks_not_a_grid():
    """`x.view(B, T // 4, 4, D)` cuts the sequence into chunks of a length the code writes:
    T_1 T_2 (the chunks, the positions in each), as Swin's Y_1 Y_2; a grid whose sides are
    both computed (or both given) stays Y X. The imports against the models."""
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    circuit, _ = same_import(ChunkedMean(), x)
    assert _splits(circuit) == [("T", ("T_1", "T_2"))]  # (one split box, read by both)
    circuit, _ = same_import(GridMean(), x)
    assert _splits(circuit) == [("T", ("Y", "X"))]


class MixFFN(nn.Module):
    """PVTv2's feed-forward: the tokens put back on their grid for a depthwise convolution
    (`x.transpose(1, 2).reshape(B, C, H, W)`), then flattened again."""

    def __init__(self, c=8, hidden=16, res=4):
        super().__init__()
        self.res = res
        self.fc1 = nn.Linear(c, hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x):
        B = x.shape[0]
        h = self.fc1(x)
        g = h.transpose(1, 2).reshape(B, h.shape[-1], self.res, self.res)
        return self.fc2(F.gelu(self.dw(g).flatten(2).transpose(1, 2)))


def test_tokens_put_on_a_grid_are_named_as_a_grid():
    """The tokens a convolution sees as an image were split into H K, heads and head
    features, and convolved over them: they are the grid's Y X, merged back into T."""
    circuit = _imported(MixFFN(), torch.randn(2, 16, 8))
    assert _splits(circuit) == [("T", ("Y", "X"))]
    conv = next(b for b in circuit.boxes if b.kind == "conv")
    assert tuple(conv.spatial) == ("Y", "X")
    assert [(b.axes, b.into) for b in circuit.boxes if b.kind == "merge_axes"] == [
        (("Y", "X"), "T")
    ]


class Call(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


MAPPED = {  # torch calls that import as boxes, each compared with torch
    "squeeze": lambda x: x[:, :1, None].squeeze() + x[:, 0],
    "squeeze_dim": lambda x: x[:, :1].squeeze(1),
    "stack": lambda x: torch.stack([x, 2 * x]).sum(0),
    "stack_last": lambda x: torch.stack([x, x.exp(), -x], -1).amax(-1),
    "swapaxes": lambda x: x.swapaxes(1, 2),
    "movedim": lambda x: torch.movedim(x, (0, 1), (2, 0)),
    "t": lambda x: x[0].t(),
    "select": lambda x: torch.select(x, -1, -1),
    "narrow": lambda x: x.narrow(-1, -3, 2),
    "logsumexp": lambda x: torch.logsumexp(x, (1, 2), keepdim=True) + x,
    "view_as": lambda x: x.reshape(2, 48).view_as(x),
    "unflatten": lambda x: x.flatten(1).unflatten(1, (6, 8)),
    "sign_floor": lambda x: x.sign() + torch.floor(x),
    "dropout_off": lambda x: F.dropout(x, 0.5, training=False),
    "mean_all": lambda x: x - x.mean() + x.amax(),
    "var": lambda x: x.var(-1, keepdim=True) + x,
    "std": lambda x: x.std(1, keepdim=True) * x,
    "var_biased": lambda x: torch.var(x, (1, 2), unbiased=False),
    "std_all": lambda x: x.std(correction=0) + x.var(-1, True, True),
    "any": lambda x: x * (x > 0).any(-1, keepdim=True) + torch.any(x > 1, 1, keepdim=True),
    "all": lambda x: x.all(-1, keepdim=True).double() + (x > -3).all().double() * x,
    "repeat": lambda x: x.repeat(2, 1, 3).sum(0),
    "tile": lambda x: torch.tile(x, (1, 2)).amax(-1),
    "add_alpha": lambda x: torch.add(x, x.exp(), alpha=2) + x.sub(3, alpha=0.5),
    "sub_alpha": lambda x: torch.sub(x, x.exp(), alpha=0.5),
    "max_dim": lambda x: torch.max(x, 2, keepdim=True)[0] * x + x.max(1, True).values,
    "min_dim": lambda x: x.min(-1)[0] + x.max() - x.min(dim=1).values.sum(-1, keepdim=True),
}


@pytest.mark.parametrize("op", sorted(MAPPED))
def test_common_torch_calls_import_as_boxes(op):
    circuit = _imported(Call(MAPPED[op]), torch.randn(2, 6, 8))
    assert "opaque" not in [b.kind for b in circuit.boxes]


def test_the_indices_of_a_max_stay_opaque():
    """`x.max(1)[1]` (ties broken as torch breaks them) is not taken for a reduce; the opaque
    box's indices output is int64 beside its float values (the cast after it was dropped
    while the box gave every output one type)."""
    circuit = _imported(Call(lambda x: x.max(1)[1].double()), torch.randn(2, 6, 8))
    assert [b.kind for b in circuit.boxes] == ["opaque", "cast"]
    assert list(circuit.boxes[0].dtypes.values()) == ["int64"]


@pytest.mark.parametrize(
    "model, opaque",
    [(Call(lambda x: F.softplus(x, beta=2)), 1), (nn.Softplus(threshold=3), 1),
     (Call(F.elu), 0), (nn.ELU(alpha=0.5), 1)],
)  # fmt: skip
def test_a_unary_call_with_options_the_box_lacks_is_not_taken_for_the_box(model, opaque):
    """softplus with beta 2 (or another threshold) is not the box's softplus: opaque, still
    right; elu with torch's default alpha is the box."""
    circuit = _imported(model, torch.randn(2, 5) * 4)
    assert [b.kind for b in circuit.boxes].count("opaque") == opaque


class Recurrent(nn.Module):
    """An LSTM (its result `(out, (h, c))`, a nested tuple) between two linear maps."""

    def __init__(self):
        super().__init__()
        self.inp, self.lstm = nn.Linear(6, 8), nn.LSTM(8, 5, batch_first=True)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        y, (h, c) = self.lstm(self.inp(x))
        return self.out(y) + h[-1, :, None, :3] * c.sum()


def test_a_layer_returning_a_nested_tuple_is_one_opaque_box_with_each_tensor_an_output():
    circuit = _imported(Recurrent(), torch.randn(2, 7, 6))
    opaque = [b for b in circuit.boxes if b.kind == "opaque"]
    assert len(opaque) == 1 and len(opaque[0].outputs) == 3


@pytest.mark.parametrize(
    "layers",
    [[nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)],
     [nn.PixelUnshuffle(2), nn.Conv2d(12, 4, 1)], [nn.Flatten(2), nn.Unflatten(2, (6, 6))]],
)  # fmt: skip
def test_pixel_shuffles_and_unflatten_import_as_reshapes(layers):
    circuit = _imported(nn.Sequential(*layers), torch.randn(2, 3, 6, 6))
    assert "opaque" not in [b.kind for b in circuit.boxes]


class ChannelsFirstNorm(nn.Module):
    """ConvNeXt's LayerNorm over the channels of [B, C, H, W], written out (`how`: the mean
    of the centred square under sqrt, `var(unbiased=False)` under rsqrt)."""

    def __init__(self, how, c=4, eps=1e-6):
        super().__init__()
        self.how, self.eps = how, eps
        self.weight, self.bias = nn.Parameter(torch.randn(c)), nn.Parameter(torch.randn(c))

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        if self.how == "sqrt":
            x = (x - u) / torch.sqrt((x - u).pow(2).mean(1, keepdim=True) + self.eps)
        else:
            x = (x - u) * torch.rsqrt(x.var(1, keepdim=True, unbiased=False) + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


@pytest.mark.parametrize("how", ["sqrt", "var"])
def test_a_layer_norm_written_out_over_channels_is_a_layernorm_box(how):
    circuit = _imported(ChannelsFirstNorm(how), torch.randn(2, 4, 5, 5))
    norms = [b for b in circuit.boxes if b.kind == "layernorm"]
    assert len(norms) == 1 and not norms[0].affine and norms[0].eps == 1e-6
    assert "reduce" not in [b.kind for b in circuit.boxes]


class ExpandedTable(nn.Module):
    """A position table expanded over the batch, added (`pos.expand(B, -1, -1) + x`)."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 6, 8))

    def forward(self, x):
        return self.pos.expand(x.shape[0], -1, -1) + x


@pytest.mark.parametrize("model", ["ClassToken", "LucidViTInput", "ExpandedTable"])
def test_a_tensor_expanded_over_the_batch_leaves_the_batch_free(model):
    """An expand over the batch is a broadcast (a concat or a binary op repeats the class
    token by name), not copies as many as the example's batch: the compiled module takes any
    batch size."""
    model = globals()[model]().double().eval()
    x = torch.randn(2, 6, 8) if isinstance(model, ExpandedTable) else torch.randn(2, 3, 16, 16)
    circuit = _imported(model, x)
    assert not any(b.name.endswith("copies") for b in circuit.boxes)
    other = torch.randn(5, *x.shape[1:], dtype=torch.float64)
    _compiled_follows(model, circuit, other)


@pytest.mark.parametrize(
    "act",
    [nn.LeakyReLU(0.2), nn.LeakyReLU(1.5), nn.Hardtanh(-0.5, 2.0), nn.Hardsigmoid(), nn.Mish(),
     nn.Softsign(), Call(lambda x: F.leaky_relu(x, 0.1) + F.hardtanh(x) + F.hardsigmoid(x)),
     Call(lambda x: F.mish(x[:, None]) + F.softsign(x))],
)  # fmt: skip
def test_activations_without_a_box_import_as_the_boxes_of_their_definition(act):
    x = torch.randn(2, 4, 8) * 4
    circuit = _imported(nn.Sequential(nn.Linear(8, 8), act), x)
    assert "opaque" not in [b.kind for b in circuit.boxes]


class InPlace(nn.Module):
    """In-place methods on a fresh tensor, the tensor read again after them, and `//` and
    `torch.div(rounding_mode="floor")` (a floor division, not a true one)."""

    def forward(self, x):
        y = x * 2
        y.add_(x.exp()).mul_(0.5)
        z = (x * 1).relu_().clamp_(max=1.0)
        q = torch.div(x, 0.7, rounding_mode="floor") + x // 0.3 + torch.true_divide(x, 3)
        return y + z + q


class InPlaceOnAView(nn.Module):
    def forward(self, x):
        y = x * 2
        first = y[:, 0]
        y.add_(1)
        return first + y.sum(1)


def test_in_place_methods_and_floor_division_import_as_their_boxes():
    circuit = _imported(InPlace(), torch.randn(2, 5, 3))
    kinds = [b.kind for b in circuit.boxes]
    assert (
        "opaque" not in kinds
        and [b.fn for b in circuit.boxes if b.kind == "binary"].count("floordiv") == 2
    )
    with pytest.raises(TorchImportError, match=r"node add_\): `add_` changes a tensor in place "
                       r"while a view of it made before \(node getitem\) is read after the "
                       r"change \(by node add\)"):  # fmt: skip
        from_torch(InPlaceOnAView(), (torch.randn(2, 5, 3),))


class MutatesItsInput(nn.Module):
    """`add_` on the input, then the input read again; `copy_` (no box) on a fresh tensor."""

    def forward(self, x):
        y = x.add_(1) * 2 + x
        z = x * 3
        z.copy_(y.exp())
        return y + z


def test_an_input_changed_in_place_is_read_changed_after_and_left_alone_for_the_caller():
    """The compiled module gives the model's output (readers after an in-place change read
    the new value; `copy_`, an opaque box, works on a copy of its input) and leaves the
    caller's tensor as it was."""
    x = torch.randn(2, 3)
    circuit = from_torch(MutatesItsInput(), (x.clone(),))
    assert [b.kind for b in circuit.boxes].count("opaque") == 1
    before = x.clone()
    y = ncd_compile(circuit)(x)
    torch.testing.assert_close(y, MutatesItsInput()(x.clone()))
    torch.testing.assert_close(x, before)


def test_an_average_pool_with_its_own_divisor_is_not_taken_for_the_pool_box():
    model = nn.Sequential(nn.AvgPool2d(2, divisor_override=3))
    circuit = _imported(model, torch.randn(2, 4, 9, 9))
    assert [b.kind for b in circuit.boxes] == ["opaque"]


@pytest.mark.parametrize(
    "fn, opaque",
    [(lambda x: F.max_pool2d(x, 3, 2, 1) + F.avg_pool2d(x, 3, 2, 1), 0),
     (lambda x: F.adaptive_avg_pool2d(x, 1) * x, 0), (lambda x: F.pixel_shuffle(x, 2), 0),
     (lambda x: F.avg_pool2d(x, 2, divisor_override=3), 1),
     (lambda x: F.max_pool2d(x, 2, ceil_mode=True), 1)],
)  # fmt: skip
def test_pooling_functions_import_as_the_layer_of_their_arguments(fn, opaque):
    circuit = _imported(Call(fn), torch.randn(2, 4, 9, 9))
    assert [b.kind for b in circuit.boxes].count("opaque") == opaque


def test_zero_padding_of_two_axes_is_zeros_concatenated_along_each():
    """The zeros of each padded axis lie along it alone; the concat repeats them along the
    others (those padded before included)."""
    circuit = _imported(Call(lambda x: F.pad(x, (1, 2, 3, 0))), torch.randn(2, 4, 5, 6))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and kinds.count("concat") == 2
    assert all(len(b.axes) == 1 for b in circuit.boxes if b.kind == "constant")


# -- sizes the model's code reads as numbers (`x.shape[1] ** 0.5`, `range(x.shape[0] // 2)`)


class SeqScale(nn.Module):
    """A sum over the sequence scaled by the square root of its length, read off x.shape."""

    def forward(self, x):
        return x.sum(1) / x.shape[1] ** 0.5


class BatchCentre(nn.Module):
    """A batch mean written by hand: a sum divided by the batch size read off x.shape."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        h = self.a(x)
        return h - h.sum(0) / x.shape[0]


@pytest.mark.parametrize(
    ("model", "axis", "example", "other"),
    [
        (SeqScale(), "T", torch.randn(2, 4, 8), torch.randn(2, 9, 8)),
        (BatchCentre(), "B", torch.randn(4, 8), torch.randn(6, 8)),
    ],
    ids=["seq_scale", "batch_centre"],
)
def test_a_size_read_into_a_scale_stays_a_size(model, axis, example, other):
    """A scale by a size the code reads off x.shape is a size expression of that axis, so
    the circuit compiled at another size follows the model there; compiled at the example's
    size, it refuses another instead of scaling by the example's number."""
    torch.manual_seed(0)
    circuit = _imported(model, example)
    (scale,) = [b for b in circuit.boxes if b.kind == "scale"]
    assert axis in scale.factor
    compiled = ncd_compile(circuit, dtype=torch.float64, sizes={axis: other.shape[
        0 if axis == "B" else 1]}).eval()  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(compiled(other.double()), model(other.double()))
    with pytest.raises(ncd.compiler.errors.InputError, match=f"axis {axis}"):
        ncd_compile(circuit, dtype=torch.float64)(other.double())


class ShapeControl(nn.Module):
    """A loop whose length the batch size sets: the trace holds the example's iterations."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, x):
        for _ in range(x.shape[0] // 2):
            x = torch.tanh(self.a(x))
        return x


def test_python_control_flow_on_a_size_fixes_that_axis():
    """Control flow on a size is the example's (two steps for a batch of 4): the circuit
    fixes the batch at 4, says so, and refuses a batch of 8 (the model takes 4 steps there)
    instead of giving other numbers."""
    torch.manual_seed(0)
    model = ShapeControl()
    with pytest.warns(UserWarning, match=r"fixes B = 4 \(read by .*floordiv"):
        circuit = _imported(model, torch.randn(4, 8))
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    with pytest.raises(ncd.compiler.errors.InputError, match="axis B has size 4"):
        compiled(torch.randn(8, 8, dtype=torch.float64))


class UnpackedAttention(nn.Module):
    """nn.MultiheadAttention's usual call: `a, _ = self.attn(...)`, a causal mask made from
    the length read off x.shape."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        T = x.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        a, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False)
        return a


def test_a_tuple_unpacked_attention_is_boxes_with_its_weights():
    """The weights an unpacked call leaves unread are no reason to keep the layer opaque: it
    is an attention box, its weights are the circuit's (counted), and the length that made
    the mask stays free (the compiled module follows another length)."""
    torch.manual_seed(0)
    model = UnpackedAttention()
    circuit = _imported(model, torch.randn(2, 6, 16))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and "attention" in kinds
    count = sum(p.numel() for p in model.parameters())
    assert ncd.analyse(circuit).numbers["params"] == count
    assert sum(t.numel() for t in ncd.compiler.attached.weights(circuit).values()) == count
    _compiled_follows(model, circuit, torch.randn(3, 9, 16, dtype=torch.float64))


class Normalisers(nn.Module):
    """log_softmax and softmin, as functions, methods and layers."""

    def __init__(self):
        super().__init__()
        self.log = nn.LogSoftmax(dim=-1)
        self.min = nn.Softmin(dim=1)

    def forward(self, x):
        return (F.log_softmax(x, dim=-1) + torch.log_softmax(x, 1) + x.log_softmax(-1)
                + self.log(x) + F.softmin(x, dim=-1) + self.min(x))  # fmt: skip


def test_log_softmax_and_softmin_are_softmax_boxes():
    torch.manual_seed(0)
    circuit = _imported(Normalisers(), torch.randn(3, 5))
    variants = sorted(b.variant for b in circuit.boxes if b.kind == "softmax")
    assert "opaque" not in [b.kind for b in circuit.boxes]
    assert variants == ["log_softmax"] * 4 + ["softmin"] * 2


def test_an_opaque_box_without_its_callable_names_it_and_the_argument():
    """A spec keeps no callable: the module built from the saved spec says which box lacks
    one and how to give it (`opaque=`), and runs once it is given."""
    from ncd.circuits.io import loads

    class Bessel(nn.Module):
        def forward(self, x):
            return torch.special.i0(x) + 1

    x = torch.randn(2, 4)
    circuit = from_torch(Bessel(), x)
    (box,) = [b.name for b in circuit.boxes if b.kind == "opaque"]
    saved = loads(circuit.to_json())
    with pytest.raises(RuntimeError, match=rf"opaque box '{box}'.*opaque=\{{'{box}': fn\}}"):
        ncd_compile(saved)(x)
    given = ncd_compile(saved, opaque={box: torch.special.i0})
    torch.testing.assert_close(given(x), torch.special.i0(x) + 1)


def test_an_opaque_layer_with_parameters_says_they_are_not_the_circuits():
    """A layer ncd does not map runs as an opaque box holding its parameters: the import says
    they are outside the circuit's weights rather than dropping them from the count silently."""

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 8, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    model = Recurrent()
    count = sum(p.numel() for p in model.parameters())
    with pytest.warns(UserWarning, match=rf"opaque box 'rnn', whose {count} parameters"):
        circuit = _imported(model, torch.randn(2, 5, 8))
    assert [b.kind for b in circuit.boxes] == ["opaque"]
