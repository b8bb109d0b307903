"""The cost model: time and space complexity read from the diagram.

`analyse(circuit, sizes=None, lowering="fused", device="h200")` returns a `Report` with, per box
and in total, FLOPs (a multiply-add counts 2), parameters, activation memory kept for the
backward pass (the tensors named), peak memory over forward + backward, HBM traffic under the
lowering, and a roofline time; each as a sympy formula, its leading term and a number.
Formulas are shown with derived sizes written as the axes that carry them (names.py: the vision
transformer's T for floor(X/4)·floor(Y/4)); the numbers come from the formulas in base sizes.
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
