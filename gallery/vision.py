"""Vision architectures of the NCD paper and of the efficiency papers (MobileNetV2, SESR)."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry
from .ncd_paper import NCD, transformer_block

MOBILENET = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks (2018)"
SESR = "Bhardwaj et al., Collapsible Linear Blocks for Super-Efficient Super Resolution (2022)"


@entry("mlp", "Basic MLP image recogniser", NCD)
def mlp():
    """The NCD paper's basic MLP: the image's pixel axes Y, X merged into one axis P, then
    log_softmax(W₂ ReLU(W₁ x + b₁) + b₂) over the classes C."""
    b = Builder("mlp", title="Basic MLP image recogniser", paper=NCD,
                doc="The image's pixel axes merge into one; two learned maps with a ReLU.",
                sizes={"B": 4, "Y": 28, "X": 28, "F": 64, "C": 10})  # fmt: skip
    img = b.input("image", "B Y X")
    h = b.merge_axes(img, "Y X", "P", name="flatten")
    h = b.relu(b.linear(h, "P", "F", name="hidden", label="L₊"), name="relu")
    logits = b.linear(h, "F", "C", name="classify", label="L₊")
    b.output("log_probs", b.softmax(logits, "C", variant="log_softmax", name="log_softmax"))
    return b.build()


@entry("resnet_block", "Identity ResNet block", NCD)
def resnet_block():
    """The identity residual block of He et al. (2016), eq. 1: y = ReLU(F(x) + x) with
    F(x) = BN(W₂ ★ ReLU(BN(W₁ ★ x))), two 3×3 convolutions (padding 1, no bias) each
    followed by batch normalisation, the ReLU after the addition (their Fig. 2)."""
    b = Builder("resnet_block", title="Identity ResNet block", paper=NCD,
                doc="conv3×3 → BN → ReLU → conv3×3 → BN, plus the identity, then ReLU.",
                sizes={"B": 2, "C": 8, "Y": 12, "X": 12})  # fmt: skip
    x = b.input("x", "B C Y X")
    with b.group("Residual branch"):
        h = b.conv(x, "Y X", "C", "C", 3, padding=1, bias=False, name="conv1", label="★3")
        h = b.relu(b.batchnorm(h, "C", name="bn1"), name="relu1")
        h = b.conv(h, "Y X", "C", "C", 3, padding=1, bias=False, name="conv2", label="★3")
        h = b.batchnorm(h, "C", name="bn2")
    b.output("y", b.relu(b.add(x, h, name="residual"), name="relu2"))
    return b.build()


@entry("mobilenetv2_block", "MobileNetV2 inverted residual", MOBILENET)
def mobilenetv2_block():
    """Expand 1×1 to E = 6C, depthwise 3×3, project 1×1 back to C with no activation (the
    linear bottleneck), plus the identity."""
    b = Builder("mobilenetv2_block", title="Inverted residual with linear bottleneck",
                paper=MOBILENET, axes={"E": "6*C"},
                sizes={"B": 2, "C": 8, "Y": 12, "X": 12})  # fmt: skip
    x = b.input("x", "B C Y X")
    with b.group("Inverted residual"):
        h = b.conv(x, "Y X", "C", "E", 1, bias=False, name="expand", label="★1")
        h = b.unary(b.batchnorm(h, "E", name="bn1"), "relu6", name="act1")
        h = b.conv(h, "Y X", "E", "E", 3, padding=1, depthwise=True, bias=False,
                   name="depthwise", label="★3 dw")  # fmt: skip
        h = b.unary(b.batchnorm(h, "E", name="bn2"), "relu6", name="act2")
        h = b.conv(h, "Y X", "E", "C", 1, bias=False, name="project", label="★1")
        h = b.batchnorm(h, "C", name="bn3")
    b.output("y", b.add(x, h, name="residual"))
    return b.build()


@entry("sesr_block", "SESR collapsible linear block", SESR)
def sesr_block():
    """Trained expanded (3×3 to E channels, then 1×1 back, with a residual), all linear, so it
    collapses into one 3×3 convolution at export (Bhardwaj et al.: W = W₁ₓ₁ ★ W₃ₓ₃, the
    residual added as the identity at the kernel's centre tap; `ncd.compiler.collapse`); a
    PReLU-free ReLU follows."""
    b = Builder("sesr_block", title="Collapsible linear block", paper=SESR,
                sizes={"B": 2, "C": 16, "E": 64, "Y": 12, "X": 12})  # fmt: skip
    x = b.input("x", "B C Y X")
    with b.group("Collapsible linear block"):
        h = b.conv(x, "Y X", "C", "E", 3, padding=1, name="expand", label="★3")
        h = b.conv(h, "Y X", "E", "C", 1, name="project", label="★1")
        h = b.add(h, x, name="residual")
    b.output("y", b.relu(h, name="act"))
    return b.build()


@entry("vision_transformer", "Vision transformer", NCD)
def vision_transformer():
    """Patches by a strided convolution (kernel = stride = P), a learned position embedding, N
    transformer blocks, mean pooling over patches, and a linear classifier."""
    block = transformer_block()
    b = Builder("vision_transformer", title="Vision transformer", paper=NCD, axes={"D": "H*K"},
                sizes={"B": 2, "C": 3, "Y": 16, "X": 16, "H": 4, "K": 8, "V": 8, "F": 64,
                       "N": 2, "L": 10})  # fmt: skip
    img = b.input("image", "B C Y X")
    with b.group("Patch embedding"):
        p = b.conv(img, "Y X", "C", "D", 4, stride=4, name="patchify", label="★4 /4")
        p = b.merge_axes(p, "Y X", "T", name="patches")  # B D T
        p = b.permute(p, "B T D", name="tokens")
        p = b.add(p, b.param("T D", name="pos_embed", label="E^pos"), name="add_pos")
    h = b.call(block, x=p, repeat="N", name="blocks")
    h = b.reduce(b.layernorm(h, "D", name="ln_f"), "T", "mean", name="pool")
    b.output("logits", b.linear(h, "D", "L", name="head", label="L₊"))
    return b.build()
