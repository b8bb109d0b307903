"""`ncd schema`, `ncd validate`, `ncd show`, `ncd list`: the language on the command line."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

from ncd.circuits.errors import SizeError


def register(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of circuit specs")
    p.add_argument(
        "kind", nargs="?", help="one box kind: its description, ports, fields and Builder call"
    )
    p.add_argument("--kinds", action="store_true", help="list the box kinds only")
    p.set_defaults(run=cmd_schema)

    p = sub.add_parser("validate", help="check a spec; report every problem with its place")
    p.add_argument("spec", help="a JSON file or a gallery name")
    p.add_argument("--sizes", help="bind sizes, e.g. B=2,T=128")
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("show", help="inputs, outputs, boxes, axes and sizes of a circuit")
    p.add_argument("spec", help="a JSON file or a gallery name")
    p.add_argument("--sizes", help="bind sizes, e.g. B=2,T=128")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--builder", action="store_true", help="the circuit as Builder code")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("list", help="list the gallery")
    p.add_argument("--json", action="store_true", help='{"entries": [{"name", "title", "paper"}]}')
    p.set_defaults(run=cmd_list)


def cmd_schema(args) -> int:
    from ncd.circuits.kinds import KINDS

    if args.kinds:
        for kind, cls in KINDS.items():
            print(f"{kind:18} {first_sentence(cls.__doc__ or '')}")
        return 0
    if args.kind:
        print(describe_kind(args.kind), end="")
        return 0
    from ncd.circuits import io

    print(json.dumps(io.json_schema(), indent=2))
    return 0


def describe_kind(kind: str) -> str:
    """One box kind in words: its docstring, ports, fields (default and description) and the
    Builder call that makes it (`ncd schema KIND`)."""
    import difflib
    import inspect
    import typing

    from ncd.circuits.builder import Builder
    from ncd.circuits.errors import NcdError
    from ncd.circuits.fielddocs import attach
    from ncd.circuits.kinds import KINDS

    if kind not in KINDS:
        close = difflib.get_close_matches(kind, list(KINDS), n=3)
        raise NcdError(
            f"no box kind {kind!r}"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + "; `ncd schema --kinds` lists them"
        )
    attach()
    cls = KINDS[kind]
    out = [f"{kind}: {inspect.cleandoc(cls.__doc__ or '')}", ""]
    try:  # the ports of a box with every field at its default (some depend on fields)
        ports = list(cls.model_construct(name="x").ports())
        out.append("ports: " + (", ".join(ports) or "none") + " (with the fields' defaults)")
    except Exception:  # noqa: BLE001 - a kind whose ports need fields set (pack)
        ports = None
        out.append("ports: as its fields name them")
    out.append("fields:")
    for name, info in cls.model_fields.items():
        if name in ("name", "inputs", "kind", "group"):
            continue
        value = None if info.is_required() else info.get_default(call_default_factory=True)
        default = (
            "required"
            if info.is_required()
            else "= " + json.dumps(value, ensure_ascii=False, default=str)
        )
        doc = " ".join((info.description or "").split())
        if typing.get_origin(info.annotation) is typing.Literal:
            doc += " One of: " + ", ".join(map(str, typing.get_args(info.annotation))) + "."
        out.append(f"  {name} {default}")
        if doc:
            out.append(f"      {doc}")
    method = getattr(Builder, kind, None)
    if method is not None:
        out.append(f"Python: b.{kind}{inspect.signature(method)}".replace("(self, ", "("))
    else:
        wires = "port: wire, ..." if ports is None else ", ".join(f'"{p}": {p}' for p in ports)
        out.append(f'Python: b.box("{kind}", {{{wires}}}, name=None, **fields)')
    return "\n".join(out) + "\n"


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line (the paragraph if no
    sentence ends in it)."""
    para = " ".join(doc.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(?=\s+[A-Z`(]|$)", para)
    return m.group(1) if m else para


def load_bound(spec: str, sizes: str | None):
    """The circuit named by SPEC and the sizes of --sizes, each checked to be one of the
    circuit's sizes (a name it does not have is an error that lists those it has)."""
    from ncd.spec import load_spec, parse_sizes

    c = load_spec(spec)
    bound = parse_sizes(sizes)
    if bound:
        from ncd.compiler.cost.analyse import known_sizes

        known = known_sizes(c)
        unknown = sorted(set(bound) - known)
        if unknown:
            raise SizeError(
                f"--sizes: circuit '{c.name}' has no size {', '.join(unknown)}; its sizes "
                f"are {', '.join(sorted(known))}"
            )
    return c, bound


def cmd_validate(args) -> int:
    c, sizes = load_bound(args.spec, args.sizes)
    checked = c.check(sizes)
    outs = ", ".join(f"{n} {t}" for n, t in checked.outputs.items())
    print(f"ok: {c.name}: {len(c.boxes)} boxes -> {outs}")
    return 0


def describe(c, checked) -> dict:
    from ncd.circuits.sizes import show
    from ncd.circuits.types import TensorType

    def t(v):
        if isinstance(v, TensorType):
            return {
                "axes": [a.name for a in v.axes],
                "sizes": [show(checked.resolve(a.size)) for a in v.axes],
                "dtype": v.dtype,
            }
        return {"tuple": {n: t(x) for n, x in v.items}}

    return {
        "name": c.name,
        "title": c.title,
        "paper": c.paper,
        "inputs": {n: t(v) for n, v in checked.inputs.items()},
        "outputs": {n: t(v) for n, v in checked.outputs.items()},
        "axes": {a: show(size) for a, size in sorted(checked.axis_sizes().items())}
        | {s: s for s in checked.symbols() if s not in checked.axis_sizes()},
        "sizes": checked.sizes,
        "boxes": [
            {
                "name": n,
                "kind": checked.box(n).kind,
                "inputs": {p: t(v) for p, v in checked.ins[n].items()},
                "outputs": {p: t(v) for p, v in checked.outs[n].items()},
                "params": {p: t(v) for p, v in checked.params[n].items()},
                "settings": settings(checked.box(n)),
            }
            for n in checked.order
        ],
    }


def settings(box) -> dict:
    """Every field of a box but its name, kind and inputs (defaults included), as in JSON."""
    return box.model_dump(mode="json", exclude={"name", "kind", "inputs"})


def _setting_text(box) -> str:
    """The settings that differ from the kind's defaults, as `over=D out=H,K bias=False`."""
    shown = box.model_dump(mode="json", exclude={"name", "kind", "inputs"}, exclude_defaults=True)
    parts = []
    for k, v in shown.items():
        if isinstance(v, list) and all(isinstance(x, str | int) for x in v):
            v = ",".join(map(str, v)) or "[]"
        elif isinstance(v, dict | list):
            v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        elif isinstance(v, str) and (not v or " " in v):
            v = json.dumps(v, ensure_ascii=False)
        parts.append(f"{k}={v}")
    return " ".join(parts)


def _sym(name):
    from ncd.circuits.sizes import symbol

    return symbol(name)


def cmd_show(args) -> int:
    c, sizes = load_bound(args.spec, args.sizes)
    if args.builder:
        from ncd.circuits.script import to_script

        print(to_script(c), end="")
        return 0
    checked = c.check(sizes)
    d = describe(c, checked)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{c.name}" + (f" — {c.title}" if c.title else ""))
    if c.paper:
        print(f"  from: {c.paper}")

    def sig(v):
        if "tuple" in v:
            return "(" + "; ".join(f"{n}: {sig(x)}" for n, x in v["tuple"].items()) + ")"
        return " ".join(v["axes"]) + ("" if v["dtype"] == "float32" else f" {v['dtype']}")

    def param_sig(v):  # a parameter's own axes (a kernel's kT) may differ from the table's
        axes = [
            a if d["axes"].get(a) == size else f"{a}={size}"
            for a, size in zip(v["axes"], v["sizes"], strict=True)
        ]
        return " ".join(axes) + ("" if v["dtype"] == "float32" else f" {v['dtype']}")

    print("inputs:")
    for n, v in d["inputs"].items():
        print(f"  {n:12} {sig(v)}")
    print("outputs:")
    for n, v in d["outputs"].items():
        print(f"  {n:12} {sig(v)}")
    print("axes (size):")
    sizes = checked.axis_sizes()
    for a, s in sorted(d["axes"].items()):
        bound = checked.number(sizes.get(a, _sym(a)))
        print(f"  {a:6} {s:10}" + (f" = {bound}" if bound is not None else ""))
    print(f"boxes ({len(d['boxes'])}, in evaluation order):")
    w = max((len(b["name"]) for b in d["boxes"]), default=4)
    for b in d["boxes"]:
        ins = ", ".join(sig(v) for v in b["inputs"].values())
        outs = ", ".join(sig(v) for v in b["outputs"].values())
        ps = (
            "  params " + ", ".join(f"{p}[{param_sig(v)}]" for p, v in b["params"].items())
            if b["params"]
            else ""
        )
        print(f"  {b['name']:{w}}  {b['kind']:16} {ins or '—'} -> {outs}{ps}")
        text = _setting_text(checked.box(b["name"]))
        if text:
            print(f"  {'':{w}}  {'':16} {text}")
    return 0


def gallery_listing() -> list[dict] | None:
    """[{"name", "title", "paper"}] of every gallery entry, in registration order, read from
    the gallery's source without importing it (which loads the language); None where an
    `@entry(...)` is not made of literals and module constants, or the sources are not
    found: then the caller imports the gallery."""
    import importlib.util

    spec = importlib.util.find_spec("ncd.gallery")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    init = ast.parse((folder / "__init__.py").read_text())
    order = [
        a.name
        for node in init.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None
        for a in node.names
    ]
    trees = {m: ast.parse((folder / f"{m}.py").read_text()) for m in order}
    constants = {}
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and isinstance(
                    node.value, ast.Constant | ast.JoinedStr | ast.BinOp
                ):
                    constants[target.id] = node.value

    def text(a):  # a string literal, a name of one, or their sum (`NCD + "; " + UNET`)
        if isinstance(a, ast.Name) and a.id in constants:
            return text(constants[a.id])
        if isinstance(a, ast.BinOp) and isinstance(a.op, ast.Add):
            return text(a.left) + text(a.right)
        return ast.literal_eval(a)

    out = []
    for tree in trees.values():
        for node in tree.body:
            for d in getattr(node, "decorator_list", []):
                if not (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "entry"):
                    continue
                try:
                    name, title, paper = (text(a) for a in d.args)
                except (ValueError, TypeError, SyntaxError, RecursionError):
                    return None
                out.append({"name": name, "title": title, "paper": paper})
    calls = sum(
        isinstance(n, ast.Call) and getattr(n.func, "id", None) == "entry"
        for tree in trees.values()
        for n in ast.walk(tree)
    )
    return out if calls == len(out) else None  # an entry registered some other way


def cmd_list(args) -> int:
    entries = gallery_listing()
    if entries is None:
        from ncd import gallery

        entries = [
            {"name": e.name, "title": e.title, "paper": e.paper} for e in gallery.ENTRIES.values()
        ]
    if args.json:
        print(json.dumps({"entries": entries}, indent=2))
    else:
        w = max(len(e["name"]) for e in entries)
        for e in entries:
            print(f"{e['name']:{w}}  {e['title']}  ({e['paper']})")
    return 0


def demo(out_dir) -> None:
    """Validate and summarise every gallery circuit."""
    from ncd import gallery

    print("== the gallery: validate and summarise")
    for name in gallery.names():
        c = gallery.get(name)
        checked = c.check()
        outs = ", ".join(f"{n} {t}" for n, t in checked.outputs.items())
        print(f"  {name:22} {len(c.boxes):3} boxes  axes {' '.join(checked.symbols())}  -> {outs}")
    sys.stdout.flush()
