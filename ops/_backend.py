"""Choosing between a family's Triton kernels and its PyTorch reference, launching the
kernels, and the argument checks the families share (q, k, v and packed offsets; for the
linear-attention family its sequences, states, gates, one-token steps and in-place reads).

CUDA tensors run the Triton kernels on NVIDIA GPUs of compute capability 8.0 or newer
(Ampere on: their products are tensor-core products of bf16, fp16 and tf32 tiles); CPU tensors,
and CUDA tensors on other GPUs (older NVIDIA ones, ROCm builds of PyTorch) or without a usable
Triton (`_triton.MISSING`), run the reference, with one warning saying so.
`backend="triton"` forces the kernels, which on CPU tensors needs Triton's interpreter:
TRITON_INTERPRET=1 must be set before `ncd.ops` is first imported, because Triton decides at
decoration time whether a kernel is compiled or interpreted.
"""

import functools
import inspect
import warnings

import torch

from ._triton import (
    MISSING,
    JITFunction,
    OutOfResources,
    TensorDescriptor,
    driver,
    knobs,
    triton,
)
from .config import settings as _settings

BACKENDS = ("auto", "triton", "reference")

# True while _traced.opaque's fake implementations run (fake tensors): launches do nothing.
skip_launches = False


@triton.jit
def _probe():
    pass


# Read once: torch.compile's tracer cannot evaluate isinstance() on a compiled Triton kernel.
_INTERPRETING = MISSING is None and not isinstance(_probe, JITFunction)


def interpreting() -> bool:
    """Whether this import of ncd.ops built its kernels for Triton's CPU interpreter."""
    return _INTERPRETING


MIN_CAPABILITY = (8, 0)
_unfit: dict = {}  # CUDA device index -> why the kernels do not run there, or None


def unfit_gpu(device: torch.device) -> str | None:
    """Why the Triton kernels do not run on this CUDA device (no usable Triton, a ROCm build
    of PyTorch, a GPU before compute capability 8.0), or None where they do. The first call
    for such a device warns once that its ops run their PyTorch forms."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _unfit:
        why = MISSING
        if why is None and torch.version.hip is not None:
            why = "the kernels are written and checked for NVIDIA GPUs; this PyTorch is for ROCm"
        elif why is None:
            cap = tuple(torch.cuda.get_device_capability(idx))
            if cap < MIN_CAPABILITY:
                why = (
                    "the kernels need an NVIDIA GPU of compute capability "
                    f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer, found {cap[0]}.{cap[1]} "
                    f"({torch.cuda.get_device_name(idx)})"
                )
        _unfit[idx] = why
        if why is not None:
            warnings.warn(
                f"ncd.ops: {why}; ops on cuda:{idx} run their PyTorch forms", stacklevel=4
            )
    return _unfit[idx]


def check_backend(backend, op: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, found {backend!r}")


def use_triton(x: torch.Tensor, backend: str, op: str) -> bool:
    check_backend(backend, op)
    if backend == "reference":
        return False
    if backend == "auto":
        return x.is_cuda and unfit_gpu(x.device) is None
    if MISSING is not None:
        raise RuntimeError(f"{op}: backend='triton': {MISSING}")
    if not x.is_cuda and not interpreting():
        raise RuntimeError(
            f"{op}: backend='triton' on {x.device} tensors needs Triton's interpreter; set "
            "TRITON_INTERPRET=1 before importing ncd.ops, or pass CUDA tensors"
        )
    if x.is_cuda and (why := unfit_gpu(x.device)) is not None:
        raise RuntimeError(f"{op}: backend='triton' on {x.device}: {why}")
    return True


def autocast_inputs(op):
    """Wraps an op whose first three arguments are its products' operands (q, k, v of the
    attention-like ops; x, weight, bias of a linear map) for torch.autocast: where autocast is
    on for their device (CUDA or CPU), those three are cast to its dtype, as torch casts the
    inputs of its own attention and linear maps (float64 is left alone, as autocast leaves it),
    and the op runs with autocast off, so that its float32 parts stay float32. Gates, states
    and the other arguments pass as given. Outside autocast the op is called unchanged (and
    refuses operands of mixed dtypes)."""

    names = list(inspect.signature(op).parameters)[:3]

    @functools.wraps(op)
    def wrapped(*args, **kwargs):
        first = args[0] if args else kwargs.get(names[0])
        dev = None
        if isinstance(first, torch.Tensor):
            dev = "cuda" if first.is_cuda else "cpu" if first.device.type == "cpu" else None
        if dev is None or not torch.is_autocast_enabled(dev):
            return op(*args, **kwargs)
        dt = torch.get_autocast_dtype(dev)
        args = tuple(_autocast(a, dt) if i < 3 else a for i, a in enumerate(args))
        kwargs = {n: _autocast(a, dt) if n in names else a for n, a in kwargs.items()}
        with torch.autocast(dev, enabled=False):
            return op(*args, **kwargs)

    return wrapped


def _autocast(x, dtype):
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64:
        return x.to(dtype)
    return x


@functools.cache
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Multiprocessors of a CUDA device (asked once per device); 4 under the interpreter or
    off CUDA, where it only sizes grids."""
    if interpreting() or device.type != "cuda":
        return 4
    index = device.index
    return _multiprocessors(torch.cuda.current_device() if index is None else index)


# Plain Python on the host: triton.cdiv and triton.next_power_of_2 are constexpr functions
# whose calls cost microseconds each, on every launch.
def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1), as triton.next_power_of_2."""
    return 1 << max(0, n - 1).bit_length()


def pow2(n: int) -> int:
    """The tile width for n columns: the next power of two, at least 16."""
    return max(16, next_pow2(n))


# The chunked linear-attention families' host side: q, k [B, T, H, K] and v [B, T, H, V]
# addressed through (batch, token, head) strides, padded batches or packed sequences.
def dot_precision(x: torch.Tensor) -> str:
    """The kernels' product precision (their DOT constexpr): float32 operands as three tf32
    products (Triton's "tf32x3", about float32's accuracy), 16-bit operands as they are
    ("tf32" is then Triton's default and changes nothing). A constexpr rather than a shared
    @triton.jit helper around tl.dot: linear_attention/README.md says why."""
    return "tf32x3" if x.dtype == torch.float32 else "tf32"


def sequences(q: torch.Tensor, cu_seqlens) -> tuple:
    """(number of sequences N, padded length T or 0 for packed, the offsets or a dummy
    pointer)."""
    if cu_seqlens is None:
        return q.shape[0], q.shape[1], q
    return cu_seqlens.numel() - 1, 0, cu_seqlens


def split_tokens(xs, sizes, dim: int = 1) -> list[tuple]:
    """The tensors `xs` cut along `dim` into pieces, each by one split: `sizes` a list of
    lengths (packed sequences, empty ones included) or an int (chunks of that many tokens, the
    last one shorter; none for an empty axis). Returns one tuple of pieces per piece. Autograd
    then joins the pieces' gradients with one concatenation; indexing a piece at a time makes
    every piece's backward fill a zero tensor of the whole size, time and memory traffic
    quadratic in the number of pieces."""
    n = xs[0].shape[dim]
    if sizes == [n] or (isinstance(sizes, int) and 0 < n <= sizes):
        return [tuple(xs)]  # one piece: the tensors themselves
    if isinstance(sizes, int) and n == 0:
        return []
    return list(zip(*(x.split(sizes, dim) for x in xs), strict=True))


def token_strides(q: torch.Tensor, v: torch.Tensor) -> tuple:
    """(batch, token, head) strides of the q/k layout, then of the v/o layout."""
    return (*q.stride()[:3], *v.stride()[:3])


def empty_as(x: torch.Tensor, dtype=None) -> torch.Tensor:
    """An empty tensor with x's shape and strides (its layout), optionally another dtype."""
    return torch.empty_strided(x.shape, x.stride(), device=x.device, dtype=dtype or x.dtype)


def per_head_grad(x: torch.Tensor, group: int, dtype=None) -> torch.Tensor:
    """The buffer a backward kernel writes the gradient of q or k (x) into: x's layout
    (`empty_as`), or with grouped heads (`group` value heads read each head of x) one copy of
    x's layout per head of a group, `x.numel()` elements apart ([group, *x.shape]), summed
    by `group_sum`. x is dense (every element at its own place in a span of x.numel())."""
    if group == 1:
        return empty_as(x, dtype)
    shape, strides = (group, *x.shape), (x.numel(), *x.stride())
    return torch.empty_strided(shape, strides, device=x.device, dtype=dtype or x.dtype)


def replica_stride(x: torch.Tensor, group: int) -> int:
    """The elements between two heads' copies in `per_head_grad`'s buffer, as the kernels
    take it (their SDR); 0 when ungrouped, an argument the kernels do not read: a constant,
    so that Triton, which specialises integer arguments on their divisibility, compiles the
    ungrouped kernels once whatever x's size."""
    return x.numel() if group > 1 else 0


def group_sum(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient of x from `per_head_grad`'s buffer: the per-head copies summed over each
    group's heads, in x's layout (and the buffer's dtype); the ungrouped buffer as it is."""
    if grad.dim() == x.dim():
        return grad
    return torch.sum(grad, 0, out=empty_as(x, grad.dtype))


# The gated ops' chunked forms and kernels take log-decays below this floor as the floor
# itself: exp(-64) ~ 1.6e-28 leaves no trace in a float32 state, and the in-chunk cumulative
# sums stay finite where a hard reset (g = -inf) would make them -inf - -inf = NaN. The one-token
# steps and the token-by-token references take g as it is.
GATE_FLOOR = -64.0


def default_scale(scale, K: int):
    """`scale`, or K^-0.5 where it is None: the attention-like ops' default. Keys of no features
    (K = 0) make every score 0 whatever the scale, and take 1.0."""
    if scale is not None:
        return scale
    return K**-0.5 if K else 1.0


def check(cond: bool, op: str, what: str, expected: str, found) -> None:
    """Raise a ValueError saying what was expected and what was found."""
    if not cond:
        raise ValueError(f"{op}: {what}: expected {expected}, found {found}")


FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_cu_seqlens(op: str, cu_seqlens, B: int, T: int) -> int:
    """The number N of sequences: B, or with packed sequences (`cu_seqlens`, N + 1 integer
    offsets along T, batch size 1) the number of offsets less one. Values are checked when they
    lie on the host and the call is not traced; CUDA offsets are trusted, so that a call never
    waits on the GPU."""
    if cu_seqlens is None:
        return B
    check(
        isinstance(cu_seqlens, torch.Tensor)
        and cu_seqlens.dim() == 1
        and cu_seqlens.numel() >= 2
        and not cu_seqlens.is_floating_point()
        and cu_seqlens.dtype != torch.bool,
        op,
        "cu_seqlens",
        "a 1-D integer tensor [N + 1] of N >= 1 sequences' offsets",
        cu_seqlens,
    )
    check(B == 1, op, "batch size with cu_seqlens", "1 (sequences packed along T)", B)
    if not cu_seqlens.is_cuda and not torch.compiler.is_compiling():
        first, last = int(cu_seqlens[0]), int(cu_seqlens[-1])
        check(
            first == 0 and last == T, op, "cu_seqlens[0], cu_seqlens[-1]", f"0 and T={T}",
            (first, last),
        )  # fmt: skip
        if not bool((cu_seqlens[1:] >= cu_seqlens[:-1]).all()):
            check(False, op, "cu_seqlens", "non-decreasing", cu_seqlens.tolist())
    return cu_seqlens.numel() - 1


def check_qkv(op: str, q, k, v, layout: str) -> None:
    """The checks every attention-like op makes first: q, k, v are tensors of the rank of
    `layout` (such as "[B, T, H, D]", or a step's "[B, H, K]") of one floating dtype on one
    device."""
    T = torch.Tensor
    n = layout.count(",") + 1
    if (  # the common case without building any message (this runs on every call)
        isinstance(q, T) and isinstance(k, T) and isinstance(v, T)
        and q.dim() == n and k.dim() == n and v.dim() == n
        and q.dtype in FLOATS and k.dtype == q.dtype and v.dtype == q.dtype
        and k.device == q.device and v.device == q.device
    ):  # fmt: skip
        return
    for name, x in (("q", q), ("k", k), ("v", v)):
        check(isinstance(x, torch.Tensor), op, name, "a torch.Tensor", type(x).__name__)
        check(x.dim() == n, op, f"{name}.shape", f"{n} dims {layout}", tuple(x.shape))
        check(x.dtype in FLOATS, op, f"{name}.dtype", "float16, bfloat16, float32 or float64",
              x.dtype)  # fmt: skip
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


def check_sequences(op: str, q, k, v, scale, cu_seqlens, scale_optional: bool = True,
                    groups: bool = False) -> tuple:  # fmt: skip
    """The checks of the linear-attention family ([B, T, H, K] queries and keys, [B, T, H, V]
    values): q, k, v (check_qkv), k shaped as q, v's (B, T, H) as q's, the scale (a finite
    number, or None where the op has a default) and the packed offsets. With `groups` (ops
    whose kernels read grouped heads) q and k may have G heads, H a multiple of G
    (`check_heads`). Returns (B, T, H, K, V, N), N the number of sequences and H the
    values' heads."""
    check_qkv(op, q, k, v, "[B, T, H, K]")
    check(tuple(k.shape) == tuple(q.shape), op, "k.shape", f"{tuple(q.shape)} as q", tuple(k.shape))
    if groups:
        check(
            tuple(v.shape[:2]) == tuple(q.shape[:2]),
            op,
            "v.shape[:2] (B, T)",
            f"{tuple(q.shape[:2])} as q",
            tuple(v.shape[:2]),
        )
        check_heads(op, q.shape[2], v.shape[2])
    else:
        check(
            tuple(v.shape[:3]) == tuple(q.shape[:3]),
            op,
            "v.shape[:3] (B, T, H)",
            f"{tuple(q.shape[:3])}",
            tuple(v.shape[:3]),
        )
    check_scale(op, scale, scale_optional)
    B, T, _, K = q.shape
    H = v.shape[2]
    return B, T, H, K, v.shape[3], check_cu_seqlens(op, cu_seqlens, B, T)


def check_heads(op: str, G: int, H: int) -> None:
    """Grouped heads: the values' H heads read the G heads of q and k in groups of H / G
    (value head h reads q/k head h // (H / G)), so G divides H (G = H: one head each)."""
    check(
        H % G == 0 if G else H == 0,
        op,
        "heads H of v",
        f"a multiple of the G = {G} heads of q and k (value head h reads q/k head h // (H / G))",
        H,
    )


def finite(x) -> bool:
    """Whether the number x is finite (inf - inf and nan - nan are nan): arithmetic that
    torch.compile's tracer follows where it does not follow math.isfinite."""
    return x - x == 0


def check_scale(op: str, scale, optional: bool = True) -> None:
    """A scale is a finite number, or None where the op has a default (`optional`)."""
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool) and finite(scale)
    if optional:
        check(scale is None or number, op, "scale", "None or a finite number", scale)
    else:
        check(number, op, "scale", "a finite number", scale)


def check_state(op: str, state, N: int, H: int, K: int, V: int, what="initial_state", n="N"):
    """A state is a tensor [N, H, K, V], one K x V state per sequence and head (`n` names the
    first axis in the message: N sequences, or B for a step's batch)."""
    check(
        isinstance(state, torch.Tensor) and tuple(state.shape) == (N, H, K, V),
        op,
        f"{what} shape",
        f"({N}, {H}, {K}, {V}) = [{n}, H, K, V]",
        tuple(getattr(state, "shape", ())),
    )


def check_gate(op: str, name: str, x, shapes: tuple, expected: str, q) -> None:
    """A gate-like argument (decays, beta): a floating tensor of one of `shapes`, on q's
    device; `expected` says the shapes in words."""
    check(
        isinstance(x, torch.Tensor) and any(tuple(x.shape) == s for s in shapes),
        op,
        f"{name}.shape",
        expected,
        tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__,
    )
    check(x.is_floating_point(), op, f"{name}.dtype", "a floating dtype", x.dtype)
    check(x.device == q.device, op, f"{name}.device", f"{q.device} as q", x.device)


def check_step(op: str, q, k, v, state, scale=None, scale_optional: bool = True,
               groups: bool = False) -> tuple:  # fmt: skip
    """The checks of a one-token step of the linear-attention family: q, k [B, H, K] (one
    shape), v [B, H, V] of one float dtype on one device (check_qkv), the scale (check_scale)
    and the state, None (zeros, float32, returned) or [B, H, K, V]. With `groups`, q and k
    may have G heads, H a multiple of G (`check_heads`). Returns (B, H, K, V, state), H the
    values' heads."""
    check_qkv(op, q, k, v, "[B, H, K]")
    check_scale(op, scale, scale_optional)
    check(k.shape == q.shape, op, "k.shape", f"{tuple(q.shape)} as q", tuple(k.shape))
    if groups:
        check(v.shape[0] == q.shape[0], op, "v.shape[0] (B)", f"{q.shape[0]} as q", v.shape[0])
        check_heads(op, q.shape[1], v.shape[1])
    else:
        check(
            v.shape[:2] == q.shape[:2], op, "v.shape[:2]", f"{tuple(q.shape[:2])}",
            tuple(v.shape[:2]),
        )  # fmt: skip
    B, _, K = q.shape
    H, V = v.shape[1:]
    if state is None:
        state = torch.zeros(B, H, K, V, device=q.device, dtype=torch.float32)
    check_state(op, state, B, H, K, V, what="state", n="B")
    return B, H, K, V, state


def _dense(x: torch.Tensor) -> bool:
    """Unit stride along the features and a permutation of a contiguous tensor (such as
    ``[B, H, T, K].transpose(1, 2)``): the kernels read it through its strides."""
    # Arithmetic on the strides, not x.permute(...).is_contiguous(): a tensor op is a dispatch
    # the host pays on every call.
    st, n = x.stride(), x.shape
    if st[-1] != 1:
        return False
    span = n[-1]
    order: list = []  # the other axes, innermost first: sorted by stride (ties in axis order)
    for d in range(x.dim() - 1):  # by insertion, which traces where sorted() with keys does not
        i = len(order)
        while i and st[order[i - 1]] > st[d]:
            i -= 1
        order.insert(i, d)
    for d in order:
        if n[d] != 1 and st[d] != span:
            return False
        span *= n[d]
    return True


def readable(q, k, v) -> tuple:
    """q, k, v as kernels that address q and k through one set of strides and v through its
    own take them: in place where they can be read so (a permutation of a contiguous tensor,
    unit feature stride, q and k in one layout), else contiguous copies."""
    if not (_dense(q) and q.stride() == k.stride()):
        q, k = q.contiguous(), k.contiguous()
    return q, k, (v if _dense(v) else v.contiguous())


_tuners: dict = {}
_plans: dict = {}
# Direct launches (config fast_launch): once a kernel has been compiled for a configuration,
# calls whose arguments key the same way (`_key`) launch the compiled kernel through its
# launcher instead of Triton's JIT path, which binds and specialises every argument on every
# call (README.md says what that costs).


def _key(args) -> tuple:
    """What the choice of configuration and the compiled kernel depend on, conservatively:
    dtypes and 16-byte alignment of pointers and descriptor bases (Triton specialises on
    alignment), descriptor shapes and strides, integers exactly (Triton specialises on 1 and
    on multiples of 16), floats by type only."""
    out = []
    for a in args:
        t = type(a)
        if t is int or t is bool or a is None:
            out.append(a)
        elif t is float:
            out.append(float)
        elif isinstance(a, torch.Tensor):
            out.append((a.dtype, not a.data_ptr() & 15))
        elif isinstance(a, TensorDescriptor):
            b = a.base
            out.append((b.dtype, not b.data_ptr() & 15, *a.shape, *a.strides))
        elif hasattr(a, "layout") and hasattr(a, "block_shape"):  # Gluon's tensor descriptor
            b = a.base
            out.append((b.dtype, *a.shape, *a.strides, *a.block_shape, a.layout, a.padding))
        else:
            out.append(a)
    return tuple(out)


def _dtypes(args) -> tuple:
    return tuple(
        (a.base if isinstance(a, TensorDescriptor) else a).dtype
        for a in args
        if isinstance(a, (torch.Tensor, TensorDescriptor))
    )


class _Plan:
    """A call site's tuned configuration and, once compiled, its kernel and launcher."""

    __slots__ = ("cfg", "kw", "ck", "tail")

    def __init__(self, cfg):
        self.cfg, self.kw = cfg, dict(cfg.kwargs)
        self.ck = self.tail = None


def _stream():
    """The current CUDA stream, as Triton's own launches find it."""
    return driver.active.get_current_stream(driver.active.get_current_device())


def _names(names):
    """A tuple of argument names as the list Triton's autotuner takes (None: none)."""
    return None if names is None else list(names)


def launch(kernel, configs, grid, args, meta, interpret_config, reset=None, key=(), pre_hook=None,
           restore=None):  # fmt: skip
    """Launch a Triton kernel with its block sizes chosen by autotuning.

    Under the interpreter the small fixed `interpret_config` is used. On the GPU the first
    call for a shape runs Triton's autotuner over `configs` (keyed on `key`, names of
    arguments); later calls with the same `_key` and `meta` reuse the winning config, and
    from the third on launch the compiled kernel directly, skipping Triton's per-call
    binding. `grid(config_kwargs)` gives the launch grid; `reset` names outputs to zero
    between trials, `restore` (a tuple) arguments the kernel reads and overwrites (their
    values put back after each trial); `pre_hook(named_args)`, also set on the configs, runs
    before every launch (it gives tensor descriptors the block shape of the configuration).
    """

    def hook(kw):
        pre_hook({**dict(zip(kernel.arg_names, args)), **meta, **kw})

    if skip_launches:
        return
    if interpreting():
        if pre_hook is not None:
            hook(interpret_config)
        kernel[grid(interpret_config)](*args, **meta, **interpret_config)
        return
    pin = _settings.pin_config
    if pin >= 0:
        configs = [configs[min(pin, len(configs) - 1)]]
    pkey = (kernel, reset, restore, _key(args), *meta.items(), pin)  # (a pinned plan: its own)
    plan = _plans.get(pkey)
    if plan is None:
        # One tuner per config list, argument dtypes and meta: Triton's autotuner keys its
        # cache on `key` and the dtypes of tensor arguments, but neither on the dtypes of
        # tensor descriptors (a float32 call would reuse a config tuned for bfloat16, too
        # much shared memory) nor on the constexpr options in `meta` (a kernel's variants,
        # such as a scan that writes its states or not, would share the first one's choice).
        tkey = (kernel, reset, restore, tuple(str(c) for c in configs), _dtypes(args),
                *meta.items())  # fmt: skip
        if tkey not in _tuners:
            _tuners[tkey] = triton.autotune(
                configs, key=list(key), reset_to_zero=reset, restore_value=_names(restore)
            )(kernel)
        tuner = _tuners[tkey]
        try:
            tuner[grid](*args, **meta)
        except OutOfResources:
            # No configuration fits this GPU (less shared memory than the H100 / H200 the
            # lists are tuned on): the same ones without software pipelining (one stage)
            # take far less; if even those do not fit, Triton's error stands.
            tuner = _tuners[tkey] = triton.autotune(
                one_stage(configs),
                key=list(key),
                reset_to_zero=reset,
                restore_value=_names(restore),
            )(kernel)
            tuner[grid](*args, **meta)
        _plans[pkey] = _Plan(tuner.best_config)
        return
    kw = plan.kw
    if pre_hook is not None:
        hook(kw)
    if plan.ck is not None and _settings.fast_launch:
        _run(plan.ck, grid(kw), args, plan.tail)
        return
    ck = kernel[grid(kw)](*args, **meta, **plan.cfg.all_kwargs())  # block sizes and options
    if _settings.fast_launch and _runnable(ck):
        plan.tail = _tail(kernel, len(args), {**meta, **kw})
        plan.ck = ck


def stages_at_most(configs: list, n: int) -> list:
    """The configurations with their software pipelines at most n stages deep (float32 tiles
    take twice the shared memory of 16-bit ones)."""
    return [
        triton.Config(c.kwargs, num_warps=c.num_warps, num_stages=min(c.num_stages, n),
                      maxnreg=c.maxnreg, pre_hook=c.pre_hook)
        for c in configs
    ]  # fmt: skip


def one_stage(configs: list) -> list:
    """The configurations at one stage (no software pipelining), duplicates dropped."""
    out, seen = [], set()
    for c in configs:
        one = triton.Config(
            c.kwargs, num_warps=c.num_warps, num_stages=1, maxnreg=c.maxnreg, pre_hook=c.pre_hook
        )
        if str(one) not in seen:
            seen.add(str(one))
            out.append(one)
    return out


def _runnable(ck) -> bool:
    return all(hasattr(ck, a) for a in ("run", "function", "packed_metadata"))


def _tail(kernel, n_args: int, given: dict) -> tuple:
    """The arguments after the first n_args positional ones, in the kernel's order, those left
    to their signature defaults included (the compiled kernel's launcher has no defaults)."""
    given = {**{p.name: p.default for p in kernel.params if p.has_default}, **given}
    return tuple(given[n] for n in kernel.arg_names[n_args:])


def _run(ck, grid, args, tail):
    """Launch compiled kernel ck as Triton's JIT path does, without its per-call binding."""
    enter, leave = knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook
    # Newer Triton keeps each hook as a chain of hooks (HookChain), never None: an empty one
    # calls nothing, so it goes as None, and the launch's metadata, which only hooks read, is
    # made only where there is a hook
    if not getattr(enter, "calls", True):
        enter = None
    if not getattr(leave, "calls", True):
        leave = None
    stream = _stream()
    g = (*grid, 1, 1)[:3]
    lm = None
    if enter is not None or leave is not None:
        lm = ck.launch_metadata(g, stream, *args, *tail)  # None unless an enter hook is set
    ck.run(*g, stream, ck.function, ck.packed_metadata, lm, enter, leave, *args, *tail)


_compiled: dict = {}


def launch_compiled(kernel, grid, args, meta, key=None):
    """Launch a kernel that has nothing to tune (the Gluon kernels): the first call for a
    `_key` of the arguments and `meta` goes through the JIT, later ones launch its compiled
    kernel directly (config fast_launch), as `launch` does once tuned. `meta` holds the
    constexpr arguments and the launch options (num_warps). `key`: a caller that knows what
    the compiled kernel depends on (a plan made once per sizes) passes it instead, a hashable
    that differs wherever `_key(args)` or `meta` would (the WTA-CRS selection)."""
    if skip_launches:
        return
    key = (kernel, _key(args), *meta.items()) if key is None else ("given", key)
    hit = _compiled.get(key) if _settings.fast_launch else None
    if hit is not None:
        _run(hit[0], grid, args, hit[1])
        return
    ck = kernel[grid](*args, **meta)
    if _settings.fast_launch and _runnable(ck):
        _compiled[key] = (ck, _tail(kernel, len(args), meta))


def tuned_configs() -> dict:
    """{module.kernel (+ '_reset' for zero-reset variants): last winning config} for reports."""
    return {
        f"{k.fn.__module__.rsplit('.', 1)[-1]}.{k.fn.__name__}{'_reset' if r else ''}": str(
            getattr(t, "best_config", None)
        )
        for (k, r, *_), t in _tuners.items()
    }
