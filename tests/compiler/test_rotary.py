"""The `rotary` box (rotary position embedding, RoPE) against references written here from
RoFormer's equations (Su et al. 2021: pair i of the d rotated features at position m turned by
m·θ_i, θ_i = base^(−2i/d)) and from Hugging Face's LLaMA code (`rotate_half`, cos and sin
from `inv_freq` and the position ids): both pairings, partial rotation, start positions,
packed sequences, gradients; the standalone file; shape errors; cost against measurement;
the gallery's llama_block (RMSNorm, q/k/v maps, rotary on q and k, grouped-query attention,
SwiGLU) in float32 against the hand-written block of tests/gallery/references.py (which
tests/gallery checks it against in float64, gradients included); import of the written-out
forms as one box."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import ncd
from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import from_torch, interpret, to_source
from ncd.compiler.names import class_name
from tests.cost import measure
from tests.gallery.references import llama_block as llama_reference
from tests.gallery.references import rotate_half

from .helpers import load_source

SIZES = {"B": 2, "H": 3, "T": 7, "K": 8, "N": 4}


# -- references
def roformer(x, pos, base=10000.0, d=None, pairs="half"):
    """RoFormer's rotation written pair by pair: x [..., T, F], positions pos broadcasting
    against [..., T]. Pair i = (a, b) of the first d features, (i, i + d/2) or (2i, 2i + 1):
    y_a = x_a cos mθ_i − x_b sin mθ_i, y_b = x_a sin mθ_i + x_b cos mθ_i."""
    d = d or x.shape[-1]
    y = x.clone()
    for i in range(d // 2):
        a, b = (i, i + d // 2) if pairs == "half" else (2 * i, 2 * i + 1)
        angle = pos.to(torch.float64) * base ** (-2.0 * i / d)
        c, s = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
        y[..., a] = x[..., a] * c - x[..., b] * s
        y[..., b] = x[..., a] * s + x[..., b] * c
    return y


class HFRotaryEmbedding(nn.Module):
    """Hugging Face's LlamaRotaryEmbedding (default rope type): cos and sin of the position
    ids times the inverse frequencies, in float32, then in x's dtype."""

    def __init__(self, dim, base=10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def apply_rotary_pos_emb(q, cos, sin, unsqueeze_dim=1):
    """Hugging Face's apply_rotary_pos_emb, for one tensor ([B, H, T, K])."""
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin)


def _one(x_axes="B H T K", sizes=None, **kw):
    b = Builder("rope", sizes={**SIZES, **(sizes or {})})
    x = b.input("x", x_axes)
    ins = {}
    if "start" in kw:
        ins["start"] = b.input("start", kw.pop("start"), dtype="int64")
    if "offsets" in kw:
        ins["offsets"] = b.input("offsets", kw.pop("offsets"), dtype="int64")
    b.output("y", b.rotary(x, "T", "K", name="rope", **ins, **kw))
    return b.build()


def _x(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


@pytest.mark.parametrize("pairs", ["half", "interleaved"])
@pytest.mark.parametrize("rotated, base", [(None, 10000.0), ("K/2", 500000.0), (2, 10.0)])
def test_box_is_roformers_rotation_with_gradients(pairs, rotated, base):
    c = _one(pairs=pairs, rotated=rotated, base=base)
    model = ncd_compile(c, dtype=torch.float64)
    x = _x(2, 3, 7, 8)
    d = 8 if rotated is None else {"K/2": 4, 2: 2}[rotated]
    want = roformer(x, torch.arange(7), base, d, pairs)
    got = model(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(interpret(c, [x], {}), want, rtol=1e-12, atol=1e-12)
    w = torch.randn(want.shape, dtype=torch.float64)
    (g_got,) = torch.autograd.grad((got * w).sum(), x)
    (g_want,) = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)
    # a rotation: the gradient is the upstream gradient turned back
    torch.testing.assert_close(g_got, roformer(w, -torch.arange(7), base, d, pairs))


def test_axes_by_name_in_any_layout():
    """Positions and features named, wherever they lie: [K T B H] is turned as [B H T K]."""
    b = Builder("rope", sizes=SIZES)
    x = b.input("x", "K T B H")
    b.output("y", b.rotary(x, "T", "K", name="rope"))
    c = b.build()
    x = _x(8, 7, 2, 3)
    got = ncd_compile(c, dtype=torch.float64)(x)
    want = roformer(x.permute(2, 3, 1, 0), torch.arange(7)).permute(3, 2, 0, 1)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(interpret(c, [x], {}), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_equals_hugging_face_rotate_half(dtype):
    """The box in float32 and bfloat16 is Hugging Face's LLaMA rotary: cos and sin computed
    in float32, taken to x's dtype, x * cos + rotate_half(x) * sin (bit for bit)."""
    c = _one(base=500000.0)
    x = _x(2, 3, 7, 8, dtype=dtype).detach()
    pos = torch.arange(7)[None].expand(2, 7)
    cos, sin = HFRotaryEmbedding(8, base=500000.0)(x, pos)
    want = apply_rotary_pos_emb(x, cos, sin)
    assert torch.equal(ncd_compile(c, dtype=dtype)(x), want)


def test_start_positions_and_packed_sequences():
    """A start per batch row turns row b's tokens as positions start[b] … (decoding after a
    cache); packed sequences count from each one's first token."""
    c = _one(start="B")
    x, start = _x(2, 3, 7, 8), torch.tensor([5, 11])
    want = torch.stack([roformer(x[i], start[i] + torch.arange(7)) for i in range(2)])
    torch.testing.assert_close(ncd_compile(c, dtype=torch.float64)(x, start), want)
    torch.testing.assert_close(interpret(c, [x, start], {}), want)
    c = _one(offsets="N", pairs="interleaved")
    offsets = torch.tensor([0, 3, 3, 7])  # sequences of 3, 0 and 4 tokens
    pos = torch.tensor([0, 1, 2, 0, 1, 2, 3])
    want = roformer(x, pos, pairs="interleaved")
    torch.testing.assert_close(ncd_compile(c, dtype=torch.float64)(x, offsets), want)
    torch.testing.assert_close(interpret(c, [x, offsets], {}), want)
    with pytest.raises(ValueError, match="rotary: offsets: expected non-decreasing from 0 to T=7"):
        ncd_compile(c, dtype=torch.float64)(x, torch.tensor([0, 5, 3, 7]))


def test_the_written_file_runs_with_torch_alone(monkeypatch):
    c = _one(start="B H", rotated="K/2", pairs="interleaved")
    text = to_source(c)
    assert "import ncd" not in text and "from ncd" not in text
    assert "def rotary(" in text and "rotated=c.K // 2" in text
    model = ncd_compile(c)
    monkeypatch.setitem(sys.modules, "ncd", None)  # the file must stand alone
    src = load_source(text, class_name(c.name))
    x, start = _x(2, 3, 7, 8, dtype=torch.float32).detach(), torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert torch.equal(src(x, start), model(x, start))


@pytest.mark.parametrize(
    "axes, kw, message",
    [
        ("B T H K", {"sizes": {"K": 7}},
         "port 'x': turns features in pairs: the rotated width is even (expected an even number "
         "of K features, 2 or more, found K=7); or rotated= an even part (partial rotary)"),
        ("B T H K", {"rotated": "K/2+1"}, "found rotated=5"),
        ("B T H K", {"rotated": 10}, "rotates no more features than there are (expected rotated "
         "at most K=8, found 10)"),
        ("B H K", {}, "axis T not on the input (expected axes including T K, found [B=2 H=3 K=8])"),
        ("B T H K", {"start": "T"}, "port 'start': a start per row: axes among the input's other "
         "than positions and features (expected B H, found T)"),
    ],
)  # fmt: skip
def test_errors_say_where_what_and_found(axes, kw, message):
    with pytest.raises(BuildError) as e:
        _one(axes, **kw)
    assert "box 'rope' (rotary)" in str(e.value) and message in str(e.value)


def test_drawing_and_builder_help():
    svg = ncd.render(_one(rotated="K/2", pairs="interleaved", base=500000.0))
    for text in ("↻", "pos", "pairs", "θ=500000", "turned, interleaved"):
        assert text in svg, text
    doc = Builder.rotary.__doc__
    assert "The `rotary` box" in doc and "ncd schema rotary" in doc
    for field in ("seq", "feature", "base", "rotated", "pairs", "start", "packed"):
        assert field in doc


def test_cost_rule_against_measurement():
    """FLOPs by hand; kept bytes (the cos and sin tables) with saved-tensor hooks; peak memory
    with the CPU allocator; on a partial rotation with a start per row."""
    c = _one(start="B", rotated="K/2", sizes={"T": 64, "K": 16, "H": 4})
    sizes = {**SIZES, "T": 64, "K": 16, "H": 4}
    report = ncd.analyse(c, lowering="unfused", device="cpu")
    n = report.numbers
    rows, d = 2 * 64, 8  # positions (B T) and rotated features
    x_elems = 2 * 4 * 64 * 16
    assert n["flops"] == 3 * d // 2 + 3 * rows * d // 2 + rows + 3 * x_elems // 2
    assert n["mm_flops"] == 0
    module = ncd_compile(c)
    xs = measure.make_inputs(c, sizes)
    kept, _ = measure.saved_bytes(module, xs)
    assert kept == n["activation_bytes"] == 2 * rows * d // 2 * 4
    peak, _ = measure.peak_bytes(module, measure.make_inputs(c, sizes))
    assert abs(peak - n["peak_bytes"]) <= 0.05 * peak, (peak, n["peak_bytes"])


# -- the gallery's LLaMA block
def test_llama_block_in_float32():
    """The gallery's llama_block turns q along T and k along S (after the keys' rename), and
    in float32 (the angles in float32, cos and sin then in float32, as Hugging Face's LLaMA)
    is the hand-written block to float32's precision; tests/gallery checks it in float64 with
    every gradient."""
    c = gallery.get("llama_block")
    rope = [(b.seq, b.feature, b.pairs) for b in c.boxes if b.kind == "rotary"]
    assert rope == [("T", "K", "half"), ("S", "K", "half")]
    model = ncd_compile(c, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.3 + 0.1)
    x = torch.randn(2, 16, 32, generator=g)
    params = {k: v.detach().double() for k, v in model.named_parameters()}
    want = llama_reference(params, x.double())["y"]
    torch.testing.assert_close(model(x).double(), want, rtol=1e-4, atol=1e-4)


# -- import: the written-out forms as one box
class HFAttentionRope(nn.Module):
    """Hugging Face's LLaMA rotary as its attention applies it: position ids from arange,
    cos and sin from `inv_freq` in forward, q and k rotated by rotate_half."""

    def __init__(self, d=32, heads=4, kv_heads=2, base=500000.0):
        super().__init__()
        self.h, self.g, self.k = heads, kv_heads, d // heads
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, kv_heads * self.k, bias=False)
        self.rotary_emb = HFRotaryEmbedding(self.k, base)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.h, self.k).transpose(1, 2)
        k = self.wk(x).view(B, T, self.g, self.k).transpose(1, 2)
        position_ids = torch.arange(T, device=x.device).unsqueeze(0)
        cos, sin = self.rotary_emb(x, position_ids)
        return apply_rotary_pos_emb(q, cos, sin), apply_rotary_pos_emb(k, cos, sin)


def rotate_every_two(x):
    """GPT-J's pairing: features 2i and 2i + 1."""
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


class GPTJRope(nn.Module):
    """GPT-J's rotary on [B, T, H, K]: a table of sin and cos per position (a buffer),
    repeated for both features of a pair, the pairs interleaved."""

    def __init__(self, k=8, positions=32):
        super().__init__()
        inv = 1.0 / (10000 ** (torch.arange(0, k, 2) / k))
        angles = torch.einsum("i,j->ij", torch.arange(positions).float(), inv).float()
        self.register_buffer("sincos", torch.cat((angles.sin(), angles.cos()), 1), False)

    def forward(self, x):
        sin, cos = torch.split(self.sincos[: x.shape[1]], x.shape[-1] // 2, dim=-1)
        sin, cos = (t[None, :, None, :].repeat_interleave(2, 3) for t in (sin, cos))
        return (x * cos) + (rotate_every_two(x) * sin)


class NotRope(nn.Module):
    """x * cos + rotate_half(x) * sin with tables of no rotation (cos(0.5 p θ), sin(p θ))."""

    def __init__(self, k=8, positions=7):
        super().__init__()
        angles = torch.outer(torch.arange(positions).float(), 1e4 ** -(torch.arange(0, k, 2) / k))
        emb = torch.cat((angles, angles), -1)
        self.register_buffer("cos", (0.5 * emb).cos())
        self.register_buffer("sin", emb.sin())

    def forward(self, x):
        return x * self.cos + rotate_half(x) * self.sin


def test_import_hugging_face_and_gpt_j_rotary_as_one_box():
    torch.manual_seed(0)
    model, x = HFAttentionRope().eval(), torch.randn(2, 7, 32)
    c = from_torch(model, x)
    boxes = [b for b in c.boxes if b.kind == "rotary"]
    assert [(b.seq, b.feature, b.base, b.pairs) for b in boxes] == [("T", "K", 5e5, "half")] * 2
    assert {b.kind for b in c.boxes} == {"linear", "split_axis", "permute", "rotary"}
    got, want = ncd_compile(c)(x), model(x)
    for key, w in zip(("y0", "y1"), want, strict=True):
        torch.testing.assert_close(got[key], w, rtol=1e-6, atol=1e-6)
    model, x = GPTJRope(), torch.randn(2, 7, 3, 8)
    c = from_torch(model, x)
    (box,) = c.boxes
    assert (box.kind, box.pairs, box.base) == ("rotary", "interleaved", 10000.0)
    torch.testing.assert_close(ncd_compile(c)(x), model(x), rtol=1e-6, atol=1e-6)


def test_a_table_of_no_rotation_imports_op_by_op():
    model, x = NotRope(), torch.randn(2, 3, 7, 8)
    c = from_torch(model, x)
    assert "rotary" not in {b.kind for b in c.boxes}
    torch.testing.assert_close(ncd_compile(c)(x), model(x))
