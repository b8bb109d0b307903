"""`ncd import MODULE:FACTORY -o spec.json`: a PyTorch model as a circuit spec."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ncd.circuits.errors import NcdError


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import a PyTorch model as a circuit (MODULE:FACTORY returns the model, or the "
        "model and its example inputs, with or without more); -o spec.json also writes the "
        "weights to spec.safetensors",
    )
    p.add_argument("target", help="e.g. mypkg.models:make_model (imported and called)")
    p.add_argument(
        "--shape",
        action="append",
        default=[],
        help="shape of an example input, e.g. 2,16,32 (repeat per input; float32)",
    )
    p.add_argument("--name", help="circuit name (default: from the model's class)")
    p.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATH",
        help="a submodule kept whole as one opaque box, e.g. layers.0.rope (repeat; for code "
        "torch.fx cannot trace, which the error names)",
    )
    p.add_argument("-o", "--out", help="output JSON file (default, or -: stdout)")
    p.set_defaults(run=cmd_import)


def load_factory(target: str):
    mod_name, sep, attr = target.partition(":")
    if not sep or not mod_name or not attr:
        raise NcdError(f"expected MODULE:FACTORY, found {target!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise NcdError(f"cannot import module {mod_name!r}: {e}") from None
    except (Exception, SystemExit) as e:
        raise NcdError(f"importing module {mod_name!r} failed: {_failure(e)}") from None
    finally:
        sys.path.pop(0)
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise NcdError(f"{mod_name} has no callable {attr!r}")
    return fn


def _shape(text: str) -> tuple[int, ...]:
    """`"2,16,32"` -> (2, 16, 32): positive whole numbers, an example small enough to make."""
    from ncd.circuits.limits import MAX_AXES, MAX_EXAMPLE_ELEMENTS

    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() and len(p) <= 12 and int(p) > 0 for p in parts):
        raise NcdError(f"--shape expects positive whole numbers separated by commas, found "
                       f"{text.encode('utf-8', 'backslashreplace').decode()[:60]!r}")  # fmt: skip
    dims = tuple(int(p) for p in parts)
    if len(dims) > MAX_AXES:
        raise NcdError(f"--shape {text[:40]}…: more than {MAX_AXES} axes (limit MAX_AXES)")
    n = 1
    for d in dims:
        n *= d
    if n > MAX_EXAMPLE_ELEMENTS:
        raise NcdError(
            f"--shape {text}: {n:,} elements, more than the {MAX_EXAMPLE_ELEMENTS:,} an "
            "example input may have (limit MAX_EXAMPLE_ELEMENTS); sizes in the circuit stay "
            "symbolic, so a small example is enough"
        )
    return dims


def _failure(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it exited (SystemExit {e.code!r})"
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def _describe(v) -> str:
    """What a factory returned, in a few words: `tuple (Linear, int)`."""
    if isinstance(v, (tuple, list)):
        inner = ", ".join(type(x).__name__ for x in v[:4]) + (", …" if len(v) > 4 else "")
        return f"{type(v).__name__} of {len(v)} ({inner})"
    return type(v).__name__


def model_and_inputs(made, shapes, target: str):
    """(model, example inputs) from what a factory returned: a model; `(model, inputs)` with
    inputs a tensor or a tuple/list of tensors; or `(model, inputs, anything more)`. Without
    inputs from the factory, `shapes` (from --shape) make random ones; given, they win."""
    import torch

    Module, Tensor = torch.nn.Module, torch.Tensor
    if isinstance(made, Module):
        model, inputs = made, None
    elif isinstance(made, (tuple, list)) and made and isinstance(made[0], Module):
        model = made[0]
        inputs = made[1] if len(made) > 1 else None
        if isinstance(inputs, list):
            inputs = tuple(inputs)
        ok = isinstance(inputs, Tensor) or (
            isinstance(inputs, tuple) and inputs and all(isinstance(t, Tensor) for t in inputs)
        )
        if inputs is not None and not ok:
            raise NcdError(
                f"the factory {target} returned a model and then {_describe(inputs)} where the "
                "example inputs go: expected a tensor or a tuple of tensors"
            )
    else:
        raise NcdError(
            f"the factory {target} returned {_describe(made)}, not an nn.Module nor "
            "(model, example inputs[, anything more])"
        )
    if shapes:
        inputs = tuple(torch.randn(*s) for s in shapes)
    if inputs is None:
        raise NcdError(
            f"the factory {target} returned a model without example inputs: give --shape for "
            "each input, or return (model, example inputs)"
        )
    return model, inputs


def cmd_import(args) -> int:
    from torch import Tensor

    from ncd.compiler import attached
    from ncd.compiler.errors import TorchImportError
    from ncd.compiler.importer import from_torch
    from ncd.spec import output_arg, write_text

    args.out = output_arg(args.out)
    shapes = [_shape(sh) for sh in args.shape]
    factory = load_factory(args.target)
    try:
        made = factory()
    except (Exception, SystemExit) as e:
        raise NcdError(f"the factory {args.target} failed: {_failure(e)}") from None
    model, inputs = model_and_inputs(made, shapes, args.target)
    try:
        circuit = from_torch(model.eval(), inputs, name=args.name, keep=args.keep)
    except TorchImportError as e:
        more = made[2:] if isinstance(made, (tuple, list)) and not shapes else ()
        if "on the example inputs failed" in str(e) and any(isinstance(t, Tensor) for t in more):
            raise NcdError(
                f"{e}; the factory returned {_describe(made)}: a model's inputs go together, "
                "as its second item (return (model, (x, mask)) for forward(x, mask))"
            ) from None
        raise
    text = circuit.to_json()
    opaque = [b.name for b in circuit.boxes if b.kind == "opaque"]
    tied = list(circuit.tied.items())
    if args.out:
        write_text(args.out, text)
        wpath = attached.save_weights(circuit, attached.weights_path(args.out))
        blocks = {b.group for b in circuit.boxes if b.group} | set(circuit.groups.values())
        print(
            f"wrote {args.out} and its weights {wpath}: circuit '{circuit.name}', "
            f"{len(circuit.boxes)} boxes"
            + (f", {len(blocks)} blocks (ncd render --collapse BLOCK)" if blocks else "")
            + (f", opaque: {', '.join(opaque)}" if opaque else "")
            + (f", tied: {', '.join(f'{k} = {v}' for k, v in tied)}" if tied else "")
        )
    else:
        sys.stdout.write(text + "\n")
    return 0
