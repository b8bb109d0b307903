"""`ncd compile`: a circuit as one standalone PyTorch file; the demo step compiles the gallery."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("compile", help="write a circuit as a standalone PyTorch module (.py)")
    p.add_argument("spec", help="a JSON file or a gallery name")
    p.add_argument("--sizes", help="bind sizes, e.g. B=2,T=128 (the module is specialised)")
    p.add_argument("-o", "--out", help="output file (default, or -: stdout)")
    p.add_argument(
        "--rewrites",
        choices=("attention", "auto", "on", "off"),
        default="attention",
        help="pattern rewrites to fused boxes (default attention: softmax attention drawn from "
        "primitives becomes one attention call; on: every rewrite, to ncd.ops kernels too)",
    )
    p.add_argument(
        "--fused",
        choices=("ncd", "torch"),
        default="torch",
        help="fused attention as PyTorch's SDPA (default) or through ncd.ops (with a fallback)",
    )
    p.add_argument(
        "--weights",
        help="a safetensors file of the circuit's weights (default: SPEC.safetensors beside a "
        "JSON spec, as `ncd import -o` writes, if there is one); checked against the module "
        "and, with -o, written beside the file as OUT.safetensors for its state_dict",
    )
    p.set_defaults(run=cmd_compile)


def cmd_compile(args) -> int:
    from ncd.compiler import to_source
    from ncd.spec import output_arg, write_text

    from .language import load_bound

    args.out = output_arg(args.out)
    c, sizes = load_bound(args.spec, args.sizes)
    rewrites = {"attention": {"attention"}, "auto": None, "on": True, "off": False}[args.rewrites]
    weights = _weights_file(args)
    state, buffers, constants, dtype = None, None, None, None
    if weights is not None:  # loaded into the compiled module: names and shapes checked
        import torch

        from ncd.compiler import compile as ncd_compile
        from ncd.compiler.build import constant_names

        dtype = _float_type(weights)  # kept: a float32 module would round float64 weights
        module = ncd_compile(c, sizes, dtype, rewrites=rewrites, fused=args.fused, weights=weights)
        state = module.state_dict()
        buffers = {k for k, _ in module.named_buffers()}
        constants = set(constant_names(module))
    text = to_source(c, sizes, rewrites=rewrites, fused=args.fused, buffers=buffers,
                     constants=constants)  # fmt: skip
    if args.out:
        out = write_text(args.out, text)
        saved = ""
        if state is not None:
            from ncd.compiler.attached import save_state, weights_path

            saved = f", weights {save_state(state, weights_path(out), buffers, constants)}"
            if dtype is not None and dtype != torch.float32:
                saved += f", {dtype}: load them into {_class(c)}().to({dtype})"
        print(f"wrote {out} ({text.count(chr(10))} lines, class {_class(c)}{saved})")
    else:
        sys.stdout.write(text)
    return 0


def _weights_file(args):
    """The weights to load: --weights, else SPEC.safetensors beside a JSON spec if present."""
    if args.weights:
        return Path(args.weights)
    spec = Path(args.spec)
    if spec.suffix == ".json" and spec.is_file():
        beside = spec.with_suffix(".safetensors")
        if beside.is_file():
            return beside
    return None


def _float_type(path):
    """The float type all the float tensors of a weights file share, else None (float32)."""
    from ncd.compiler.attached import load_weights

    state, _ = load_weights(path)
    floats = {t.dtype for t in state.values() if t.is_floating_point()}
    return floats.pop() if len(floats) == 1 else None


def _class(c) -> str:
    from ncd.compiler.names import class_name

    return class_name(c.name)


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def demo(out_dir: Path) -> None:
    """Compile every gallery circuit to out_dir/code/<name>.py, import it and run it."""
    import torch

    from ncd import gallery
    from ncd.compiler import compile, to_source
    from ncd.compiler.examples import example_inputs

    code = Path(out_dir) / "code"
    code.mkdir(parents=True, exist_ok=True)
    for name in gallery.names():
        c = gallery.get(name)
        path = code / f"{name}.py"
        path.write_text(to_source(c))
        mod = load_module(path, f"ncd_demo_{name}")
        model = getattr(mod, _class(c))().eval()
        ref = compile(c).eval()
        model.load_state_dict(ref.state_dict())
        xs = example_inputs(c.check())
        with torch.no_grad():
            y, z = model(*xs), ref(*xs)
        ys = y.values() if isinstance(y, dict) else [y]
        zs = z.values() if isinstance(z, dict) else [z]
        same = all(torch.equal(a, b) for a, b in zip(ys, zs, strict=True))
        shapes = ", ".join(str(list(t.shape)) for t in ys)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"code: {name:20} -> {path} runs: {shapes}, {n_params} params, "
            f"{'same as ncd.compile' if same else 'DIFFERS from ncd.compile'}"
        )
