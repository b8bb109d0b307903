"""Choosing between a family's Triton kernels and its PyTorch reference.

CUDA tensors run the Triton kernels; CPU tensors run the reference. `backend="triton"` forces
the kernels, which on CPU tensors needs Triton's interpreter: TRITON_INTERPRET=1 must be set
before `ncd.ops` is first imported, because Triton decides at decoration time whether a
kernel is compiled or interpreted.
"""

import os

import torch

BACKENDS = ("auto", "triton", "reference")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(x: torch.Tensor, backend: str, op: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, found {backend!r}")
    if backend == "reference":
        return False
    if backend == "auto":
        return x.is_cuda
    if not x.is_cuda and not interpreting():
        raise RuntimeError(
            f"{op}: backend='triton' on {x.device} tensors needs Triton's interpreter; set "
            "TRITON_INTERPRET=1 before importing ncd.ops, or pass CUDA tensors"
        )
    return True


def check(cond: bool, op: str, what: str, expected: str, found) -> None:
    """Raise a ValueError saying what was expected and what was found."""
    if not cond:
        raise ValueError(f"{op}: {what}: expected {expected}, found {found}")
