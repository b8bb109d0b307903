"""Bytes a call allocates on the CPU, from torch.profiler's allocator events, and the storages
autograd keeps for the backward, from its saved-tensor hooks: shared by the cost tests
(tests/cost/measure.py, tests/ops/test_cost.py) and the op tests."""

import gc

import torch
from torch.profiler import ProfilerActivity, profile


def saved_storages(fn):
    """(fn(), the storages autograd keeps for the backward of what fn builds: data pointer ->
    bytes, each storage once however many of its views are saved)."""
    kept = {}

    def pack(t):
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, kept


def allocations(fn):
    """(fn(), peak bytes allocated during the call, bytes still allocated at its end). The
    cyclic garbage collector is kept off during the call: tensors of earlier tests that it
    frees inside the window would be counted as the call's own frees."""
    gc.disable()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = fn()
    finally:
        gc.enable()
    events = (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return out, peak, live
