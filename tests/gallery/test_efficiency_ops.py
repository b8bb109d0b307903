"""gallery/efficiency_ops.py against hand-written references from the papers' equations:
`wtacrs_linear` (forward, input and bias gradients exact; weight gradients unbiased, checked
statistically against the exact ones), `lmul_linear` (outputs bit for bit in float64 against
L-Mul written from the paper's eq. 3, gradients those of the exact block, and its error
against the exact block reported); a short training run each."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncd import gallery
from ncd.compiler import compile as ncd_compile

from . import ref_variants as ref


def ffn(p, x, mul=None):
    """y = x + W₂ GELU(W₁ x + b₁) + b₂; `mul(a, b)` replaces each product of the two maps
    (None: exact)."""

    def lin(h, name):
        w, b = p[f"{name}.weight"], p[f"{name}.bias"]
        if mul is None:
            return F.linear(h, w, b)
        return mul(h[..., None, :], w).sum(-1) + b

    return {"y": x + lin(F.gelu(lin(x, "up")), "down")}


def lmul3(a, b):
    """The paper's eq. 3 with m = 3 (l(3) = 3), by value: a = ±(1 + a_m) 2^{a_e}, mantissas cut
    to 3 bits, ±(1 + a_m + b_m + 1/8) 2^{a_e + b_e}; a mantissa sum of 1 or more carries into
    the exponent (the integer adder: s 2^{a_e + b_e + 1}). Nonzero float64 operands of the test
    are far inside the normal range; the value is L-Mul's, the gradient the exact product's."""
    a, b = torch.broadcast_tensors(a, b)
    ea, eb = torch.floor(torch.log2(a.abs().detach())), torch.floor(torch.log2(b.abs().detach()))
    ea = ea - (a.abs().detach() < torch.exp2(ea)).double()  # log2 rounded up at 2^e - ulp
    eb = eb - (b.abs().detach() < torch.exp2(eb)).double()
    ma = torch.floor((a.abs().detach() / torch.exp2(ea) - 1) * 8) / 8
    mb = torch.floor((b.abs().detach() / torch.exp2(eb) - 1) * 8) / 8
    s = ma + mb + 1 / 8
    value = torch.where(s < 1, (1 + s) * torch.exp2(ea + eb), s * torch.exp2(ea + eb + 1))
    value = value * torch.sign(a.detach()) * torch.sign(b.detach())
    exact = a * b
    return value + (exact - exact.detach())


def _setup(name, seed=0):
    circuit = gallery.get(name)
    model = ncd_compile(circuit, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3 + 0.1)
    x = torch.randn(2, 10, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    return model, dict(model.named_parameters()), x


def test_wtacrs_forward_input_and_bias_gradients_exact():
    model, p, x = _setup("wtacrs_linear")
    y = model(x)
    want = ffn(p, x)["y"]
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y)
    exact = ["up.bias", "down.bias"]
    got = torch.autograd.grad((y * dy).sum(), [x] + [p[k] for k in exact])
    ref_g = torch.autograd.grad((want * dy).sum(), [x] + [p[k] for k in exact])
    for a, b in zip(got, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_wtacrs_weight_gradients_are_unbiased():
    """The mean of N sampled weight gradients approaches the exact ones as 1/sqrt(N)."""
    model, p, x = _setup("wtacrs_linear")
    weights = [p["up.weight"], p["down.weight"]]
    dy = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = torch.autograd.grad((ffn(p, x)["y"] * dy).sum(), weights)
    torch.manual_seed(0)
    sums, errs = [torch.zeros_like(w) for w in weights], {}
    one = None
    for i in range(1, 1601):
        g = torch.autograd.grad((model(x) * dy).sum(), weights)
        if one is None:
            one = [float((a - e).norm() / e.norm()) for a, e in zip(g, exact, strict=True)]
        sums = [s + a for s, a in zip(sums, g, strict=True)]
        if i in (100, 1600):
            pairs = zip(sums, exact, strict=True)
            errs[i] = [float((s / i - e).norm() / e.norm()) for s, e in pairs]
    print(f"\nrelative error of dW: one estimate {one}, mean of 100 {errs[100]}, "
          f"of 1600 {errs[1600]}")  # fmt: skip
    for j in range(2):
        assert errs[1600][j] < 0.5 * errs[100][j], errs  # 16x the samples: about 1/4
        assert errs[1600][j] < one[j] / 8, (errs, one)


def test_wtacrs_training_lowers_the_loss():
    ref.check_training("wtacrs_linear")


def test_lmul_outputs_bit_exact_against_the_paper_formula_and_error_reported():
    model, p, x = _setup("lmul_linear")
    y = model(x)
    want = ffn(p, x, lmul3)["y"]
    assert torch.equal(y, want)
    exact = ffn(p, x)["y"]
    err = float((y - exact).detach().norm() / exact.detach().norm())
    print(f"\nlmul_linear (3-bit L-Mul) against the exact block: relative error {err:.4f}")
    assert 1e-3 < err < 0.1
    dy = torch.randn_like(y)
    leaves = [x, *p.values()]
    for a, b in zip(torch.autograd.grad((y * dy).sum(), leaves),
                    torch.autograd.grad((want * dy).sum(), leaves), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_lmul_training_lowers_the_loss():
    ref.check_training("lmul_linear")
