"""Which implementation each fused box runs by default, per device: the one table of measured
rules the lowering reads (`fused="auto"`, the default of `ncd.compile`).

Each entry names the implementation that measured fastest for that box kind on that device
type, side by side with the others in one run (bench/RESULTS.md, "Compiler" and "Op library"
sections, say which run): "ncd" runs ncd.ops' kernels, "torch" PyTorch's own
(`F.scaled_dot_product_attention`, `nn.LayerNorm` / `nn.RMSNorm`). A device type or kind
missing from the table takes "ncd" (on the CPU ncd.ops runs its PyTorch forms, which are
chunked, never a loop over tokens). `fused="ncd"` or `fused="torch"` asks for one everywhere
(boxes with no PyTorch counterpart, such as linear attention, always run ncd.ops; masked
softmax attention, which ncd.ops' kernel does not take, always runs SDPA: `attention_backend`).
"""

from __future__ import annotations

from ncd.ops import short_conv_cost

# kind of fused box -> {device type: implementation}
FASTEST: dict[str, dict[str, str]] = {
    # Softmax attention: PyTorch's SDPA (bench/RESULTS.md, "Compiler on the GPU").
    "attention": {"cuda": "torch"},
    # Causal linear attention: ncd's chunked kernels ("Op library"); PyTorch has none.
    "linear_attention": {"cuda": "ncd"},
    # Layer / RMS norms, with or without the residual add fused in: torch's ("Op library
    # III": ops/norm's Python autograd Function costs the host more than torch's native op,
    # which slows compiled blocks' steps wherever the host is the bound).
    "norm": {"cuda": "torch"},
    # L2 normalisation over one axis (`normalize` boxes with p = 2: DeltaNet's queries and
    # keys): F.normalize until ncd.ops.l2_norm (one row kernel each way, where F.normalize
    # runs about ten elementwise kernels with broadcasts) is timed in a block beside it.
    "l2_norm": {"cuda": "torch"},
    # int8 x int8 -> int32 products (int_linear, contractions of int8 values): torch has no
    # integer matrix product on CUDA ("torch" there multiplies in float64, exact for int8
    # operands); on the CPU torch's int32 einsum.
    "int_matmul": {"cuda": "ncd", "cpu": "torch"},
    # Causal depthwise short convolution (+ SiLU): ncd's kernels on CUDA ("Op library II":
    # faster than conv1d, torch.compile and fla's causal_conv1d, and deltanet_block's step with
    # them); on the CPU the conv1d the boxes it replaces ran.
    "short_conv": {"cuda": "ncd", "cpu": "torch"},
}
CHOICES = ("auto", "ncd", "torch")


def choose(kind: str, device, fused: str = "auto") -> str:
    """ "ncd" or "torch" for a fused box of `kind` on `device` under the compile option
    `fused` ("auto": the table; "ncd" / "torch": that one)."""
    if fused not in CHOICES:
        raise ValueError(f"fused: expected one of {', '.join(CHOICES)}, found {fused!r}")
    if fused != "auto":
        return fused
    # the device's type from its name ("cuda:1" -> "cuda"); a torch.device prints the same,
    # so the cost model reads this table without importing torch
    return FASTEST.get(kind, {}).get(str(device).split(":")[0], "ncd")


def attention_backend(device, fused: str = "auto", masked: bool = False) -> str:
    """ "ncd" or "torch" for a softmax `attention` box: `choose`'s, except that a masked box
    runs PyTorch's SDPA whatever `fused` asks, since ncd.ops.softmax_attention takes no mask
    (its one pattern is causal) and SDPA's `attn_mask` takes a keep-mask or a bias."""
    kind = choose("attention", device, fused)
    return "torch" if masked else kind


def short_conv_kernels(width: int, device, fused: str = "auto") -> bool:
    """Whether a short convolution of filter `width` runs ncd.ops.short_conv's kernels on
    `device`: chosen there, and no wider than they take (a wider one stays on PyTorch's conv1d
    rather than the op's PyTorch reference)."""
    return choose("short_conv", device, fused) == "ncd" and width <= short_conv_cost.MAX_WIDTH
