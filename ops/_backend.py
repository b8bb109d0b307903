"""Choosing between a family's Triton kernels and its PyTorch reference.

CUDA tensors run the Triton kernels; CPU tensors run the reference. `backend="triton"` forces
the kernels, which on CPU tensors needs Triton's interpreter: TRITON_INTERPRET=1 must be set
before `ncd.ops` is first imported, because Triton decides at decoration time whether a
kernel is compiled or interpreted.
"""

import os

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

BACKENDS = ("auto", "triton", "reference")


@triton.jit
def _probe():
    pass


def interpreting() -> bool:
    """Whether this import of ncd.ops built its kernels for Triton's CPU interpreter."""
    return not isinstance(_probe, triton.runtime.JITFunction)


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


FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_qkv(op: str, q, k, v, layout: str) -> None:
    """The checks every attention-like op makes first: q, k, v are 4-d tensors (`layout`, such
    as "[B, T, H, D]") of one floating dtype on one device."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check(isinstance(x, torch.Tensor), op, name, "a torch.Tensor", type(x).__name__)
        check(x.dim() == 4, op, f"{name}.shape", f"4 dims {layout}", tuple(x.shape))
        check(x.dtype in FLOATS, op, f"{name}.dtype", "float16, bfloat16 or float32", x.dtype)
    check(
        k.dtype == q.dtype and v.dtype == q.dtype,
        op,
        "dtypes",
        f"q, k, v all {q.dtype}",
        (q.dtype, k.dtype, v.dtype),
    )
    check(
        k.device == q.device and v.device == q.device,
        op,
        "devices",
        f"all on {q.device}",
        (q.device, k.device, v.device),
    )


_tuners: dict = {}
_best: dict = {}
# Direct launches: Triton's JIT path binds and specialises every argument on every call
# (tens of microseconds a launch, host time the GPU waits for at short lengths). Once a
# kernel has been compiled for a configuration, later calls whose arguments specialise the
# same way (`_spec`) launch the compiled kernel itself. NCD_FAST_LAUNCH=0 turns this off.
FAST_LAUNCH = os.environ.get("NCD_FAST_LAUNCH", "1") != "0"
_fast: dict = {}


def _spec(a):
    """What a compiled kernel depends on in argument `a`, conservatively: Triton specialises
    pointers on 16-byte alignment and integers on their value (1, multiples of 16); this key
    takes integers exactly, and descriptors' shapes, strides and block shapes whole."""
    if isinstance(a, torch.Tensor):
        return (a.dtype, a.data_ptr() % 16 == 0)
    if isinstance(a, TensorDescriptor):
        b = a.base
        return (b.dtype, b.data_ptr() % 16 == 0, *a.shape, *a.strides, *a.block_shape)
    if isinstance(a, float):
        return float
    return a


def _sig(a):
    if isinstance(a, torch.Tensor):
        return str(a.dtype)
    if isinstance(a, TensorDescriptor):  # its shape and strides travel with each launch
        return ("desc", str(a.base.dtype))
    return a


def launch(kernel, configs, grid, args, meta, interpret_config, reset=None, key=(), pre_hook=None):
    """Launch a Triton kernel with its block sizes chosen by autotuning.

    Under the interpreter the small fixed `interpret_config` is used. On the GPU the first
    call for a shape runs Triton's autotuner over `configs` (keyed on `key`, names of
    arguments); later calls with the same scalar arguments, dtypes and `meta` reuse the
    winning config and launch the kernel directly, skipping the autotuner's per-call cost.
    `grid(config_kwargs)` gives the launch grid; `reset` names outputs to zero between trials;
    `pre_hook(named_args)`, also set on the configs, runs before every launch (it gives tensor
    descriptors the block shape of the configuration).
    """

    def hook(kw):
        if pre_hook is not None:
            pre_hook({**dict(zip(kernel.arg_names, args)), **meta, **kw})

    if interpreting():
        hook(interpret_config)
        kernel[grid(interpret_config)](*args, **meta, **interpret_config)
        return
    sig = (kernel, reset, tuple(_sig(a) for a in args), tuple(sorted(meta.items())))
    cfg = _best.get(sig)
    if cfg is None:
        # One tuner per config list and argument dtypes: Triton's autotuner keys its cache on
        # `key` and the dtypes of tensor arguments, but not of tensor descriptors, so a
        # float32 call would reuse a config tuned for bfloat16 (too much shared memory).
        dtypes = tuple(
            s for a, s in zip(args, sig[2]) if isinstance(a, (torch.Tensor, TensorDescriptor))
        )
        tkey = (kernel, reset, tuple(str(c) for c in configs), dtypes)
        if tkey not in _tuners:
            _tuners[tkey] = triton.autotune(configs, key=list(key), reset_to_zero=reset)(kernel)
        tuner = _tuners[tkey]
        tuner[grid](*args, **meta)
        _best[sig] = tuner.best_config
        return
    kw = dict(cfg.kwargs)
    hook(kw)
    g = grid(kw)
    ckey = (sig, tuple(_spec(a) for a in args)) if FAST_LAUNCH else None
    ck = _fast.get(ckey)
    if ck is not None:
        given = {**meta, **kw}
        ck[(*g, 1, 1)[:3]](*args, *(given[n] for n in kernel.arg_names[len(args) :]))
        return
    ck = kernel[g](*args, **meta, **kw, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if ckey is not None and hasattr(ck, "packed_metadata"):
        _fast[ckey] = ck


def tuned_configs() -> dict:
    """{kernel name (+ '_reset' for zero-reset variants): winning config} for reports."""
    return {
        f"{k.fn.__name__}{'_reset' if r else ''}": str(getattr(t, "best_config", None))
        for (k, r, _), t in _tuners.items()
    }
