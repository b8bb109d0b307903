"""The delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet): chunked kernels in the
WY representation (chunk.py), the chunked PyTorch form for the CPU (chunked.py), the one-token
steps (recurrent.py), the token-by-token references (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

from .._lazy import lazy_exports

# The functions are imported on first use (the kernels load torch and triton); cost.py is
# plain Python, so the cost model reads it without them.
_LAZY = {
    "delta_rule": ".chunk",
    "gated_delta_rule": ".chunk",
    "gated_delta_rule_chunked": ".chunked",
    "delta_rule_step": ".recurrent",
    "gated_delta_rule_step": ".recurrent",
    "delta_rule_reference": ".reference",
    "gated_delta_rule_reference": ".reference",
}

__all__ = [
    "delta_rule",
    "gated_delta_rule",
    "delta_rule_step",
    "gated_delta_rule_step",
    "delta_rule_reference",
    "gated_delta_rule_reference",
    "gated_delta_rule_chunked",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
