"""Pattern rewrites: circuit → circuit, replacing a recognisable chain of boxes by one fused box.

A rewrite is a function `(circuit, checked) -> circuit | None` registered under a name; it
returns the circuit with one match replaced, or None. `apply_rewrites` runs the registry to a
fixed point, in subcircuits too. The fused box takes the name of the chain's last box, so
every reference to the chain's result still holds; the chain's other boxes must have no other
users (they are removed).

The ones here lower chains drawn from primitives to the kernels of ncd.ops:
- `softmax_attention`: contract(q, k over K) → scale → [causal mask] → softmax over S →
  contract(·, v over S) becomes an `attention` box;
- `linear_attention`: contract(φk, v over nothing) → scan over T → contract(φq, · over K),
  with or without the normaliser (φq · scan(φk)) it is divided by, becomes a causal
  `linear_attention` box.
"""

from __future__ import annotations

from collections.abc import Callable

from ncd.circuits.circuit import Circuit
from ncd.circuits.kinds import KINDS
from ncd.circuits.sizes import same
from ncd.circuits.validate import Checked, check

Rewrite = Callable[[Circuit, Checked], Circuit | None]
REWRITES: dict[str, Rewrite] = {}


def register(name: str):
    """Adds a rewrite to the registry (the op library's integration fills it)."""

    def add(fn: Rewrite) -> Rewrite:
        REWRITES[name] = fn
        return fn

    return add


def apply_rewrites(
    circuit: Circuit, sizes: dict[str, int] | None = None, names=None, _depth: int = 0
) -> Circuit:
    """`circuit` with every registered (or every named) rewrite applied until none matches."""
    chosen = [REWRITES[n] for n in (names or REWRITES)]
    if circuit.subcircuits and _depth < 16:
        subs = {
            k: apply_rewrites(s, sizes, names, _depth + 1) for k, s in circuit.subcircuits.items()
        }
        circuit = circuit.model_copy(update={"subcircuits": subs})
    for _ in range(len(circuit.boxes) + 1):
        checked = check(circuit, sizes if _depth == 0 else None)
        for fn in chosen:
            new = fn(circuit, checked)
            if new is not None:
                circuit = new
                break
        else:
            return circuit
    return circuit


# ---------------------------------------------------------------- helpers
class _Uses:
    """Who reads each box: consumers (box, port) and circuit outputs."""

    def __init__(self, c: Checked):
        self.c = c
        self.by: dict[str, list[tuple[str, str]]] = {}
        for box, srcs in c.sources.items():
            for port, (sb, _) in srcs.items():
                if sb:
                    self.by.setdefault(sb, []).append((box, port))
        for oname, (sb, _) in c.output_sources.items():
            if sb:
                self.by.setdefault(sb, []).append(("", oname))

    def only(self, box: str, reader: str) -> bool:
        """`box` is read by `reader` alone (once)."""
        return [b for b, _ in self.by.get(box, [])] == [reader]


def _src(c: Checked, box: str, port: str) -> str:
    """The source box of a port ('' for a circuit input)."""
    return c.sources[box][port][0]


def _kind(c: Checked, box: str, kind: str):
    return box and c.box(box).kind == kind and c.box(box) or None


def _replace(circuit: Circuit, remove: set[str], new_box) -> Circuit:
    kept = [b for b in circuit.boxes if b.name not in remove]
    boxes = [new_box if b.name == new_box.name else b for b in kept]
    return circuit.model_copy(update={"boxes": boxes})


def _names(c: Checked, box: str, port: str) -> tuple[str, ...]:
    return c.ins[box][port].names


# ---------------------------------------------------------------- softmax attention
@register("softmax_attention")
def softmax_attention(circuit: Circuit, c: Checked) -> Circuit | None:
    uses = _Uses(c)
    for mix_name in c.order:
        m = _match_attention(c, uses, mix_name)
        if m is not None:
            remove, box = m
            return _replace(circuit, remove, box)
    return None


def _match_attention(c: Checked, uses: _Uses, mix_name: str):
    mix = c.box(mix_name)
    if mix.kind != "contract" or len(mix.operands) != 2 or len(mix.over) != 1:
        return None
    S = mix.over[0]
    for p_sm, p_v in (mix.operands, mix.operands[::-1]):
        sm = _kind(c, _src(c, mix_name, p_sm), "softmax")
        if not sm or sm.over != S or sm.variant != "softmax" or not uses.only(sm.name, mix_name):
            continue
        chain = [sm.name]
        prev = _src(c, sm.name, "x")
        mask = _kind(c, prev, "mask")
        if mask:
            ok = mask.pattern == "causal" and mask.fill == "-inf" and mask.key == S
            if not ok or not uses.only(mask.name, chain[-1]):
                continue
            chain.append(mask.name)
            prev = _src(c, mask.name, "x")
        sc = _kind(c, prev, "scale")
        factor = "1"
        if sc:
            if not uses.only(sc.name, chain[-1]):
                continue
            chain.append(sc.name)
            factor = sc.factor
            prev = _src(c, sc.name, "x")
        scores = _kind(c, prev, "contract")
        if not scores or len(scores.operands) != 2 or len(scores.over) != 1:
            continue
        if not uses.only(scores.name, chain[-1]):
            continue
        chain.append(scores.name)
        K = scores.over[0]
        box = _attention_box(c, mix, scores, p_v, S, K, mask, factor)
        if box is not None:
            return set(chain), box
    return None


def _attention_box(c, mix, scores, p_v, S, K, mask, factor):
    for p_q, p_k in (scores.operands, scores.operands[::-1]):
        q, k = _names(c, scores.name, p_q), _names(c, scores.name, p_k)
        v = _names(c, mix.name, p_v)
        if S not in k or S in q or K not in q or K not in k or S not in v or K in v:
            continue
        T = [a for a in q if a not in k and a != K]
        V = [a for a in v if a not in q and a != S]
        if len(T) != 1 or len(V) != 1:
            continue
        T, V = T[0], V[0]
        if mask and mask.query != T:
            continue
        bq = [a for a in q if a not in (T, K)]
        if bq != [a for a in k if a not in (S, K)] or bq != [a for a in v if a not in (S, V)]:
            continue
        want = tuple(V if a == K else a for a in q)
        if c.outs[mix.name]["out"].names != want:
            continue
        if mask:
            tq, ts = c.ins[scores.name][p_q].axis(T), c.ins[scores.name][p_k].axis(S)
            nq, ns = c.number(tq.size), c.number(ts.size)
            if not (same(c.resolve(tq.size), c.resolve(ts.size)) or (nq is not None and nq == ns)):
                continue  # the fused kernel's causal mask is square
        return KINDS["attention"](
            name=mix.name,
            inputs={
                "q": scores.inputs[p_q],
                "k": scores.inputs[p_k],
                "v": mix.inputs[p_v],
            },
            label=mix.label,
            group=mix.group,
            query=T,
            key=S,
            head=K,
            value=V,
            causal=bool(mask),
            scale=factor,
        )
    return None


# ---------------------------------------------------------------- linear attention
@register("linear_attention")
def linear_attention(circuit: Circuit, c: Checked) -> Circuit | None:
    uses = _Uses(c)
    for name in c.order:  # the normalised form first: it contains the plain one
        b = c.box(name)
        if b.kind == "binary" and b.fn == "div":
            m = _match_normalised(c, uses, name)
            if m is not None:
                return _replace(circuit, *m)
    for name in c.order:
        m = _match_read(c, uses, name, reader=None)
        if m is not None:
            remove, fq_ref, k_ref, v_ref, names = m
            return _replace(circuit, remove, _la_box(c, name, fq_ref, k_ref, v_ref, names, False))
    return None


def _match_read(c: Checked, uses: _Uses, name: str, reader: str | None):
    """contract(φq, scan_T(contract(φk, v over ())) over K): returns the boxes to remove,
    the q, k and v references and (T, K, V)."""
    read = c.box(name)
    if read.kind != "contract" or len(read.operands) != 2 or len(read.over) != 1:
        return None
    if reader is not None and not uses.only(name, reader):
        return None
    K = read.over[0]
    for p_q, p_s in (read.operands, read.operands[::-1]):
        state = _kind(c, _src(c, name, p_s), "scan")
        if not state or state.op != "sum" or state.reverse or not uses.only(state.name, name):
            continue
        T = state.over
        outer = _kind(c, _src(c, state.name, "x"), "contract")
        if not outer or outer.over or len(outer.operands) != 2:
            continue
        if not uses.only(outer.name, state.name):
            continue
        q = _names(c, name, p_q)
        for p_k, p_v in (outer.operands, outer.operands[::-1]):
            k, v = _names(c, outer.name, p_k), _names(c, outer.name, p_v)
            if K not in k or K in v or K not in q or T not in q or T not in k or T not in v:
                continue
            V = [a for a in v if a not in k]
            if len(V) != 1:
                continue
            V = V[0]
            batch = [a for a in q if a not in (T, K)]
            if batch != [a for a in k if a not in (T, K)] or batch != [
                a for a in v if a not in (T, V)
            ]:
                continue
            if c.outs[name]["out"].names != tuple(V if a == K else a for a in q):
                continue
            return (
                {state.name, outer.name},
                read.inputs[p_q],
                outer.inputs[p_k],
                outer.inputs[p_v],
                (T, K, V),
            )
    return None


def _match_normalised(c: Checked, uses: _Uses, div_name: str):
    div = c.box(div_name)
    num, den = _src(c, div_name, "a"), _src(c, div_name, "b")
    if not num or not den:
        return None
    m = _match_read(c, uses, num, reader=div_name)
    if m is None:
        return None
    remove, fq_ref, k_ref, v_ref, (T, K, V) = m
    rn = _kind(c, den, "contract")
    if not rn or rn.over != (K,) or len(rn.operands) != 2 or not uses.only(den, div_name):
        return None
    for p_q, p_z in (rn.operands, rn.operands[::-1]):
        z = _kind(c, _src(c, den, p_z), "scan")
        if not z or z.over != T or z.op != "sum" or z.reverse or not uses.only(z.name, den):
            continue
        if rn.inputs[p_q] != fq_ref or z.inputs["x"] != k_ref:
            continue
        if c.outs[div_name]["out"].names != c.outs[num]["out"].names:
            return None
        box = _la_box(c, div_name, fq_ref, k_ref, v_ref, (T, K, V), True, div)
        return remove | {num, den, z.name}, box
    return None


def _la_box(c, name, q_ref, k_ref, v_ref, axes, normalize, like=None):
    T, K, V = axes
    like = like or c.box(name)
    return KINDS["linear_attention"](
        name=name,
        inputs={"q": q_ref, "k": k_ref, "v": v_ref},
        label=like.label,
        group=like.group,
        query=T,
        key=T,
        head=K,
        value=V,
        causal=True,
        normalize=normalize,
    )
