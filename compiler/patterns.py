"""Fused regions: the chains of boxes that one kernel of ncd.ops runs, matched in one place.

`find_matches(checked)` decides which boxes fuse. compiler/rewrites.py replaces each match by
its fused box and compiler/cost/fusion.py prices each match as that kernel, so the compiled
module and the cost report see the same regions. A chain matches only where the kernel
computes what the chain computes:

- `attention`: [scale]* q, [scale]* k → contract(q, k over K) → [scale | mask | cast |
  where | add]* → softmax over S → contract(·, v over S), run by `ncd.ops.softmax_attention`
  (PyTorch's SDPA where a `where` or an add makes it a masked box). The scales (of the
  scores, and of q or k read by the scores alone: timm's `q = q * scale`) multiply into the
  kernel's one scale. At most one causal mask: fill -inf, over (T, S) with T and S of one
  size (the kernel's mask is square, top-left aligned); a scale after it must be positive
  (then it keeps -inf, and the mask commutes with it). At most one `where` or add bringing a
  mask in, over some of the scores' axes (the box's `mask` port): a `where` with fill -inf of
  a boolean keep-mask (a scale after it positive), or an add of a float bias (no scale after
  it: the box adds it after its scale), the scores' type unchanged. Where such a mask leaves
  a query no key, the chain's softmax gives NaN and the box 0. A cast must be to the type the
  scores already have. The value axis may have the head axis' name (one letter for both in an
  einsum); the output may list its axes in any order (a permute follows the fused box).
  Dropout anywhere in the chain, a window mask, a second summed axis, a second query or value
  axis, or batch axes that differ between q, k and v: no match.
- `linear_attention`: contract(φk, v over nothing) → running sum over T (forward) →
  contract(φq, · over K), optionally divided by φq · (running sum of φk) over K; run by the
  causal `ncd.ops.linear_attention`, with `normalize` for the divided form.
- `add_norm`: add(x, h) → layernorm | rmsnorm (the pre-norm residual step), where both
  summands and the sum have one axis order and one float type (no broadcast, no promotion);
  run by `ncd.ops.add_layer_norm` / `add_rms_norm`. The sum may have any other readers (the
  residual stream goes on): the fused box writes it as its second output, `sum`, which the
  add's readers then read.

- `short_conv`: conv (depthwise over one axis, as many channels out as in, width W <= 64,
  stride and dilation 1, padded W - 1 on both sides) → [rename]* → slice of that axis keeping
  its first positions (as many as the input has) → [(rename | permute)* → unary silu]; run by
  `ncd.ops.short_conv`, the causal short convolution. The fused box keeps the conv's name and
  parameters. Without renames or permutes the readers of the chain's last box read it
  (`rewrites.MOVED`); with them (the chains the importer writes: a conv names its output
  channels anew, a slice's length gets a name of its own, transposes surround the conv) a
  rename and a permute after the fused box give the region's output its names and order, the
  last of them named after the chain's last box.

Each inner wire of a match is read once, by a box of the same match; its last box's output
is the region's output, in the axis order and element type the fused box gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ncd.circuits.sizes import parse_size, same
from ncd.circuits.types import FLOAT_DTYPES, TensorType, promote
from ncd.circuits.validate import Checked

NORMS = ("layernorm", "rmsnorm")
"""Norm kinds that an add before them fuses with (`add_norm`)."""
SCORE_STEPS = ("scale", "mask", "cast")
"""Kinds that may stand between the scores and the softmax of an attention match, besides a
`where` or an add that brings a mask in (`_chain_ports`)."""


@dataclass
class Match:
    """One fused region of a circuit level."""

    kind: str
    """The fused box it becomes: "attention", "linear_attention", "add_norm" or "short_conv"."""
    boxes: tuple[str, ...]
    """The boxes consumed, producers first; the fused box takes the last one's name."""
    entries: dict[str, tuple[str, str]]
    """Role (q, k, v; attention's mask) -> (box, port) of the match where that input enters."""
    inputs: dict[str, tuple[str, str]]
    """Role (q, k, v; attention's mask) -> source wire (box, port); box '' for a circuit
    input."""
    output: tuple[str, str]
    dims: dict[str, str]
    """Role (query, key, head, value) -> axis name."""
    causal: bool = False
    tail: tuple[tuple[str, object, str], ...] = ()
    """What follows the fused box so that the region's output keeps its names and axis order:
    ("rename", {old: new}, name) and ("permute", order, name) steps, in that order. short_conv:
    an imported chain renames the sizes it changes and permutes around the convolution, each
    step named after the chain's last box of its kind, else after the chain's last box;
    attention: a permute where the value product writes its axes in another order than the
    query's (`einsum("bhts,bhsd->bthd")`), named after that product. With a tail the fused box
    is named after the match's first box."""
    normalize: bool = False
    """Linear attention divided by q · (running sum of k)."""
    scale: str | None = None
    """Attention: the product of the chain's scales ("1" without one)."""

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.boxes[0]}…{self.boxes[-1]}]"


class Graph:
    """Who produces and who reads each wire of one checked circuit level."""

    def __init__(self, c: Checked):
        self.c = c
        self.readers: dict[tuple[str, str], list[str]] = {}
        """Wire -> the boxes reading it ('' for a circuit output), once per port."""
        for b in c.order:
            for src in c.sources[b].values():
                self.readers.setdefault(src, []).append(b)
        for src in c.output_sources.values():
            self.readers.setdefault(src, []).append("")

    def kind(self, box: str) -> str:
        return self.c.box(box).kind if box else ""

    def producer(self, box: str, port: str) -> str:
        """The box whose output feeds `port` of `box` ('' for a circuit input)."""
        return self.c.sources[box][port][0]

    def only_reader(self, box: str) -> str | None:
        """The one box that reads `box`'s one output, once; None otherwise (also where the
        circuit's output is that one reader)."""
        outs = list(self.c.outs[box])
        if len(outs) != 1:
            return None
        r = self.readers.get((box, outs[0]), [])
        return r[0] or None if len(r) == 1 else None


def find_matches(c: Checked) -> list[Match]:
    """The fused regions of one circuit level (a call's subcircuit is matched on its own),
    in the circuit's order; no box is in two of them."""
    g = Graph(c)
    taken: set[str] = set()
    found: list[Match] = []
    for b in c.order:
        for m in _candidates(g, b):
            if not taken & set(m.boxes):
                found.append(m)
                taken |= set(m.boxes)
                break
    return found


def _candidates(g: Graph, b: str) -> Iterator[Match]:
    """Matches whose last contraction (or norm) is `b`, or whose first box is the conv `b`,
    the widest first."""
    box = g.c.box(b)
    if box.kind in NORMS:
        yield from _add_norm(g, b)
        return
    if box.kind == "conv":
        yield from _short_conv(g, b)
        return
    if box.kind != "contract" or len(box.operands) != 2 or len(box.over) != 1:
        return
    yield from _attention(g, b)
    yield from _linear(g, b)


def _names(c: Checked, box: str, port: str) -> tuple[str, ...]:
    return c.ins[box][port].names


def _swaps(ports):
    return ((ports[0], ports[1]), (ports[1], ports[0]))


# ---------------------------------------------------------------- softmax attention
def _attention(g: Graph, mix: str) -> Iterator[Match]:
    c = g.c
    mb = c.box(mix)
    S = mb.over[0]
    for p_sm, p_v in _swaps(mb.operands):
        sm = g.producer(mix, p_sm)
        if g.kind(sm) != "softmax" or g.only_reader(sm) != mix:
            continue
        if c.box(sm).over != S or c.box(sm).variant != "softmax":
            continue
        for back, scores in _back_to_scores(g, sm):
            m = _attention_match(g, scores, back[::-1], sm, mix, p_v)
            if m is not None:
                yield m
                break


def _back_to_scores(g: Graph, sm: str) -> Iterator[tuple[list[tuple[str, str]], str]]:
    """The chains of score steps from the softmax `sm` back to a contraction, each box read
    by the one after it alone: ([(step, the port the chain enters it by)], from the softmax
    back; the contraction). An add may continue the chain through either operand."""

    def go(box: str, port: str, back: list[tuple[str, str]]):
        cur = g.producer(box, port)
        if not cur or g.only_reader(cur) != box:
            return
        if g.kind(cur) == "contract":
            yield back, cur
            return
        for p in _chain_ports(g.c.box(cur)):
            yield from go(cur, p, [*back, (cur, p)])

    yield from go(sm, "x", [])


def _chain_ports(b) -> tuple[str, ...]:
    """The ports by which the scores may run through box `b` on their way to the softmax."""
    if b.kind in SCORE_STEPS:
        return ("x",)
    if b.kind == "where" and b.fill == "-inf":
        return ("a",)  # the scores where the condition (the keep-mask) holds
    if b.kind == "binary" and b.fn == "add":
        return ("a", "b")  # the scores plus a bias
    return ()


def _attention_match(g: Graph, scores: str, steps, sm: str, mix: str, p_v: str):
    c = g.c
    sb = c.box(scores)
    if len(sb.operands) != 2 or len(sb.over) != 1:
        return None
    K, S = sb.over[0], c.box(mix).over[0]
    v = _names(c, mix, p_v)
    out = c.outs[mix]["out"]
    for p_q, p_k in _swaps(sb.operands):
        q, k = _names(c, scores, p_q), _names(c, scores, p_k)
        if S not in k or S in q or K not in q or K not in k or S not in v:
            continue
        T = [a for a in q if a not in k and a != K]
        if len(T) != 1:
            continue
        T = T[0]
        bq = [a for a in q if a not in (T, K)]
        # the value axis: v's one axis that is neither a batch axis nor S; it may carry the
        # head axis' name (an einsum's "bhkd" for both q and v), never the query's
        V = [a for a in v if a not in bq and a != S]
        if len(V) != 1 or V[0] == T:
            continue
        V = V[0]
        if bq != [a for a in k if a not in (S, K)] or bq != [a for a in v if a not in (S, V)]:
            continue
        fused = tuple(V if a == K else a for a in q)
        if sorted(out.names) != sorted(fused):
            continue
        if out.dtype != promote([c.ins[scores][p_q].dtype, c.ins[mix][p_v].dtype]):
            continue
        found = _score_steps(c, steps, scores, p_q, p_k, T, S)
        if found is None:
            continue
        scale, masked_by = found
        causal = any(g.kind(s) == "mask" for s, _ in steps)
        entries = {"q": (scores, p_q), "k": (scores, p_k), "v": (mix, p_v)}
        if masked_by is not None:
            entries["mask"] = masked_by
        before: list[str] = []  # scales of q or k on their way into the scores (timm's q * s)
        for role in ("q", "k"):
            box, port = entries[role]
            while g.kind(src := g.producer(box, port)) == "scale" and g.only_reader(src) == box:
                before.insert(0, src)
                box, port = src, "x"
            entries[role] = (box, port)
        factors = [c.box(b).factor for b in before] + ([scale] if scale != "1" else [])
        if len(factors) > 1:
            scale = "*".join(f"({f})" for f in factors)
        elif factors:
            scale = factors[0]
        return Match(
            "attention",
            (*before, scores, *(s for s, _ in steps), sm, mix),
            entries,
            {role: c.sources[box][port] for role, (box, port) in entries.items()},
            (mix, "out"),
            {"query": T, "key": S, "head": K, "value": V},
            causal=causal,
            tail=(("permute", out.names, mix),) if out.names != fused else (),
            scale=scale,
        )
    return None


def _score_steps(c: Checked, steps, scores, p_q, p_k, T, S):
    """(the kernel's scale, the (box, port) where a mask or bias enters or None) for the
    boxes between scores and softmax (`steps`: (box, the port the scores enter it by),
    from the scores on), or None where the attention box cannot run them."""
    factors: list[str] = []
    causal = infinite = biased = False  # after a -inf (causal, keep-mask) scales must be > 0
    mask_in = None
    names = c.outs[scores]["out"].names
    for s, port in steps:
        b = c.box(s)
        if b.kind == "mask":
            if causal or b.pattern != "causal" or b.fill != "-inf":
                return None
            if b.query != T or b.key != S or not _square(c, scores, p_q, p_k, T, S):
                return None
            causal = infinite = True
        elif b.kind == "scale":
            if biased or infinite and not _positive(c, b.factor):
                return None  # a bias would be scaled too: the box adds it after its scale
            factors.append(b.factor)
        elif b.kind == "cast":
            if b.dtype != c.ins[s]["x"].dtype:
                return None
        elif b.kind in ("where", "binary"):
            other = "cond" if b.kind == "where" else ("b" if port == "a" else "a")
            if mask_in is not None or not _mask_fits(c, s, port, other, names):
                return None
            mask_in = (s, other)
            biased = b.kind == "binary"
            infinite = infinite or not biased
        else:
            return None
    if not factors:
        return "1", mask_in
    if len(factors) == 1:
        return factors[0], mask_in
    return "*".join(f"({f})" for f in factors), mask_in


def _mask_fits(c: Checked, box: str, port: str, other: str, names) -> bool:
    """Whether `other` of the `where` or `add` `box` is a mask the attention box takes: over
    some of the scores' axes `names` (the box's output keeps the scores' axes, in any order,
    and type), a
    keep-mask for a `where`, a float bias for an add."""
    m, x, y = c.ins[box][other], c.ins[box][port], c.outs[box]["out"]
    if not all(isinstance(t, TensorType) for t in (m, x, y)):
        return False
    if set(y.names) != set(x.names) or y.dtype != x.dtype or not set(m.names) <= set(names):
        return False
    return m.dtype == "bool" if c.box(box).kind == "where" else m.dtype in FLOAT_DTYPES


def _square(c: Checked, scores, p_q, p_k, T, S) -> bool:
    tq, ts = c.ins[scores][p_q].axis(T), c.ins[scores][p_k].axis(S)
    if same(c.resolve(tq.size), c.resolve(ts.size)):
        return True
    nq, ns = c.number(tq.size), c.number(ts.size)
    return nq is not None and nq == ns


def _positive(c: Checked, factor: str) -> bool:
    e = c.resolve(parse_size(factor))
    if e.is_positive:
        return True
    n = c.number(e)
    return n is not None and n > 0


# ---------------------------------------------------------------- linear attention
def _linear(g: Graph, read: str) -> Iterator[Match]:
    """contract(φq, scan_T(contract(φk, v over ())) over K), the normalised form first."""
    c = g.c
    rb = c.box(read)
    K = rb.over[0]
    out = c.outs[read]["out"]
    for p_q, p_s in _swaps(rb.operands):
        state = g.producer(read, p_s)
        if g.kind(state) != "scan" or g.only_reader(state) != read:
            continue
        st = c.box(state)
        if st.op != "sum" or st.reverse:
            continue
        T = st.over
        outer = g.producer(state, "x")
        if g.kind(outer) != "contract" or g.only_reader(outer) != state:
            continue
        ob = c.box(outer)
        if ob.over or len(ob.operands) != 2:
            continue
        q = _names(c, read, p_q)
        for p_k, p_v in _swaps(ob.operands):
            k, v = _names(c, outer, p_k), _names(c, outer, p_v)
            if K not in k or K in v or K not in q or T not in q or T not in k or T not in v:
                continue
            V = [a for a in v if a not in k]
            if len(V) != 1:
                continue
            V = V[0]
            batch = [a for a in q if a not in (T, K)]
            if batch != [a for a in k if a not in (T, K)]:
                continue
            if batch != [a for a in v if a not in (T, V)]:
                continue
            if out.names != tuple(V if a == K else a for a in q):
                continue
            if out.dtype != promote([c.ins[read][p_q].dtype, c.ins[outer][p_v].dtype]):
                continue
            plain = Match(
                "linear_attention",
                (outer, state, read),
                {"q": (read, p_q), "k": (outer, p_k), "v": (outer, p_v)},
                {
                    "q": c.sources[read][p_q],
                    "k": c.sources[outer][p_k],
                    "v": c.sources[outer][p_v],
                },
                (read, "out"),
                {"query": T, "key": T, "head": K, "value": V},
                causal=True,
            )
            norm = _normalised(g, plain)
            if norm is not None:
                yield norm
            yield plain


def _normalised(g: Graph, m: Match) -> Match | None:
    """`m` divided by q · (running sum of k) over the head axis, as `normalize=True` runs."""
    c = g.c
    read = m.boxes[-1]
    div = g.only_reader(read)
    if g.kind(div) != "binary" or c.box(div).fn != "div":
        return None
    if c.sources[div].get("a") != (read, "out"):
        return None
    den = g.producer(div, "b")
    if g.kind(den) != "contract" or g.only_reader(den) != div:
        return None
    rn = c.box(den)
    if tuple(rn.over) != (m.dims["head"],) or len(rn.operands) != 2:
        return None
    for p_q, p_z in _swaps(rn.operands):
        z = g.producer(den, p_z)
        if g.kind(z) != "scan" or g.only_reader(z) != den:
            continue
        zb = c.box(z)
        if zb.op != "sum" or zb.reverse or zb.over != m.dims["query"]:
            continue
        if c.sources[den][p_q] != m.inputs["q"] or c.sources[z]["x"] != m.inputs["k"]:
            continue
        o, r = c.outs[div]["out"], c.outs[read]["out"]
        if o.names != r.names or o.dtype != r.dtype:
            return None
        return Match(
            "linear_attention",
            (*m.boxes, z, den, div),
            m.entries,
            m.inputs,
            (div, "out"),
            m.dims,
            causal=True,
            normalize=True,
        )
    return None


# ---------------------------------------------------------------- residual add + norm
def _add_norm(g: Graph, norm: str) -> Iterator[Match]:
    """add(x, h) read by the norm `norm`, the add's inputs and output of one type."""
    c = g.c
    add = g.producer(norm, "x")
    if g.kind(add) != "binary" or c.box(add).fn != "add":
        return
    s = c.outs[add]["out"]
    a, b = c.ins[add]["a"], c.ins[add]["b"]
    if not all(isinstance(t, TensorType) for t in (s, a, b)):
        return
    if a.names != s.names or b.names != s.names or a.dtype != s.dtype or b.dtype != s.dtype:
        return
    if s.dtype not in FLOAT_DTYPES:
        return
    for t in (a, b):
        for ax in s.names:
            if not _same_size(c, t.axis(ax).size, s.axis(ax).size):
                return
    yield Match(
        "add_norm",
        (add, norm),
        {"x": (add, "a"), "h": (add, "b")},
        {"x": c.sources[add]["a"], "h": c.sources[add]["b"]},
        (norm, "out"),
        {"over": " ".join(c.box(norm).over)},
    )


# ---------------------------------------------------------------- causal short convolution
SHORT_CONV_WIDEST = 64
"""The widest filter a `short_conv` box takes (its `kernel` field's bound)."""


def _short_conv(g: Graph, conv: str) -> Iterator[Match]:
    """conv → [rename]* → slice → [(rename | permute)* → silu], as described in the module's
    docstring. The renames and permutes (an imported chain's: its conv names the channels it
    writes anew, its slice's length gets a name of its own) become the match's `tail`."""
    c = g.c
    b = c.box(conv)
    if b.transposed or len(b.spatial) != 1:
        return
    (axis,) = b.spatial
    (w,), (s,), (p,), (d,) = (b._norm(f) for f in ("kernel", "stride", "padding", "dilation"))
    if s != 1 or d != 1 or p != w - 1 or w > SHORT_CONV_WIDEST:
        return
    x, y = c.ins[conv]["x"], c.outs[conv]["out"]
    if not isinstance(x, TensorType) or x.dtype not in FLOAT_DTYPES:
        return
    cin = x.axis(b.channel).size
    if not _same_size(c, cin, b.n_groups(cin)):  # one group per channel
        return
    if b.out != b.channel and not _same_size(c, y.axis(b.out).size, cin):
        return
    # x's names -> their names where the chain has reached
    now = {a: (b.out if a == b.channel else a) for a in x.names}
    if y.names != tuple(now[a] for a in x.names):
        return
    boxes = [conv]
    cut = _through(g, conv, boxes, now, ("rename",))
    if cut is None or g.kind(cut) != "slice":
        return
    sl = c.box(cut)
    kept = c.outs[cut]["out"]
    if sl.axis != now[axis] or sl.start != 0 or sl.step != 1:
        return
    if not _same_size(c, kept.axis(sl.axis).size, x.axis(axis).size):
        return
    boxes.append(cut)
    after, renamed = list(boxes), dict(now)
    act = _through(g, cut, after, renamed, ("rename", "permute"))
    if act is not None and g.kind(act) == "unary" and c.box(act).fn == "silu":
        boxes, now = [*after, act], renamed
    out = c.outs[boxes[-1]]["out"]

    def named(kind):  # the chain's last box of `kind`, else its last box
        return next((n for n in reversed(boxes[1:]) if g.kind(n) == kind), boxes[-1])

    tail: list[tuple[str, object, str]] = []
    if any(now[a] != a for a in x.names):
        tail.append(("rename", {a: now[a] for a in x.names if now[a] != a}, named("rename")))
    if out.names != tuple(now[a] for a in x.names):
        tail.append(("permute", out.names, named("permute")))
    yield Match(
        "short_conv",
        tuple(boxes),
        {"x": (conv, "x")},
        {"x": c.sources[conv]["x"]},
        (boxes[-1], "out"),
        {"axis": axis, "channel": b.channel},
        tail=tuple(tail),
    )


def _through(g: Graph, box: str, boxes: list[str], now: dict[str, str], kinds) -> str | None:
    """The first reader after a run of `kinds` (renames, permutes) that each read the one
    before them alone, starting at `box`'s only reader; the run is appended to `boxes` and its
    renames applied to `now`. None where a box of the run has other readers."""
    nxt = g.only_reader(box)
    while nxt is not None and g.kind(nxt) in kinds:
        step = g.c.box(nxt)
        if step.kind == "rename":
            for a, name in now.items():
                now[a] = step.mapping.get(name, name)
        boxes.append(nxt)
        nxt = g.only_reader(nxt)
    return nxt


def _same_size(c: Checked, x, y) -> bool:
    if same(c.resolve(x), c.resolve(y)):
        return True
    nx, ny = c.number(x), c.number(y)
    return nx is not None and nx == ny
