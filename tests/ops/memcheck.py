"""Out-of-bounds accesses of interpreted kernels, caught where they happen.

On the GPU a load or store outside every buffer of a launch is an illegal memory access (or,
worse, silently reads or writes a neighbour); Triton's interpreter reads and writes host
memory through raw addresses and reports nothing. With `checking()` active, every load and
store an interpreted kernel makes is checked, lane by lane where its mask is on, against the
storages of the tensors passed to that launch: an access that is not wholly inside one of
them raises OutOfBounds naming the kernel, the access and the nearest buffer.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch
from triton.runtime import interpreter as ti


class OutOfBounds(AssertionError):
    pass


_state = threading.local()


def _launches() -> list:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for y in x:
            yield from _tensors(y)
    elif hasattr(x, "base") and isinstance(x.base, torch.Tensor):  # descriptors
        yield x.base


def _buffers(args, kwargs, names):
    """Sorted (starts, ends, labels) of the storages behind the launch's tensor arguments."""
    spans = {}
    for label, arg in [*zip(names, args), *kwargs.items()]:
        for t in _tensors(arg):
            storage = t.untyped_storage()
            start = storage.data_ptr()
            if storage.nbytes():
                spans.setdefault(start, (start + storage.nbytes(), label))
    starts = np.array(sorted(spans), dtype=np.uint64)
    ends = np.array([spans[s][0] for s in sorted(spans)], dtype=np.uint64)
    labels = [spans[s][1] for s in sorted(spans)]
    return starts, ends, labels


def _check(ptrs, mask, what: str) -> None:
    stack = _launches()
    if not stack:
        return
    kernel, (starts, ends, labels) = stack[-1]
    addr = np.asarray(ptrs.data, dtype=np.uint64)
    on = np.broadcast_to(np.asarray(mask.data, dtype=bool), addr.shape)
    addr = addr[on]
    if addr.size == 0:
        return
    size = np.uint64(np.dtype(ti._get_np_dtype(ptrs.get_element_ty())).itemsize)
    i = np.searchsorted(starts, addr, side="right").astype(np.int64) - 1
    inside = (i >= 0) & (addr + size <= ends[np.clip(i, 0, None)]) if starts.size else i >= 0
    if inside.all():
        return
    bad = addr[~inside]
    first = int(bad[0])
    if starts.size:
        j = int(np.argmin(np.minimum(np.abs(starts.astype(np.int64) - first),
                                     np.abs(ends.astype(np.int64) - first))))  # fmt: skip
        near = (f"nearest buffer {labels[j]} spans [{int(starts[j]):#x}, {int(ends[j]):#x}), "
                f"{first - int(starts[j]):+d} bytes from its start")  # fmt: skip
    else:
        near = "the launch has no tensor arguments"
    raise OutOfBounds(
        f"{kernel}: {what} of {bad.size} of {addr.size} active lanes outside every buffer of "
        f"the launch; first at {first:#x}, {near}"
    )


@contextlib.contextmanager
def checking():
    """Check the loads and stores of every interpreted launch inside the block."""
    executor, builder = ti.GridExecutor, ti.InterpreterBuilder
    call, load, store = executor.__call__, builder.create_masked_load, builder.create_masked_store

    def checked_call(self, *args, **kwargs):
        stack = _launches()
        stack.append((self.fn.__name__, _buffers(args, kwargs, self.arg_names)))
        try:
            return call(self, *args, **kwargs)
        finally:
            stack.pop()

    def checked_load(self, ptrs, mask, other, cache_policy, is_volatile):
        _check(ptrs, mask, "load")
        return load(self, ptrs, mask, other, cache_policy, is_volatile)

    def checked_store(self, ptrs, value, mask, cache_policy):
        _check(ptrs, mask, "store")
        return store(self, ptrs, value, mask, cache_policy)

    executor.__call__, builder.create_masked_load = checked_call, checked_load
    builder.create_masked_store = checked_store
    try:
        yield
    finally:
        executor.__call__, builder.create_masked_load = call, load
        builder.create_masked_store = store
