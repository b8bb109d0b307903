"""Validation and axis inference: schema → a checked, typed graph that every emitter reads.

All problems are collected and raised together as one `ValidationError`, each with the box, the
port, what was expected and what was found. Order is deterministic: a topological sort that
breaks ties by the order boxes were written in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .circuit import Circuit
from .errors import Problem, ShapeProblem, SizeError, ValidationError
from .graph import Digraph
from .kinds import Call
from .kinds.base import Context
from .limits import (
    MAX_AXES,
    MAX_BOX_AXES,
    MAX_BOX_INPUTS,
    MAX_CALL_DEPTH,
    MAX_ELEMENTS,
    MAX_EXPR_TERMS,
    MAX_REPEAT,
    MAX_SIZE,
    MAX_UNROLLED_BOXES,
    exceeded,
)
from .sizes import Size, Unifier, evaluate, not_finite_at, parse_size, show, terms_bound
from .types import FLOAT_DTYPES, Axis, TensorType, TupleType, Value

# Kinds whose tensor inputs must be floating point (PyTorch refuses integer or boolean input
# to them), by port; None means every port.
FLOAT_INPUTS: dict[str, tuple[str, ...] | None] = {
    "linear": None,
    "softmax": None,
    "layernorm": None,
    "rmsnorm": None,
    "batchnorm": None,
    "groupnorm": None,
    "unifiednorm": None,
    "normalize": None,
    "conv": None,
    "dropout": None,
    "attention": ("q", "k", "v"),
    "linear_attention": ("q", "k", "v"),
}


@dataclass
class Checked:
    """A validated circuit with every wire typed. Emitters read this, never raw JSON."""

    circuit: Circuit
    order: list[str]
    """Box names in evaluation order."""
    sources: dict[str, dict[str, tuple[str, str]]]
    """box -> port -> (source box or '', port or input name)."""
    ins: dict[str, dict[str, Value]]
    outs: dict[str, dict[str, Value]]
    params: dict[str, dict[str, TensorType]]
    inputs: dict[str, Value]
    outputs: dict[str, Value]
    output_sources: dict[str, tuple[str, str]]
    unifier: Unifier
    sizes: dict[str, int]
    calls: dict[str, Checked] = field(default_factory=dict)
    """For each `call` box, its subcircuit checked with the caller's input types."""

    def box(self, name: str):
        return self._boxes[name]

    def __post_init__(self):
        self._boxes = {b.name: b for b in self.circuit.boxes}

    def resolve(self, expr) -> Size:
        """A size with everything learned by unification substituted (`D` -> `H*K`)."""
        return self.unifier.resolve(expr)

    def value(self, src: tuple[str, str]) -> Value:
        box, port = src
        return self.inputs[port] if box == "" else self.outs[box][port]

    def number(self, expr) -> int | float | None:
        """The value of a size under the bound sizes, or None where symbols stay free."""
        return evaluate(self.resolve(expr), self.sizes)

    def symbols(self) -> list[str]:
        """Free size symbols after unification, sorted."""
        free: set[str] = set()
        for t in _all_tensors(self):
            for a in t.axes:
                free |= self.resolve(a.size).names()
        for name, sub in self.calls.items():
            free |= set(sub.symbols())
            free |= self.resolve(parse_size(self.box(name).repeat)).names()
        return sorted(free)

    def axis_sizes(self) -> dict[str, Size]:
        """Every axis name that appears on a wire, with its (first seen) resolved size."""
        out: dict[str, Size] = {}
        for t in _all_tensors(self):
            for a in t.axes:
                out.setdefault(a.name, self.resolve(a.size))
        for sub in self.calls.values():
            for name, size in sub.axis_sizes().items():
                out.setdefault(name, size)
        return out


def _all_tensors(c: Checked):
    def flat(v):
        return [v] if isinstance(v, TensorType) else [t for _, t in v.items]

    for v in c.inputs.values():
        yield from flat(v)
    for outs in c.outs.values():
        for v in outs.values():
            yield from flat(v)
    for ps in c.params.values():
        yield from ps.values()


def check(
    circuit: Circuit, sizes: dict[str, int] | None = None, *, require_bound: bool = False
) -> Checked:
    """Validate `circuit` and infer every wire's type.

    `sizes` binds size symbols to numbers (on top of `circuit.sizes`); with `require_bound`,
    a size left symbolic is an error naming it.
    """
    bindings = {**circuit.sizes, **(sizes or {})}
    problems: list[Problem] = []
    for k, v in bindings.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIZE:
            shown = repr(v) if not isinstance(v, int) or v.bit_length() < 64 else "a larger number"
            problems.append(Problem(f"size {k}", "must be a positive integer", "1 … 2**40", shown))
    if problems:
        raise ValidationError(circuit.name, problems)
    # Inference is symbolic; the binding is checked against what it learned afterwards, so
    # that a checked circuit keeps its formulas and its numbers side by side.
    unifier = Unifier()
    result = _Checker(circuit, unifier, bindings, problems, depth=0).run()
    if result is not None:
        _check_bindings(result, problems)
        _check_sizes(result, problems, require_bound)
        if _check_values(result, problems):  # unrolling reads the repeat counts' numbers
            _check_unrolled(result, problems)
        _check_tied(result, problems)
    if problems or result is None:
        raise ValidationError(circuit.name, problems)
    return result


def _check_tied(c: Checked, problems: list[Problem]) -> None:
    """Each tied `box.param` names a parameter of a box of this circuit, ties it to another
    of the same shape, and the one it reads is not tied itself; in subcircuits as well."""
    for sub in {s.circuit.name: s for s in c.calls.values()}.values():
        _check_tied(sub, problems)
    for follower, owner in c.circuit.tied.items():
        where = f"tied '{follower}'"
        types = []
        for ref in (follower, owner):
            box, _, param = ref.partition(".")
            t = c.params.get(box, {}).get(param)
            if t is None:
                have = sorted(f"{b}.{p}" for b in c.params for p in c.params[b])[:6]
                problems.append(Problem(where, f"no parameter {ref!r} in this circuit",
                                        "box.param of a box here",
                                        ", ".join(have) or "none"))  # fmt: skip
            types.append(t)
        if None in types:
            continue
        if follower == owner or owner in c.circuit.tied:
            problems.append(Problem(where, "a parameter is tied to one that is not tied itself",
                                    "another parameter", owner))  # fmt: skip
            continue
        # sizes by their numbers where bound (the two maps may name one width apart)
        shapes = [tuple(str(c.number(a.size) or show(c.resolve(a.size))) for a in t.axes)
                  for t in types]  # fmt: skip
        if shapes[0] != shapes[1]:
            problems.append(Problem(where, f"the shapes differ from {owner!r}'s",
                                    " x ".join(shapes[1]), " x ".join(shapes[0])))  # fmt: skip


def _check_bindings(c: Checked, problems: list[Problem]) -> None:
    for name, expr in sorted(c.unifier.bound.items()):
        a, b = evaluate(Size.of(name), c.sizes), evaluate(c.resolve(expr), c.sizes)
        if a is not None and b is not None and a != b:
            problems.append(
                Problem(
                    f"size {name}",
                    "the bound sizes disagree with the "
                    f"circuit, where {name} = {show(c.resolve(expr))}",
                    f"{name} = {b}",
                    f"{name} = {a}",
                )
            )


def _check_sizes(c: Checked, problems: list[Problem], require_bound: bool) -> None:
    seen_free: set[str] = set()
    items = [(f"input '{n}'", v) for n, v in c.inputs.items()]
    items += [(f"box '{b}', output '{p}'", v) for b in c.order for p, v in c.outs[b].items()]
    items += [(f"box '{b}', parameter '{p}'", v) for b in c.order for p, v in c.params[b].items()]
    for where, v in items:
        for t in [v] if isinstance(v, TensorType) else [t for _, t in v.items]:
            n_terms = 1
            for a in t.axes:
                n_terms *= terms_bound(c.resolve(a.size))
            if n_terms > MAX_EXPR_TERMS:
                problems.append(
                    Problem(
                        where,
                        "its element count "
                        + exceeded("terms once expanded", "MAX_EXPR_TERMS", n_terms),
                    )  # fmt: skip
                )
                continue
            numel = Size.number(1)
            for a in t.axes:
                s = c.resolve(a.size)
                if s.names() and c.sizes:
                    s = Unifier(c.sizes).resolve(s)
                numel *= s
                if s.is_number:
                    if not (s.is_integer and s >= 1):
                        problems.append(
                            Problem(
                                where,
                                f"axis {a.name} has no valid size",
                                "a positive integer",
                                show(s),
                            )
                        )
                else:
                    seen_free |= s.names()
            if numel.is_number and numel > MAX_ELEMENTS:
                problems.append(
                    Problem(
                        where,
                        "tensor is absurdly large (limit MAX_ELEMENTS)",
                        "at most 2**40 elements",
                        f"{numel} ({t})",
                    )
                )
    if require_bound and seen_free:
        problems.append(
            Problem(
                "sizes",
                "sizes are not bound",
                "a number for each",
                f"unbound {' '.join(sorted(seen_free))}",
                hint="pass e.g. --sizes " + ",".join(f"{s}=…" for s in sorted(seen_free)),
            )
        )


def _check_values(c: Checked, problems: list[Problem], prefix: str = "") -> bool:
    """Each size expression in a box's settings stays a finite real number under the bound
    sizes (no division by zero, no root or logarithm of a negative number), in subcircuits
    as well; False where one does not."""
    ok = True
    for name in c.order:
        box = c.box(name)
        for fname, text in box.size_expressions():
            expr = c.resolve(parse_size(text))
            why = not_finite_at(expr, c.sizes)
            if why is None:
                continue
            ok = False
            used = sorted((parse_size(text).names() | expr.names()) & c.sizes.keys())
            at = ", ".join(f"{k}={c.sizes[k]}" for k in used)
            problems.append(
                Problem(
                    f"{prefix}box '{name}', field '{fname}'",
                    f"{text} has no value at {at}",
                    "a finite real number",
                    why,
                )
            )
    for sub in {s.circuit.name: s for s in c.calls.values()}.values():  # each one once
        ok = _check_values(sub, problems, f"{prefix}in subcircuit '{sub.circuit.name}', ") and ok
    return ok


def _check_unrolled(c: Checked, problems: list[Problem]) -> None:
    n = _unrolled(c)
    if n is not None and n > MAX_UNROLLED_BOXES:
        problems.append(
            Problem(
                f"circuit '{c.circuit.name}'",
                "with its calls expanded it has " + exceeded("boxes", "MAX_UNROLLED_BOXES", n),
                hint="lower the repeat counts",
            )
        )


def _unrolled(c: Checked) -> int | None:
    """Boxes with every call expanded and repeats counted; None where a repeat is unbound."""
    total = 0
    for name in c.order:
        box = c.box(name)
        if box.kind != "call":
            total += 1
            continue
        reps = c.number(parse_size(box.repeat))
        inner = _unrolled(c.calls[name])
        if reps is None or inner is None:
            return None
        total += int(reps) * inner
        if total > MAX_UNROLLED_BOXES:
            return total
    return total


class _Checker(Context):
    def __init__(self, circuit, unifier, bindings, problems, depth, input_types=None, stack=()):
        self.c = circuit
        self.unifier = unifier
        self.bindings = bindings
        self.problems = problems
        self.depth = depth
        self.input_types = input_types
        self.stack = (*stack, circuit.name)
        self.calls: dict[str, Checked] = {}
        self.prefix = "" if depth == 0 else f"in subcircuit '{circuit.name}', "
        self.seen: set[str] = set()
        """Axis names of the wires typed so far (inputs, then each box's outputs)."""

    def saw(self, value: Value) -> None:
        """Notes the axes of a value the circuit now carries (for `known`)."""
        if isinstance(value, TensorType):
            self.seen.update(value.names)
        elif isinstance(value, TupleType):
            for _, item in value.items:
                self.saw(item)

    # -- Context for shape rules
    def known(self, axis: str) -> bool:
        return (axis in self.seen or axis in self.c.axes or axis in self.bindings
                or axis in self.unifier.bound)  # fmt: skip

    def known_axes(self) -> list[str]:
        return sorted({*self.seen, *self.c.axes, *self.bindings, *self.unifier.bound})

    def bound(self, axis: str) -> int | None:
        return self.bindings.get(axis)

    def size(self, axis: str) -> Size:
        if axis in self.c.axes:
            return self.unifier.resolve(parse_size(self.c.axes[axis]))
        return self.unifier.resolve(Size.of(axis))

    def resolve(self, e):
        return self.unifier.resolve(e)

    def unify(self, a, b, port, what):
        if not self.unifier.unify(a, b):
            raise ShapeProblem(
                f"{what} disagrees", port, show(self.resolve(a)), show(self.resolve(b))
            )

    def call(self, box: Call, ins):
        sub = self.c.subcircuits[box.circuit]
        reps = self.resolve(parse_size(box.repeat))
        if reps.is_number and (not reps.is_integer or reps < 1):
            raise ShapeProblem("repeat must be a positive integer", "", "N >= 1", show(reps))
        bound = Unifier(self.bindings).resolve(reps)
        if bound.is_number and bound > MAX_REPEAT:
            raise ShapeProblem(
                "repeat count too large (limit MAX_REPEAT)", "", f"at most {MAX_REPEAT:,}",
                show(bound) if bound < 10**20 else "a larger number",
            )  # fmt: skip
        want = {i.name for i in sub.inputs}
        if set(ins) != want:
            raise ShapeProblem(
                "ports must be the subcircuit's inputs",
                "",
                " ".join(sorted(want)),
                " ".join(sorted(ins)),
            )
        if sub.name in self.stack:
            raise ShapeProblem(
                "subcircuits call each other in a loop",
                "",
                "no recursion",
                " -> ".join((*self.stack, sub.name)),
            )
        if self.depth + 1 > MAX_CALL_DEPTH:
            raise ShapeProblem(
                f"calls nest deeper than {MAX_CALL_DEPTH} (limit MAX_CALL_DEPTH)",
                "",
                f"at most {MAX_CALL_DEPTH} levels",
                " -> ".join((*self.stack[:3], "…", *self.stack[-2:], sub.name)),
            )
        checker = _Checker(
            sub,
            self.unifier,
            self.bindings,
            self.problems,
            self.depth + 1,
            input_types=ins,
            stack=self.stack,
        )
        n_before = len(self.problems)
        result = checker.run()
        if result is None or len(self.problems) > n_before:
            raise ShapeProblem(f"subcircuit '{sub.name}' is invalid (see above)")
        if reps != 1:
            outs, inputs = result.outputs, result.inputs
            if set(outs) != set(inputs) and not (len(outs) == len(inputs) == 1):
                raise ShapeProblem(
                    "a repeated subcircuit maps its inputs to outputs of the same names",
                    "",
                    " ".join(inputs),
                    " ".join(outs),
                )
            pairs = (
                zip(inputs.values(), outs.values())
                if len(outs) == 1
                else ((inputs[k], outs[k]) for k in inputs)
            )
            for i, o in pairs:
                if not _same_type(i, o, self.unifier):
                    raise ShapeProblem(
                        "a repeated subcircuit must keep its input's type", "", str(i), str(o)
                    )
        self.calls[box.name] = result
        return dict(result.outputs)

    # -- the pass
    def where(self, box: str, port: str = "") -> str:
        return f"{self.prefix}box '{box}'" + (f", port '{port}'" if port else "")

    def problem(self, where, message, expected="", found="", hint=""):
        self.problems.append(Problem(where, message, expected, found, hint))

    def run(self) -> Checked | None:
        c = self.c
        start = len(self.problems)
        index: dict[str, int] = {}
        inputs: dict[str, Value] = {}
        for inp in c.inputs:
            if inp.name in index or inp.name in inputs:
                self.problem(f"{self.prefix}input '{inp.name}'", "duplicate name")
            if len(inp.axes) > MAX_AXES:
                self.problem(
                    f"{self.prefix}input '{inp.name}'",
                    "it has " + exceeded("axes", "MAX_AXES", len(inp.axes)),
                )
                continue
            t = TensorType(tuple(Axis(a, self.size(a)) for a in inp.axes), inp.dtype)
            if self.input_types is not None and inp.name in self.input_types:
                given = self.input_types[inp.name]
                if not isinstance(given, TensorType) or given.names != t.names:
                    self.problem(
                        f"{self.prefix}input '{inp.name}'",
                        "caller passes other axes",
                        str(t),
                        str(given),
                    )
                else:
                    for a, b in zip(t.axes, given.axes):
                        if not self.unifier.unify(a.size, b.size):
                            self.problem(
                                f"{self.prefix}input '{inp.name}'",
                                f"size of {a.name} disagrees with the caller",
                                show(self.resolve(a.size)),
                                show(self.resolve(b.size)),
                            )
                    t = TensorType(given.axes, given.dtype)
            inputs[inp.name] = t
            self.saw(t)
        for i, b in enumerate(c.boxes):
            if b.name in index or b.name in inputs:
                self.problem(
                    self.where(b.name), "duplicate name", "a unique name", f"'{b.name}' used twice"
                )
            index.setdefault(b.name, i)
        for name, expr in sorted(c.axes.items()):
            if not self.unifier.unify(Size.of(name), parse_size(expr)):
                self.problem(
                    f"{self.prefix}axis {name}",
                    "size disagrees with the bound sizes",
                    show(self.resolve(parse_size(expr))),
                    show(self.resolve(Size.of(name))),
                )

        graph = Digraph(index)
        sources: dict[str, dict[str, tuple[str, str]]] = {}
        for b in c.boxes:
            if index.get(b.name) is None:
                continue
            want = b.ports()
            if b.kind == "call":
                if b.circuit in self.stack and b.circuit not in c.subcircuits:
                    self.problem(
                        self.where(b.name),
                        "calls a circuit it is part of (recursion)",
                        "a subcircuit that does not call itself, directly or through others",
                        " -> ".join((*self.stack, b.circuit)),
                    )
                    continue
                if b.circuit not in c.subcircuits:
                    self.problem(
                        self.where(b.name),
                        "unknown subcircuit",
                        " or ".join(sorted(c.subcircuits))
                        or "a subcircuit defined in 'subcircuits'",
                        b.circuit,
                    )
                    continue
                want = [i.name for i in c.subcircuits[b.circuit].inputs]
                if len(want) > MAX_BOX_INPUTS:
                    self.problem(
                        self.where(b.name),
                        f"calls subcircuit '{b.circuit}', whose "
                        + exceeded("inputs would be its input ports", "MAX_BOX_INPUTS", len(want)),
                    )
                    continue
            for p in want:
                if p not in b.inputs:
                    self.problem(self.where(b.name, p), "port not connected", "a source", "none")
            for p in b.inputs:
                if p not in want:
                    self.problem(
                        self.where(b.name, p), "no such port", " ".join(want) or "no inputs", p
                    )
            srcs = {}
            for p, ref in b.inputs.items():
                src = self._parse_ref(ref, index, inputs, self.where(b.name, p))
                if src is not None:
                    srcs[p] = src
                    if src[0]:
                        graph.add_edge(src[0], b.name)
            sources[b.name] = srcs
        output_sources = {}
        seen_out = set()
        for o in c.outputs:
            where = f"{self.prefix}output '{o.name}'"
            if o.name in seen_out:
                self.problem(where, "duplicate output name")
            seen_out.add(o.name)
            src = self._parse_ref(o.source, index, inputs, where)
            if src is not None:
                output_sources[o.name] = src
        if not c.outputs:
            self.problem(
                f"{self.prefix}circuit '{c.name}'", "has no outputs", "at least one output", "none"
            )
        cycles = graph.cycles(index)
        for cyc in cycles:
            shown = cyc if len(cyc) <= 12 else [*cyc[:6], f"… ({len(cyc) - 8} more)", *cyc[-2:]]
            self.problem(
                self.where(cyc[0]),
                "wires form a cycle",
                "an acyclic circuit",
                " -> ".join([*shown, cyc[0]]),
            )
        if cycles:
            return None
        order = graph.order(index)

        outs: dict[str, dict[str, Value]] = {}
        ins_of: dict[str, dict[str, Value]] = {}
        params: dict[str, dict[str, TensorType]] = {}
        boxes = {b.name: b for b in c.boxes}
        for name in order:
            b = boxes[name]
            srcs = sources.get(name)
            if srcs is None or len(srcs) != len(b.inputs):
                continue
            ins, ok = {}, True
            for p, (sb, sp) in srcs.items():
                if sb == "":
                    ins[p] = inputs[sp]
                elif sb not in outs:
                    ok = False  # its source already failed and was reported
                else:
                    port = sp or _only_port(outs[sb])
                    if port is None or port not in outs[sb]:
                        self.problem(
                            self.where(name, p),
                            f"box '{sb}' has no such output",
                            " or ".join(f"{sb}.{q}" for q in outs[sb]),
                            f"'{srcs_ref(b, p)}'",
                        )
                        ok = False
                    else:
                        srcs[p] = (sb, port)
                        ins[p] = outs[sb][port]
            if not ok:
                continue
            if not self._dtypes_ok(b, ins):
                continue
            try:
                outs[name] = b.infer(ins, self)
                for v in outs[name].values():
                    self.saw(v)
                params[name] = b.params(ins, self)
                ins_of[name] = ins
                self._axes_ok(name, ins, outs[name])
            except ShapeProblem as e:
                self.problem(self.where(name, e.port), e.message, e.expected, e.found, e.hint)
            except SizeError as e:
                self.problem(self.where(name), str(e))
            except Exception as e:  # noqa: BLE001 - a shape rule must never crash validation
                self.problem(
                    self.where(name),
                    f"cannot infer its output ({type(e).__name__}: {str(e)[:200]})",
                )
        outputs = {}
        for oname, (sb, sp) in output_sources.items():
            if sb == "":
                outputs[oname] = inputs[sp]
            elif sb in outs:
                port = sp or _only_port(outs[sb])
                if port is None or port not in outs[sb]:
                    self.problem(
                        f"{self.prefix}output '{oname}'",
                        f"box '{sb}' has no such output",
                        " or ".join(f"{sb}.{q}" for q in outs[sb]),
                        sp or "(none given)",
                    )
                else:
                    output_sources[oname] = (sb, port)
                    outputs[oname] = outs[sb][port]
        if len(self.problems) > start:
            return None
        return Checked(
            circuit=c,
            order=order,
            sources=sources,
            ins=ins_of,
            outs=outs,
            params=params,
            inputs=inputs,
            outputs=outputs,
            output_sources=output_sources,
            unifier=self.unifier,
            sizes=dict(self.bindings),
            calls=self.calls,
        )

    def _dtypes_ok(self, b, ins) -> bool:
        ports = FLOAT_INPUTS.get(b.kind, ())
        ok = True
        for p, v in ins.items():
            if ports is not None and p not in ports:
                continue
            for t in [v] if isinstance(v, TensorType) else [t for _, t in v.items]:
                if t.dtype not in FLOAT_DTYPES:
                    self.problem(
                        self.where(b.name, p),
                        f"{b.kind} takes floating-point tensors",
                        "a float dtype (add a cast box)",
                        t.dtype,
                    )
                    ok = False
        return ok

    def _axes_ok(self, name: str, ins, outs) -> None:
        names: set[str] = set()
        for port, v in outs.items():
            for t in [v] if isinstance(v, TensorType) else [t for _, t in v.items]:
                if len(t.axes) > MAX_AXES:
                    raise ShapeProblem(
                        "its output has " + exceeded("axes", "MAX_AXES", len(t.axes)), port
                    )
                names |= set(t.names)
        for v in ins.values():
            for t in [v] if isinstance(v, TensorType) else [t for _, t in v.items]:
                names |= set(t.names)
        if len(names) > MAX_BOX_AXES:
            raise ShapeProblem("its wires carry " + exceeded(
                "distinct axes", "MAX_BOX_AXES", len(names)))  # fmt: skip

    def _parse_ref(self, ref, index, inputs, where):
        box, _, port = ref.partition(".")
        if box in inputs and box not in index:
            if port:
                self.problem(where, "an input has no ports", box, ref)
                return None
            return ("", box)
        if box in index:
            return (box, port)
        known = sorted([*inputs, *index])
        self.problem(where, "unknown source", "an input or a box: " + _few(known), repr(ref))
        return None


def srcs_ref(b, port):
    return b.inputs.get(port, "")


def _only_port(outs: dict[str, Value]) -> str | None:
    return next(iter(outs)) if len(outs) == 1 else None


def _few(names, n=8):
    return ", ".join(names[:n]) + (", …" if len(names) > n else "")


def _same_type(a: Value, b: Value, u: Unifier) -> bool:
    if isinstance(a, TupleType) or isinstance(b, TupleType):
        return a == b
    return a.names == b.names and all(
        u.unify(x.size, y.size) for x, y in zip(a.axes, b.axes, strict=True)
    )
