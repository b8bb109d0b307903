"""Integer-only ViT ops (ops/ivit): the Triton kernels (interpreted on the CPU) bit for bit
against the integer PyTorch reference; the reference's parts against independent answers
(math.isqrt, exact rational rounding with fractions); and the reference against the float
functions (softmax, GELU, LayerNorm) on activations of a small random ViT-like block and on
Gaussian data with outliers, within bounds derived in ops/ivit/README.md.

`python tests/ops/test_ivit.py` prints the error table of the README."""

from __future__ import annotations

import math
import os
import random
import sys
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from ncd.ops.ivit import cost
from ncd.ops.ivit import reference as R
from ncd.ops.ivit.matmul import int8_matmul
from ncd.ops.ivit.nonlinear import i_layernorm, requantize, shiftgelu, shiftmax


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _int8(shape, seed, lo=-128, hi=128):
    return torch.randint(lo, hi, shape, dtype=torch.int8, generator=_gen(seed))


def _quantize(v: torch.Tensor, bits=8, dtype=torch.int8):
    """Symmetric per-tensor quantisation: (integers, scale), scale = max|v| / (2^(bits-1) - 1)."""
    scale = v.abs().max().item() / (2 ** (bits - 1) - 1)
    q = torch.round(v / scale).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1).to(dtype)
    return q, scale


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    diff = (a.long() - b.long()).abs()
    assert torch.equal(a, b), f"{int((diff > 0).sum())} elements differ, by up to {int(diff.max())}"


# ---------------------------------------------------------------------- kernels == reference


def _extremes(rows, D, seed):
    """int8 rows that reach the edges: random, one spike, constant, all -128, a ramp."""
    x = _int8((rows, D), seed)
    x[0] = -128
    x[0, D // 2] = 127
    x[1] = 7
    x[2] = -128
    x[3] = torch.arange(D) % 256 - 128
    return x


@pytest.mark.interpret
@pytest.mark.parametrize(
    "shape,scale,bits", [((6, 37), 0.05, 8), ((2, 3, 200), 0.3, 8), ((5, 64), 1.0, 4),
                         ((4, 1), 0.01, 8)], ids=str,
)  # fmt: skip
def test_shiftmax_kernel_is_bit_exact(shape, scale, bits):
    x = _int8(shape, 1)
    if shape[-1] > 1:
        x.view(-1, shape[-1])[:4] = _extremes(4, shape[-1], 2)
    _same(shiftmax(x, scale, bits, backend="triton")[0], R.shiftmax_reference(x, scale, bits)[0])


@pytest.mark.interpret
def test_shiftmax_kernel_int32_and_strided_rows():
    """int32 logits (an accumulator's range, scale 2^-12) and a row-strided view."""
    g = _gen(3)
    x = (torch.randn(9, 50, generator=g) * 4000).round().to(torch.int32)
    x[0, 3] = 2**31 - 1
    x[0, 4] = -(2**31)
    _same(shiftmax(x, 2.0**-12, backend="triton")[0], R.shiftmax_reference(x, 2.0**-12)[0])
    xs = _int8((9, 80), 4)[:, 5:55]
    _same(shiftmax(xs, 0.07, backend="triton")[0], R.shiftmax_reference(xs, 0.07)[0])


@pytest.mark.interpret
@pytest.mark.parametrize("scale,out_scale,bits", [(0.05, None, 8), (0.5, 0.02, 8),
                                                  (2.0**-14, 2.0**-10, 6)], ids=str)  # fmt: skip
def test_shiftgelu_kernel_is_bit_exact(scale, out_scale, bits):
    x = torch.arange(-128, 128, dtype=torch.int8).repeat(3)[:700].reshape(7, 100)
    want = R.shiftgelu_reference(x, scale, out_scale, bits)[0]
    _same(shiftgelu(x, scale, out_scale, bits, backend="triton")[0], want)
    x32 = (torch.randn(333, generator=_gen(5)) * 2**20).round().to(torch.int32)
    x32[:2] = torch.tensor([2**24 - 1, -(2**24) + 1])
    want = R.shiftgelu_reference(x32, scale, out_scale, bits)[0]
    _same(shiftgelu(x32, scale, out_scale, bits, backend="triton")[0], want)


@pytest.mark.interpret
@pytest.mark.parametrize("D,affine,dtype", [(37, False, torch.int8), (192, True, torch.int8),
                                            (65, True, torch.int32), (1, False, torch.int8)],
                         ids=str)  # fmt: skip
def test_i_layernorm_kernel_is_bit_exact(D, affine, dtype):
    x = _int8((6, D), 6)
    if D > 1:
        x[:4] = _extremes(4, D, 7)
    if dtype == torch.int32:
        x = x.to(torch.int32) * 255
        x[4, 0] = 2**15 - 1
    g = _gen(8)
    w = torch.randn(D, generator=g) if affine else None
    b = torch.randn(D, generator=g) if affine else None
    want = R.i_layernorm_reference(x, w, b, 0.03)[0]
    _same(i_layernorm(x, w, b, 0.03, backend="triton")[0], want)


@pytest.mark.interpret
def test_requantize_kernel_is_bit_exact_per_channel():
    g = _gen(9)
    acc = torch.randint(-(2**31), 2**31 - 1, (13, 24), dtype=torch.int32, generator=g)
    acc[0, :8] = torch.tensor([2**31 - 1, -(2**31), 0, 1, -1, 3 << 20, -(3 << 20), 5 << 19])
    mult = torch.randint(2**30, 2**31, (24,), generator=g)
    shift = torch.randint(20, 62, (24,), generator=g)
    for bits in (8, 4, 16):
        _same(requantize(acc, mult, shift, bits, backend="triton"),
              R.requantize_reference(acc, mult, shift, bits))  # fmt: skip


@pytest.mark.interpret
@pytest.mark.parametrize(
    "M,K,N", [(19, 70, 23), (40, 129, 33), (1, 5, 1), (37, 96, 40), (3, 32, 17)], ids=str
)
def test_int8_matmul_kernel_is_bit_exact(M, K, N):
    """Both kernels: K a multiple of 16 with b K-major takes the tensor-map kernel, any other
    layout the pointer kernel."""
    a, w = _int8((M, K), 10), _int8((N, K), 11)
    a[0] = -128
    w[0] = -128  # the largest products, 2^14 each
    b = w.t()  # K-major, as a weight is passed
    _same(int8_matmul(a, b, backend="triton"), R.int8_matmul_reference(a, b))
    _same(int8_matmul(a, b.contiguous(), backend="triton"), R.int8_matmul_reference(a, b))
    bias = torch.randint(-(2**20), 2**20, (N,), dtype=torch.int32, generator=_gen(12))
    mult, shift = R.dyadic(1.0 / (300 * math.sqrt(K)))
    got = int8_matmul(a, b, bias, mult, shift, backend="triton")
    _same(got, R.int8_matmul_reference(a, b, bias, mult, shift))
    per = torch.randint(2**30, 2**31, (N,), generator=_gen(13))
    got = int8_matmul(a, b, bias, per, 44, bits=6, backend="triton")
    _same(got, R.int8_matmul_reference(a, b, bias, per, 44, bits=6))


@pytest.mark.interpret
def test_int8_matmul_gluon_dispatch_and_fallback(monkeypatch):
    """int32 products of operands the tensor maps take go to the Gluon kernel where it runs
    (Hopper; Gluon has no interpreter, so a stand-in here); a kernel that fails warns once,
    the tensor-map kernel gives the product, and the Gluon kernel is not tried again in the
    process."""
    from ncd.ops import _gluon
    from ncd.ops.ivit import matmul_gluon

    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("PTXASError: ptxas fatal")

    monkeypatch.setattr(_gluon, "FAILED", set())
    monkeypatch.setattr(_gluon, "available", lambda: True)
    monkeypatch.setattr(_gluon, "on_hopper", lambda x: True)
    monkeypatch.setattr(matmul_gluon, "run", broken)
    a, w = _int8((37, 96), 16), _int8((40, 96), 17)
    with pytest.warns(RuntimeWarning, match="Gluon kernel of int8_matmul failed.*PTXASError"):
        got = int8_matmul(a, w.t(), backend="triton")
    _same(got, R.int8_matmul_reference(a, w.t()))
    assert len(calls) == 1 and "int8_matmul" in _gluon.FAILED
    _same(int8_matmul(a, w.t(), backend="triton"), R.int8_matmul_reference(a, w.t()))
    assert len(calls) == 1  # not tried again
    assert "failed earlier" in matmul_gluon.supports(a, w.t(), False)[1]
    assert "requantised" in matmul_gluon.supports(a, w.t(), True)[1]
    int8_matmul(a, w.t().contiguous(), backend="triton")  # pointer kernel: never offered
    assert len(calls) == 1
    _gluon.FAILED.clear()  # requantised outputs: the tensor-map kernel, never the Gluon one
    bias = torch.randint(-(2**20), 2**20, (40,), dtype=torch.int32, generator=_gen(18))
    got = int8_matmul(a, w.t(), bias, 1 << 30, 44, backend="triton")
    _same(got, R.int8_matmul_reference(a, w.t(), bias, 1 << 30, 44))
    assert len(calls) == 1


@pytest.mark.interpret
def test_int8_matmul_batched_input():
    a, b = _int8((2, 3, 40), 14), _int8((40, 17), 15)
    got = int8_matmul(a, b, backend="triton")
    assert got.shape == (2, 3, 17) and got.dtype == torch.int32
    _same(got, int8_matmul(a, b, backend="reference"))


@pytest.mark.interpret
def test_i_layernorm_constants_follow_the_weights():
    """The kernel path keeps the integer affine constants per weight tensor: an in-place update
    of the weight is seen."""
    x = _int8((3, 40), 23)
    w, b = torch.ones(40), torch.zeros(40)
    first = i_layernorm(x, w, b, 0.05, backend="triton")[0]
    _same(first, R.i_layernorm_reference(x, w, b, 0.05)[0])
    w.mul_(0.5)
    _same(
        i_layernorm(x, w, b, 0.05, backend="triton")[0], R.i_layernorm_reference(x, w, b, 0.05)[0]
    )


@pytest.mark.slow
def test_bench_dry_run(tmp_path):
    """bench/ops_ivit.py runs on the CPU (interpreter, tiny shape) and writes its rows: every
    op, every implementation, ncd bit-exact against the integer reference."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).parents[2]
    out = tmp_path / "ops_ivit.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, str(root / "bench" / "ops_ivit.py"), "--dry-run", "--shapes", "16x32",
         "--out", str(out)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data["meta"]) >= {"device", "date", "commit", "torch", "triton"}
    rows = data["rows"]
    assert not [r for r in rows if "error" in r], [r for r in rows if "error" in r]
    got = {(r["op"], r["impl"], r.get("epilogue")) for r in rows}
    for op in ("shiftmax", "shiftgelu", "i_layernorm"):
        assert {(op, i, None) for i in ("ncd", "torch", "torch_compile", "float_bf16")} <= got
    for ep in ("none", "requant"):
        assert {("int8_matmul", i, ep) for i in ("ncd", "torch", "torch_compile")} <= got
    assert ("int8_matmul", "bf16", "none") in got
    assert all(r["bit_exact"] for r in rows if r["impl"] == "ncd")
    assert all(r["rows"] == 16 and r["features"] == 32 and r["ms"] > 0 for r in rows)


# ---------------------------------------------------------------------- independent checks


def test_int8_matmul_reference_against_exact_sums():
    """Python integers, one dot product at a time."""
    a, b = _int8((7, 300), 16), _int8((300, 5), 17)
    a[0] = -128
    b[:, 0] = -128
    got = R.int8_matmul_reference(a, b)
    al, bl = a.tolist(), b.t().tolist()
    assert got.tolist() == [[sum(x * y for x, y in zip(r, c)) for c in bl] for r in al]


def test_isqrt_against_math_isqrt():
    small = torch.arange(0, 1 << 16, dtype=torch.int64)
    assert torch.equal(R.isqrt_newton(small), torch.tensor([math.isqrt(v) for v in range(1 << 16)]))
    rng = random.Random(0)
    vals = [rng.randrange(1 << rng.randrange(1, 62)) for _ in range(20000)]
    for k in range(1, 31):  # around squares and powers of two, where Newton's floors bite
        vals += [k * k, (1 << k) ** 2 - 1, (1 << k) ** 2, (1 << k) ** 2 + 1, (1 << (2 * k)) - 1]
        vals += [(1 << (2 * k + 1)) - 1, 1 << (2 * k + 1), ((1 << k) + 1) ** 2 - 1]
    vals += [(1 << 62) - 1, math.isqrt((1 << 62) - 1) ** 2]
    v = torch.tensor(vals, dtype=torch.int64)
    assert R.isqrt_newton(v).tolist() == [math.isqrt(x) for x in vals]


def test_dyadic_is_the_scale_to_31_bits():
    rng = random.Random(1)
    for scale in [2.0**-30, 1e-7, 1 / 3, 0.5, 1.0, 1.5, 12345.678, 2.0**29] + [
        10 ** rng.uniform(-8, 8) for _ in range(300)
    ]:
        b, c = R.dyadic(scale)
        assert 2**30 <= b <= 2**31 and 1 <= c <= 62
        assert abs(Fraction(b, 2**c) / Fraction(scale) - 1) <= Fraction(1, 2**31)
    for bad in (0.0, -1.0, float("inf"), 2.0**40, 2.0**-40):
        with pytest.raises(ValueError, match="dyadic: scale"):
            R.dyadic(bad)


def test_requantize_reference_is_exact_rational_rounding():
    """round(acc b / 2^c) with halves upwards, from fractions, then clamped: on random values
    and on exact halves (acc b = (2k + 1) 2^(c-1))."""
    rng = random.Random(2)
    for _ in range(40):
        b, c = rng.randrange(1, 2**31), rng.randrange(1, 63)
        accs = [rng.randrange(-(2**31), 2**31) for _ in range(50)]
        accs += [k << (c - 1) for k in range(-9, 10, 2) if abs(k << (c - 1)) < 2**31]
        for bits in (8, 16):
            got = R.requantize_reference(torch.tensor(accs, dtype=torch.int32), b, c, bits)
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            want = [min(hi, max(lo, math.floor(Fraction(a * b, 2**c) + Fraction(1, 2))))
                    for a in accs]  # fmt: skip
            assert got.tolist() == want


def test_requantize_matches_the_float_scale_within_half_a_step():
    """A dyadic requantisation of an int8 GEMM's accumulator is the real rescaled value to
    within half an output step (plus 2^-31 relative)."""
    a, b = _int8((16, 64), 18), _int8((64, 8), 19)
    scale = 0.02 * 0.01 / 0.5
    m, c = R.dyadic(scale)
    y = R.int8_matmul_reference(a, b, None, m, c, bits=16)
    exact = (a.double() @ b.double()) * scale
    assert float((y.double() - exact).abs().max()) <= 0.5 + float(exact.abs().max()) * 2**-30


def test_shiftmax_rows_sum_to_about_one_and_follow_the_order():
    x = _int8((64, 100), 20)
    y, s = R.shiftmax_reference(x, 0.05)
    assert y.min() >= 0 and y.max() <= 127
    # each output is floor(128 e / sum): the sum loses less than one step per element
    total = y.double().sum(-1) * s
    assert float(total.max()) <= 1.0 and float(total.min()) >= 1 - 100 / 128
    order = torch.argsort(x.long(), dim=-1)
    assert bool((y.gather(-1, order).diff(dim=-1) >= 0).all())


def test_argument_errors_say_where():
    x = _int8((2, 4), 21)
    with pytest.raises(ValueError, match=r"shiftmax: scale: expected in \(2\^-15, 1\]"):
        shiftmax(x, 2.0)
    with pytest.raises(ValueError, match="shiftmax: x.dtype: expected torch.int8 or torch.int32"):
        shiftmax(x.float(), 0.1)
    with pytest.raises(ValueError, match=r"int8_matmul: b.shape: expected \[K, N\] with K = 4"):
        int8_matmul(x, _int8((5, 3), 22))
    with pytest.raises(ValueError, match="int8_matmul: multiplier and shift"):
        int8_matmul(x, _int8((4, 3), 22), multiplier=5)
    with pytest.raises(ValueError, match=r"int8_matmul: bias: expected int32 \[3\]"):
        int8_matmul(x, _int8((4, 3), 22), bias=torch.zeros(3))
    with pytest.raises(ValueError, match=r"i_layernorm: weight: expected a float tensor \[4\]"):
        i_layernorm(x, torch.ones(5))
    with pytest.raises(ValueError, match="requantize: multiplier, shift"):
        requantize(x.int(), 3, 0)


def test_empty_axes():
    """No features: empty results, as torch.softmax and layer_norm give; no inner axis (K = 0):
    the product is the bias alone (float64 checks it)."""
    assert shiftmax(torch.ones(3, 0, dtype=torch.int8), 0.1)[0].shape == (3, 0)
    assert i_layernorm(torch.ones(3, 0, dtype=torch.int8))[0].shape == (3, 0)
    bias = torch.arange(4, dtype=torch.int32)
    out = int8_matmul(torch.ones(2, 3, 0, dtype=torch.int8), torch.ones(0, 4, dtype=torch.int8),
                      bias=bias)  # fmt: skip
    want = (torch.ones(2, 3, 0).double() @ torch.ones(0, 4).double()).int() + bias
    assert out.dtype == torch.int32 and torch.equal(out, want)


# ---------------------------------------------------------------------- error against floats


def vit_block(seed=0, T=197, D=192, H=3, outliers=(11, 97), outlier_gain=12.0):
    """Activations of a small random ViT-like block (DeiT-Tiny sizes): a residual stream with a
    few outlier channels (as trained ViTs have), LayerNorm, q k^T / sqrt(d) per head with
    weights scaled so that attention is peaked, and the MLP's first linear map (then GELU).
    Returns float tensors: residual [T, D], scores [H, T, T], hidden [T, 4 D]."""
    g = _gen(seed)
    x = torch.randn(T, D, generator=g)
    x[:, list(outliers)] *= outlier_gain
    h = F.layer_norm(x, (D,))
    dh = D // H
    wq, wk = (torch.randn(D, D, generator=g) * 2.5 / math.sqrt(D) for _ in range(2))
    q, k = ((h @ w).reshape(T, H, dh).transpose(0, 1) for w in (wq, wk))
    scores = q @ k.transpose(1, 2) / math.sqrt(dh)
    w1 = torch.randn(D, 4 * D, generator=g) / math.sqrt(D)
    hidden = h @ w1 + 0.5 * torch.randn(4 * D, generator=g)
    return x, scores, hidden


def gaussian_outliers(seed=1, shape=(128, 768), frac=0.01, gain=10.0):
    g = _gen(seed)
    v = torch.randn(*shape, generator=g)
    hit = torch.rand(*shape, generator=g) < frac
    return torch.where(hit, v * gain, v)


def softmax_errors(v):
    """Shiftmax of int8-quantised v against softmax of the same int8 values (the op's own
    error) and of v itself (with the input quantisation): max and mean absolute error of the
    probabilities, in units of the output step 2^-7."""
    q, s = _quantize(v)
    y, ys = R.shiftmax_reference(q, s)
    y = y.double() * ys
    own = (y - torch.softmax(q.double() * s, -1)).abs()
    full = (y - torch.softmax(v.double(), -1)).abs()
    return {"max_own": own.max().item() * 128, "mean_own": own.mean().item() * 128,
            "max": full.max().item() * 128, "mean": full.mean().item() * 128}  # fmt: skip


def gelu_errors(v):
    """ShiftGELU of int8-quantised v (output scale = input scale) against exact GELU (erf) of
    the same int8 values, and of v: max and mean absolute error in output steps, and the
    relative RMS error."""
    q, s = _quantize(v)
    y, ys = R.shiftgelu_reference(q, s)
    y = y.double() * ys
    ref_own, ref = F.gelu(q.double() * s), F.gelu(v.double())
    return {"max_own": ((y - ref_own).abs().max() / ys).item(),
            "mean_own": ((y - ref_own).abs().mean() / ys).item(),
            "max": ((y - ref).abs().max() / ys).item(),
            "mean": ((y - ref).abs().mean() / ys).item(),
            "rel_rms": ((y - ref).norm() / ref.norm()).item()}  # fmt: skip


def layernorm_errors(v, seed=2, out_scale=None):
    """I-LayerNorm of int8-quantised v with random gamma, beta against float LayerNorm of the
    same int8 values and of v: errors in output steps (out_scale: the float output's max / 127
    unless given)."""
    D = v.shape[-1]
    g = _gen(seed)
    w, b = 1 + 0.2 * torch.randn(D, generator=g), 0.2 * torch.randn(D, generator=g)
    q, s = _quantize(v)
    ref_own = F.layer_norm(q.double() * s, (D,), w.double(), b.double(), eps=0.0)
    ref = F.layer_norm(v.double(), (D,), w.double(), b.double(), eps=0.0)
    out_scale = out_scale or ref_own.abs().max().item() / 127
    y, ys = R.i_layernorm_reference(q, w, b, out_scale)
    y = y.double() * ys
    return {"max_own": ((y - ref_own).abs().max() / ys).item(),
            "mean_own": ((y - ref_own).abs().mean() / ys).item(),
            "max": ((y - ref).abs().max() / ys).item(),
            "mean": ((y - ref).abs().mean() / ys).item(),
            "rel_rms": ((y - ref).norm() / ref.norm()).item()}  # fmt: skip


def error_table():
    x, scores, hidden = vit_block()
    gauss = gaussian_outliers()
    return {
        ("shiftmax", "ViT attention scores"): softmax_errors(scores),
        ("shiftmax", "Gaussian + 1% outliers x10"): softmax_errors(gauss),
        ("shiftgelu", "ViT MLP hidden"): gelu_errors(hidden),
        ("shiftgelu", "Gaussian + 1% outliers x10"): gelu_errors(gauss),
        ("i_layernorm", "ViT residual, outlier channels"): layernorm_errors(x),
        ("i_layernorm", "Gaussian + 1% outliers x10"): layernorm_errors(gauss),
    }


# Bounds, in output steps (README.md derives them): Shiftmax's exponential is 2^-f ~ 1 - f/2
# (relative error up to 6.15%) with log2 e ~ 1.4375, so a probability p is off by up to about
# 0.07 p plus one output step. ShiftGELU: v sigmoid(1.6875 v) differs from erf GELU by at most
# 0.022; the shift exponential's 6.15% on t = e^(-1.6875|v|) moves v sigmoid by at most
# 0.0615 max |v| t / (1 + t)^2 = 0.0615 x 0.133; the 7-bit sigmoid floors by up to |x| / 128
# (one step at |x| = 127) and the output rounds (half a step). I-LayerNorm is exact up to its
# final rounding.
@pytest.mark.parametrize("data", ["vit", "gaussian"])
def test_shiftmax_error_against_softmax(data):
    v = vit_block()[1] if data == "vit" else gaussian_outliers()
    e = softmax_errors(v)
    assert e["max_own"] <= 0.07 * 128 + 1 and e["mean_own"] <= 0.6, e


@pytest.mark.parametrize("data", ["vit", "gaussian"])
def test_shiftgelu_error_against_gelu(data):
    v = vit_block()[2] if data == "vit" else gaussian_outliers()
    _, s = _quantize(v)
    e = gelu_errors(v)
    bound = (0.022 + 0.0615 * 0.133) / s + 1.5
    assert e["max_own"] <= bound and e["mean_own"] <= 0.75, e


@pytest.mark.parametrize("data", ["vit", "gaussian"])
def test_i_layernorm_error_against_layernorm(data):
    v = vit_block()[0] if data == "vit" else gaussian_outliers()
    e = layernorm_errors(v)
    assert e["max_own"] <= 0.51 and e["mean_own"] <= 0.26, e


# ---------------------------------------------------------------------- cost formulas


def test_cost_formulas_take_symbols_and_numbers():
    sympy = pytest.importorskip("sympy")
    M, K, N = sympy.symbols("M K N", positive=True)
    expr = cost.io_int8_matmul(M, K, N, bias=True, requant=True)
    assert float(expr.subs({M: 256, K: 512, N: 128})) == cost.io_int8_matmul(
        256, 512, 128, True, True
    )
    assert cost.flops_int8_matmul(4096, 4096, 4096) == 2 * 4096**3
    assert cost.io_int8_matmul_min(4096, 512, 4096) < cost.io_int8_matmul(4096, 512, 4096)
    assert cost.io_shiftmax(4096, 4096) == 2 * 4096 * 4096
    assert cost.flops_i_layernorm(2, 8) > cost.flops_shiftgelu(16) / 4


if __name__ == "__main__":
    print("| op | data | max err (own) | mean err (own) | max err | mean err | rel. RMS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (op, data), e in error_table().items():
        rms = f"{e['rel_rms']:.4f}" if "rel_rms" in e else "—"
        print(f"| {op} | {data} | {e['max_own']:.2f} | {e['mean_own']:.3f} | {e['max']:.2f} | "
              f"{e['mean']:.3f} | {rms} |")  # fmt: skip
