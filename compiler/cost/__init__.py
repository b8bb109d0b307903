"""The cost model: time and space complexity read from the diagram.

`analyse(circuit, sizes=None, lowering="fused", device="h200")` returns a `Report` with, per box
and in total, FLOPs (a multiply-add counts 2), parameters, activation memory kept for the
backward pass (the tensors named), peak memory over forward + backward, HBM traffic under the
lowering, and a roofline time; each as a sympy formula, its leading term and a number.
"""

from .analyse import LOWERINGS, BoxCost, analyse
from .devices import DEVICES, CostError, Device
from .report import CONVENTIONS, Report
from .rules import RULES

__all__ = [
    "CONVENTIONS",
    "DEVICES",
    "LOWERINGS",
    "RULES",
    "BoxCost",
    "CostError",
    "Device",
    "Report",
    "analyse",
]
