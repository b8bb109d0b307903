"""The cost model against measurement, for every gallery circuit (CPU, float32, unfused
lowering, which is what `ncd.compile` runs on the CPU; device profile "cpu", whose kept
tensors are those of PyTorch's CPU kernels).

Compared exactly: the FLOPs of matrix-engine work (mm, bmm, addmm, baddbmm, convolution,
attention ops: what torch.utils.flop_counter.FlopCounterMode counts), forward and backward.
FlopCounterMode counts elementwise work (softmax, norms, activations, scans) as zero; the
report lists those boxes (`Report.flop_counter_zero`). Kept tensors: unique storages that
saved-tensor hooks see during the forward pass, parameters excluded, within 10%.

Fused boxes (attention, linear_attention) are measured apart: softmax attention is priced with
its GPU kernel's formulas and runs a reference on the CPU. The CPU profile prices the causal
linear-attention variants as the chunked PyTorch forms that run there (checked whole in
test_chunked_forms.py and test_measure_sizes.py).
"""

from __future__ import annotations

import pytest
import sympy

import ncd
from ncd import gallery

from . import measure

FUSED = {"attention", "linear_attention"}


def _fused(circuit):
    return {b.name for b in circuit.boxes if b.kind in FUSED}


@pytest.mark.parametrize("name", gallery.names())
def test_flops_and_kept_memory_match_measurement(name):
    c = gallery.get(name)
    report = ncd.analyse(c, lowering="unfused", device="cpu")
    module = ncd.compile(c)
    fused = _fused(c)
    if fused:
        got = measure.measure_split(module, measure.make_inputs(c), fused)["rest"]
    else:  # the module called as users call it
        fwd, bwd, _ = measure.flop_counts(module, measure.make_inputs(c))
        got = {
            "fwd": fwd,
            "bwd": bwd,
            "saved": measure.saved_bytes(module, measure.make_inputs(c))[0],
        }
    rest = [b for b in report.boxes if b.name not in fused]
    mm = sum(report.number(b.mm_flops) for b in rest)
    mm_bwd = sum(report.number(b.mm_flops_bwd) for b in rest)
    assert got["fwd"] == mm, (name, got, mm)
    grouped = [b for b in c.boxes if b.kind == "conv" and b.n_groups(sympy.Integer(2)) != 1]
    if not grouped and not any(b.kind == "short_conv" for b in c.boxes):  # depthwise too
        # FlopCounterMode's formula for a grouped convolution's backward ignores the groups
        # (torch 2.13: a depthwise 3x3 conv of 248,832 FLOPs forward counts 12,192,768
        # backward), so backward FLOPs are compared where no conv is grouped.
        assert got["bwd"] == mm_bwd, (name, got, mm_bwd)
    st = report.analysis.storages
    kept = {sid for b in rest for _, sid, _ in b.saved if st[sid].kind != "param"}
    model = sum(report.number(st[s].nbytes) for s in kept)
    assert abs(model - got["saved"]) <= 0.10 * got["saved"], (name, model, got)
    if not fused:  # the whole circuit: totals as the report prints them
        assert report.numbers["mm_flops"] == got["fwd"]
        assert abs(report.numbers["activation_bytes"] - got["saved"]) <= 0.10 * got["saved"]


PEAK_SKIP = {
    # convolutions on the CPU run through oneDNN, whose weight reorders and workspaces (and
    # the batch norm's channel-first copies of this lowering) the model does not know
    "conv": "oneDNN convolution workspaces",
    "attention": "CPU reference of the fused kernel",
}


def _peak_skips(c):
    return sorted({PEAK_SKIP[b.kind] for b in c.boxes if b.kind in PEAK_SKIP})


@pytest.mark.parametrize("name", gallery.names())
def test_peak_memory_within_20_percent_of_the_cpu_allocator(name):
    """Peak of one forward + backward from the profiler's allocation events (inputs,
    parameters and the output's gradient included) against the model's liveness peak. The
    linear-attention boxes are priced as the chunked PyTorch forms that run on the CPU
    (tests/cost/test_chunked_forms.py holds the gated blocks to 10%)."""
    c = gallery.get(name)
    skip = _peak_skips(c)
    if skip:
        pytest.skip("; ".join(skip))
    got, _ = measure.peak_bytes(ncd.compile(c), measure.make_inputs(c))
    model = ncd.analyse(c, lowering="unfused", device="cpu").numbers["peak_bytes"]
    assert abs(model - got) <= 0.20 * got, (name, model, got)


def test_an_imported_pytorch_layer_is_costed_like_a_drawn_one():
    """nn.TransformerEncoderLayer imported with ncd.from_torch (its SDPA becomes a fused
    attention box): the other boxes' matmul FLOPs and kept bytes equal the measurement."""
    import torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
    c = ncd.from_torch(layer, (torch.randn(2, 10, 32),))
    fused = _fused(c)
    assert fused, "the importer maps SDPA to an attention box"
    got = measure.measure_split(ncd.compile(c), measure.make_inputs(c), fused)["rest"]
    report = ncd.analyse(c, lowering="unfused", device="cpu")
    rest = [b for b in report.boxes if b.name not in fused]
    assert got["fwd"] == sum(report.number(b.mm_flops) for b in rest)
    assert got["bwd"] == sum(report.number(b.mm_flops_bwd) for b in rest)
    st = report.analysis.storages
    kept = {sid for b in rest for _, sid, _ in b.saved if st[sid].kind != "param"}
    model = sum(report.number(st[s].nbytes) for s in kept)
    assert abs(model - got["saved"]) <= 0.10 * got["saved"], (model, got)
    assert report.numbers["params"] == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("n", [1, 4])
def test_peak_of_a_repeated_block_follows_n(n):
    """The transformer's N blocks (a `call` with repeat N, costed once, symbolically)."""
    c = gallery.get("transformer")
    got, _ = measure.peak_bytes(ncd.compile(c, sizes={"N": n}), measure.make_inputs(c, {"N": n}))
    model = ncd.analyse(c, sizes={"N": n}, lowering="unfused", device="cpu").numbers["peak_bytes"]
    assert abs(model - got) <= 0.10 * got, (n, model, got)
