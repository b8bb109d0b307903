"""The cost model against measurement on the CPU (device profile "cpu") where the gallery's
default sizes and float32 do not reach: 16-bit tensors (PyTorch's CPU norms keep float32
copies), axes of size 1 (a relayout that moves only them is a view), a sequence that is not a
multiple of the delta rule's chunk, and L-Mul's chunks of rows.

Kept tensors: unique storages seen by saved-tensor hooks, parameters excluded, fused boxes
measured apart, within 10% (as tests/cost/test_measure.py); a single norm's exactly. Peaks:
the profiler's allocation events over one forward + backward, within 10% (as the repeated
block's there); L-Mul's forward temporaries exactly.
"""

from __future__ import annotations

import pytest
import torch

import ncd
from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.ops import lmul_cost
from ncd.ops.lmul.product import lmul_linear

from ..cpu_memory import allocations
from . import measure

FUSED = {"attention", "linear_attention"}


def kept(name, sizes=None, dtype="float32"):
    """(modelled, measured) bytes kept by the boxes other than the fused ones."""
    c = gallery.get(name)
    fused = {b.name for b in c.boxes if b.kind in FUSED}
    report = ncd.analyse(c, sizes=sizes, lowering="unfused", dtype=dtype, device="cpu")
    module = ncd.compile(c, sizes=sizes, dtype=getattr(torch, dtype))
    xs = measure.make_inputs(c, sizes, dtype=getattr(torch, dtype))
    got = measure.measure_split(module, xs, fused)["rest"]["saved"]
    st = report.analysis.storages
    rest = [b for b in report.boxes if b.name not in fused]
    ids = {sid for b in rest for _, sid, _ in b.saved if st[sid].kind != "param"}
    return sum(report.number(st[s].nbytes) for s in ids), got


def peak(name, sizes=None, dtype="float32"):
    """(modelled, measured) peak bytes of one forward + backward."""
    c = gallery.get(name)
    report = ncd.analyse(c, sizes=sizes, lowering="unfused", dtype=dtype, device="cpu")
    module = ncd.compile(c, sizes=sizes, dtype=getattr(torch, dtype))
    got, _ = measure.peak_bytes(module, measure.make_inputs(c, sizes, dtype=getattr(torch, dtype)))
    return report.numbers["peak_bytes"], got


RMS_BLOCKS = [n for n in gallery.names() if "rmsnorm" in {b.kind for b in gallery.get(n).boxes}]


@pytest.mark.parametrize("name", RMS_BLOCKS)
def test_rms_norm_blocks_in_bfloat16(name):
    """PyTorch's CPU RMS norm works at float32 width, x copied to float32, and keeps x/rms:
    the blocks kept 15-24% more than modelled while x was priced in bf16."""
    model, got = kept(name, dtype="bfloat16")
    assert abs(model - got) <= 0.10 * got, (name, model, got)


def one_norm(kind):
    """One norm box over x [B, C, D] (C the channel of the channel and group norms)."""
    from ncd.circuits.builder import Builder

    b = Builder(kind, sizes={"B": 4, "C": 6, "D": 32})
    x = b.input("x", "B C D")
    box = {
        "rmsnorm": lambda: b.rmsnorm(x, "D", name="n"),
        "rmsnorm_plain": lambda: b.rmsnorm(x, "D", affine=False, name="n"),
        "layernorm": lambda: b.layernorm(x, "D", name="n"),
        "batchnorm": lambda: b.batchnorm(x, "C", name="n"),
        "groupnorm": lambda: b.groupnorm(x, "C", 2, ["D"], name="n"),
        "normalize": lambda: b.normalize(x, "D", name="n"),
        "unifiednorm": lambda: b.unifiednorm(x, "C", name="n"),
    }[kind]()
    b.output("y", box)
    return b.build()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
@pytest.mark.parametrize(
    "kind",
    ["rmsnorm", "rmsnorm_plain", "layernorm", "batchnorm", "groupnorm", "normalize", "unifiednorm"],
)
def test_one_norm_keeps_what_the_cpu_kernel_keeps(kind, dtype):
    """Exactly the bytes saved-tensor hooks see: the RMS norm's float32 (float64) copies, the
    other norms' statistics in x's dtype (on CUDA the layer and batch norms keep float32 ones
    for 16-bit x)."""
    c = one_norm(kind)
    model = ncd.analyse(c, lowering="unfused", dtype=dtype, device="cpu")
    module = ncd.compile(c, dtype=getattr(torch, dtype))
    got, _ = measure.saved_bytes(module, measure.make_inputs(c, dtype=getattr(torch, dtype)))
    assert model.numbers["activation_bytes"] == got


def test_the_rms_norm_keeps_x_and_its_float32_statistic_on_cuda():
    """On CUDA PyTorch's RMS norm is one kernel (`_fused_rms_norm`) that keeps x as it is and
    1/rms in float32, no x/rms (saved-tensor hooks on an H200, torch 2.11): the default
    profile prices that, the CPU profile its float32 copies."""
    c = one_norm("rmsnorm")
    n, rows = 4 * 6 * 32, 4 * 6
    for device, want in (("h200", 2 * n + 4 * rows), ("cpu", 4 * n + 4 * rows + 4 * n)):
        r = ncd.analyse(c, lowering="unfused", dtype="bfloat16", device=device)
        assert r.numbers["activation_bytes"] == want, device


@pytest.mark.parametrize("sizes", [{"B": 1}, {"H": 1}, {"B": 1, "H": 1}], ids=str)
def test_size_one_axes_are_views(sizes):
    """soft_attention at B = 1 or H = 1: einsum's operands and the pooling's input need no
    copy where the axes between them have size 1 (1.73x the measured kept bytes at B = 1
    when every such relayout was priced as a copy)."""
    model, got = kept("soft_attention", sizes)
    assert abs(model - got) <= 0.10 * got, (model, got)
    model, got = peak("soft_attention", sizes)
    assert abs(model - got) <= 0.10 * got, (model, got)


@pytest.mark.parametrize("name", ["deltanet_block", "gated_deltanet_block"])
def test_a_sequence_off_the_chunk_keeps_no_padded_output(name):
    """The delta rule's CPU form pads T = 13 to its chunk of 64: its output is a tensor of
    its own, so the norm after the mixer keeps 13 tokens, not a view of 64."""
    model, got = kept(name, {"T": 13})
    assert abs(model - got) <= 0.10 * got, (model, got)


def test_the_delta_rule_output_owns_its_storage():
    from ncd.ops.delta_rule import delta_rule

    q, k, v = (torch.randn(2, 13, 2, 8) for _ in range(3))
    k = torch.nn.functional.normalize(k, dim=-1)
    y, _ = delta_rule(q, k, v, torch.rand(2, 13, 2))
    assert y.untyped_storage().nbytes() == y.numel() * y.element_size()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("sizes", [{"T": 64}, {"T": 320, "D": 64, "F": 128}], ids=str)
def test_lmul_linear_peak(sizes, dtype):
    """lmul_linear at T = 64 (21.6% over the measured peak with 28 bytes per product) and at
    sizes whose products take several chunks of rows (priced as one chunk of every row)."""
    model, got = peak("lmul_linear", sizes, dtype)
    assert abs(model - got) <= 0.10 * got, (model, got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("n, J, K", [(20, 32, 16), (128, 16, 32), (129, 128, 64), (640, 128, 64)])
def test_lmul_temporaries_are_the_allocators(n, J, K, dtype):
    """`temp_bytes` against the PyTorch form's forward: the allocator's peak during the call
    less the output it returns (one chunk of rows, a chunk and one row, five chunks)."""
    g = torch.Generator().manual_seed(0)
    x, w, bias = (torch.randn(*s, generator=g, dtype=dtype) for s in ((n, K), (J, K), (J,)))
    y, top, _ = allocations(lambda: lmul_linear(x, w, bias, 3))
    out = y.numel() * y.element_size()
    assert top - out == lmul_cost.temp_bytes(n, K, J, x.element_size())


def test_a_gather_of_routed_tokens_needs_no_quadratic_backward():
    """Mixture-of-Depths gathers k = T/4 tokens of x [B T D] by positions [B k]. The gather
    ran over x expanded along k ([B D k T]), whose backward made zeros of that shape: B·D·T²/4
    elements, 4 MiB here against 64 KiB of x, and `analyse` priced it so (a T² term in the
    peak). Gathered along T of x as it is, the backward's zeros are x's gradient. Measured:
    the peak of the gather alone against the model's, and a routed gather against the
    quadratic temporary."""
    quadratic = 2 * 32 * 64 * 256 * 4  # [B D k T] float32
    b = Builder("gather", sizes={"B": 2, "T": 256, "D": 32}, axes={"k": "T/4"})
    x, idx = b.input("x", "B T D"), b.input("idx", "B k", dtype="int64")
    b.output("y", b.box("gather", {"x": x, "index": idx}, axis="T", into="k"))
    c = b.build()
    report = ncd.analyse(c, lowering="unfused", device="cpu")
    got, _ = measure.peak_bytes(ncd.compile(c), measure.make_inputs(c))
    model = report.numbers["peak_bytes"]
    assert abs(model - got) <= 0.10 * got and got < quadratic, (model, got)

    b = Builder("routed", sizes={"B": 2, "T": 256, "D": 32})
    x = b.input("x", "B T D")
    top = b.topk(b.linear(x, "D", "", bias=False, name="router"), "T", "T/4")
    xs = b.box("gather", {"x": x, "index": top["indices"]}, axis="T", into="k", name="take")
    b.output("y", b.mul(xs, top["values"]))
    c = b.build()
    got, _ = measure.peak_bytes(ncd.compile(c), measure.make_inputs(c))
    assert got < quadratic and "T^2" not in ncd.analyse(c, device="cpu").to_json()


def mamba1():
    """Mamba-1's selective scan as gated linear attention: one head per channel E, the state's
    N features as the keys' and one value feature (V = 1), the gate Δ A per channel and
    state feature (the `gla` variant), B and C shared by the channels."""
    from ncd.circuits.builder import Builder

    b = Builder("mamba1", sizes={"B": 2, "T": 16, "D": 16, "E": 32, "N": 8, "R": 4, "V": 1})
    x = b.input("x", "B T D")
    u = b.linear(x, "D", "E", bias=False, name="in_x")
    dt = b.unary(b.linear(u, "E", "E", name="dt_proj"), "softplus", name="delta")
    k = b.linear(u, "E", "N", bias=False, name="B_proj")
    q = b.linear(u, "E", "N", bias=False, name="C_proj")
    a = b.unary(b.unary(b.param("E N", name="A_log"), "exp", name="A_exp"), "neg", name="A")
    v = b.rearrange(b.mul(dt, u, name="dt_u"), "B T E -> B T E V")
    y = b.linear_attention(q, k, v, key="T", head="N", value="V", variant="gla",
                           g=b.mul(dt, a, name="dA"), heads="E", name="ssm")  # fmt: skip
    b.output("y", b.rearrange(y, "B T E V -> B T E"))
    return b.build()


@pytest.mark.parametrize(
    "name, T, dtype",
    [("gla_block", 3, "float32"), ("gla_block", 70, "float32"), ("gla_block", 70, "bfloat16"),
     ("mamba1", 5, "float32"), ("mamba1", 70, "float32")],
)  # fmt: skip
def test_gla_on_the_cpu_is_priced_as_its_chunked_form(name, T, dtype):
    """On CPU tensors ncd.ops.gla runs its chunked PyTorch form (reference.gla_chunked): the
    sequence's own chunks (T = 3 is one chunk of 3, not a 64-token tile; T = 70 one of 64 and
    one of 6) and what its autograd keeps. Its products equal FlopCounterMode's count, forward
    and backward, its kept bytes and the module's peak the measurement. Priced as the GPU
    kernels it was 6.5x the forward products at T = 3 (Mamba-1: 14x at T = 5), and kept 0.61x
    of Mamba-1's measured bytes at T = 70."""
    c = mamba1() if name == "mamba1" else gallery.get(name)
    box = "ssm" if name == "mamba1" else "mixer"
    sizes, dt = {"T": T}, getattr(torch, dtype)
    report = ncd.analyse(c, sizes=sizes, lowering="unfused", dtype=dtype, device="cpu")
    b = next(b for b in report.boxes if b.name == box)
    module = ncd.compile(c, sizes=sizes, dtype=dt)
    got = measure.measure_split(module, measure.make_inputs(c, sizes, dtype=dt), {box})["boxes"]
    assert report.number(b.mm_flops) == got["fwd"]
    assert report.number(b.mm_flops_bwd) == got["bwd"]
    kept = sum(report.number(n) for _, _, n in b.saved)
    assert abs(kept - got["saved"]) <= 0.10 * got["saved"], (kept, got)
    peak, _ = measure.peak_bytes(module, measure.make_inputs(c, sizes, dtype=dt))
    model = report.numbers["peak_bytes"]
    assert abs(model - peak) <= 0.20 * peak, (model, peak)
    assert b.kernel == "ncd.ops.gla (chunked PyTorch form)"
