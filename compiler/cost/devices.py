"""Device profiles for the roofline estimate: peak arithmetic rate and HBM bandwidth."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ncd.circuits.errors import NcdError


class CostError(NcdError):
    """The cost model cannot answer: unbound or unknown sizes, an unknown device, bad options."""


@dataclass(frozen=True)
class Device:
    """A roofline: a kernel takes max(FLOPs / rate, bytes / bandwidth) seconds.

    `matmul_flops` applies to contractions in 16-bit (tensor cores); float32 contractions run at
    `vector_flops` (PyTorch multiplies float32 without TF32 unless told to), float64 at half of
    it; `vector_flops` applies to elementwise work.
    """

    name: str
    matmul_flops: float
    """FLOP/s of a large matrix product (a multiply-add counts 2)."""
    bandwidth: float
    """Bytes/s between HBM and the chip (read + written)."""
    vector_flops: float
    """FLOP/s of elementwise arithmetic (no tensor cores)."""
    source: str = ""
    platform: str = "cuda"
    """The torch device type the module runs on: "cuda" or "cpu". Where PyTorch's kernels for
    the two keep different tensors for the backward (RMS norm, the statistics of the other
    norms in 16 bits; rules/normalise.py), the kept memory follows it; the compiler's choices of
    fused kernels are looked up for it (compiler/choices.py)."""

    def matmul_rate(self, dtype: str = "bfloat16") -> float:
        """FLOP/s of a large matrix product whose operands are `dtype`."""
        if dtype in ("float32", "float64"):
            return self.vector_flops / (2 if dtype == "float64" else 1)
        return self.matmul_flops

    def time(self, matmul_flops, other_flops, io_bytes, dtype: str = "bfloat16"):
        """Seconds of one kernel whose products take `dtype` operands (a sympy expression when
        the sizes are symbols)."""
        compute = sympy.sympify(matmul_flops) / sympy.Float(
            self.matmul_rate(dtype)
        ) + sympy.sympify(other_flops) / sympy.Float(self.vector_flops)
        memory = sympy.sympify(io_bytes) / sympy.Float(self.bandwidth)
        if compute.is_number and memory.is_number:
            return sympy.Max(compute, memory)
        return sympy.Max(compute, memory, evaluate=False)  # compared once sizes are bound


# What the H200 reaches of its data-sheet peaks (989 TFLOP/s dense bf16, 4.8 TB/s): the other
# profiles are data-sheet peaks scaled by these, so that devices compare on one footing.
MATMUL_REACHED = 768e12 / 989e12
BANDWIDTH_REACHED = 4.26e12 / 4.8e12


def _sheet(name: str, bf16_dense: float, hbm: float, fp32: float, card: str) -> Device:
    """A profile from a data sheet: dense bf16 tensor rate and memory bandwidth, scaled by what
    the H200 reaches of its own; FP32 (non-tensor) rate as printed."""
    return Device(
        name, bf16_dense * MATMUL_REACHED, hbm * BANDWIDTH_REACHED, fp32,
        f"{card} data sheet (dense bf16 {bf16_dense / 1e12:g} TFLOP/s, {hbm / 1e12:g} TB/s), "
        "scaled by the H200's measured share of its own; not measured",
    )  # fmt: skip


DEVICES = {
    # Matrix rate and bandwidth measured on the H200 (bf16 8192^3 cuBLAS product, device-to-device
    # copy; bench/RESULTS.md, "Device"). The vector rate is the data-sheet FP32 figure (not
    # measured); elementwise boxes are memory-bound on this device long before it matters.
    "h200": Device(
        "h200", 768e12, 4.26e12, 67e12, "bench/RESULTS.md (measured); vector rate: data sheet"
    ),
    "h100": _sheet("h100", 989e12, 3.35e12, 67e12, "H100 SXM"),
    "b200": _sheet("b200", 2250e12, 8.0e12, 80e12, "HGX B200"),
    "a100": _sheet("a100", 312e12, 2.039e12, 19.5e12, "A100 SXM 80 GB"),
    "l4": _sheet("l4", 121e12, 0.3e12, 30.3e12, "L4"),
    "rtx4090": _sheet("rtx4090", 165.2e12, 1.008e12, 82.6e12, "GeForce RTX 4090 (FP32 accumulate)"),
    # PyTorch's CPU kernels (what tests/cost measures against). Peak rates of one 96-core AMD
    # EPYC 9654 socket: 2.4 GHz base, two 256-bit FMA pipes a core (32 FP32 FLOP a cycle),
    # bf16 products twice that (AVX-512 BF16), 12 channels of DDR5-4800.
    "cpu": Device(
        "cpu",
        matmul_flops=14.75e12,
        bandwidth=460.8e9,
        vector_flops=7.37e12,
        source="AMD EPYC 9654 peaks from its cores, clock and memory channels; not measured",
        platform="cpu",
    ),
}


def device(name: str | Device) -> Device:
    if isinstance(name, Device):
        return name
    if name not in DEVICES:
        raise CostError(f"unknown device {name!r}; known devices: {', '.join(DEVICES)}")
    return DEVICES[name]
