"""`compile`: circuit → checked graph → passes → fx lowering → an nn.Module; `to_source`."""

from __future__ import annotations

from collections.abc import Collection

import torch

from ncd.circuits.circuit import Circuit
from ncd.circuits.validate import Checked, check

from . import attached, runtime
from .errors import CompileError, InputError
from .lower import Lowered, Options, lower
from .module import deepcopy as module_deepcopy
from .rewrites import apply_rewrites


def prepare(
    circuit: Circuit,
    sizes: dict[str, int] | None = None,
    device=None,
    rewrites: bool | Collection[str] | None = None,
    opaque=None,
    fused: str | None = None,
) -> Lowered:
    """The whole pipeline up to the lowered graph (shared by `compile` and `to_source`)."""
    device = torch.device(device or "cpu")
    if rewrites is None:
        rewrites = device.type == "cuda"  # the fused kernels pay off on the GPU
    fns = {**attached.callables(circuit), **(opaque or {})}
    if rewrites:  # True: every rewrite; a collection: the rewrites of those match kinds
        circuit = apply_rewrites(circuit, sizes, None if rewrites is True else rewrites)
    checked: Checked = check(circuit, sizes, require_bound=True)
    opts = Options(device=device, opaque=fns, fused=fused or "auto")
    return lower(checked, opts)


def compile(  # noqa: A001 - the name the API promises (`ncd.compile`)
    circuit: Circuit,
    sizes: dict[str, int] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    *,
    rewrites: bool | None = None,
    fused: str | None = None,
    opaque: dict | None = None,
    weights=None,
) -> torch.fx.GraphModule:
    """Compile `circuit` into a `torch.fx.GraphModule` (a plain `nn.Module`).

    Args:
        circuit: the circuit; its `sizes` are the default binding, `sizes` overrides them.
            Every size must end up bound (the module is specialised to them).
        dtype, device: of the parameters (default float32, CPU); a dtype may be named
            ("bfloat16"); a device that is not there is an error here, not at the first call.
        rewrites: pattern rewrites to the fused kernels of ncd.ops (attention drawn from
            primitives, the causal linear-attention chain); default on for CUDA, off on CPU.
        fused: how fused boxes run: "auto" (the default: per box kind and device, the
            implementation measured fastest, from the one table in compiler/choices.py: on
            CUDA, SDPA for softmax attention, ncd.ops' kernels for linear attention, torch's
            norms; on the CPU, ncd.ops' PyTorch forms), "ncd" (ncd.ops everywhere: its Triton
            kernels on CUDA) or "torch" (PyTorch's SDPA and norms where they fit).
        opaque: callables for `opaque` boxes, by box name (imported circuits bring theirs).
        weights: a state dict, or the path of a safetensors file (as `ncd import -o` writes
            beside the spec), loaded into the module; default: the weights an imported circuit
            carries in memory. Entries recorded as buffers become buffers, not parameters;
            those recorded as constants (no part of the imported model's own state_dict) stay
            in the module's state_dict but loading may leave them out (`runtime.Held`), so the
            model's state_dict, renamed, loads with strict=True.

    Returns:
        A module whose `forward` takes the circuit's inputs in order (tensors with axes in the
        order the inputs list them) and returns the output tensor, or a dict of them by name.
        Parameters are named after boxes: `q_proj.weight`, `blocks.0.ff_up.bias`.
        Each call first checks its inputs (`input_check`): an input of the wrong rank, dtype
        class, float dtype (one no parameter has; not checked under torch.autocast), or
        size along an axis the module is specialised to raises `InputError`
        naming the input and the axis; sizes the module never reads (a batch) may vary.

    >>> m = compile(ncd.gallery.get("multihead_attention"))
    >>> m(torch.randn(2, 16, 32)).shape
    torch.Size([2, 16, 32])
    """
    dtype, device = _dtype(dtype), _device(device)
    lowered = prepare(circuit, sizes, device, rewrites, opaque, fused)
    module = lowered.module
    check = input_check(lowered)
    _keep_check(module, check)
    module.to(device=torch.device(device or "cpu"))
    if dtype is not None:
        module.to(dtype=dtype)
    buffers, constants = attached.buffers(circuit), attached.constants(circuit)
    if weights is None:
        weights, where = attached.weights(circuit), None
    elif isinstance(weights, dict):
        where = "the weights given"
    else:
        where = f"weights file {weights}"
        weights, buffers, constants = attached.load_held(weights)
    _as_buffers(module, buffers, constants)
    if weights or where is not None:  # weights given (even none) are checked in full
        _load(module, weights, where)
    module.ncd_circuit = circuit.name  # for people reading repr; holds no state
    if not any(b.kind == "opaque" for b in _all_boxes(circuit)):
        spec = (circuit.to_json(None), dict(sizes or {}), rewrites, fused, str(device or "cpu"))
        # Unpickling a GraphModule traces its code again, which cannot go through ncd.ops'
        # argument checks; this module pickles as its circuit and its tensors instead.
        _keep_check(module, check, spec)
    return module


def _dtype(dtype) -> torch.dtype | None:
    """The parameters' dtype: a floating torch.dtype, or its name ("bfloat16")."""
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        dtype = getattr(torch, dtype)
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    want = "a float dtype (torch.bfloat16, or its name 'bfloat16')"
    raise CompileError("compile", "dtype: the parameters' element type", want, repr(dtype))


def _device(device) -> torch.device:
    """The device the module is built on, checked to exist here."""
    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError):
        want = "'cpu', 'cuda', 'cuda:N' or a torch.device"
        raise CompileError("compile", "device: where the module is built", want,
                           repr(device)) from None  # fmt: skip
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index or 0) >= n:
            have = f"{n} CUDA device(s)" if n else "no CUDA device"
            if torch.version.cuda is None:
                have += " (this torch is a CPU build)"
            raise CompileError("compile", f"device {str(dev)!r} is not available", "a CUDA "
                               "device torch can use (or device='cpu')", have)  # fmt: skip
    return dev


def input_check(lowered: Lowered) -> runtime.CheckInputs:
    """The forward pre-hook that checks a compiled module's inputs against the circuit (the
    same check the written file runs: `runtime.CheckInputs`), raising InputError: the rank,
    each axis' size where the module is specialised to it, that axes of one free size (a
    batch axis) agree across inputs, and the dtype class. Plain data, so that it pickles,
    deep-copies and traces under torch.compile."""
    expected = {
        name: (dtype, {axis: str(size) if n is None else n for axis, size, n in axes})
        for name, dtype, axes in lowered.input_axes()
    }
    return runtime.CheckInputs(expected, InputError)


def _keep_check(module: torch.fx.GraphModule, check: runtime.CheckInputs, spec=None) -> None:
    """Registers `check` on `module` and, given the circuit's `spec`, makes it pickle as the
    circuit and its tensors (`_reduce`); both carry over to its deep copies (GraphModule's
    deepcopy builds a new module, of a class of its own, without the hooks). Each
    GraphModule instance has a class of its own, so this touches no other module."""
    if not any(h is check for h in module._forward_pre_hooks.values()):
        module.register_forward_pre_hook(check, with_kwargs=True)

    def deepcopy(self, memo):
        copied = module_deepcopy(self, memo)  # with its layers and printout
        _keep_check(copied, check, spec)
        return copied

    type(module).__deepcopy__ = deepcopy
    if spec is not None:
        type(module).__reduce__ = lambda self: _reduce(self, spec)


def _reduce(module: torch.nn.Module, spec):
    """What a compiled module pickles as: its circuit, and each parameter and buffer as it
    is (its dtype, device and requires_grad; a tensor under two names is pickled once), with
    each submodule's training flag, as pickling any nn.Module keeps them."""
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    modes = {name: sub.training for name, sub in module.named_modules(remove_duplicate=False)}
    return _restore, (*spec, params, buffers, modes, constant_names(module))


def constant_names(module: torch.nn.Module) -> list[str]:
    """The state names that loading may leave out (`runtime.Held.optional`)."""
    return [f"{name}.{leaf}" for name, sub in module.named_modules(remove_duplicate=False)
            if isinstance(sub, runtime.Held) for leaf in sub.optional]  # fmt: skip


def _as_buffers(module: torch.nn.Module, names, constants=None) -> None:
    """The parameters named in `names` become (persistent) buffers under the same names; those
    also in `constants` are optional when loading (`runtime.Held`), the others not (a buffer
    of the imported model's own state). `constants` None leaves that as it is."""
    for key in sorted(names):
        owner, _, leaf = key.rpartition(".")
        try:
            sub = module.get_submodule(owner)
        except AttributeError:
            continue
        p = sub._parameters.get(leaf)
        if p is not None:
            del sub._parameters[leaf]
            sub.register_buffer(leaf, p.detach())
        if constants is not None and isinstance(sub, runtime.Held):
            rest = tuple(n for n in sub.optional if n != leaf)
            sub.optional = (*rest, leaf) if key in constants else rest


def _load(module: torch.nn.Module, state: dict, where: str | None) -> None:
    """Load `state`; when it was given (`where` says by whom), every entry must name a
    parameter or buffer of the same shape, and every parameter must have one (left out, it
    would keep a fresh random value; a buffer left out keeps its initial value)."""
    if where is None:
        module.load_state_dict(state, strict=False)
        return
    own = module.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise attached.WeightsError(
            f"{where}: {len(extra)} entries the compiled circuit does not have "
            f"({_names(extra)}); expected names from {_names(sorted(own))}"
        )
    for k, t in state.items():
        if tuple(t.shape) != tuple(own[k].shape):
            raise attached.WeightsError(
                f"{where}: {k!r} has shape {tuple(t.shape)}, the compiled circuit expects "
                f"{tuple(own[k].shape)}"
            )
    params = [k for k, _ in module.named_parameters()]  # a buffer left out keeps its start
    missing = sorted(set(params) - set(state))
    if missing:
        raise attached.WeightsError(
            f"{where}: missing {len(missing)} of the compiled circuit's {len(params)} "
            f"parameters ({_names(missing)}); the weights must give every one"
        )
    module.load_state_dict(state, strict=False)


def _names(names: list[str], most: int = 5) -> str:
    """The first `most` of `names`, comma-separated, with '…' when there are more."""
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")


def _all_boxes(circuit: Circuit):
    yield from circuit.boxes
    for sub in circuit.subcircuits.values():
        yield from _all_boxes(sub)


def _rebuild(spec, sizes, rewrites, fused, device, state, training, buffers=()):
    """Unpickling a module pickled by an earlier ncd (its state_dict, one dtype)."""
    from ncd.circuits.io import loads

    dtype = next((t.dtype for t in state.values() if t.is_floating_point()), None)
    module = compile(loads(spec), sizes, dtype, device, rewrites=rewrites, fused=fused)
    _as_buffers(module, buffers)
    module.load_state_dict(state)
    return module.train(training)


def _restore(spec, sizes, rewrites, fused, device, params, buffers, modes, constants=None):
    """Unpickling (`_reduce`): compile the circuit again, on the device its tensors were
    loaded to (torch.load's map_location decides, as for any module), and put each
    parameter and buffer back as it was pickled, the constants optional when loading as they
    were (`constants`: None in a pickle of an ncd that did not record them)."""
    from ncd.circuits.io import loads

    first = next(iter([*params.values(), *buffers.values()]), None)
    if first is not None:
        device = first.device
    module = compile(loads(spec), sizes, None, device, rewrites=rewrites, fused=fused)
    _as_buffers(module, [n for n in buffers if n not in dict(module.named_buffers())])
    if constants is not None:
        for name, sub in module.named_modules(remove_duplicate=False):
            if isinstance(sub, runtime.Held):
                sub.optional = tuple(k.rpartition(".")[2] for k in constants
                                     if k.rpartition(".")[0] == name)  # fmt: skip
    for table, tensors in (("_parameters", params), ("_buffers", buffers)):
        for key, tensor in tensors.items():
            owner, _, leaf = key.rpartition(".")
            getattr(module.get_submodule(owner), table)[leaf] = tensor
    for name, sub in module.named_modules(remove_duplicate=False):
        sub.training = modes.get(name, sub.training)
    return module


def to_source(
    circuit: Circuit,
    sizes: dict[str, int] | None = None,
    *,
    rewrites: bool | Collection[str] | None = None,
    fused: str | None = None,
    device=None,
    buffers: Collection[str] | None = None,
    constants: Collection[str] | None = None,
) -> str:
    """One standalone Python file defining the circuit as an nn.Module (imports only torch,
    and ncd.ops with a plain fallback where a fused kernel is used). Loading a compiled
    module's state_dict into it gives identical outputs. `rewrites` as `compile`'s, or the
    match kinds to rewrite (`{"attention"}`: softmax attention drawn from primitives is
    written as one `F.scaled_dot_product_attention` with `fused="torch"`). `buffers`,
    `constants`: the state keys an imported model held as buffers, and its constants
    (default: those the circuit carries in memory, `attached`), made as `compile` makes them:
    buffers, the constants optional when loading."""
    from .source import emit

    buffers = attached.buffers(circuit) if buffers is None else set(buffers)
    constants = attached.constants(circuit) if constants is None else set(constants)

    if rewrites is None:
        rewrites = torch.device(device or "cpu").type == "cuda"
    # The code is written from the lowered graph's shapes: parameters are made on the meta
    # device, so that writing the code of a model of any size allocates none of it.
    with torch.device("meta"):
        lowered = prepare(circuit, sizes, "meta", rewrites, None, fused)
    return emit(lowered, buffers, constants)
