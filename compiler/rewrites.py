"""Pattern rewrites: circuit → circuit, each fused region replaced by one fused box.

Which boxes fuse is `patterns.find_matches` (the cost model prices the same matches). A
builder registered under a match's kind makes its fused box; `apply_rewrites` matches every
level once (a subcircuit checked on its own) and replaces each match. The fused box takes the
name of the match's last box, so every reference to the region's result still holds; the
other boxes of the match have no other readers and are removed. A fused box is never part of
a match, so one pass leaves nothing to match.

The builders here lower to the kernels of ncd.ops:
- `attention`: contract(q, k over K) → [scale | causal mask | cast]* → softmax over S →
  contract(·, v over S) becomes an `attention` box;
- `linear_attention`: contract(φk, v over nothing) → scan over T → contract(φq, · over K),
  with or without the normaliser (φq · scan(φk)) it is divided by, becomes a causal
  `linear_attention` box.
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
    boxes = [fused.get(b.name, b) for b in circuit.boxes if b.name not in gone]
    return circuit.model_copy(update={"boxes": boxes})


def _inputs(c: Checked, m: Match) -> dict[str, str]:
    """Role -> the wire reference of the box where that input enters the match."""
    return {role: c.box(box).inputs[port] for role, (box, port) in m.entries.items()}


@register("attention")
def attention_box(c: Checked, m: Match):
    last = c.box(m.boxes[-1])
    return KINDS["attention"](
        name=last.name,
        inputs=_inputs(c, m),
        label=last.label,
        group=last.group,
        query=m.dims["query"],
        key=m.dims["key"],
        head=m.dims["head"],
        value=m.dims["value"],
        causal=m.causal,
        scale=m.scale,
    )


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
