"""Readable source: prints a lowered circuit (its fx graph) as one standalone Python file.

One class per circuit (subcircuits first), parameter holders in `__init__` named after boxes,
one line per box in `forward` (the box's fx nodes inlined into one expression), einsum
strings in the circuit's axis letters, and a comment per box with its name and axes. The file
imports torch only, and ncd.ops with a plain fallback where a fused kernel is used.

Every identifier comes from `names` (sanitised), every literal is printed with `repr` or built
from numbers, and user text reaches the file only inside comments made safe by `comment`.
"""

from __future__ import annotations

import inspect
import math
import operator

import torch
import torch.nn.functional as F
from torch import fx

from ncd import ops
from ncd.circuits.types import TensorType

from . import runtime
from .lower import Lowered
from .names import Namer, comment, globals_of_generated

_INFIX = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
}
_FUSED = {
    f: f.__name__
    for f in (
        ops.softmax_attention,
        ops.linear_attention,
        ops.simple_gla,
        ops.gla,
        ops.delta_rule,
        ops.gated_delta_rule,
        ops.wtacrs_linear,
        ops.lmul_linear,
    )
}


class _Expr:
    """A piece of source and whether it needs parentheses as an operand."""

    def __init__(self, text: str, atomic: bool = True):
        self.text, self.atomic = text, atomic

    def operand(self) -> str:
        return self.text if self.atomic else f"({self.text})"


def _const(v) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "float('inf')" if v > 0 else "float('-inf')"
        if math.isnan(v):
            return "float('nan')"
        return repr(v)
    if isinstance(v, int | str):
        return repr(v)
    if isinstance(v, torch.dtype):
        return str(v)  # torch.float32
    if v is Ellipsis:
        return "..."
    raise TypeError(f"cannot print constant {type(v).__name__}")


def _shape(t) -> str:
    if isinstance(t, TensorType):
        return "[" + " ".join(t.names) + "]"
    return "(" + ", ".join(f"{n}: {_shape(x)}" for n, x in t.items) + ")"


class _Printer:
    """Prints one Lowered circuit as a class."""

    def __init__(self, lw: Lowered, used: set[str], class_names=()):
        self.lw, self.used, self.class_names = lw, used, class_names
        self.c = lw.checked
        self.exprs: dict[fx.Node, _Expr] = {}

    # -- expressions
    def arg(self, a, operand: bool = False) -> str:
        if isinstance(a, fx.Node):
            e = self.exprs[a]
            return e.operand() if operand else e.text
        if isinstance(a, tuple):
            inner = ", ".join(self.arg(x) for x in a)
            return f"({inner},)" if len(a) == 1 else f"({inner})"
        if isinstance(a, list):
            return "[" + ", ".join(self.arg(x) for x in a) + "]"
        return _const(a)

    def index(self, idx) -> str:
        parts = idx if isinstance(idx, tuple) else (idx,)
        out = []
        for p in parts:
            if isinstance(p, slice):
                s = "" if p.start is None else _const(p.start)
                s += ":" + ("" if p.stop is None else _const(p.stop))
                if p.step is not None:
                    s += ":" + _const(p.step)
                out.append(s)
            elif p is None:
                out.append("None")
            else:
                out.append(self.arg(p))
        return ", ".join(out) if out else "()"

    def call_args(self, node: fx.Node, args) -> str:
        parts = [self.arg(a) for a in args]
        parts += [f"{k}={self.arg(v)}" for k, v in node.kwargs.items()]
        return ", ".join(parts)

    def fn_name(self, target) -> str:
        if target in _FUSED:
            self.used.add(f"fused:{_FUSED[target]}")
            return _FUSED[target]
        name = getattr(target, "__name__", "")
        if getattr(runtime, name, None) is target:
            self.used.add(name)
            return name
        if getattr(F, name, None) is target:
            return f"F.{name}"
        if getattr(torch, name, None) is target:
            return f"torch.{name}"
        for prefix, mod in (("F", F), ("torch", torch)):  # C functions named otherwise
            for attr in dir(mod):
                if not attr.startswith("_") and getattr(mod, attr, None) is target:
                    return f"{prefix}.{attr}"
        raise TypeError(f"cannot print a call of {target!r}")

    def render(self, node: fx.Node) -> _Expr:
        op, t, args = node.op, node.target, node.args
        if op == "get_attr":
            return _Expr(self.path(t))
        if op == "call_module":
            return _Expr(f"{self.path(t)}({self.call_args(node, args)})")
        if op == "call_method":
            recv = self.arg(args[0], operand=True)
            return _Expr(f"{recv}.{t}({self.call_args(node, args[1:])})")
        if t in _INFIX:
            return _Expr(
                f"{self.arg(args[0], True)} {_INFIX[t]} {self.arg(args[1], True)}", atomic=False
            )
        if t is operator.getitem:
            return _Expr(f"{self.arg(args[0], True)}[{self.index(args[1])}]")
        return _Expr(f"{self.fn_name(t)}({self.call_args(node, args)})")

    @staticmethod
    def path(target: str) -> str:
        out = "self"
        for part in target.split("."):
            out += f"[{int(part)}]" if part.isdigit() else f".{part}"
        return out

    # -- the class
    def box_comment(self, box: str) -> str:
        b = self.c.box(box)
        label = f" ({b.label})" if b.label and b.label != box else ""
        ins = ", ".join(_shape(t) for t in self.c.ins[box].values())
        outs = ", ".join(_shape(t) for t in self.c.outs[box].values())
        if b.kind == "linear":
            what = f"linear {' '.join(b.over)} -> {' '.join(b.out)}"
        elif b.kind == "scale":
            what = f"scale by {b.factor}"
        elif b.kind == "rename":
            what = "rename " + ", ".join(f"{a} -> {z}" for a, z in b.mapping.items())
        elif b.kind in ("unary", "binary"):
            what = b.fn
        elif b.acts_on():
            what = f"{b.kind} over {' '.join(dict.fromkeys(b.acts_on()))}"
        else:
            what = b.kind
        return comment(f"{box}{label}: {what}: {ins} -> {outs}", 160)

    def forward(self) -> list[str]:
        lw, c = self.lw, self.c
        g = lw.module.graph
        nodes = list(g.nodes)
        box_of = {n: n.meta.get("ncd_box", "") for n in nodes}
        last_of_box: dict[str, fx.Node] = {}
        for n in nodes:
            if n.op not in ("placeholder", "output"):
                last_of_box[box_of[n]] = n
        # Box identifiers are reserved for the line that computes the box; where one would
        # shadow a global of the file (a box named `conv`), that line's variable gets a suffix.
        glob = globals_of_generated() | set(self.class_names)
        namer = Namer(set(lw.input_idents.values()) | set(lw.box_idents.values()) | glob)
        self.var = {
            b: namer.ident(f"{i}_out") if i in glob else i for b, i in lw.box_idents.items()
        }
        nodeless = [b for b in lw.kept if b not in last_of_box and b not in lw.calls]
        rank = {b: i for i, b in enumerate(lw.kept)}
        lines: list[str] = []
        args = ", ".join(lw.input_idents[i.name] for i in c.circuit.inputs)
        lines.append(f"    def forward(self, {args}):")
        for i in c.circuit.inputs:
            sizes = " ".join(str(c.number(a.size)) for a in c.inputs[i.name].axes)
            lines.append(
                f"        # {lw.input_idents[i.name]}: {_shape(c.inputs[i.name])} = "
                f"({sizes}) {i.dtype}"
            )
        commented: set[str] = set()
        loops = {box: n for box, (_, n, _) in lw.calls.items() if n > 1}
        done_loops: set[str] = set()
        for n in nodes:
            if n.op == "placeholder":
                self.exprs[n] = _Expr(n.target)
                continue
            if n.op == "output":
                continue
            box = box_of[n]
            if box in loops:
                if box not in done_loops:
                    done_loops.add(box)
                    lines += self.loop(box, n, namer)
                continue
            expr = self.render(n)
            users = list(n.users)
            inline = n.op == "get_attr" or (
                len(users) == 1
                and box_of[users[0]] == box
                and users[0].op != "output"
                and box not in loops
            )
            if inline:
                self.exprs[n] = expr
                continue
            while nodeless and rank[nodeless[0]] < rank.get(box, 0):
                lines.append(f"        # {self.box_comment(nodeless.pop(0))} (no computation)")
            last = n is last_of_box[box]
            var = self.var[box] if last else namer.ident(f"{box}_part")
            self.exprs[n] = _Expr(var)
            line = f"        {var} = {expr.text}"
            if n is last_of_box[box] and box not in commented:
                commented.add(box)
                line += f"  # {self.box_comment(box)}"
            lines.append(line)
        lines += [f"        # {self.box_comment(b)} (no computation)" for b in nodeless]
        out = nodes[-1].args[0]
        if isinstance(out, dict):
            items = ", ".join(f"{_const(k)}: {self.arg(v)}" for k, v in out.items())
            lines.append(f"        return {{{items}}}")
        else:
            lines.append(f"        return {self.arg(out)}")
        return lines

    def loop(self, box: str, first: fx.Node, namer: Namer) -> list[str]:
        """A repeated subcircuit: `for layer in self.blocks: x = layer(x)`."""
        ident, n, sub = self.lw.calls[box]
        calls = [m for m in self.lw.module.graph.nodes if m.meta.get("ncd_box") == box]
        var = self.var[box]
        ins = [self.arg(a) for a in first.args]
        lines = []
        if len(ins) == 1 and all(m.op == "call_module" for m in calls):
            lines.append(f"        {var} = {ins[0]}")
            lines.append(f"        for layer in self.{ident}:  # {self.box_comment(box)}, x{n}")
            lines.append(f"            {var} = layer({var})")
            for m in calls:
                self.exprs[m] = _Expr(var)
            return lines
        for m in calls:  # several inputs: unrolled, one line per repetition
            v = namer.ident(f"{box}_step")
            self.exprs[m] = _Expr(v)
            lines.append(f"        {v} = {self.render(m).text}  # {self.box_comment(box)}")
        return lines

    def init(self) -> list[str]:
        lw, c = self.lw, self.c
        has_opaque = any(c.box(h.box).kind == "opaque" for h in lw.holders)
        lines = [f"    def __init__(self{', opaque=None' if has_opaque else ''}):"]
        lines.append("        super().__init__()")
        if has_opaque:
            lines.append("        opaque = opaque or {}  # box name -> the callable it runs")
        for h in lw.holders:
            mod = type(h.module)
            if getattr(runtime, mod.__name__, None) is mod:
                self.used.add(mod.__name__)
            ps = c.params.get(h.box, {})
            desc = ", ".join(f"{p} {_shape(t)}" for p, t in ps.items())
            note = comment(f"{h.box}: {desc}" if desc else h.box, 120)
            lines.append(f"        self.{h.ident} = {h.source}  # {note}")
        return lines

    def source(self) -> list[str]:
        c = self.c.circuit
        head = [f"class {self.lw.class_name}(nn.Module):"]
        for text in (c.title, c.paper):
            if text:
                head.append(f"    # {comment(text, 200)}")
        for line in c.doc.splitlines()[:20]:
            head.append(f"    # {comment(line, 200)}")
        sizes = ", ".join(
            f"{a}={self.c.number(s)}"
            for a, s in _axis_sizes(self.c).items()
            if self.c.number(s) is not None
        )
        head.append(f"    # sizes: {comment(sizes, 400)}")
        head.append("")
        fwd = self.forward()
        return head + self.init() + [""] + fwd


def _axis_sizes(c) -> dict:
    seen = {}
    for t in c.inputs.values():
        for a in getattr(t, "axes", ()):
            seen.setdefault(a.name, a.size)
    for outs in c.outs.values():
        for t in outs.values():
            for a in getattr(t, "axes", ()):
                seen.setdefault(a.name, a.size)
    return seen


def _classes(lw: Lowered, out: dict[str, Lowered]) -> None:
    """Subcircuit classes first, each once (by class name)."""
    for _, _, sub in lw.calls.values():
        _classes(sub, out)
    out.setdefault(lw.class_name, lw)


def _helper_source(names: set[str]) -> list[str]:
    want = set(names)
    for n in list(want):
        want |= set(runtime.DEPS.get(n, []))
    objs = [getattr(runtime, n) for n in want]
    objs.sort(key=lambda o: inspect.getsourcelines(o)[1])
    return [inspect.getsource(o) for o in objs]


def emit(lw: Lowered) -> str:
    """The standalone file for a lowered circuit."""
    used: set[str] = set()
    classes: dict[str, Lowered] = {}
    _classes(lw, classes)
    bodies = []
    for cl in classes.values():
        bodies.append("\n".join(_Printer(cl, used, list(classes)).source()))
    c = lw.checked.circuit
    out = [
        f"# {comment(c.title or c.name, 200)}: generated by `ncd compile` from circuit "
        f"{comment(repr(c.name), 100)}.",
        "# Standalone: needs only torch. Tensors carry the circuit's axes in the order the",
        "# comments give; parameters are named after the circuit's boxes, so a module built",
        "# by ncd.compile loads into this one with load_state_dict.",
        "import math",
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
    ]
    fused = sorted(u.split(":", 1)[1] for u in used if u.startswith("fused:"))
    for name in fused:
        deps = [inspect.getsource(getattr(runtime, d)) for d in runtime.DEPS.get(name, [])]
        src = "\n".join([*deps, inspect.getsource(getattr(runtime, name))])
        out += [
            "try:  # ncd's fused kernel (Triton on CUDA, its reference on CPU)",
            f"    from ncd.ops import {name}",
            "except ImportError:  # ncd is not installed: the same maths in plain PyTorch",
            "\n".join("    " + ln if ln else "" for ln in src.rstrip().splitlines()),
            "",
        ]
    helpers = _helper_source({u for u in used if not u.startswith("fused:")})
    for src in helpers:
        out += ["", src.rstrip(), ""]
    for body in bodies:
        out += ["", body, ""]
    text = "\n".join(out).rstrip() + "\n"
    compile(text, "<ncd generated>", "exec")  # a printer bug shows here, not in the user's run
    return text


__all__ = ["emit"]
