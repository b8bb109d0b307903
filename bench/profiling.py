"""Shared by the GPU benchmarks and their diagnostics: the host's time to issue calls, and each
CUDA kernel's device time per call from the PyTorch profiler."""

from __future__ import annotations

import time

import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_mib(fn) -> float:
    """MiB of CUDA memory one call of fn allocates at its peak beyond what was allocated before
    it (its outputs, gradients and workspaces)."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def host_us(fn, n: int = 200, trials: int = 1) -> float:
    """Microseconds the host takes to issue one call of fn: n calls without waiting for the
    device, the least of `trials` rounds (the device catches up between rounds)."""
    best = float("inf")
    for _ in range(trials):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
        sync()
    return best


def issue_and_device_us(fn, steps: int, rounds: int = 7) -> tuple[float, float]:
    """(host, device) microseconds per step, medians over rounds of `steps` steps: host, the
    wall time to issue them without synchronising; device, the CUDA events' time between the
    first step's kernels and the last one's. A sleep kernel keeps the device idle until the
    host has issued them all (its length from the host time of a first round), so the events
    time the kernels back to back rather than the host's pace."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    sleep_s = 2 * (time.perf_counter() - t0) + 0.005
    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
    start.record()
    torch.cuda._sleep(10**6)  # the sleep kernel's cycles per second, measured
    end.record()
    end.synchronize()
    cycles = int(sleep_s / (start.elapsed_time(end) * 1e-3) * 10**6)
    hs, ds = [], []
    for _ in range(rounds):
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        torch.cuda.synchronize()
        torch.cuda._sleep(cycles)
        start.record()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        hs.append((time.perf_counter() - t0) / steps * 1e6)
        end.record()
        end.synchronize()
        ds.append(start.elapsed_time(end) * 1e3 / steps)
    return sorted(hs)[rounds // 2], sorted(ds)[rounds // 2]


def interleaved(timers: dict, rounds: int, errors: dict | None = None) -> dict:
    """{name: [timers[name]() of each round]}, every timer run once in each round, in turn, so
    that implementations compared are measured next to each other in time: their ratio is then
    taken round by round (`paired_ratio`), where a drift of the host's or the device's speed
    in the middle of a run reaches both sides of each round alike (a host-bound call measured
    in one block and its rival in another could differ by the drift alone). With `errors`, a
    timer that raises is dropped from the rounds and its exception recorded there under its
    name (the others go on); without, the exception propagates."""
    got = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            if errors is not None and name in errors:
                continue
            try:
                got[name].append(timer())
            except Exception as e:
                if errors is None:
                    raise
                errors[name] = e
    failed = errors or {}
    return {name: ts for name, ts in got.items() if name not in failed}


def median(xs: list) -> float:
    return sorted(xs)[len(xs) // 2]


def paired_ratio(over: list, under: list) -> float:
    """The median over rounds of over[i] / under[i]: two `interleaved` timings' ratio, each
    round's pair measured together."""
    return median([a / b for a, b in zip(over, under, strict=True)])


def wall_us(fn, n: int = 100) -> float:
    """Median microseconds of one call of fn from a synchronised start to a synchronised end."""
    ts = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e6)
    return sorted(ts)[len(ts) // 2]


def kernel_table(fn, n: int = 20, width: int = 70) -> dict[str, tuple[float, float]]:
    """{kernel name (its first `width` characters): (launches per call, device microseconds
    per call)} for the CUDA kernels fn launches, over n calls after one unprofiled call."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        sync()
    out = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if t > 0:
            out[e.key[:width]] = (e.count / n, t / n)
    return out


def top_functions(fn, n: int = 100, top: int = 20) -> str:
    """cProfile's table of the `top` functions by own time over n calls of fn (host side only:
    work the autograd engine runs on its device threads is not seen)."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    sync()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def host_counts(fn) -> dict:
    """What one call of fn makes the host do, as PyTorch's dispatcher and Triton's interpreter
    see it: {"ops": {ATen operator: calls}, "allocations": tensors made on new storage (an
    operator's outputs that share no storage with its inputs), "launches": {kernel: launches}}.
    Operators are counted below autograd (TorchDispatchMode), the backward's too; launches are
    the interpreter's (TRITON_INTERPRET=1, CPU tensors), each run with the counting off, so
    the interpreter's own tensor work is not counted."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
    from torch.utils._pytree import tree_leaves
    from triton.runtime import interpreter

    ops, launches, allocs = Counter(), Counter(), [0]

    def storages(tree):
        return {
            t.untyped_storage().data_ptr()
            for t in tree_leaves(tree)
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            ops[str(func.overloadpacket)] += 1
            fresh = storages(out) - storages((args, kwargs)) - {0}
            allocs[0] += len(fresh)
            return out

    run = interpreter.GridExecutor.__call__

    def counted(self, *args, **kwargs):
        launches[self.fn.__name__] += 1
        with _disable_current_modes():
            return run(self, *args, **kwargs)

    interpreter.GridExecutor.__call__ = counted
    try:
        with Count():
            fn()
    finally:
        interpreter.GridExecutor.__call__ = run
    return {"ops": dict(ops), "allocations": allocs[0], "launches": dict(launches)}
