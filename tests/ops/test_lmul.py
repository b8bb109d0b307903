"""L-Mul (ops/lmul): bit-level against a scalar reference written on IEEE bit patterns with
`struct`, the PyTorch op and the Triton kernels (interpreted on the CPU) against reference.py's
value form, and their error against float32 and float8 reproducing the paper's ordering
(4-bit L-Mul about as precise as e4m3, 3-bit better than e5m2)."""

from __future__ import annotations

import importlib
import math
import struct

import pytest
import torch
import torch.nn.functional as F

from ncd.ops.lmul.product import lmul, lmul_linear
from ncd.ops.lmul.reference import lmul_linear_reference, lmul_reference


def _bits(v: float) -> int:
    return struct.unpack("<I", struct.pack("<f", v))[0]


def _float(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b))[0]


def scalar_lmul(a: float, b: float, m: int) -> float:
    """The paper's adder on float32 bit patterns, one pair at a time: sign XOR; exponent and
    m-bit truncated mantissa fields added as one integer with the offset 2^{-l(m)}."""
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return _float(_bits(a * b)) if not math.isnan(a * b) else float("nan")
    ba, bb = _bits(a), _bits(b)
    sign = (ba ^ bb) >> 31
    ea, eb = (ba >> 23) & 0xFF, (bb >> 23) & 0xFF
    if ea == 0 or eb == 0:
        return -0.0 if sign else 0.0
    fa, fb = (ba & 0x7FFFFF) >> (23 - m), (bb & 0x7FFFFF) >> (23 - m)
    lm = m if m <= 3 else (3 if m == 4 else 4)
    total = ((ea + eb - 127) << m) + fa + fb + (1 << (m - lm))
    e, f = total >> m, total & ((1 << m) - 1)
    if e >= 255:
        return -math.inf if sign else math.inf
    if e <= 0:
        return -0.0 if sign else 0.0
    return _float((sign << 31) | (e << 23) | (f << (23 - m)))


SPECIAL = [
    (1.0, 1.0), (1.5, 1.5), (-2.0, 3.0), (1.9999999, 1.9999999), (1.875, 1.875), (0.0, 5.0),
    (-0.0, 3.0), (-0.0, -3.0), (1e-40, 1.0), (3e38, 3e38), (1e-30, 1e-30), (2.0**-63, 2.0**-63),
    (math.inf, 2.0), (-math.inf, 2.0), (math.inf, 0.0), (math.nan, 1.0), (1.25, -0.75),
    (3.4e38, 1.0), (1.1754944e-38, 0.5), (7.0, 1.0 / 7.0),
]  # fmt: skip


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return _bits(a) == _bits(b)


@pytest.mark.parametrize("m", [3, 4])
def test_special_cases_bit_for_bit(m):
    x = torch.tensor([a for a, _ in SPECIAL], dtype=torch.float32)
    y = torch.tensor([b for _, b in SPECIAL], dtype=torch.float32)
    got = lmul(x, y, m).tolist()
    ref = lmul_reference(x, y, m).tolist()
    for (a, b), g, r in zip(SPECIAL, got, ref, strict=True):
        a32, b32 = float(torch.tensor(a)), float(torch.tensor(b))
        want = scalar_lmul(a32, b32, m)
        assert _same(g, want), (a, b, m, g, want)
        assert _same(r, want), ("reference.py", a, b, m, r, want)


def test_worked_examples():
    """By hand: 1.5 x 1.5 with m = 3: 0.5 + 0.5 + 1/8 = 1.125 carries: 1.125 x 2 = 2.25;
    1.25 x 1.25 with m = 4: 0.25 + 0.25 + 1/8 = 0.625: 1.625 (exact 1.5625)."""
    assert lmul(torch.tensor(1.5), torch.tensor(1.5), 3).item() == 2.25
    assert lmul(torch.tensor(1.25), torch.tensor(1.25), 4).item() == 1.625
    assert lmul(torch.tensor(-1.25), torch.tensor(1.25), 4).item() == -1.625


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m", [3, 4])
def test_random_against_value_reference(dtype, m):
    g = torch.Generator().manual_seed(m)
    x = torch.randn(4096, generator=g, dtype=dtype) * torch.exp(
        4 * torch.randn(4096, generator=g, dtype=dtype))  # fmt: skip
    y = torch.randn(4096, generator=g, dtype=dtype)
    assert torch.equal(lmul(x, y, m), lmul_reference(x, y, m))
    if dtype == torch.float32:
        for i in range(0, 4096, 97):
            a, b = x[i].item(), y[i].item()
            assert _same(lmul(x[i], y[i], m).item(), scalar_lmul(a, b, m))


MIXED = [(torch.float32, torch.float64), (torch.float64, torch.float32),
         (torch.float16, torch.float64), (torch.bfloat16, torch.float32)]  # fmt: skip


@pytest.mark.parametrize("dx, dy", MIXED)
@pytest.mark.parametrize("m", [3, 4])
def test_mixed_dtypes_work_in_the_promoted_format(dx, dy, m):
    """Operands of two float formats: both cast to the promoted dtype, then split in it (the
    scalar adder on float32 patterns gives the result where float32 holds every operand)."""
    x, y = torch.tensor([1.5, 2.0, -0.75, 3e-3]), torch.tensor([1.5, 3.0, 1.25, 7.0])
    got = lmul(x.to(dx), y.to(dy), m)
    assert got.dtype == torch.promote_types(dx, dy)
    pairs = zip(x.to(dx).tolist(), y.to(dy).tolist(), strict=True)
    want = torch.tensor([scalar_lmul(a, b, m) for a, b in pairs], dtype=torch.float64)
    torch.testing.assert_close(got.double(), want, rtol=2**-8, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_formats_work_in_float32(dtype):
    x, y = torch.randn(257).to(dtype), torch.randn(257).to(dtype)
    got = lmul(x, y, 4)
    assert got.dtype == dtype
    assert torch.equal(got, lmul_reference(x.float(), y.float(), 4).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matrix_product_and_its_straight_through_gradient(dtype, monkeypatch):
    impl = importlib.import_module("ncd.ops.lmul.product")

    monkeypatch.setattr(impl, "CHUNK_ELEMENTS", 200)  # several chunks of rows
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 21, 9, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(5, 9, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=dtype, requires_grad=True)
    y = lmul_linear(x, w, b, 3)
    want = lmul_linear_reference(x.detach(), w.detach(), b.detach(), 3)
    if dtype == torch.float64:
        assert torch.equal(y, want)
    else:
        torch.testing.assert_close(y, want, rtol=1e-6, atol=1e-6)
    dy = torch.randn(y.shape, generator=g, dtype=dtype)
    y.backward(dy)
    exact = [x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_(),
             b.detach().clone().requires_grad_()]  # fmt: skip
    F.linear(*exact).backward(dy)
    for a, e in zip((x, w, b), exact, strict=True):
        torch.testing.assert_close(a.grad, e.grad)


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="mantissa_bits"):
        lmul(torch.ones(2), torch.ones(2), 5)
    with pytest.raises(ValueError, match=r"weight: expected \[J, 3\]"):
        lmul_linear(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match=r"broadcast together, found \(\(4,\), \(5,\)\)"):
        lmul(torch.ones(4), torch.ones(5))


# ------------------------------------------------------------------ error against float8
def _relative_error(approx, exact):
    nz = exact != 0
    return float(((approx.double() - exact)[nz].abs() / exact[nz].abs()).mean())


def _norm_error(approx, exact):
    """‖approx − exact‖ / ‖exact‖: a matrix product's outputs near zero would dominate the
    mean of elementwise relative errors."""
    return float((approx.double() - exact).norm() / exact.norm())


def _fp8(x, fmt):
    return x.to(fmt).float()


def _activations(g, n, d):
    """LLM-like activations: tokens with a few outlier channels (about 20x the others, as in
    the outlier features of large transformers), LayerNorm, then GELU."""
    h = torch.randn(n, d, generator=g)
    h[:, :: d // 4] *= 20
    return F.gelu(F.layer_norm(h, (d,)))


def _table(backend="reference", n_products=1_000_000, rows_mm=256):
    """The error of each format on each kind of data; `n_products` elementwise products (a
    square of activations), matrix products of [rows_mm, 256] by [256, 128]."""
    g = torch.Generator().manual_seed(0)
    rows = {}
    side = math.isqrt(n_products)
    x, y = torch.randn(n_products, generator=g), torch.randn(n_products, generator=g)
    rows["normal, elementwise"] = (x, y, None)
    a = _activations(g, side, side).reshape(-1)
    w = torch.randn(side * side, generator=g) * 0.02
    rows["activations x weights, elementwise"] = (a, w, None)
    X, W = torch.randn(rows_mm, 256, generator=g), torch.randn(128, 256, generator=g)
    rows["normal, matrix product K=256"] = (X, W, "mm")
    A = _activations(g, rows_mm, 256)
    rows["activations, matrix product K=256"] = (A, W * 0.02, "mm")
    out = {}
    for name, (p, q, kind) in rows.items():
        if kind is None:
            exact = p.double() * q.double()
            errs = {f"lmul{m}": _relative_error(lmul(p, q, m, backend), exact) for m in (3, 4)}
            for fmt, tag in ((torch.float8_e4m3fn, "e4m3"), (torch.float8_e5m2, "e5m2")):
                errs[tag] = _relative_error(_fp8(p, fmt) * _fp8(q, fmt), exact)
            errs["fp32"] = _relative_error(p * q, exact)
        else:
            exact = p.double() @ q.double().T
            errs = {f"lmul{m}": _norm_error(lmul_linear(p, q, None, m, backend), exact)
                    for m in (3, 4)}  # fmt: skip
            for fmt, tag in ((torch.float8_e4m3fn, "e4m3"), (torch.float8_e5m2, "e5m2")):
                errs[tag] = _norm_error(_fp8(p, fmt) @ _fp8(q, fmt).T, exact)
            errs["fp32"] = _norm_error(p @ q.T, exact)
        out[name] = errs
    return out


def _check_ordering(table):
    print()
    print("mean relative error (elementwise), relative Frobenius error (matrix products)")
    print(f"{'':38s} lmul4    e4m3     lmul3    e5m2     fp32")
    for name, e in table.items():
        print(f"{name:38s} {e['lmul4']:.5f}  {e['e4m3']:.5f}  {e['lmul3']:.5f}  "
              f"{e['e5m2']:.5f}  {e['fp32']:.1e}")  # fmt: skip
    for name, e in table.items():
        # 4-bit L-Mul about as precise as e4m3 (within 15%), 3-bit better than e5m2
        assert e["lmul4"] < 1.15 * e["e4m3"], (name, e)
        assert e["lmul3"] < e["e5m2"], (name, e)
        assert e["lmul4"] < e["lmul3"], (name, e)
        assert e["fp32"] < 1e-5, (name, e)


def test_error_ordering_of_the_paper():
    _check_ordering(_table())


@pytest.mark.interpret
def test_error_ordering_of_the_paper_with_the_kernels(monkeypatch):
    """The same table from the Triton kernels (fewer products and larger tiles: the
    interpreter is slow)."""
    kernels = importlib.import_module("ncd.ops.lmul.kernels")
    monkeypatch.setattr(kernels, "INTERPRET_MM", {"BLOCK_N": 64, "BLOCK_J": 64, "BLOCK_K": 64})
    _check_ordering(_table("triton", n_products=65_536, rows_mm=64))


# ------------------------------------------------------------------ Triton kernels
def _same_bits(got, want):
    """Equal bit patterns, any nan equal to any nan."""
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(got[~nan].view(torch.int32), want[~nan].view(torch.int32))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on inf and nan, interpreted
@pytest.mark.interpret
@pytest.mark.parametrize("m", [3, 4])
def test_kernel_special_cases_bit_for_bit(m, nan_alloc):
    x = torch.tensor([a for a, _ in SPECIAL], dtype=torch.float32)
    y = torch.tensor([b for _, b in SPECIAL], dtype=torch.float32)
    got = lmul(x, y, m, backend="triton")
    want = torch.tensor([scalar_lmul(float(a), float(b), m) for a, b in zip(x, y, strict=True)])
    _same_bits(got, want)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on inf and nan, interpreted
@pytest.mark.interpret
@pytest.mark.parametrize("m", [3, 4])
def test_kernel_elementwise_bit_exact(m, nan_alloc):
    """Operands over float32's whole exponent range (products overflow to inf and underflow
    to zero), subnormals, zeros of both signs and odd lengths, against the value form."""
    g = torch.Generator().manual_seed(10 + m)
    n = 5003
    scale = torch.exp2(torch.randint(-150, 128, (n,), generator=g).float())
    x = torch.randn(n, generator=g) * scale
    y = torch.randn(n, generator=g) * torch.exp2(torch.randint(-80, 80, (n,), generator=g).float())
    x[::37], y[::41] = 0.0, -0.0
    got = lmul(x, y, m, backend="triton")
    _same_bits(got, lmul_reference(x, y, m))
    _same_bits(got, lmul(x, y, m, backend="reference"))
    assert bool(torch.isinf(got).any()) and bool((got == 0).sum() > n // 20)


@pytest.mark.interpret
def test_kernel_elementwise_half_broadcast_and_gradient(nan_alloc):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 1, 33, generator=g).half().requires_grad_()
    y = torch.randn(7, 33, generator=g).requires_grad_()  # float32: the result is float32
    got = lmul(x, y, 4, backend="triton")
    assert got.dtype == torch.float32 and got.shape == (5, 7, 33)
    assert torch.equal(got, lmul_reference(x.detach().float(), y.detach(), 4))
    dz = torch.randn(got.shape, generator=g)
    got.backward(dz)
    torch.testing.assert_close(x.grad, (dz * y.detach()).sum(1, keepdim=True).half())
    torch.testing.assert_close(y.grad, (dz * x.detach().float()).sum(0))
    h = torch.randn(300, generator=g).half()
    assert torch.equal(
        lmul(h, h, 3, backend="triton"), lmul_reference(h.float(), h.float(), 3).half()
    )


def _products(x, w, m):
    """The float32 L-Mul products [n, J, K] of reference.py (by value)."""
    return lmul_reference(x[:, None, :], w[None], m)


@pytest.mark.interpret
@pytest.mark.parametrize("m", [3, 4])
def test_kernel_matrix_product_bit_exact_where_sums_are(m, nan_alloc):
    """Operands that are multiples of 1/8 below 2 in magnitude: every L-Mul product is a
    multiple of 2^-10 below 8, so every partial sum of K = 45 is exact in float32 and the
    kernel's tiled order of summation gives the reference's very bits."""
    g = torch.Generator().manual_seed(m)
    x = torch.randint(-15, 16, (37, 45), generator=g).float() / 8
    w = torch.randint(-15, 16, (19, 45), generator=g).float() / 8
    b = torch.randint(-15, 16, (19,), generator=g).float() / 8
    got = lmul_linear(x, w, b, m, backend="triton")
    assert torch.equal(got, lmul_linear_reference(x, w, b, m))
    assert torch.equal(got, _products(x.double(), w.double(), m).sum(-1).float() + b)
    wt = w.t().contiguous().t()  # a transposed layout: strides (1, 19)
    assert torch.equal(lmul_linear(x, wt, None, m, backend="triton"),
                       lmul_linear_reference(x, w, None, m))  # fmt: skip


@pytest.mark.interpret
@pytest.mark.parametrize("m", [3, 4])
def test_kernel_matrix_product_random(m, nan_alloc):
    """Random float32 operands: the float32 sum of the exact products within float32's rounding
    of a sum of K terms (K ulp of the sum of magnitudes) of their float64 sum."""
    g = torch.Generator().manual_seed(20 + m)
    x = torch.randn(3, 29, 70, generator=g)
    w = torch.randn(33, 70, generator=g) * torch.exp(torch.randn(33, 1, generator=g))
    b = torch.randn(33, generator=g)
    got = lmul_linear(x, w, b, m, backend="triton")
    prods = _products(x.reshape(-1, 70).double(), w.double(), m)
    want = (prods.sum(-1) + b.double()).reshape(3, 29, 33)
    bound = 70 * 2.0**-24 * (prods.abs().sum(-1) + b.double().abs()).reshape(3, 29, 33)
    assert bool(((got.double() - want).abs() <= bound).all())
    ref = lmul_linear(x, w, b, m, backend="reference")
    assert bool(((got.double() - ref.double()).abs() <= 2 * bound).all())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on inf and nan, interpreted
@pytest.mark.interpret
def test_kernel_matrix_product_specials_half_and_gradient(nan_alloc):
    """inf and nan operands give the IEEE product inside the sum (inf · 0 is nan); float16
    operands give a float16 result; the backward is the exact linear map's."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20, 24, generator=g)
    w = torch.randn(18, 24, generator=g)
    x[3, 5], x[7, 0], w[2, 9] = math.inf, math.nan, -math.inf
    x[11, 9] = 0.0
    got = lmul_linear(x, w, None, 4, backend="triton")
    want = lmul_linear(x, w, None, 4, backend="reference")
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(torch.isinf(got), torch.isinf(want)) and bool(torch.isinf(got).any())
    fin = torch.isfinite(want)
    torch.testing.assert_close(got[fin], want[fin], rtol=1e-6, atol=1e-5)
    assert bool(torch.isnan(got[11, 2]))  # 0 · (−inf) at k = 9

    xh = torch.randn(2, 17, 40, generator=g).half().requires_grad_()
    wh = torch.randn(9, 40, generator=g).half().requires_grad_()
    bh = torch.randn(9, generator=g).half().requires_grad_()
    yh = lmul_linear(xh, wh, bh, 3, backend="triton")
    assert yh.dtype == torch.float16
    ref = lmul_linear_reference(xh.detach().float(), wh.detach().float(), bh.detach().float(), 3)
    torch.testing.assert_close(yh, ref.half(), rtol=1e-3, atol=1e-3)
    dy = torch.randn(yh.shape, generator=g).half()
    yh.backward(dy)
    exact = [t.detach().clone().requires_grad_() for t in (xh, wh, bh)]
    F.linear(*exact).backward(dy)
    for a, e in zip((xh, wh, bh), exact, strict=True):
        torch.testing.assert_close(a.grad, e.grad)


def test_backend_is_checked():
    with pytest.raises(ValueError, match="backend must be one of"):
        lmul(torch.ones(2), torch.ones(2), 4, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        lmul_linear(torch.ones(2, 3), torch.ones(4, 3), backend="cuda")
