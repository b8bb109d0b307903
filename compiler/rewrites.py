"""Pattern rewrites: circuit → circuit, each fused region replaced by one fused box.

Which boxes fuse is `patterns.find_matches` (the cost model prices the same matches). A
builder registered under a match's kind makes its fused box; `apply_rewrites` matches every
level once (a subcircuit checked on its own) and replaces each match. The fused box takes the
name of the match's last box, so every reference to the region's result still holds; the
other boxes of the match have no other readers and are removed. A fused box is never part of
a match, so one pass leaves nothing to match.

The builders here lower to the kernels of ncd.ops:
- `attention`: [scale]* q, [scale]* k → contract(q, k over K) → [scale | causal mask |
  cast | where | add]* → softmax over S → contract(·, v over S) becomes an `attention` box,
  with the `where`'s keep-mask or the add's bias on its `mask` port; where the value
  product writes its axes in another order than the box does, the box is named after the
  scores and a permute named after the value product follows it;
- `linear_attention`: contract(φk, v over nothing) → scan over T → contract(φq, · over K),
  with or without the normaliser (φq · scan(φk)) it is divided by, becomes a causal
  `linear_attention` box;
- `add_norm`: add(x, h) → layernorm | rmsnorm becomes an `add_norm` box named after the norm,
  with outputs `out` (the norm's, read as `norm.out`) and `sum` (the add's, whose readers
  now read `norm.sum`);
- `short_conv`: a depthwise conv padded on both sides → the slice keeping its first positions
  → [silu] becomes a `short_conv` box named after the conv (it holds the conv's parameters),
  which the readers of the chain's last box now read; where the chain renames or permutes
  axes (as imported chains do), a rename and a permute named after the chain's own follow the
  fused box, and the readers of the chain's last box read the last of them.
"""

from __future__ import annotations

from collections.abc import Callable

from ncd.circuits.circuit import Circuit
from ncd.circuits.kinds import KINDS
from ncd.circuits.validate import Checked, check

from .patterns import Match, find_matches

Builder = Callable[[Checked, Match], object]
REWRITES: dict[str, Builder] = {}
"""Match kind -> the builder of its fused box."""


def register(kind: str):
    """Adds the builder of the fused box for matches of `kind`."""

    def add(fn: Builder) -> Builder:
        REWRITES[kind] = fn
        return fn

    return add


def apply_rewrites(
    circuit: Circuit, sizes: dict[str, int] | None = None, names=None, _depth: int = 0
) -> Circuit:
    """`circuit` with every match of a registered (or of a named) kind replaced by its fused
    box, in subcircuits too."""
    chosen = set(names or REWRITES)
    if circuit.subcircuits and _depth < 16:
        subs = {
            k: apply_rewrites(s, sizes, names, _depth + 1) for k, s in circuit.subcircuits.items()
        }
        circuit = circuit.model_copy(update={"subcircuits": subs})
    checked = check(circuit, sizes if _depth == 0 else None)
    found = [m for m in find_matches(checked) if m.kind in chosen]
    if not found:
        return circuit
    fused = {m.boxes[-1]: REWRITES[m.kind](checked, m) for m in found}
    gone = {b for m in found for b in m.boxes[:-1]}
    boxes = [n for b in circuit.boxes if b.name not in gone for n in _listed(fused.get(b.name, b))]
    moved = {k: v for m in found if m.kind in MOVED for k, v in MOVED[m.kind](m).items()}
    if not moved:
        return circuit.model_copy(update={"boxes": boxes})
    boxes = [b.model_copy(update={"inputs": {p: _moved(r, moved) for p, r in b.inputs.items()}})
             for b in boxes]  # fmt: skip
    outputs = [o.model_copy(update={"source": _moved(o.source, moved)}) for o in circuit.outputs]
    return circuit.model_copy(update={"boxes": boxes, "outputs": outputs})


MOVED: dict[str, Callable[[Match], dict[str, str]]] = {}
"""Match kind -> where the references to a match's boxes go when its fused box has more
outputs than the box it is named after (`{old box: new reference}`)."""


def _listed(box) -> list:
    """A builder's result as a list: its fused box, or the boxes it wrote in its place."""
    return box if isinstance(box, list) else [box]


def _moved(ref: str, moved: dict[str, str]) -> str:
    """`ref` (`box`, `box.port` or an input's name) after the boxes of `moved` went."""
    return moved.get(ref.partition(".")[0], ref)


def _inputs(c: Checked, m: Match) -> dict[str, str]:
    """Role -> the wire reference of the box where that input enters the match."""
    return {role: c.box(box).inputs[port] for role, (box, port) in m.entries.items()}


@register("attention")
def attention_box(c: Checked, m: Match):
    """The attention box, then the match's tail (a permute named after the value product)."""
    last = c.box(m.boxes[-1])
    fused = KINDS["attention"](
        name=m.boxes[0] if m.tail else last.name,
        inputs=_inputs(c, m),
        label=last.label,
        group=last.group,
        query=m.dims["query"],
        key=m.dims["key"],
        head=m.dims["head"],
        value=m.dims["value"],
        causal=m.causal,
        scale=m.scale,
        masked="mask" in m.entries,
    )
    return _with_tail(fused, m.tail, last.group)


@register("linear_attention")
def linear_attention_box(c: Checked, m: Match):
    last = c.box(m.boxes[-1])
    return KINDS["linear_attention"](
        name=last.name,
        inputs=_inputs(c, m),
        label=last.label,
        group=last.group,
        query=m.dims["query"],
        key=m.dims["key"],
        head=m.dims["head"],
        value=m.dims["value"],
        causal=True,
        normalize=m.normalize,
    )


@register("add_norm")
def add_norm_box(c: Checked, m: Match):
    add, norm = (c.box(b) for b in m.boxes)
    return KINDS["add_norm"](
        name=norm.name,
        inputs={"x": add.inputs["a"], "h": add.inputs["b"]},
        label=norm.label,
        group=norm.group,
        norm=norm.kind,
        over=list(norm.over),
        affine=norm.affine,
        eps=norm.eps,
    )


@register("short_conv")
def short_conv_box(c: Checked, m: Match):
    """The short_conv box, then the match's tail (a rename, a permute, named as the match
    says)."""
    conv, last = c.box(m.boxes[0]), c.box(m.boxes[-1])
    fused = KINDS["short_conv"](
        name=conv.name,
        inputs={"x": conv.inputs["x"]},
        label=conv.label,
        group=conv.group,
        axis=m.dims["axis"],
        channel=m.dims["channel"],
        kernel=conv._norm("kernel")[0],
        bias=conv.bias,
        activation="silu" if last.kind == "unary" else "none",
    )
    return _with_tail(fused, m.tail, conv.group)


def _with_tail(fused, tail, group):
    """`fused`, or `fused` and the rename and permute boxes of a match's tail after it."""
    if not tail:
        return fused
    out = [fused]
    for kind, arg, name in tail:
        field = "mapping" if kind == "rename" else "order"
        step = {"name": name, "inputs": {"x": out[-1].name}, "group": group, field: arg}
        out.append(KINDS[kind](**step))
    return out


def _short_conv_moved(m: Match) -> dict[str, str]:
    """Without a tail the readers of the chain's boxes read the fused box (named after the
    conv); with one, the readers of the chain's last box read the tail's last box."""
    if not m.tail:
        return {b: m.boxes[0] for b in m.boxes[1:]}
    last = m.tail[-1][2]
    return {m.boxes[-1]: last} if last != m.boxes[-1] else {}


MOVED["short_conv"] = _short_conv_moved
MOVED["add_norm"] = lambda m: {m.boxes[0]: f"{m.boxes[1]}.sum", m.boxes[1]: f"{m.boxes[1]}.out"}
