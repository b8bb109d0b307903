"""Vision architectures of the NCD paper and of the efficiency papers (MobileNetV2, SESR)."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry
from .ncd_paper import NCD, transformer_block

MOBILENET = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks (2018)"
SESR = "Bhardwaj et al., Collapsible Linear Blocks for Super-Efficient Super Resolution (2022)"


@entry("mlp", "Basic MLP image recogniser", NCD)
def mlp():
    """The NCD paper's basic MLP image recogniser.

    Implements: Abbott's basic MLP, log p = log_softmax(W₂ ReLU(W₁ x + b₁) + b₂) over the
    classes C, x the image with its pixel axes Y, X merged into one axis P.
    """
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
    """The identity residual block, as the NCD paper draws it.

    Implements: Abbott's identity ResNet block, He et al. (2016) eq. 1, y = F(x) + x, with
    the ReLU after the addition (their Fig. 2): out = ReLU(F(x) + x),
    F(x) = BN(W₂ ★ ReLU(BN(W₁ ★ x))).

    The two ★ are 3×3 convolutions (padding 1, no bias), each followed by batch
    normalisation.
    """
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
    """MobileNetV2's inverted residual with a linear bottleneck (stride 1, so with the
    identity).

    Implements: Sandler et al. (2018), the bottleneck residual block with expansion factor 6,
    y = x + BN(W_p ★₁ ReLU6(BN(W_d ★₃ ReLU6(BN(W_e ★₁ x))))), W_e expanding C to E = 6C
    channels, W_d depthwise (one 3×3 filter per channel), W_p projecting back to C with no
    activation after it (the linear bottleneck).

    The convolutions have no bias (batch normalisation follows each).
    """
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
    """SESR's collapsible linear block: trained expanded, collapsed to one convolution at
    export.

    Implements: Bhardwaj et al. (2022), the collapsible linear block with its residual,
    y = W₁ₓ₁ ★ (W₃ₓ₃ ★ x + b₃) + b₁ + x (3×3 to E channels, then 1×1 back to C), which is
    linear in x and so one 3×3 convolution, W = W₁ₓ₁ ★ W₃ₓ₃ + δ (the residual as the
    identity at the kernel's centre tap), b = W₁ₓ₁ b₃ + b₁; then a ReLU.

    The collapse at export is `ncd.compiler.collapse`; the activation is a plain ReLU (no
    learned slope).
    """
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
    """The NCD paper's vision transformer.

    Implements: Abbott's vision transformer figure, z⁰ = patches(x) + E_pos with the patches
    by a strided convolution (kernel = stride = P = 4, the patch embedding), z^λ =
    Block_λ(z^(λ-1)) for λ = 1 … N (the pre-norm block of `transformer_block`, Vaswani et
    al. 2017 eqs. 1 and 2), logits = W mean_t LN(z^N)_t + b.

    Mean pooling over the patches T stands where the original ViT (Dosovitskiy et al.) reads
    a class token; E_pos is a learned parameter over (T, D).
    """
    block = transformer_block()
    b = Builder("vision_transformer", title="Vision transformer", paper=NCD, axes={"D": "H*K"},
                sizes={"B": 2, "C": 3, "Y": 16, "X": 16, "H": 4, "K": 8, "V": 8, "F": 64,
                       "N": 2, "L": 10})  # fmt: skip
    img = b.input("image", "B C Y X")
    with b.group("Patch embedding"):
        p = b.conv(img, "Y X", "C", "D", 4, stride=4, name="patchify")  # ★4, noted ↓4×4
        p = b.merge_axes(p, "Y X", "T", name="patches")  # B D T
        p = b.permute(p, "B T D", name="tokens")
        p = b.add(p, b.param("T D", name="pos_embed", label="E^pos"), name="add_pos")
    h = b.call(block, x=p, repeat="N", name="blocks")
    h = b.reduce(b.layernorm(h, "D", name="ln_f"), "T", "mean", name="pool")
    b.output("logits", b.linear(h, "D", "L", name="head", label="L₊"))
    return b.build()
