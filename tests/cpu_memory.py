"""Bytes a call allocates on the CPU, from torch.profiler's allocator events, and the storages
autograd keeps for the backward, from its saved-tensor hooks: shared by the cost tests
(tests/cost/measure.py, tests/ops/test_cost.py) and the op tests."""

import gc

import torch
from torch.profiler import ProfilerActivity, profile


def saved_tensors(fn, tag=None):
    """(fn(), every tensor autograd saved for the backward while fn ran; with `tag`, (tensor,
    tag() when it was saved) pairs). Each is held here until fn returns, so that a storage
    freed during the call (saved by a part of the graph fn dropped, such as a last state
    nothing reads) cannot lend its address to a later one: told apart by address, the two
    would count as one, depending on the allocator. So those dropped parts are counted, as
    a backward through everything fn computed would keep them."""
    saved = []

    def pack(t):
        saved.append((t, tag() if tag else None))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved if tag else [t for t, _ in saved]


def saved_storages(fn, exclude=()):
    """(fn(), the storages autograd keeps for the backward of what fn builds: data pointer ->
    bytes, each storage once however many of its views are saved), but those of the tensors
    in `exclude` (inputs, parameters)."""
    out, tensors = saved_tensors(fn)
    skip = {x.untyped_storage().data_ptr() for x in exclude}
    kept = {}
    for t in tensors:
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            kept.setdefault(s.data_ptr(), s.nbytes())
    return out, kept


def _memory_events(fn):
    """(fn(), the profiler's allocation events of the call, in time order: positive bytes
    allocated, negative freed). The cyclic garbage collector is kept off during the call:
    tensors of earlier tests that it frees inside the window would be counted as the
    call's own frees."""
    gc.disable()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
    finally:
        gc.enable()
    events = (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    return out, sorted(events, key=lambda e: e.start_ns())


def allocations(fn):
    """(fn(), peak bytes allocated during the call, bytes still allocated at its end)."""
    out, events = _memory_events(fn)
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return out, peak, live


def allocated_in_all(fn) -> int:
    """Bytes the call allocates in all, every allocation counted whether freed or not."""
    _, events = _memory_events(fn)
    return sum(e.nbytes() for e in events if e.nbytes() > 0)
