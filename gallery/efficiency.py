"""Efficiency papers whose trick is a change of normalisation or arithmetic inside a standard
block (Unified Normalization)."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry
from .ncd_paper import _mha

UN = (
    "Yang et al., Unified Normalization for Accelerating and Stabilizing Transformers (ACM MM 2022)"
)


def _un(b: Builder, x, name: str):
    """UN over the channel axis D with the authors' settings (window 4, warm-up 4000 steps,
    outlier filtration on, running statistics updated at rate 0.1)."""
    return b.box("unifiednorm", {"x": x}, name, channel="D", window=4, warmup=4000,
                 outlier=True, label="UN")  # fmt: skip


@entry("unified_norm_block", "Transformer block with Unified Normalization", UN)
def unified_norm_block():
    """The pre-norm transformer block with both LayerNorms replaced by Unified Normalization.

    Implements: Yang et al. (2022) Sec. 3, Unified Normalization in the block
    x + MHA(UN(x)), then + MLP(UN(.)): per channel c of D, z = x / sqrt(σ̂²_c + ε),
    y = γ_c z + β_c, with ψ²_t = mean over (B, T) of x² at step t; fluctuation smoothing,
    σ̂²_t = (Π_{i<M} ψ²_{t-i})^{1/M}, M = 4; gradient compensation in the backward,
    dx = (g - ν z) / sqrt(σ̂²_t + ε), g = r γ dy; and at inference, with the running σ², the
    affine map y = (γ / sqrt(σ² + ε)) x + β.

    UN normalises each channel by a statistic taken over every token of the batch (B and T),
    not over the token's own channels as LayerNorm does; ψ² is the quadratic mean, with no
    centring. During warm-up σ̂²_t is each batch's own ψ²_t. In the backward, ν is a moving
    average of the arithmetic mean over the window of mean(g z), and r the clamped ratio of
    σ̂_t to the running σ. Adaptive outlier filtration: when the window's arithmetic minus
    geometric mean exceeds M times the variance of its roots in some channel, the batch uses
    ψ²_t and leaves the running statistic in its slot. At inference UN is affine, and
    `ncd.compiler.fold.fold_norms` folds it into L^Q, L^K, L^V and the MLP's first map.
    """
    b = Builder(
        "unified_norm_block",
        title="Transformer block with Unified Normalization",
        paper=UN,
        doc="x + MHA(UN(x)), then + MLP(UN(.)): LayerNorm replaced by UN, whose inference "
        "form folds into the following linear maps.",
        axes={"D": "H*K"},
        sizes={"B": 2, "T": 16, "H": 4, "K": 8, "V": 8, "F": 64},
    )
    x = b.input("x", "B T D")
    with b.group("Residual Component"):
        h = _un(b, x, "un1")
    h = _mha(b, h, group="Residual Component")
    x = b.add(x, h, name="res1")
    with b.group("MLP"):
        h = _un(b, x, "un2")
        h = b.linear(h, "D", "F", name="ff_up", label="L₊")
        h = b.gelu(h, name="act")
        h = b.linear(h, "F", "D", name="ff_down", label="L₊")
    b.output("y", b.add(x, h, name="res2"))
    return b.build()
