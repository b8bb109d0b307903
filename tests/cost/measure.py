"""Measuring a compiled module on the CPU: FLOPs with FlopCounterMode, kept tensors with
saved-tensor hooks. Shared by the tests and bench/cost_gpu.py."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ncd.compiler.examples import example_inputs

from ..cpu_memory import allocations, saved_tensors


def make_inputs(circuit, sizes=None, dtype=torch.float32, device="cpu", seed=0):
    """The compiler's example inputs (compiler/examples.py) at `sizes`, floats needing
    gradients."""
    checked = circuit.check(sizes=sizes)
    return example_inputs(checked, seed, dtype=dtype, device=device, requires_grad=True)


def _loss(y):
    if isinstance(y, dict):
        return sum(_loss(v) for v in y.values())
    if isinstance(y, (tuple, list)):
        return sum(_loss(v) for v in y)
    return y.float().sum() if y.is_floating_point() and y.requires_grad else 0


def flop_counts(module, xs) -> tuple[int, int, dict]:
    """(forward FLOPs, backward FLOPs, {op: FLOPs}) as FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as fwd:
        y = module(*xs)
    loss = _loss(y)
    with FlopCounterMode(display=False) as bwd:
        if isinstance(loss, torch.Tensor):  # else nothing to differentiate (integer outputs)
            loss.backward()
    ops = {}
    for mode in (fwd, bwd):
        for op, n in mode.get_flop_counts().get("Global", {}).items():
            ops[str(op)] = ops.get(str(op), 0) + n
    return fwd.get_total_flops(), bwd.get_total_flops(), ops


def saved_bytes(module, xs) -> tuple[int, list]:
    """Bytes of the unique storages autograd keeps during the forward pass, parameters
    excluded; and the list of (shape, dtype, bytes) kept."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in module.buffers()}
    y, tensors = saved_tensors(lambda: module(*xs))
    del y
    seen: dict[int, int] = {}
    kept = []
    for t in tensors:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr not in params and ptr not in seen:
            seen[ptr] = s.nbytes()
            kept.append((tuple(t.shape), str(t.dtype), s.nbytes()))
    return sum(seen.values()), kept


def _detach(a):
    if isinstance(a, torch.Tensor):
        return a.detach().clone().requires_grad_(a.requires_grad)
    if isinstance(a, (list, tuple)):
        return type(a)(_detach(x) for x in a)
    return a


def measure_split(module, xs, boxes: set[str]):
    """FLOPs and kept bytes of the fx nodes of `boxes` (fused boxes: their CPU fallback is
    not the kernel the model prices; a call of a function or of a module, such as a packed
    recurrence's) apart from the rest of the module.

    Kept bytes: a saved-tensor hook knows whether a fused box's node is running. FLOPs: the
    fused nodes are run again on their own (detached copies of the same arguments) under
    FlopCounterMode, forward and backward, and subtracted from the whole module's count.
    Returns {"rest": {"fwd", "bwd", "saved"}, "boxes": {...}}.
    """
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    state = {"inside": False}
    seen: dict[int, str] = {}
    sizes: dict[int, int] = {}
    calls = []

    class Run(torch.fx.Interpreter):
        def run_node(self, n):
            if n.op in ("call_function", "call_module") and n.meta.get("ncd_box") in boxes:
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                fn = n.target if n.op == "call_function" else self.fetch_attr(n.target)
                calls.append((fn, _detach(args), _detach(kwargs)))
                state["inside"] = True
                try:
                    return super().run_node(n)
                finally:
                    state["inside"] = False
            return super().run_node(n)

    with FlopCounterMode(display=False) as fwd:
        y, saved = saved_tensors(
            lambda: Run(module).run(*xs), tag=lambda: "boxes" if state["inside"] else "rest"
        )
    for t, where in saved:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr not in params:
            seen[ptr] = where if seen.get(ptr, where) == where else "both"
            sizes[ptr] = s.nbytes()
    del saved
    loss = _loss(y)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    bf = bb = 0
    for fn, args, kwargs in calls:
        with FlopCounterMode(display=False) as f1:
            out = fn(*args, **kwargs)
        tensors = [o for o in (out if isinstance(out, (tuple, list)) else [out])
                   if isinstance(o, torch.Tensor) and o.requires_grad]  # fmt: skip
        with FlopCounterMode(display=False) as b1:
            if tensors:
                sum(o.float().sum() for o in tensors).backward()
        bf += f1.get_total_flops()
        bb += b1.get_total_flops()
    out = {
        "rest": {"fwd": fwd.get_total_flops() - bf, "bwd": bwd.get_total_flops() - bb},
        "boxes": {"fwd": bf, "bwd": bb},
    }
    for part in ("rest", "boxes"):
        out[part]["saved"] = sum(n for p, n in sizes.items() if seen[p] in (part, "both"))
    return out


def peak_bytes(module, xs) -> tuple[int, int]:
    """Peak bytes of one forward + backward on the CPU, from the profiler's allocation events
    (`allocations`), counting what exists before the step (parameters, inputs) as the
    baseline. The output's gradient is made after the forward, as a loss's backward makes
    it, and held until the backward returns. Returns (peak, baseline)."""
    base = sum(x.untyped_storage().nbytes() for x in xs)
    base += sum(p.untyped_storage().nbytes() for p in module.parameters())

    def step():
        y = module(*xs)
        ys = list(y.values()) if isinstance(y, dict) else [y]
        if any(t.requires_grad for t in ys):  # else inference only (integer arithmetic)
            torch.autograd.backward(ys, [torch.ones_like(t) for t in ys])

    _, peak, _ = allocations(step)
    return base + peak, base
