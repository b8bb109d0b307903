"""`ncd schema`, `ncd validate`, `ncd show`, `ncd list`: the language on the command line."""

from __future__ import annotations

import json
import sys

from ncd.circuits import io
from ncd.circuits.sizes import show
from ncd.circuits.types import TensorType
from ncd.spec import load_spec, parse_sizes


def register(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of circuit specs")
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
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("list", help="list the gallery")
    p.add_argument("--json", action="store_true", help='{"entries": [{"name", "title", "paper"}]}')
    p.set_defaults(run=cmd_list)


def cmd_schema(args) -> int:
    from ncd.circuits.kinds import KINDS

    if args.kinds:
        for kind, cls in KINDS.items():
            print(f"{kind:18} {(cls.__doc__ or '').strip().splitlines()[0]}")
        return 0
    print(json.dumps(io.json_schema(), indent=2))
    return 0


def cmd_validate(args) -> int:
    c = load_spec(args.spec)
    checked = c.check(parse_sizes(args.sizes))
    outs = ", ".join(f"{n} {t}" for n, t in checked.outputs.items())
    print(f"ok: {c.name}: {len(c.boxes)} boxes -> {outs}")
    return 0


def describe(c, checked) -> dict:
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
            }
            for n in checked.order
        ],
    }


def _sym(name):
    from ncd.circuits.sizes import symbol

    return symbol(name)


def cmd_show(args) -> int:
    c = load_spec(args.spec)
    checked = c.check(parse_sizes(args.sizes))
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
            "  params " + ", ".join(f"{p}[{sig(v)}]" for p, v in b["params"].items())
            if b["params"]
            else ""
        )
        print(f"  {b['name']:{w}}  {b['kind']:16} {ins or '—'} -> {outs}{ps}")
    return 0


def cmd_list(args) -> int:
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
