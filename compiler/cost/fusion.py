"""Regions of the diagram that one kernel runs under the `fused` lowering.

A fused region keeps its inner wires on chip: only the wires that cross its border move
between HBM and the chip ("FlashAttention on a napkin"). Three kinds of region:

- softmax attention: contract (one summed axis) → [scale | mask | cast | dropout]* →
  softmax over the key axis → contract over the key axis; runs as `ncd.ops.softmax_attention`
  (ops/attention/cost.py gives its IO, and what it keeps: q, k, v, o, log-sum-exp);
- linear attention in recurrent form: outer product (contract over nothing) → running sum
  (scan) → contract with the query, optionally divided by the query's product with the
  running sum of the keys; runs as `ncd.ops.linear_attention` (keeps q, k, v; normalised,
  also the float32 output and denominator);
- chains of pointwise boxes whose inner wires have no other reader (as torch.compile fuses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CHAIN = {"scale", "mask", "cast", "dropout"}
POINTWISE = {"unary", "binary", "scale", "cast", "dropout", "mask"}


@dataclass
class Region:
    kind: str  # "attention", "linear_attention", "pointwise"
    boxes: list[str]
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Role (q, k, v) -> source wire, for the attention regions."""
    output: tuple[str, str] = ("", "")
    causal: bool = False
    dims: dict[str, str] = field(default_factory=dict)
    """Role -> axis names (query, key, head, value) for the attention regions."""
    normalize: bool = False
    """Linear attention divided by q . (running sum of k), as `normalize=True` runs it."""

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.boxes[0]}…{self.boxes[-1]}]"


def find_regions(checked) -> list[Region]:
    """Regions in `checked` (one circuit level; calls are analysed on their own)."""
    c = checked
    readers: dict[tuple[str, str], list[str]] = {}
    for b in c.order:
        for src in c.sources[b].values():
            readers.setdefault(src, []).append(b)
    for src in c.output_sources.values():
        readers.setdefault(src, []).append("<output>")
    kind = {b: c.box(b).kind for b in c.order}

    def only_reader(box: str) -> str | None:
        outs = list(c.outs[box])
        if len(outs) != 1:
            return None
        r = readers.get((box, outs[0]), [])
        return r[0] if len(r) == 1 else None

    def producer(box: str, port: str) -> str:
        return c.sources[box][port][0]

    def normaliser(num: str, state: str, q_src, k_src) -> list[str] | None:
        """[z, den, div] when `num` is divided by q . z with z the running sum of k (the
        classic normaliser, which the compiler's rewrite fuses into the same kernel)."""
        div = only_reader(num)
        if not div or kind[div] != "binary" or c.box(div).fn != "div":
            return None
        if c.sources[div].get("a") != (num, "out"):
            return None
        den = producer(div, "b")
        if not den or kind[den] != "contract" or only_reader(den) != div:
            return None
        rn = c.box(den)
        if len(rn.operands) != 2 or tuple(rn.over) != tuple(c.box(num).over):
            return None
        for p_q, p_z in (rn.operands, rn.operands[::-1]):
            z = producer(den, p_z)
            if not z or kind[z] != "scan" or only_reader(z) != den:
                continue
            zb = c.box(z)
            if zb.op != "sum" or zb.reverse or zb.over != c.box(state).over:
                continue
            if c.sources[den][p_q] == q_src and c.sources[z]["x"] == k_src:
                return [z, den, div]
        return None

    taken: set[str] = set()
    regions: list[Region] = []
    for b in c.order:
        box = c.box(b)
        if kind[b] != "contract" or len(box.operands) != 2 or len(box.over) != 1:
            continue
        # softmax attention, matched from its last contraction backwards
        for port in box.operands:
            sm = producer(b, port)
            if not sm or kind[sm] != "softmax" or c.box(sm).over != box.over[0]:
                continue
            if only_reader(sm) != b or c.box(sm).variant != "softmax":
                continue
            chain, cur, causal = [sm], producer(sm, "x"), False
            while cur and kind[cur] in CHAIN and only_reader(cur) == chain[-1]:
                causal |= kind[cur] == "mask" and c.box(cur).pattern == "causal"
                chain.append(cur)
                cur = producer(cur, "x")
            if not cur or kind[cur] != "contract" or only_reader(cur) != chain[-1]:
                continue
            first = c.box(cur)
            if len(first.operands) != 2 or len(first.over) != 1:
                continue
            members = [cur, *reversed(chain), b]
            if taken & set(members):
                continue
            other = next(p for p in box.operands if p != port)
            qp, kp = first.operands
            regions.append(
                Region(
                    "attention",
                    members,
                    {
                        "q": c.sources[cur][qp],
                        "k": c.sources[cur][kp],
                        "v": c.sources[b][other],
                    },
                    (b, "out"),
                    causal,
                    {
                        "head": first.over[0],
                        "key": box.over[0],
                        "query": " ".join(
                            a
                            for a in c.ins[cur][qp].names
                            if not c.ins[cur][kp].axis(a) and a != first.over[0]
                        ),
                    },
                )
            )
            taken |= set(members)
            break
        if b in taken:
            continue
        # linear attention in recurrent form: outer -> scan -> contract
        for port in box.operands:
            sc = producer(b, port)
            if not sc or kind[sc] != "scan" or c.box(sc).op != "sum" or only_reader(sc) != b:
                continue
            outer = producer(sc, "x")
            if not outer or kind[outer] != "contract" or only_reader(outer) != sc:
                continue
            ob = c.box(outer)
            if ob.over or len(ob.operands) != 2:
                continue
            head = box.over[0]
            a, bb = ob.operands
            ta = c.ins[outer][a]
            kport, vport = (a, bb) if ta.axis(head) else (bb, a)
            members = [outer, sc, b]
            if taken & set(members):
                continue
            other = next(p for p in box.operands if p != port)
            q_src, k_src = c.sources[b][other], c.sources[outer][kport]
            norm = normaliser(b, sc, q_src, k_src)
            if norm and taken & set(norm):
                norm = None
            regions.append(
                Region(
                    "linear_attention",
                    members + (norm or []),
                    {"q": q_src, "k": k_src, "v": c.sources[outer][vport]},
                    (norm[-1] if norm else b, "out"),
                    True,
                    {"head": head, "key": c.box(sc).over, "query": c.box(sc).over},
                    normalize=bool(norm),
                )
            )
            members += norm or []
            taken |= set(members)
            break
    # pointwise chains: join a pointwise box to its pointwise producer when it is the only reader
    parent: dict[str, str] = {}

    def find(x):
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for b in c.order:
        if kind[b] not in POINTWISE or b in taken:
            continue
        parent.setdefault(b, b)
        for src, _ in c.sources[b].values():
            if src and kind[src] in POINTWISE and src not in taken and only_reader(src) == b:
                parent.setdefault(src, src)
                parent[find(src)] = find(b)
    groups: dict[str, list[str]] = {}
    for b in c.order:
        if b in parent:
            groups.setdefault(find(b), []).append(b)
    regions += [Region("pointwise", g) for g in groups.values() if len(g) > 1]
    return regions
