"""Efficiency entries (gallery/efficiency.py) and the inference-time folds (compiler/fold.py,
compiler/collapse.py): compiled circuits against hand-written references from the papers'
equations, in training (outputs, every gradient, the normalisation's state) and at inference,
a short training run, and folded circuits against unfolded ones."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ncd
from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.compiler import compile as ncd_compile
from ncd.compiler.collapse import collapse
from ncd.compiler.fold import fold_norms

from . import ref_variants
from .references import HEADS, linear
from .references import sesr_block as sesr_reference

# --- Unified Normalization, from Yang et al. 2022 (Sec. 3) and the authors' released code -----


class _UNStep(torch.autograd.Function):
    """One training step of UN on x [N, C] (tokens by channels), state `s` updated in place.

    Forward (offline statistics with fluctuation smoothing and outlier filtration):
        ψ²_t = (1/N) Σ_n x_n²                                   quadratic mean of the batch
        window ← ψ²_t in slot t mod M; if filtering (t ≥ warm-up) and, in some channel,
        AM(window) − GM(window) > M · Var(sqrt(window before the write)): slot ← σ²_run, skip
        σ̂²_t = GM(window) = exp(mean log window)  (ψ²_t while t ≤ M, in warm-up, or skipped)
        z = x / sqrt(σ̂²_t + ε),  y = γ z + β
        σ²_run ← (1 − α) σ²_run + α σ̂²_t
    Backward (gradient compensation):
        r = clamp(sqrt((σ̂²_t + ε) / (σ²_run,old + ε)), 1/5, 5)  (1 until the compensation
        starts or when skipped),  g = γ r dy,  λ_t = (1/N) Σ_n g_n z_n,  windowg ← λ_t
        ν = AM(windowg) (λ_t in warm-up or skipped),  λ_run ← (1 − α) λ_run + α ν
        dx = (g − λ_run z) / sqrt(σ̂²_t + ε)  (ν instead of λ_run when skipped)
        dγ = Σ_n dy r z,  dβ = Σ_n dy
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, s, cfg):
        m, eps, alpha = cfg["window"], cfg["eps"], cfg["momentum"]
        s["steps"] += 1
        t = int(s["steps"])
        psi2 = (x**2).sum(0) / x.shape[0]
        before = s["window_var"].clone()
        s["window_var"][t % m] = psi2
        skipped = m == 1
        if cfg["outlier"] and t >= cfg["warmup"]:
            w = s["window_var"]
            am = w.mean(0)
            gm = w.prod(0) ** (1 / m)
            threshold = m * before.sqrt().flatten().var(unbiased=True)
            if (am - gm > threshold).any():
                s["window_var"][t % m] = s["running_var"]
                s["skips"] += 1
                skipped = True
        smoothed = not (skipped or t <= m or t < cfg["warmup"])
        var = s["window_var"].prod(0) ** (1 / m) if smoothed else psi2
        if skipped or t <= max(cfg["compensate_after"], cfg["warmup"]):
            r = torch.ones_like(var)
        else:
            r = (((var + eps) / (s["running_var"] + eps)) ** 0.5).clamp(0.2, 5.0)
        s["running_var"] = (1 - alpha) * s["running_var"] + alpha * var
        z = x / (var + eps) ** 0.5
        ctx.keep = (s, cfg, t, skipped, smoothed)
        ctx.save_for_backward(z, var, r, gamma)
        return gamma * z + beta

    @staticmethod
    def backward(ctx, dy):
        s, cfg, t, skipped, smoothed = ctx.keep
        z, var, r, gamma = ctx.saved_tensors
        m, alpha = cfg["window"], cfg["momentum"]
        g = gamma * r * dy
        lam = (g * z).sum(0) / g.shape[0]
        s["window_gz"][t % m] = s["running_gz"] if skipped else lam
        nu = s["window_gz"].mean(0) if smoothed else lam
        s["running_gz"] = (1 - alpha) * s["running_gz"] + alpha * nu
        sub = nu if skipped else s["running_gz"]
        dx = (g - sub * z) / (var + cfg["eps"]) ** 0.5
        return dx, (dy * r * z).sum(0), dy.sum(0), None, None


def un_reference(p, name, x, s, cfg, training):
    """UN of x [B, T, D] over channel D; statistics over B and T."""
    if not training:
        return p[f"{name}.weight"] * x / (s["running_var"] + cfg["eps"]) ** 0.5 + p[f"{name}.bias"]
    y = _UNStep.apply(x.reshape(-1, x.shape[-1]), p[f"{name}.weight"], p[f"{name}.bias"], s, cfg)
    return y.reshape(x.shape)


def unified_norm_block_reference(p, x, states, cfg, training=True):
    """x + MHA(UN(x)), then + MLP(UN(.)) (Vaswani et al. eq. 1 and 2 inside the block)."""
    h = un_reference(p, "un1", x, states["un1"], cfg, training)
    q = linear(p, "q_proj", h, "btd,hkd->bthk", h=HEADS)
    k = linear(p, "k_proj", h, "btd,hkd->bthk", h=HEADS)
    v = linear(p, "v_proj", h, "btd,hvd->bthv", h=HEADS)
    att = torch.softmax(torch.einsum("bthk,bshk->bths", q, k) / math.sqrt(q.shape[-1]), -1)
    x = x + linear(p, "o_proj", torch.einsum("bths,bshv->bthv", att, v), "bthv,dhv->btd")
    h = un_reference(p, "un2", x, states["un2"], cfg, training)
    h = F.gelu(linear(p, "ff_up", h, "btd,fd->btf"))
    return x + linear(p, "ff_down", h, "btf,df->btd")


STATE = ("running_var", "running_gz", "window_var", "window_gz", "steps", "skips")


def _model_and_states(start, seed=0):
    """The compiled block (float64, random weights) and copies of its UN states; from `start`
    > 0, states as in the middle of training (full windows, running statistics, step count)."""
    circuit = gallery.get("unified_norm_block")
    box = circuit.box("un1")
    cfg = {f: getattr(box, f) for f in ("window", "warmup", "outlier", "compensate_after")}
    cfg |= {"eps": box.eps, "momentum": box.momentum}
    gen = torch.Generator().manual_seed(seed)
    model = ncd_compile(circuit, dtype=torch.float64).train()
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=gen, dtype=prm.dtype) * 0.3 + 0.1)
        if start:
            for key, buf in model.named_buffers():
                if key.endswith(("var", "window_gz", "running_gz")):
                    buf.copy_(torch.rand(buf.shape, generator=gen, dtype=buf.dtype) + 0.5)
                if key.endswith("steps"):
                    buf.fill_(start)
    states = {n: {k: model.state_dict()[f"{n}.{k}"].clone() for k in STATE} for n in ("un1", "un2")}
    return model, states, cfg, gen


@pytest.mark.parametrize("start", [0, 4100], ids=["warm-up", "smoothed"])
def test_unified_norm_block_matches_reference_in_training(start):
    """Outputs, the gradient of x and of every parameter, and the UN state after each of
    several steps; from 4100 the window's geometric mean, the compensated backward and (on a
    batch with a channel blown up) outlier filtration are all taken."""
    model, states, cfg, gen = _model_and_states(start)
    params = dict(model.named_parameters())
    for step in range(7):
        x = torch.randn(2, 16, 32, generator=gen, dtype=torch.float64)
        if step == 5:
            x[..., 3] *= 40  # an outlier batch
        x.requires_grad_()
        got = model(x)
        want = unified_norm_block_reference(params, x, states, cfg)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        dy = torch.randn(got.shape, generator=gen, dtype=torch.float64)
        leaves = [x, *params.values()]
        g_got = torch.autograd.grad((got * dy).sum(), leaves)
        g_want = torch.autograd.grad((want * dy).sum(), leaves)
        for n, a, b in zip(["x", *params], g_got, g_want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m, n=n: f"{n}: {m}")
        for n, s in states.items():
            for k in STATE:
                torch.testing.assert_close(
                    model.state_dict()[f"{n}.{k}"], s[k].to(model.state_dict()[f"{n}.{k}"]),
                    rtol=1e-10, atol=1e-12, msg=lambda m, k=f"{n}.{k}": f"{k}: {m}",
                )  # fmt: skip
    skips = int(model.state_dict()["un1.skips"]) + int(model.state_dict()["un2.skips"])
    assert skips == 0 if start == 0 else 0 < skips < 14, skips


def test_unified_norm_block_matches_reference_at_inference():
    model, states, cfg, gen = _model_and_states(4100)
    model.eval()
    x = torch.randn(2, 16, 32, generator=gen, dtype=torch.float64, requires_grad=True)
    params = dict(model.named_parameters())
    got = model(x)
    want = unified_norm_block_reference(params, x, states, cfg, training=False)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    g_got = torch.autograd.grad(got.sum(), [x, *params.values()])
    g_want = torch.autograd.grad(want.sum(), [x, *params.values()])
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_unified_norm_block_training_lowers_the_loss():
    ref_variants.check_training("unified_norm_block")


# --- folding at inference --------------------------------------------------------------------


def _fold_check(circuit, model, x):
    """fold_norms on an eval-mode model: fewer boxes, no norm left where every reader
    absorbs it, identical outputs in float64, fewer FLOPs in ncd analyse."""
    model.eval()
    small, weights = fold_norms(circuit, model.state_dict())
    folded = ncd_compile(small, dtype=torch.float64).eval()
    folded.load_state_dict(weights)  # strict: every key, nothing more
    got, want = folded(*x), model(*x)
    for k in want if isinstance(want, dict) else [None]:
        a, b = (got[k], want[k]) if k else (got, want)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    before = ncd.analyse(circuit, lowering="unfused").numbers["flops"]
    after = ncd.analyse(small, lowering="unfused").numbers["flops"]
    return small, before, after


def test_unified_norm_block_folds_into_the_projections():
    """After training steps (running statistics away from 1), both UNs fold: into L^Q, L^K,
    L^V and into the MLP's first map; the block's outputs are unchanged."""
    circuit = gallery.get("unified_norm_block")
    model, _, _, gen = _model_and_states(4100)
    for _ in range(3):
        model(torch.randn(2, 16, 32, generator=gen, dtype=torch.float64)).sum().backward()
    x = torch.randn(2, 16, 32, generator=gen, dtype=torch.float64)
    small, before, after = _fold_check(circuit, model, [x])
    kinds = [b.kind for b in small.boxes]
    assert "unifiednorm" not in kinds and len(small.boxes) == len(circuit.boxes) - 2
    assert small.box("q_proj").inputs == {"x": "x"} and small.box("ff_up").inputs == {"x": "res1"}
    assert after < before, (before, after)


def test_batch_norms_and_shiftless_norms_fold_into_maps_and_convolutions():
    b = Builder("norms", sizes={"B": 2, "C": 3, "E": 4, "Y": 5, "X": 6})
    x = b.input("x", "B C Y X")
    h = b.batchnorm(x, "C", name="bn")
    h = b.conv(h, "Y X", "C", "E", 1, bias=False, name="pointwise")  # bias gained
    h = b.box("unifiednorm", {"x": h}, "un", channel="E", affine=False)
    h = b.conv(h, "Y X", "E", "E", 3, padding=1, name="padded")  # UN without shift: folds
    h = b.batchnorm(h, "E", name="bn2")
    b.output("y", b.linear(h, "E Y", "F", name="map", label="L"))  # E among several axes
    circuit = b.build()
    model = ncd_compile(circuit, sizes={"F": 7}, dtype=torch.float64)
    circuit = circuit.model_copy(update={"sizes": {**circuit.sizes, "F": 7}})
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5)
    x = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64)
    small, before, after = _fold_check(circuit, model, [x])
    assert [b.kind for b in small.boxes] == ["conv", "conv", "linear"]
    assert small.box("pointwise").bias and after < before


def test_norms_that_cannot_fold_stay():
    b = Builder("kept", sizes={"B": 2, "C": 3, "Y": 5, "X": 5})
    x = b.input("x", "B C Y X")
    h = b.batchnorm(x, "C", name="bn")  # shifts, before a padded convolution: kept
    h = b.conv(h, "Y X", "C", "C", 3, padding=1, name="padded")
    u = b.box("unifiednorm", {"x": h}, "un", channel="C")  # read by a ReLU too: kept
    b.output("y", b.conv(u, "Y X", "C", "C", 1, name="pointwise"))
    b.output("z", b.relu(u))
    circuit = b.build()
    model = ncd_compile(circuit, dtype=torch.float64)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    small, _, _ = _fold_check(circuit, model, [x])
    assert [b.kind for b in small.boxes] == [b.kind for b in circuit.boxes]


# --- SESR: the collapsed block is one convolution --------------------------------------------


def test_sesr_block_collapses_to_one_convolution_that_matches_the_reference():
    """Collapse (expand ★3 → project ★1, then the residual) gives one 3×3 convolution; its
    outputs equal the hand-written two-convolution block with the residual (Bhardwaj et al.)."""
    circuit = gallery.get("sesr_block")
    gen = torch.Generator().manual_seed(0)
    model = ncd_compile(circuit, dtype=torch.float64)
    with torch.no_grad():
        for t in model.parameters():
            t.copy_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * 0.3)
    small, weights = collapse(circuit, model.state_dict())
    assert [b.kind for b in small.boxes].count("conv") == 1
    assert [b.kind for b in small.boxes] == ["conv", "unary"]
    one = ncd_compile(small, dtype=torch.float64)
    one.load_state_dict(weights)
    x = torch.randn(2, 16, 12, 12, generator=gen, dtype=torch.float64)
    want = sesr_reference(dict(model.named_parameters()), x)["y"]
    torch.testing.assert_close(one(x), want, rtol=1e-10, atol=1e-10)
