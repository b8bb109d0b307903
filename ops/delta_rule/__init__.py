"""The delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet): chunked kernels in the
WY representation (chunk.py), the chunked PyTorch form for the CPU (chunked.py), the one-token
steps (recurrent.py), the token-by-token references (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

from .chunk import delta_rule, gated_delta_rule
from .chunked import gated_delta_rule_chunked
from .recurrent import delta_rule_step, gated_delta_rule_step
from .reference import delta_rule_reference, gated_delta_rule_reference

__all__ = [
    "delta_rule",
    "gated_delta_rule",
    "delta_rule_step",
    "gated_delta_rule_step",
    "delta_rule_reference",
    "gated_delta_rule_reference",
    "gated_delta_rule_chunked",
]
