"""Cost rules of contractions and diagonals, torch.einsum priced as PyTorch runs it."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ncd.circuits.types import TensorType

from .common import ZERO, BoxView, Expr, Rule, Saved, _in, _is_view, _own, costs, numel


@dataclass
class _Operand:
    axes: tuple[str, ...]  # names, any order
    layout: tuple[str, ...]  # order in memory
    ref: Saved | None  # what autograd keeps if this operand is kept (None: a parameter)
    grad: bool
    sizes: dict[str, Expr]


def _label_key(letter: str) -> int:
    # torch.einsum numbers labels A-Z then a-z; contraction dims follow that order
    return ord(letter) - ord("A") if letter.isupper() else 26 + ord(letter) - ord("a")


@dataclass
class Einsum:
    flops: Expr
    mm: Expr
    mm_bwd: Expr
    saved: list[Saved]
    layout: tuple[str, ...]
    io: Expr
    temps: Expr


def einsum(v: BoxView, ops: list[_Operand], out: TensorType, dtype: str) -> Einsum:
    """torch.einsum as PyTorch runs it without opt_einsum: operands contracted left to right
    (sumproduct_pair); each pair is one batched matrix product of left -> (lro, lo, summed)
    and right -> (lro, summed, ro), or a broadcast multiply when nothing is summed. An
    operand whose groups are not adjacent in memory is copied, and autograd keeps the copy."""
    from ncd.compiler.names import letters

    order = [a for o in ops for a in o.axes] + list(out.names)
    lab = letters(order)
    contraction = sorted({a for o in ops for a in o.axes} - set(out.names), key=lambda a:
                         _label_key(lab[a]))  # fmt: skip
    canon = [*out.names, *contraction]
    sizes: dict[str, Expr] = {}
    for o in ops:
        sizes.update(o.sizes)

    def prod(axes) -> Expr:
        return sympy.Mul(*[sizes[a] for a in axes]) if axes else sympy.Integer(1)

    def nbytes(axes) -> Expr:
        return v.nbytes(TensorType((), dtype)) * prod(axes)

    flops = mm = mm_bwd = io = temps = ZERO
    saved: list[Saved] = []
    cur = ops[0]
    for j in range(1, len(ops)):
        nxt = ops[j]
        later = set(out.names).union(*[set(o.axes) for o in ops[j + 1 :]])
        pair = [a for a in canon if a in cur.axes or a in nxt.axes]
        summed = [a for a in pair if a not in later]
        lro = [a for a in pair if a in cur.axes and a in nxt.axes and a not in summed]
        lo = [a for a in pair if a in cur.axes and a not in nxt.axes and a not in summed]
        ro = [a for a in pair if a in nxt.axes and a not in cur.axes and a not in summed]
        keep = [a for a in pair if a not in summed]
        step = f"step{j}"
        if summed:
            mm_j = 2 * prod(pair)
            mm += mm_j
            mm_bwd += mm_j * (int(cur.grad) + int(nxt.grad))
            layout = tuple(lro + lo + ro)
            copies = (
                not _is_view(cur.layout, [lro, lo, summed], v.units),
                not _is_view(nxt.layout, [lro, summed, ro], v.units),
            )
        else:
            flops += prod(pair)
            layout = tuple(keep)
            copies = (False, False)
        for k, (o, other) in enumerate(((cur, nxt), (nxt, cur))):
            if copies[k]:
                io += 2 * nbytes(o.axes)
            if not other.grad or o.ref is None:
                if copies[k]:
                    temps += nbytes(o.axes)
                continue
            if copies[k]:
                what = f"relaid-out copy of {o.ref.what}"
                saved.append(_own(f"{step}_copy{k}", nbytes(o.axes), what))
            else:
                saved.append(o.ref)
        if j < len(ops) - 1:
            key = f"{step}_out"
            ref = _own(key, nbytes(keep), f"intermediate ({' '.join(keep)})")
            cur = _Operand(tuple(keep), layout, ref, cur.grad or nxt.grad, sizes)
            temps += nbytes(keep)  # counted once kept tensors are known (see contract)
        else:
            cur = _Operand(tuple(keep), layout, None, cur.grad or nxt.grad, sizes)
    flops += mm
    return Einsum(flops, mm, mm_bwd, saved, cur.layout, io, temps)


def _operand(v: BoxView, port: str) -> _Operand:
    t = v.x(port)
    return _Operand(
        t.names, v.layouts[port], _in(port), v.grad(port), {a.name: a.size for a in t.axes}
    )


@costs("contract")
def contract(v: BoxView) -> Rule:
    b, y = v.box, v.out()
    ports = list(b.operands)
    if len(ports) == 1:  # a sum over `over`
        n = numel(v.x(ports[0]))
        return Rule(flops=n, flops_bwd=n)
    e = einsum(v, [_operand(v, p) for p in ports], y, y.dtype)
    # a broadcast product's backward forms grad·other at the full size, then sums it down
    bwd_temps = ZERO
    if e.mm == 0:
        for p in ports:
            if v.grad(p) and set(v.x(p).names) < set(y.names):
                bwd_temps += v.nbytes(y)
    # intermediates that autograd keeps are not temporary
    kept = sum((s.nbytes for s in e.saved if s.where == "own" and s.ref.endswith("_out")), ZERO)
    return Rule(
        flops=e.flops,
        mm=e.mm,
        mm_bwd=e.mm_bwd,
        flops_bwd=e.mm_bwd + 2 * (e.flops - e.mm),
        saved=e.saved,
        layout={"out": e.layout},
        extra_io=e.io,
        temps=e.temps - kept,
        bwd_temps=bwd_temps,
    )


@costs("diagonal")
def diagonal(v: BoxView) -> Rule:
    b = v.box
    lay = tuple(b.into if a == b.axes[0] else a for a in v.layouts["x"] if a != b.axes[1])
    return Rule(alias={"out": "x"}, layout={"out": lay})
