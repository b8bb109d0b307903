"""The convolution figures of the NCD paper: the convolution variants and the U-Net."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry
from .ncd_paper import NCD


@entry("convolutions", "Convolution variants: strided, dilated, depthwise, transposed", NCD)
def convolutions():
    """One image through the four convolutions of the NCD paper's figure, side by side.

    Implements: Abbott's convolution figure, y[o, i] = Σ_{c, j} w[o, c, j] x[c, s·i + d·j − p]
    + b[o] over the spatial axes (i, j each a pair over Y, X), in its four variants: strided
    (s = 2, kernel 4, p = 1), dilated (d = 2, kernel 3, p = 2), depthwise
    y[c, i] = Σ_j w[c, j] x[c, i + j − 1] + b[c] (one filter per channel, groups = C), and
    transposed, the adjoint of the strided one, y[o, s·i + j − p] += Σ_c w[c, o, j] x[c, i]
    (+ b[o]; s = 2, kernel 4, p = 1).

    The strided one is drawn as a trapezoid (the axes shrink by the stride), the dilated one
    with its taps spread, the transposed one as ★ᵀ (the axes grow by the stride).
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


UNET = "Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation (2015)"


def _double_conv(b, h, cin, cout, tag):
    """Two 3×3 convolutions, each followed by batch normalisation and a ReLU (one level)."""
    for i, c in ((1, cin), (2, cout)):
        h = b.conv(h, "Y X", c, cout, 3, padding=1, bias=False, name=f"{tag}_conv{i}")
        h = b.relu(b.batchnorm(h, cout, name=f"{tag}_bn{i}"), name=f"{tag}_relu{i}")
    return h


@entry("unet", "U-Net", NCD + "; " + UNET)
def unet():
    """The NCD paper's U-Net (after Ronneberger et al., Fig. 1), two levels deep.

    Implements: Abbott's U-Net figure of Ronneberger et al. (2015) Fig. 1, with
    C(h) = ReLU(BN(W ★₃ h)) and D = C ∘ C at each level: down, s_l = D_l(h),
    h = MaxPool₂(s_l) for l = 1, 2; bottom h = D_3(h); up, h = D'_l(concat_ch(W^up_l ★ᵀ₂ h,
    s_l)) for l = 2, 1; logits = W ★₁ h + b.

    Down path: at each level two (★3, batch norm, ReLU), then Max 2×2 pooling, the width
    doubling (F1 → F2 → F3). Up path: a transposed ★ᵀ2 (stride 2, the paper's 2×2
    up-convolution) halves the width and doubles Y X, the level's skip is concatenated along
    the channels, and two (★3, batch norm, ReLU) follow. A ★1 maps to the L classes.
    Two departures from the 2015 paper, both as in most U-Nets since: batch normalisation after
    each convolution (Çiçek et al.'s 3D U-Net; it keeps a stack this deep trainable), and padded
    convolutions (the original crops the skip instead), so Y and X are multiples of 4
    (Y = 4·M, X = 4·N) and the skips meet their up-sampled partners without cropping.
    """
    b = Builder("unet", title="U-Net", paper=NCD + "; " + UNET,
                doc="Down path (★3, BN, ReLU, Max), up path (★ᵀ2), skips concatenated by channel.",
                axes={"F2": "2*F1", "F3": "4*F1", "Y": "4*M", "X": "4*N"},
                sizes={"B": 2, "C": 3, "F1": 4, "L": 2, "M": 2, "N": 2})  # fmt: skip
    x = b.input("image", "B C Y X")
    with b.group("Down 1"):
        skip1, h = b.copy(_double_conv(b, x, "C", "F1", "down1"), name="skip1")
        h = b.pool(h, "Y X", 2, name="pool1")
    with b.group("Down 2"):
        skip2, h = b.copy(_double_conv(b, h, "F1", "F2", "down2"), name="skip2")
        h = b.pool(h, "Y X", 2, name="pool2")
    with b.group("Bottom"):
        h = _double_conv(b, h, "F2", "F3", "bottom")
    with b.group("Up 2"):
        h = b.conv(h, "Y X", "F3", "F2", 2, stride=2, transposed=True, name="up2")
        h = b.concat(h, skip2, axis="F2", name="cat2")  # channels 2·F2
        h = _double_conv(b, h, "F2", "F2", "dec2")
    with b.group("Up 1"):
        h = b.conv(h, "Y X", "F2", "F1", 2, stride=2, transposed=True, name="up1")
        h = b.concat(h, skip1, axis="F1", name="cat1")  # channels 2·F1
        h = _double_conv(b, h, "F1", "F1", "dec1")
    b.output("logits", b.conv(h, "Y X", "F1", "L", 1, name="head"))
    return b.build()
