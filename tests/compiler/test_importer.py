"""Import from PyTorch: import -> compile -> the original weights -> the original outputs.

Models: nn.TransformerEncoderLayer (both layouts, post- and pre-norm) and a ResNet-style block
written here; an op the importer does not know becomes an opaque box that still runs."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ncd
from ncd.cli import main
from ncd.compiler import attached, from_torch
from ncd.compiler import compile as ncd_compile
from ncd.compiler.rewrites import apply_rewrites
from tests.compiler.nanogpt import GPTBlock


class ResBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, identity shortcut, then a strided 1x1
    projection, global average pooling and a classifier."""

    def __init__(self, c=8, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = nn.Conv2d(c, 2 * c, 1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * c, classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        h = torch.relu(h + x)
        return self.fc(self.pool(self.down(h)).flatten(1))


def _same(model, x, rtol=1e-10, atol=1e-10):
    model = model.double().eval()
    x = x.double()
    circuit = from_torch(model, x)
    compiled = ncd_compile(circuit, dtype=torch.float64).eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=rtol, atol=atol)
    return circuit, compiled


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(batch_first, norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        32, 4, 64, dropout=0.1, batch_first=batch_first, norm_first=norm_first, activation="gelu"
    )
    circuit, compiled = _same(layer, torch.randn(2, 16, 32))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and kinds.count("linear") == 6 and "attention" in kinds
    assert {"B", "T", "D", "H", "K", "F"} <= set(circuit.sizes)
    keys = set(compiled.state_dict())
    assert {"self_attn_q_proj.weight", "linear1.weight", "norm2.bias"} <= keys


def test_resnet_style_block():
    torch.manual_seed(0)
    block = ResBlock()
    for m in block.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    circuit, compiled = _same(block, torch.randn(2, 8, 12, 12))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds
    assert kinds.count("conv") == 3 and kinds.count("batchnorm") == 2 and "pool" in kinds
    assert compiled.get_submodule("bn1").running_var.sum() != 8  # the original statistics


def test_nanogpt_style_block():
    torch.manual_seed(0)
    circuit, _ = _same(GPTBlock(), torch.randn(2, 16, 32))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds
    assert {"split", "split_axis", "merge_axes", "attention"} <= set(kinds)
    assert next(b for b in circuit.boxes if b.kind == "attention").causal


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        return self.lin(torch.flip(x, dims=[1])).softmax(-1)


def test_unknown_ops_become_opaque_boxes_that_still_run_and_draw():
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    circuit, compiled = _same(Odd(), x)
    opaque = [b for b in circuit.boxes if b.kind == "opaque"]
    assert len(opaque) == 1 and "flip" in opaque[0].target
    text = circuit.to_json()
    assert "function" not in text and "0x" not in text  # no callable in the spec
    reloaded = ncd.Circuit.from_json(text)
    assert not attached.callables(reloaded)
    with pytest.raises(RuntimeError, match="no callable"):
        ncd_compile(reloaded)(x.float())
    assert "<svg" in ncd.render(circuit)
    assert ncd.analyse(circuit) is not None


def test_cli_import(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodels.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def layer():\n"
        "    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)\n"
        "    return layer, torch.randn(2, 5, 16)\n"
        "def mlp():\n"
        "    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))\n"
        "class Two(nn.Module):\n"
        "    def forward(self, x, mask):\n"
        "        return x * mask\n"
        "def two_apart():\n"
        "    return Two(), torch.randn(2, 3), torch.ones(2, 3)\n"
        "def two():\n"
        "    return Two(), (torch.randn(2, 3), torch.ones(2, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    out = tmp_path / "spec.json"
    assert main(["import", "mymodels:layer", "-o", str(out)]) == 0
    c = ncd.Circuit.from_json(out.read_text())
    assert [b.kind for b in c.boxes].count("linear") == 6
    assert main(["import", "mymodels:mlp", "--shape", "3,8", "-o", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    assert main(["import", "mymodels:mlp"]) == 1
    assert "--shape" in capsys.readouterr().err
    # inputs given one by one after the model: the error says they go together
    assert main(["import", "mymodels:two_apart"]) == 1
    assert "return (model, (x, mask))" in capsys.readouterr().err
    assert main(["import", "mymodels:two", "-o", str(out)]) == 0


class ScaledNorm(nn.Module):
    """An RMS norm written with its own parameter (a `get_attr` in the traced graph)."""

    def __init__(self, d=6):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain


def test_free_parameters_become_param_boxes():
    norm = ScaledNorm()
    circuit, compiled = _same(norm, torch.randn(2, 5, 6))
    assert "opaque" not in [b.kind for b in circuit.boxes]
    params = [b for b in circuit.boxes if b.kind == "param"]
    assert len(params) == 1 and params[0].name == "gain"
    assert torch.equal(compiled.gain.weight, norm.gain.detach())


class Rms(nn.Module):
    """RMSNorm written out, as models define their own."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Rotary(nn.Module):
    """Rotary position embedding, halves rotated by `x.chunk(2, dim=-1)` (LLaMA's form); cos
    and sin are buffers."""

    def __init__(self, k, t):
        super().__init__()
        angles = torch.outer(torch.arange(t).double(), 1e4 ** -(torch.arange(0, k, 2) / k))
        self.register_buffer("cos", torch.cat([angles, angles], -1).cos())
        self.register_buffer("sin", torch.cat([angles, angles], -1).sin())

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=-1)
        return x * self.cos + torch.cat((-x2, x1), dim=-1) * self.sin


class Layer(nn.Module):
    def __init__(self, d=16, h=2, t=6):
        super().__init__()
        self.h = h
        self.norm, self.rope = Rms(d), Rotary(d // h, t)
        self.qkv = nn.Linear(d, 3 * d, bias=False)  # fused, as LLaMA-style models have it

    def forward(self, x):
        B, T, D = x.shape
        q = self.qkv(self.norm(x)).split(D, -1)[0]
        q = q.view(B, T, self.h, D // self.h).transpose(1, 2)
        return x + self.rope(q).transpose(1, 2).reshape(B, T, D)


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Layer(), Layer()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_rotary_halves_import_as_a_split_and_buffers_stay_untrained():
    circuit, compiled = _same(Layer(), torch.randn(2, 6, 16))
    assert not [b.kind for b in circuit.boxes if b.kind == "opaque"]
    assert "split" in {b.kind for b in circuit.boxes}
    trained = {n.split(".")[0] for n, _ in compiled.named_parameters()}
    assert trained == {"norm_weight", "qkv"}, trained  # cos and sin are buffers


def test_submodules_become_nested_blocks_that_collapse(tmp_path):
    """Each submodule whose forward made several nodes is a block titled by its path in the
    model, inside its parent's block; kept layers (`qkv`) are boxes of their own."""
    circuit, _ = _same(Stack(), torch.randn(2, 6, 16))
    # (a ModuleList is iterated, never called: layers.0 and layers.1 are at the top level)
    assert circuit.groups == {
        f"layers.{i}.{m}": f"layers.{i}" for i in (0, 1) for m in ("norm", "rope")
    }
    by_block = {b.name: b.group for b in circuit.boxes}
    assert by_block["layers_0_qkv"] == "layers.0"
    assert {g for g in by_block.values()} >= {"layers.0.norm", "layers.1.rope"}
    whole = ncd.render(circuit)
    folded = ncd.render(circuit, collapse=["layers.0", "layers.1"])
    assert len(folded) < len(whole) / 2


class HandAttention(nn.Module):
    """Attention written out as research code writes it: the mask from `torch.ones(T, T)`
    (sizes one by one), scores by einsum, functional norms."""

    def __init__(self, d=16, h=2, window=0, permuted=True):
        super().__init__()
        self.h, self.window, self.permuted = h, window, permuted
        self.qkv = nn.Linear(d, 3 * d)
        self.w = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        B, T, D = x.shape
        x = F.layer_norm(x, (D,), self.w, None, 1e-5)
        q, k, v = self.qkv(x).view(B, T, 3 * self.h, D // self.h).transpose(1, 2).chunk(3, 1)
        s = torch.einsum("bhqd,bhkd->bhqk", q, k) * (D // self.h) ** -0.5
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        if self.window:
            mask = mask | torch.tril(torch.ones(T, T, dtype=torch.bool), -self.window)
        p = F.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        if self.permuted:
            y = torch.einsum("bhqk,bhkd->bqhd", p, v)
        else:
            y = torch.einsum("bhqk,bhkd->bhqd", p, v).transpose(1, 2)
        return F.normalize(y.reshape(B, T, D), dim=-1)


@pytest.mark.parametrize("window", [0, 3])
def test_einsum_masks_and_functional_norms_import_as_boxes(window):
    circuit, _ = _same(HandAttention(window=window), torch.randn(2, 7, 16))
    kinds = [b.kind for b in circuit.boxes]
    assert "opaque" not in kinds and kinds.count("contract") == 2, kinds
    (mask,) = [b for b in circuit.boxes if b.kind == "mask"]
    assert (mask.pattern, mask.window) == (("window", 3) if window else ("causal", 0))
    assert {"layernorm", "normalize"} <= set(kinds)
    assert "constant" not in kinds  # the mask's makers are gone with the mask box


@pytest.mark.parametrize("window,permuted", [(0, True), (0, False), (3, True)])
def test_einsum_attention_compiles_to_the_fused_kernel(window, permuted):
    """The two einsums (q and v read with one letter for their features, the output written
    in another axis order or not) and the causal mask become one attention box; a window
    mask does not (the kernel's mask is causal)."""
    model = HandAttention(window=window, permuted=permuted).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    circuit = from_torch(model, x)
    fused = apply_rewrites(circuit)
    att = [b for b in fused.boxes if b.kind == "attention"]
    assert len(att) == (0 if window else 1)
    if att:
        assert att[0].causal and att[0].scale and "softmax" not in [b.kind for b in fused.boxes]
    compiled = ncd_compile(circuit, dtype=torch.float64, rewrites=True)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-10, atol=1e-10)


class ValueMask(nn.Module):
    """A mask computed from the input's values: triangular on the example, not in general."""

    def forward(self, s, pad):
        return s.masked_fill(pad > 0, float("-inf"))


def test_a_mask_from_input_values_is_a_where_box_not_a_causal_mask():
    """A causal example of a mask read from an input is not taken for causality: the circuit
    compares the input and selects (compare and where boxes), and follows any other mask."""
    s = torch.randn(2, 5, 5, dtype=torch.float64)
    pad = torch.triu(torch.ones(5, 5, dtype=torch.float64), 1).expand(2, 5, 5)
    circuit = from_torch(ValueMask().double(), (s, pad))
    kinds = [b.kind for b in circuit.boxes]
    assert "mask" not in kinds and "opaque" not in kinds
    assert {"compare", "where"} <= set(kinds)
    compiled = ncd.compile(circuit, dtype=torch.float64)
    other = (torch.rand(2, 5, 5, dtype=torch.float64) > 0.5).double()
    torch.testing.assert_close(compiled(s, other), ValueMask()(s, other), rtol=0, atol=0)


def test_the_cost_report_sums_each_block():
    """Two identical layers: their blocks cost the same, their sum is the whole model's
    cost, and each block's nested blocks follow it, indented."""
    circuit = from_torch(Stack().double(), torch.randn(2, 6, 16, dtype=torch.float64))
    report = ncd.analyse(circuit)
    rows = {r["block"]: r for r in report.block_rows()}
    assert [(r["block"], r["depth"]) for r in report.block_rows()] == [
        ("layers.0", 0), ("layers.0.norm", 1), ("layers.0.rope", 1),
        ("layers.1", 0), ("layers.1.norm", 1), ("layers.1.rope", 1),
    ]  # fmt: skip
    assert rows["layers.0"]["flops"] == rows["layers.1"]["flops"] > 0
    assert rows["layers.0"]["flops"] + rows["layers.1"]["flops"] == report.numbers["flops"]
    assert rows["layers.0"]["flops_share"] == pytest.approx(0.5)
    norm = sum(r["flops"] for r in report.box_rows() if r["group"] == "layers.0.norm")
    assert rows["layers.0.norm"]["flops"] == norm
    assert "  layers.0.rope" in report.table() and '"blocks"' in report.to_json()


class SdpaMasked(nn.Module):
    """SDPA given a causal mask as research code builds it: boolean (True attends) or additive
    (0 and -inf)."""

    def __init__(self, additive):
        super().__init__()
        self.additive = additive

    def forward(self, q, k, v):
        T = q.shape[-2]
        keep = torch.ones(T, T, dtype=torch.bool).tril()
        if self.additive:
            keep = torch.zeros(T, T, dtype=q.dtype).masked_fill(~keep, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)


@pytest.mark.parametrize("additive", [False, True])
def test_sdpa_with_a_causal_mask_is_causal_attention(additive):
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    circuit = from_torch(SdpaMasked(additive), (q, k, v))
    (att,) = [b for b in circuit.boxes if b.kind == "attention"]
    assert att.causal and [b.kind for b in circuit.boxes] == ["rename", "rename", "attention"]
    y = ncd_compile(circuit, dtype=torch.float64)(q, k, v)
    torch.testing.assert_close(y, SdpaMasked(additive)(q, k, v))


class RmsWritten(nn.Module):
    """RMS norms as models write them: x * rsqrt(mean(x^2) + eps) with pow, square or x * x,
    eps on either side; x / sqrt(...); an fp32 upcast first (LLaMA's)."""

    def __init__(self, form):
        super().__init__()
        self.form = form
        self.weight = nn.Parameter(torch.rand(8) + 0.5)

    def forward(self, x):
        if self.form == "pow":
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        elif self.form == "square":
            y = torch.rsqrt(1e-5 + torch.square(x).mean(dim=-1, keepdim=True)) * x
        elif self.form == "div":
            y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
        else:  # "upcast"
            h = x.to(torch.float32)
            y = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)
        return self.weight * y


@pytest.mark.parametrize("form", ["pow", "square", "div", "upcast"])
def test_rms_norms_written_out_import_as_rmsnorm_boxes(form):
    circuit, _ = _same(RmsWritten(form), torch.randn(2, 3, 8), rtol=1e-7, atol=1e-7)
    kinds = [b.kind for b in circuit.boxes]
    assert kinds.count("rmsnorm") == 1 and "reduce" not in kinds and "unary" not in kinds, kinds
    (norm,) = [b for b in circuit.boxes if b.kind == "rmsnorm"]
    assert norm.eps == (1e-5 if form == "square" else 1e-6) and not norm.affine


def test_a_mean_over_another_axis_is_not_an_rms_norm():
    class Other(nn.Module):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-6)

    circuit, _ = _same(Other(), torch.randn(2, 3, 8))
    assert "rmsnorm" not in [b.kind for b in circuit.boxes]


class _Positions(nn.Module):
    """x + arange(T) (a positions box), x + a registered arange buffer, x + ones(T)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pos_ids", torch.arange(8))

    def forward(self, x):
        t = torch.arange(x.shape[1])
        return x + t + self.pos_ids + torch.ones(x.shape[1], dtype=torch.long)


def test_a_constant_of_differing_values_is_drawn_by_name_not_as_its_fill():
    # torch.arange's values come from the weights: its box's `value` is only the fill before
    # loading (0), which the figure drew as "0". It is now labelled with what it is; a tensor
    # of one number keeps that number as its value (ones: 1, drawn "1", was "0").
    from ncd.circuits.draw.glyphs import drawing

    x = torch.arange(16).reshape(2, 8)
    c = from_torch(_Positions().eval(), x)
    consts = {b.name: b for b in c.boxes if b.kind == "constant"}
    glyphs = {name: drawing(b).glyph for name, b in consts.items()}
    assert glyphs == {"pos_ids": "pos ids", "ones": "1"}, consts
    assert torch.equal(ncd_compile(c)(x), _Positions()(x))
