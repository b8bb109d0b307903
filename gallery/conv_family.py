"""The convolution figures of the NCD paper: the convolution variants and the U-Net."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry
from .ncd_paper import NCD


@entry("convolutions", "Convolution variants: strided, dilated, depthwise, transposed", NCD)
def convolutions():
    """One image through the four convolutions of the NCD paper's figure, side by side.

    Each is y[o, i] = Σ_{c, j} w[o, c, j] x[c, s·i + d·j - p] (+ b[o]) over the spatial axes:
    strided (s = 2, drawn as a trapezoid: the axes shrink by the stride), dilated (d = 2: the
    kernel taps are spread), depthwise (one filter per channel, groups = C) and transposed
    (★ᵀ, the adjoint of a strided convolution: the axes grow by the stride).
    """
    b = Builder("convolutions", title="Convolution variants", paper=NCD,
                doc="Strided, dilated, depthwise and transposed ★k over the axes Y X.",
                sizes={"B": 2, "C": 4, "O": 6, "Y": 12, "X": 12})  # fmt: skip
    x = b.input("x", "B C Y X")
    xs = b.copy(x, 4, name="fan_out")
    b.output("strided", b.conv(xs[0], "Y X", "C", "O", 4, stride=2, padding=1, name="strided"))
    b.output("dilated", b.conv(xs[1], "Y X", "C", "O", 3, dilation=2, padding=2, name="dilated"))
    b.output("depthwise", b.conv(xs[2], "Y X", "C", "C", 3, padding=1, depthwise=True,
                                 name="depthwise"))  # fmt: skip
    b.output("transposed", b.conv(xs[3], "Y X", "C", "O", 4, stride=2, padding=1,
                                  transposed=True, name="transposed"))  # fmt: skip
    return b.build()
