"""The delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet): chunked kernels in the
WY representation (chunk.py), the chunked PyTorch form for the CPU (chunked.py), the one-token
steps (recurrent.py), the token-by-token references (reference.py) and the cost formulas
(cost.py). Maths in README.md."""

import importlib

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


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
