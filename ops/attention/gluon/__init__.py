"""Softmax attention's Hopper backends, written in Gluon (Triton 3.6's explicit-layout
dialect): the forward (`forward`) and dK/dV (`dkdv`). Each has `available()`,
`supports(...) -> (ok, reason)` and `run(...)`; `fused.choose` picks them where they apply.
Why they exist and what they measured: ../README.md."""

from . import dkdv, forward

__all__ = ["dkdv", "forward"]
