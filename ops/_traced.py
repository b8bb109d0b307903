"""The kernels as opaque custom operators, for torch.compile and torch.export.

Eager calls run a family's autograd Function (the least host time a call can take: a custom
operator's dispatch costs about three times a Function's). Traced calls cannot: dynamo would
trace into the launch of a Triton kernel (a graph break at every op) and torch.export reads
data pointers of fake tensors (an error). So each family also registers its forward and
backward as custom operators `ncd::<name>` of the same two functions its Function calls, and
its public function takes them when `torch.compiler.is_compiling()`:

    _fwd = opaque("simple_gla_fwd", fwd)   # fwd(tensors..., scalars...) -> list[Tensor]
    _bwd = opaque("simple_gla_bwd", bwd)
    _fwd.register_autograd(grad, setup_context=setup)   # grad calls _bwd

The fake implementation (shapes, dtypes and strides for the tracer) is the real one with no
kernel launched: the functions allocate their outputs with torch.empty and friends, which
fake tensors answer, and `_backend.launch` returns at once while `skipping()` is on. So one
function says what an op allocates, for running and for tracing alike.
"""

import contextlib
import functools

import torch

from . import _backend


@contextlib.contextmanager
def skipping():
    """Kernel launches do nothing inside the block (the tensors are fake)."""
    before = _backend.skip_launches
    _backend.skip_launches = True
    try:
        yield
    finally:
        _backend.skip_launches = before


def opaque(name: str, fn):
    """`fn` (annotated: tensors, optional tensors, floats, ints, bools, dtypes; returning
    list[Tensor]) as the custom operator `ncd::<name>`, opaque to torch.compile and
    torch.export, with `fn` itself, its kernels skipped, as the fake implementation."""
    op = torch.library.custom_op(f"ncd::{name}", fn, mutates_args=())

    @functools.wraps(fn)
    def fake(*args):
        with skipping():
            return fn(*args)

    op.register_fake(fake)
    return op


def kernel_op(name: str, fn):
    """A function that launches kernels but needs no autograd of its own (it runs inside a
    Function, or has no gradient): `fn` itself in eager calls, the opaque operator
    `ncd::<name>` (`opaque`) when traced."""
    op = opaque(name, fn)

    @functools.wraps(fn)
    def call(*args):
        return op(*args) if tracing() else fn(*args)

    return call


def tracing() -> bool:
    """True while torch.compile or torch.export traces the call."""
    return torch.compiler.is_compiling()


__all__ = ["kernel_op", "opaque", "skipping", "tracing"]
