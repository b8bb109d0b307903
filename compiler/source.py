"""Readable source: prints a lowered circuit (its fx graph) as one standalone Python file.

A config dataclass of the circuit's sizes (the bound values as defaults, as nanoGPT's
GPTConfig), then one class per circuit (subcircuits first) whose constructor takes the config:
parameter holders in `__init__` named after boxes (`nn.Linear`, `nn.LayerNorm` where a box is
one), one statement per box in `forward` (the box's fx nodes inlined into one expression) under
a comment with the box's name and axes, einsum strings in the circuit's axis letters, and every
number read off a size written as its expression (`c.K ** -0.5`, `(c.H, c.K)`). Lines fit in
100 characters (the project's ruff settings). The file imports torch only, and ncd.ops with a
plain fallback where a fused kernel is used.

Every identifier comes from `names` (sanitised), every literal is printed with `repr` or built
from numbers, and user text reaches the file only inside comments made safe by `comment`.
"""

from __future__ import annotations

import inspect
import io
import keyword
import math
import operator
import textwrap
import tokenize

import sympy
import torch
import torch.nn.functional as F
from torch import fx

from ncd import ops
from ncd.circuits.sizes import symbol

from . import runtime
from .lower import Call, Lowered, RealSize, Size, listed
from .module import box_summary
from .module import shape_text as _shape
from .names import Namer, class_name, comment, globals_of_generated, identifier, port_ident

WIDTH = 100  # the project's ruff line length

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
        ops.int8_matmul,
        ops.short_conv,
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
    if isinstance(v, str):
        r = repr(v)
        if r[0] == "'" and '"' not in v:  # the double quotes of the project's formatter
            r = '"' + r[1:-1].replace("\\'", "'") + '"'
        return r
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, torch.dtype):
        return str(v)  # torch.float32
    if v is Ellipsis:
        return "..."
    raise TypeError(f"cannot print constant {type(v).__name__}")


_ADD, _MUL, _NEG, _POW, _ATOM = range(5)  # precedences of a written size expression


class _NotWritten(Exception):
    """A size expression the printer does not write (the number is written instead)."""


class _Sizes:
    """Writes numbers read off size expressions as Python over the config (`c.H * c.K`),
    checked to give the very number the graph holds (else the number is written)."""

    def __init__(self, checked):
        self.checked = checked
        self.fields: dict[str, str] = {}  # size symbol -> config field
        self.values: dict[str, int] = {}

    def field(self, name: str) -> str | None:
        if name not in self.fields:
            value = self.checked.number(symbol(name))
            if not isinstance(value, int):
                return None
            ok = name.isidentifier() and not keyword.iskeyword(name) and name[0] != "_"
            base = ident = name if ok else identifier(name, "size")
            i = 2
            while ident in self.fields.values():
                ident, i = f"{base}_{i}", i + 1
            self.fields[name], self.values[name] = ident, value
        return self.fields[name]

    def text(self, v, cfg: str) -> tuple[str, int] | None:
        """`v`'s expression over `cfg` (the config's local name) and its precedence, or
        None where it cannot be written exactly."""
        try:
            text, prec, value = self._expr(sympy.sympify(v.expr), cfg, isinstance(v, Size))
        except (TypeError, ValueError, ArithmeticError, _NotWritten):
            return None
        if isinstance(v, Size):
            return (text, prec) if isinstance(value, int) and value == int(v) else None
        if isinstance(value, int):
            text, prec, value = f"float({text})", _ATOM, float(value)
        return (text, prec) if value == float(v) else None

    def _expr(self, e, cfg: str, whole: bool):
        """(text, precedence, value) of sympy expression `e`; `whole`: its value is an
        integer, so quotients are written `//` (and must be exact)."""
        if e.is_Integer:
            return (str(int(e)), _ATOM if e >= 0 else _NEG, int(e))
        if e.is_Rational:
            if whole:
                raise _NotWritten
            return (f"{int(e.p)} / {int(e.q)}", _MUL, int(e.p) / int(e.q))
        if e.is_Float:
            return (repr(float(e)), _ATOM if e >= 0 else _NEG, float(e))
        if e.is_Symbol:
            learned = self.checked.resolve(symbol(e.name)).sympy
            if learned != e:  # unification made it an expression (D -> H*K)
                return self._expr(learned, cfg, whole)
            name = self.field(e.name)
            if name is None:
                raise _NotWritten
            return (f"{cfg}.{name}", _ATOM, self.values[e.name])
        if e.is_Add:
            terms = sorted(e.args, key=lambda a: (a.is_Number, a.could_extract_minus_sign()))
            parts = [self._expr(a, cfg, whole) for a in terms]
            text, value = _paren(parts[0], _ADD), parts[0][2]
            for t, prec, val in parts[1:]:
                text += f" - {t[1:]}" if prec == _NEG else f" + {_paren((t, prec), _ADD + 1)}"
                value += val
            return (text, _ADD, value)
        if e.is_Mul:
            return self._mul(e, cfg, whole)
        if e.is_Pow:
            base = self._expr(e.base, cfg, whole)
            x = e.exp
            if x.is_Integer and x > 0:
                ex = (str(int(x)), _ATOM, int(x))
            elif x.is_Rational and sympy.Rational(float(x)) == x:  # -1/2: -0.5, exact
                ex = (repr(float(x)), _ATOM if x > 0 else _NEG, float(x))
            else:
                ex = self._expr(x, cfg, False)
            # `**` binds tighter than unary minus on its left, looser on its right
            return (f"{_paren(base, _ATOM)} ** {_paren(ex, _NEG)}", _POW, base[2] ** ex[2])
        if isinstance(e, sympy.floor | sympy.ceiling):
            inner = self._expr(e.args[0], cfg, False)
            fn = math.floor if isinstance(e, sympy.floor) else math.ceil
            return (f"math.{fn.__name__}({inner[0]})", _ATOM, fn(inner[2]))
        raise _NotWritten

    def _mul(self, e, cfg, whole):
        num, den = [], []
        for a in e.args:
            if a.is_Rational and not a.is_Integer:
                num.append(sympy.Integer(a.p))
                den.append(sympy.Integer(a.q))
            elif a.is_Pow and a.exp.is_Integer and a.exp < 0:
                den.append(a.base**-a.exp)
            else:
                num.append(a)
        sign = -1 if num and num[0].is_Number and num[0] < 0 else 1
        if sign < 0:
            num[0] = -num[0]
        num = [a for a in num if a != 1]
        text, value = self._product(num or [sympy.Integer(1)], cfg, whole)
        if den:
            dt, dv = self._product(den, cfg, whole)
            # a size that unification made a product (D -> I*P) is written as that product,
            # which needs parentheses after `/`; a sum has them from _product already
            bare = len(den) == 1 and self._expr(den[0], cfg, whole)[1] != _MUL
            dt = dt if bare else f"({dt})"
            if whole:
                if value % dv:
                    raise _NotWritten
                text, value = f"{text} // {dt}", value // dv
            else:
                text, value = f"{text} / {dt}", value / dv
        if sign < 0:  # -(X // s) is not -X // s: a quotient keeps its parentheses
            return (f"-({text})" if den else f"-{text}", _NEG, -value)
        return (text, _MUL, value)

    def _product(self, factors, cfg, whole):
        parts = [self._expr(a, cfg, whole) for a in factors]
        value = 1
        for p in parts:
            value *= p[2]
        return " * ".join(_paren(p, _MUL) for p in parts), value

    def config_class(self, name: str, order) -> list[str]:
        names = [n for n in order if n in self.fields]
        names += sorted(n for n in self.fields if n not in names)
        lines = ["@dataclass", f"class {name}:"]
        lines.append(
            '    """The sizes of the circuit (defaults: the values it was compiled with)."""'
        )
        lines.append("")
        lines += [f"    {self.fields[n]}: int = {self.values[n]}" for n in names]
        return lines


def _paren(part, prec) -> str:
    return part[0] if part[1] >= prec else f"({part[0]})"


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """A statement split at its brackets so that each line fits `width`, as ruff's formatter
    splits: the last bracket whose head and closing line fit, its items on one line or one
    per line."""
    if len(line) <= width:
        return [line]
    toks = _tokens(line)
    if toks is None:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    pairs, stack = [], []
    for kind, text, start, end in toks:
        if kind == tokenize.OP and text in "([{":
            stack.append(end)
        elif kind == tokenize.OP and text in ")]}":
            open_end = stack.pop()
            if not stack:
                pairs.append((open_end, start))  # the body lies between these offsets
    fits = [
        p
        for p in reversed(pairs)
        if len(line[: p[0]]) <= width and len(indent) + len(line[p[1] :]) <= width
    ]
    if fits:
        open_end, close = fits[0]
    elif pairs:
        open_end, close = max(pairs, key=lambda p: p[1] - p[0])
    else:
        return [line]
    head, body, tail = line[:open_end], line[open_end:close], line[close:]
    items = _split_items(body)
    if not items:
        return [line]
    inner = indent + "    "
    one = inner + ", ".join(items)
    if len(one) <= width and not body.rstrip().endswith(","):
        middle = [one]
    else:
        middle = [ln for it in items for ln in wrap(f"{inner}{it},", width)]
    return [head, *middle, *wrap(indent + tail, width)]


def _tokens(text: str):
    """(type, string, start, end) of each token of a one-line statement, offsets into text;
    None where it does not tokenise on its own (an unclosed bracket)."""
    off = len(text) - len(text.lstrip())
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text.lstrip() + "\n").readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    skip = (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT)
    return [
        (t.type, t.string, off + t.start[1], off + t.end[1]) for t in toks if t.type not in skip
    ]


def _split_items(body: str) -> list[str] | None:
    """The comma-separated items of a bracket's body (commas in brackets or strings stay)."""
    toks = _tokens(body)
    if toks is None:
        return None
    items, depth, start = [], 0, 0
    for kind, text, a, b in toks:
        if kind == tokenize.OP and text in "([{":
            depth += 1
        elif kind == tokenize.OP and text in ")]}":
            depth -= 1
        elif kind == tokenize.OP and text == "," and depth == 0:
            items.append(body[start:a].strip())
            start = b
    if body[start:].strip():
        items.append(body[start:].strip())
    return items


def _docstring(paragraphs: list[str], indent: str, width: int = WIDTH) -> list[str]:
    """A docstring of wrapped paragraphs (one line each, printable: `comment`), quotes and
    backslashes escaped, so that `help()` of a generated file shows them."""
    lines: list[str] = []
    for text in paragraphs:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
        lines += textwrap.wrap(text, width - len(indent) - 3, break_on_hyphens=False) or [""]
    if not lines:
        return []
    lines[0] = '"""' + lines[0]
    lines[-1] += '"""'
    return [f"{indent}{ln}" if ln else "" for ln in lines]


def _comment_lines(text: str, indent: str, width: int = WIDTH) -> list[str]:
    """A comment wrapped into lines of at most `width` characters."""
    lines = textwrap.wrap(text, width - len(indent) - 2, break_on_hyphens=False)
    return [f"{indent}# {ln}" for ln in lines] or [f"{indent}#"]


def _params_comment(b, ps) -> str:
    """`weight [F D], bias [F]`: each parameter's axes; a linear map's merged ones in
    parentheses, as its nn.Linear holds them (`weight [(H K) D]`)."""

    def group(axes) -> str:
        return axes[0] if len(axes) == 1 else "(" + " ".join(axes) + ")"

    parts = []
    for p, t in ps.items():
        if b.kind == "linear":
            groups = (b.out, b.over) if p == "weight" else (b.out,)
            shape = "[" + " ".join(map(group, groups)) + "]"
        else:
            shape = _shape(t)
        parts.append(f"{p} {shape}")
    return ", ".join(parts)


class _Printer:
    """Prints one Lowered circuit as a class whose constructor takes the file's config."""

    def __init__(self, lw: Lowered, used: set[str], class_names, sizes: _Sizes, config: str):
        self.lw, self.used, self.class_names = lw, used, class_names
        self.sizes, self.sizes_class = sizes, config
        self.c = lw.checked
        self.exprs: dict[fx.Node, _Expr] = {}
        self.cfg = "c"  # the config's local name in the method being printed
        self.cfg_used = False
        holders = {h.ident for h in lw.holders} | set(lw.box_idents.values())
        self.attr = Namer(holders).ident("config")  # self.config, unless a box is so named
        self.checks_inputs = False  # the file's main class checks its inputs on each call
        self.held: dict[str, str] = {}  # state key -> "state" or "constant" (`held_args`)

    # -- expressions
    def const(self, v, operand: bool = False) -> str:
        if isinstance(v, Size | RealSize):
            written = self.sizes.text(v, self.cfg)
            if written is not None:
                self.cfg_used = True
                return _paren(written, _POW if operand else _ADD)
        return _const(v)

    def arg(self, a, operand: bool = False) -> str:
        if isinstance(a, fx.Node):
            e = self.exprs[a]
            return e.operand() if operand else e.text
        if isinstance(a, tuple):
            inner = ", ".join(self.arg(x) for x in a)
            return f"({inner},)" if len(a) == 1 else f"({inner})"
        if isinstance(a, list):
            return "[" + ", ".join(self.arg(x) for x in a) + "]"
        if callable(a) and a in _FUSED:  # a fused kernel passed to a helper
            return self.fn_name(a)
        return self.const(a, operand)

    def index(self, idx) -> str:
        parts = idx if isinstance(idx, tuple) else (idx,)
        out = []
        for p in parts:
            if isinstance(p, slice):
                s = "" if p.start is None else self.const(p.start, True)
                s += ":" + ("" if p.stop is None else self.const(p.stop, True))
                if p.step is not None:
                    s += ":" + self.const(p.step, True)
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

    def linear_layer(self, node: fx.Node) -> str | None:
        """The holder of an `F.linear(x, h.weight, h.bias)` whose holder is an nn.Linear in
        the file: the call is written `self.h(x)`."""
        args = list(node.args) + [None] * (3 - len(node.args))
        w, b = args[1], args[2]
        if node.kwargs or not isinstance(w, fx.Node) or w.op != "get_attr":
            return None
        ident, _, p = w.target.rpartition(".")
        h = next((h for h in self.lw.holders if h.ident == ident), None)
        if p != "weight" or h is None or not isinstance(h.source, Call):
            return None
        if h.source.fn != "nn.Linear":
            return None
        if b is None and h.source.kwargs.get("bias", True) is False:
            return ident
        if isinstance(b, fx.Node) and b.op == "get_attr" and b.target == f"{ident}.bias":
            return ident
        return None

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
        if t is F.linear and (layer := self.linear_layer(node)):
            return _Expr(f"{self.path(layer)}({self.arg(args[0])})")
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
        return comment(f"{box}{label}: {box_summary(b)}: {ins} -> {outs}", 400)

    def statement(self, lines: list[str], box: str | None, code: str, note: str = "") -> None:
        """A box's comment (wrapped) and its statement (split to fit)."""
        if box is not None:
            lines += _comment_lines(self.box_comment(box) + note, "        ")
        lines += wrap(code)

    def forward(self) -> list[str]:
        lw, c = self.lw, self.c
        g = lw.module.graph
        nodes = list(g.nodes)
        box_of = {n: n.meta.get("ncd_box", "") for n in nodes}
        # The box's own name goes to its last line, or, where that is one of several results
        # (named by their ports: `top2_values`, `top2_indices`), to the last line before them.
        last_of_box: dict[str, fx.Node] = {}
        named_box: dict[str, fx.Node] = {}
        for n in nodes:
            if n.op not in ("placeholder", "output"):
                last_of_box[box_of[n]] = n
                if "ncd_port" not in n.meta:
                    named_box[box_of[n]] = n
        # Box identifiers are reserved for the line that computes the box; where one would
        # shadow a global of the file (a box named `conv`), that line's variable gets a suffix.
        glob = globals_of_generated() | set(self.class_names) | {self.sizes_class}
        namer = Namer(set(lw.input_idents.values()) | set(lw.box_idents.values()) | glob)
        self.var = {
            b: namer.ident(f"{i}_out") if i in glob else i for b, i in lw.box_idents.items()
        }
        self.cfg, self.cfg_used = namer.ident("c"), False
        nodeless = [b for b in lw.kept if b not in last_of_box and b not in lw.calls]
        rank = {b: i for i, b in enumerate(lw.kept)}
        lines: list[str] = []
        args = ", ".join(lw.input_idents[i.name] for i in c.circuit.inputs)
        head = wrap(f"    def forward(self, {args}):")
        for i in c.circuit.inputs:
            sizes = " ".join(str(c.number(a.size)) for a in c.inputs[i.name].axes)
            head += _comment_lines(
                f"{lw.input_idents[i.name]}: {_shape(c.inputs[i.name])} = ({sizes}) {i.dtype}",
                "        ",
            )
        loops = {box: n for box, (_, n, _) in lw.calls.items() if listed(n)}
        done_loops: set[str] = set()
        commented: set[str] = set()
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
            if _unread(n):
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
                lines += _comment_lines(
                    f"{self.box_comment(nodeless.pop(0))} (no computation)", "        "
                )
            if "ncd_port" in n.meta:
                var = namer.ident(port_ident(box, n.meta["ncd_port"]))
            elif n is named_box.get(box):
                var = self.var[box]
            else:
                var = namer.ident(f"{box}_part")
            self.exprs[n] = _Expr(var)
            first = box not in commented
            commented.add(box)
            self.statement(lines, box if first else None, f"        {var} = {expr.text}")
        for b in nodeless:
            lines += _comment_lines(f"{self.box_comment(b)} (no computation)", "        ")
        out = nodes[-1].args[0]
        if isinstance(out, dict):
            items = ", ".join(f"{_const(k)}: {self.arg(v)}" for k, v in out.items())
            lines += wrap(f"        return {{{items}}}")
        else:
            lines += wrap(f"        return {self.arg(out)}")
        if self.cfg_used:
            head.append(f"        {self.cfg} = self.{self.attr}")
        return head + lines

    def loop(self, box: str, first: fx.Node, namer: Namer) -> list[str]:
        """A repeated subcircuit: `for layer in self.blocks: x = layer(x)`."""
        ident, n, sub = self.lw.calls[box]
        calls = [m for m in self.lw.module.graph.nodes if m.meta.get("ncd_box") == box]
        var = self.var[box]
        ins = [self.arg(a) for a in first.args]
        lines: list[str] = []
        if len(ins) == 1 and all(m.op == "call_module" for m in calls):
            self.statement(lines, box, f"        {var} = {ins[0]}", f", x{n}")
            lines.append(f"        for layer in self.{ident}:")
            lines.append(f"            {var} = layer({var})")
            for m in calls:
                self.exprs[m] = _Expr(var)
            return lines
        for i, m in enumerate(calls):  # several inputs: unrolled, one line per repetition
            if _unread(m):
                continue
            v = namer.ident(f"{box}_step")
            self.exprs[m] = _Expr(v)
            self.statement(lines, box if i == 0 else None, f"        {v} = {self.render(m).text}")
        return lines

    def holder(self, h) -> str:
        """The constructor of a parameter holder, sizes written from the config."""
        if h.box in self.lw.calls:
            ident, n, sub = self.lw.calls[h.box]
            self.cfg_used = True
            if not listed(n):
                return f"{sub.class_name}({self.cfg})"
            return f"nn.ModuleList([{sub.class_name}({self.cfg}) for _ in range({self.const(n)})])"
        src = h.source
        if isinstance(src, Call):
            if getattr(runtime, src.fn, None) is not None:
                self.used.add(src.fn)
            parts = [self.arg(a) for a in src.args]
            parts += [f"{k}={self.arg(v)}" for k, v in {**src.kwargs, **self.held_args(h)}.items()]
            return f"{src.fn}({', '.join(parts)})"
        mod = type(h.module)
        if getattr(runtime, mod.__name__, None) is mod:
            self.used.add(mod.__name__)
        return src

    def held_args(self, h) -> dict:
        """A holder of a tensor the imported model held (`self.held`: state key -> "state" or
        "constant"), as compile makes it: a buffer (`Param`'s `held`), optional when loading
        where a constant; a `Constant` that is the model's state, required."""
        fn = h.source.fn
        kind = self.held.get(f"{h.ident}.{'value' if fn == 'Constant' else 'weight'}")
        if fn == "Param" and kind is not None:
            return {"held": kind}
        if fn == "Constant" and kind == "state":
            return {"state": True}
        return {}

    def init(self) -> list[str]:
        lw, c = self.lw, self.c
        has_opaque = any(c.box(h.box).kind == "opaque" for h in lw.holders)
        self.cfg, self.cfg_used = "c", False
        body = []
        for h in lw.holders:
            desc = _params_comment(c.box(h.box), c.params.get(h.box, {}))
            body += _comment_lines(comment(f"{h.box}: {desc}" if desc else h.box, 400),
                                   "        ")  # fmt: skip
            body += wrap(f"        self.{h.ident} = {self.holder(h)}")
        idents = {h.box: h.ident for h in lw.holders}
        for follower, owner in c.circuit.tied.items():  # one tensor for both (`tied`)
            (fb, _, fp), (ob, _, op) = follower.partition("."), owner.partition(".")
            body.append(f"        self.{idents[fb]}.{fp} = self.{idents[ob]}.{op}  # tied")
        check = self.input_check() if self.checks_inputs else []
        cls = self.sizes_class
        sig = f"self, config: {cls} | None = None" + (", opaque=None" if has_opaque else "")
        lines = wrap(f"    def __init__({sig}):")
        lines.append("        super().__init__()")
        local = f" = {self.cfg}" if self.cfg_used else ""
        lines.append(f"        self.{self.attr}{local} = config or {cls}()")
        if has_opaque:
            lines.append("        opaque = opaque or {}  # box name -> the callable it runs")
        return lines + body + check

    def input_check(self) -> list[str]:
        """A forward pre-hook checking each call's inputs as `ncd.compile`'s module does: the
        rank, the sizes the module is specialised to (written from the config), that a free
        size (a batch) agrees across inputs, and the dtype class."""
        self.used.add("CheckInputs")
        items = []
        for inp_name, dtype, input_axes in self.lw.input_axes():
            axes = []
            for axis, size, n in input_axes:
                text = _const(str(size)) if n is None else self.const(Size(n, size))
                axes.append(f"{_const(axis)}: {text}")
            name = self.lw.input_idents[inp_name]
            items.append(f"{_const(name)}: ({_const(dtype)}, {{{', '.join(axes)}}})")
        lines = _comment_lines(
            "each call first checks its inputs: dtype, and axis -> size (a number) or a free "
            "size that must agree across inputs (a name)",
            "        ",
        )
        return lines + wrap(
            f"        self.register_forward_pre_hook(CheckInputs({{{', '.join(items)}}}), "
            "with_kwargs=True)"
        )

    def source(self) -> list[str]:
        c = self.c.circuit
        head = [f"class {self.lw.class_name}(nn.Module):"]
        texts = [comment(t, 200) for t in (c.title, c.paper) if t]
        texts += [comment(line, 200) for line in c.doc.splitlines()[:20]]
        head += _docstring(texts, "    ")
        if len(head) > 1:
            head.append("")
        fwd = self.forward()
        return head + self.init() + [""] + fwd + (self.extras() if self.checks_inputs else [])

    def extras(self) -> list[str]:
        """The file's main class prints its sizes and refuses TorchScript by name (scripting
        would fail on the input check's hook, with an error that does not say why)."""
        return [
            "",
            "    def extra_repr(self):",
            f"        return repr(self.{self.attr})",
            "",
            "    def __prepare_scriptable__(self):  # torch.jit.script calls this first",
            "        raise NotImplementedError(",
            '            "TorchScript cannot compile this module (its input check is Python); "',
            '            "use torch.export.export(model, args) or torch.compile(model)"',
            "        )",
        ]


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


def _unread(n: fx.Node) -> bool:
    """An output of a box that nothing reads (an item of a tuple): not written."""
    return not n.users and n.op == "call_function" and n.target is operator.getitem


def _classes(lw: Lowered, out: dict[str, Lowered]) -> None:
    """Subcircuit classes first, each once (by class name)."""
    for _, _, sub in lw.calls.values():
        _classes(sub, out)
    out.setdefault(lw.class_name, lw)


def _needs(name: str) -> list[str]:
    """The helpers `name` calls, and those they call, in DEPS' order."""
    out: list[str] = []
    for d in runtime.DEPS.get(name, []):
        for n in [*_needs(d), d]:
            if n not in out:
                out.append(n)
    return out


def _plan(used: set[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Where each helper of the file is defined, each once: the fused kernels, each imported
    from ncd.ops with a fallback that defines it and what only it needs, a kernel another
    kernel calls first; and the plain helpers at the top level, those a plain helper calls
    and those several fallbacks call among them. A name defined in two places (`traced` in
    short_conv's fallback and again for check_offsets at the top level) is a redefinition
    that ruff's F811 does not report, since the first definition was read before the second."""
    fused = sorted(u.split(":", 1)[1] for u in used if u.startswith("fused:"))
    top = {n for u in used if not u.startswith("fused:") for n in [u, *_needs(u)]}
    top -= set(fused)  # a helper's kernel (gla for packed_window_attention) is imported
    callers: dict[str, int] = {}
    for name in fused:
        for d in _needs(name):
            if d not in fused:
                callers[d] = callers.get(d, 0) + 1
    kernels = set(_FUSED.values())
    # a plain helper that several fallbacks call is defined once, where all of them see it
    top |= {d for d, k in callers.items() if k > 1 and d not in kernels}
    order: list[str] = []  # a kernel that another fused kernel's fallback calls comes first
    for name in fused:
        for n in [*_needs(name), name]:
            if n in fused and n not in order:
                order.append(n)
    blocks, placed = [], set(top) | set(fused)
    for name in order:
        own = [d for d in _needs(name) if d not in placed]
        placed |= set(own)
        blocks.append((name, own))
    return blocks, sorted(top, key=lambda n: inspect.getsourcelines(getattr(runtime, n))[1])


def _modules_read(text: str) -> set[str]:
    """The names a piece of code reads an attribute of (`F` in `F.gelu`; comments, strings
    and attributes aside)."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)]
    return {
        t.string
        for i, t in enumerate(toks[:-1])
        if t.type == tokenize.NAME
        and toks[i + 1].string == "."
        and not (i and toks[i - 1].string == ".")
    }


def emit(lw: Lowered, buffers=(), constants=()) -> str:
    """The standalone file for a lowered circuit; `buffers` and `constants`: the state keys
    that an imported model held as buffers, and of those its constants (compiler/attached.py),
    whose holders are made as compile makes them."""
    held = {k: "constant" if k in constants else "state" for k in buffers}
    used: set[str] = set()
    classes: dict[str, Lowered] = {}
    _classes(lw, classes)
    taken = set(classes) | globals_of_generated() | {"dataclass"}
    config = Namer(taken).ident(class_name(f"{lw.class_name}Config"))
    sizes = _Sizes(lw.checked)
    bodies = []
    for cl in classes.values():
        printer = _Printer(cl, used, [*classes, config], sizes, config)
        printer.checks_inputs = cl is lw
        printer.held = held if cl is lw else {}  # (imported circuits are one class)
        bodies.append("\n".join(printer.source()))
    c = lw.checked.circuit
    head = _docstring([
        f"{comment(c.title or c.name, 200)}: generated by `ncd compile` from circuit "
        f"{comment(repr(c.name), 100)}.",
        "Standalone: needs only torch. Tensors carry the circuit's axes in the order the "
        "comments give; parameters are named after the circuit's boxes, so a module built "
        "by ncd.compile loads into this one with load_state_dict.",
    ], "") + [""]  # fmt: skip
    out = []
    blocks, helpers = _plan(used)
    for name, deps in blocks:
        src = "\n".join(inspect.getsource(getattr(runtime, d)) for d in [*deps, name])
        out += [
            "try:  # ncd's fused kernel (Triton on CUDA, its reference on CPU)",
            f"    from ncd.ops import {name}",
            "except ImportError:  # ncd is not installed: the same maths in plain PyTorch",
            "\n".join("    " + ln if ln else "" for ln in src.rstrip().splitlines()),
            "",
        ]
    for name in helpers:
        out += ["", inspect.getsource(getattr(runtime, name)).rstrip(), ""]
    out += ["", "\n".join(sizes.config_class(config, _axis_sizes(lw.checked))), ""]
    for body in bodies:
        out += ["", body, ""]
    code = "\n".join(out).rstrip() + "\n"
    read = _modules_read(code)
    std = ["import math"] if "math" in read else []
    std.append("from dataclasses import dataclass")
    third = ["import torch"] if "torch" in read else []
    third += ["import torch.nn.functional as F"] if "F" in read else []
    third.append("from torch import nn")
    imports = [*std, "", *third, ""]
    code = code.lstrip("\n")
    gap = [] if code.startswith("try:") else [""]  # a guarded import joins the import block
    text = "\n".join([*head, *imports, *gap, code])
    compile(text, "<ncd generated>", "exec")  # a printer bug shows here, not in the user's run
    return text


__all__ = ["emit"]
