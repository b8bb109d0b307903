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

    `matmul_flops` applies to contractions (tensor cores); `vector_flops` to elementwise work.
    """

    name: str
    matmul_flops: float
    """FLOP/s of a large matrix product (a multiply-add counts 2)."""
    bandwidth: float
    """Bytes/s between HBM and the chip (read + written)."""
    vector_flops: float
    """FLOP/s of elementwise arithmetic (no tensor cores)."""
    source: str = ""

    def time(self, matmul_flops, other_flops, io_bytes):
        """Seconds of one kernel (a sympy expression when the sizes are symbols)."""
        compute = sympy.sympify(matmul_flops) / sympy.Float(self.matmul_flops) + sympy.sympify(
            other_flops
        ) / sympy.Float(self.vector_flops)
        memory = sympy.sympify(io_bytes) / sympy.Float(self.bandwidth)
        if compute.is_number and memory.is_number:
            return sympy.Max(compute, memory)
        return sympy.Max(compute, memory, evaluate=False)  # compared once sizes are bound


DEVICES = {
    # Matrix rate and bandwidth measured on the H200 (bf16 8192^3 cuBLAS product, device-to-device
    # copy; bench/RESULTS.md, "Device"). The vector rate is the data-sheet FP32 figure (not
    # measured); elementwise boxes are memory-bound on this device long before it matters.
    "h200": Device(
        "h200", 768e12, 4.26e12, 67e12, "bench/RESULTS.md (measured); vector rate: data sheet"
    ),
}


def device(name: str | Device) -> Device:
    if isinstance(name, Device):
        return name
    if name not in DEVICES:
        raise CostError(f"unknown device {name!r}; known devices: {', '.join(DEVICES)}")
    return DEVICES[name]
