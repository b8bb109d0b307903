"""The cost model: per box and in total, formulas in the axis sizes and numbers once bound.

`analyse(circuit, sizes, lowering, device)` walks the checked circuit in its compiled order,
applies each kind's rule (rules/), follows storages through views, runs a liveness pass over
the forward + backward schedule for the peak, and prices each kernel on a roofline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ncd.circuits.errors import NcdError
from ncd.circuits.sizes import parse_size
from ncd.circuits.types import DTYPE_BYTES, FLOAT_DTYPES, Axis, TensorType, TupleType
from ncd.circuits.validate import check
from ncd.ops import attention_cost, linear_attention_cost, norm_cost, short_conv_cost

from . import rules as R
from .devices import CostError, Device
from .devices import device as get_device
from .fusion import Region, find_regions
from .names import derived_axes
from .pareto import monomial, prune_vectors
from .symbolic import prune

LOWERINGS = ("fused", "unfused")
ZERO = sympy.Integer(0)


@dataclass
class BoxCost:
    """The cost of one box (for a `call`, of all its repetitions)."""

    name: str
    kind: str
    label: str = ""
    group: str = ""
    flops: sympy.Expr = ZERO
    mm_flops: sympy.Expr = ZERO
    flops_bwd: sympy.Expr = ZERO
    mm_flops_bwd: sympy.Expr = ZERO
    mm_run: sympy.Expr | None = None
    """Matrix-engine FLOPs the box runs where FlopCounterMode counts others (`mm_flops`):
    causal attention's, of the pairs it computes (rules.common.Rule.mm_run); None: `mm_flops`."""
    mm_run_bwd: sympy.Expr | None = None
    params: sympy.Expr = ZERO
    param_bytes: sympy.Expr = ZERO
    saved: list[tuple[str, str, sympy.Expr]] = field(default_factory=list)
    """(what, storage id, bytes) of each tensor this box keeps for the backward pass."""
    activation_bytes: sympy.Expr = ZERO
    """Bytes first kept by this box (a tensor kept by several boxes counts at the first)."""
    io_bytes: sympy.Expr = ZERO
    io_bytes_bwd: sympy.Expr = ZERO
    time_s: sympy.Expr = ZERO
    time_bwd_s: sympy.Expr = ZERO
    kernel: str = ""
    notes: list[str] = field(default_factory=list)
    repeat: sympy.Expr = sympy.Integer(1)
    sub: object = None  # the Report of a called subcircuit (one repetition)

    @property
    def run_mm(self) -> sympy.Expr:
        """Forward matrix-engine FLOPs as the kernels run them (the roofline's)."""
        return self.mm_flops if self.mm_run is None else self.mm_run

    @property
    def run_mm_bwd(self) -> sympy.Expr:
        return self.mm_flops_bwd if self.mm_run_bwd is None else self.mm_run_bwd


@dataclass
class _Wire:
    storage: str
    layout: tuple[str, ...]
    grad: bool
    type: TensorType
    members: dict[str, _Wire] | None = None  # for tuples


@dataclass
class _Storage:
    id: str
    nbytes: sympy.Expr
    kind: str  # input, param, act, own
    producer: int = -1
    last_use: int = -1
    savers: list[int] = field(default_factory=list)
    grad: bool = False
    virtual: bool = False  # never materialised (inside a fused region)


@dataclass
class Analysis:
    """Everything the report needs, for one circuit level."""

    checked: object
    boxes: list[BoxCost]
    storages: dict[str, _Storage]
    peak_fwd: list[sympy.Expr]
    peak_bwd: list[sympy.Expr]
    peak_candidates: list[sympy.Expr]
    base: sympy.Expr
    activation: sympy.Expr
    input_saved: dict[str, sympy.Expr]
    regions: list[Region]


def _resolve(checked, t):
    if isinstance(t, TupleType):
        return TupleType(tuple((n, _resolve(checked, m)) for n, m in t.items))
    return TensorType(tuple(Axis(a.name, checked.resolve(a.size)) for a in t.axes), t.dtype)


class _Walker:
    def __init__(self, checked, lowering: str, dev: Device, dtype: str | None, input_grads):
        self.c = checked
        self.lowering = lowering
        self.dev = dev
        self.dtype = dtype
        self.input_grads = input_grads
        self.storages: dict[str, _Storage] = {}
        self.wires: dict[tuple[str, str], _Wire] = {}
        self.matched = None  # where the fused regions are matched (default: `checked`)
        self.one: dict = {}  # size -> whether it is 1 under the bound sizes

    def compute_dtype(self, name: str) -> str:
        """The dtype box `name`'s products run in, as analysed: its first float input's (else
        its first float output's; float32 where it has none)."""
        c = self.c
        for t in (*c.ins[name].values(), *c.outs[name].values()):
            if isinstance(t, TensorType) and t.dtype in FLOAT_DTYPES:
                return self.dtype or t.dtype
        return self.dtype or "float32"

    def units(self, *ports) -> frozenset[str]:
        """Names of the axes of size 1 under the bound sizes on the given ports' types."""
        names = set()
        for types in ports:
            for t in types.values():
                for a in t.axes if isinstance(t, TensorType) else ():
                    if a.size not in self.one:
                        self.one[a.size] = self.c.number(a.size) == 1
                    if self.one[a.size]:
                        names.add(a.name)
        return frozenset(names)

    def nbytes(self, t: TensorType) -> sympy.Expr:
        d = t.dtype
        if self.dtype and d in FLOAT_DTYPES:
            d = self.dtype
        return t.numel() * DTYPE_BYTES[d]

    def value_bytes(self, v) -> sympy.Expr:
        if isinstance(v, TupleType):
            return sum((self.nbytes(t) for _, t in v.items), ZERO)
        return self.nbytes(v)

    def new_storage(self, sid, t, kind, producer, grad) -> _Storage:
        s = _Storage(sid, self.value_bytes(t), kind, producer, producer, grad=grad)
        self.storages[sid] = s
        return s

    def wire_of(self, src) -> _Wire:
        return self.wires[src]

    def make_wire(self, t, storage, layout, grad) -> _Wire:
        if isinstance(t, TupleType):
            members = {
                n: _Wire(f"{storage}.{n}", m.names, grad and _float(m), m) for n, m in t.items
            }
            for n, m in t.items:
                self.storages.setdefault(
                    f"{storage}.{n}",
                    _Storage(f"{storage}.{n}", self.nbytes(m), "act", grad=grad and _float(m)),
                )
            return _Wire(storage, (), grad, t, members)
        return _Wire(storage, layout, grad and _float(t), t)

    def run(self) -> Analysis:
        c = self.c
        for name, t in c.inputs.items():
            t = _resolve(c, t)
            g = self.input_grads.get(name, True)
            self.new_storage(f"in:{name}", t, "input", -1, g and _float(t))
            self.wires[("", name)] = self.make_wire(t, f"in:{name}", t.names, g)
        fused = self.lowering == "fused"
        regions = find_regions(c, self.matched, self.dev.platform) if fused else []
        in_region = {b: r for r in regions for b in r.boxes}
        boxes: list[BoxCost] = []
        input_saved: dict[str, sympy.Expr] = {}
        for i, name in enumerate(c.order):
            boxes.append(self.box(i, c.box(name), in_region.get(name)))
        for src in c.output_sources.values():
            for s in _storages(self.wires[src]):
                self.storages[s].last_use = len(c.order)
        self._apply_regions(regions, boxes)
        # activation: unique storages kept, attributed to the first box keeping them
        seen: set[str] = set()
        total = ZERO
        for i, bc in enumerate(boxes):
            own = ZERO
            for _, sid, nb in bc.saved:
                st = self.storages[sid]
                st.savers.append(i)
                if st.kind == "param" or sid in seen:
                    continue
                seen.add(sid)
                if st.kind == "input":
                    input_saved[sid[3:]] = st.nbytes
                own += nb
            bc.activation_bytes = own
            total += own
        self._cut_backward(boxes)
        # inner wires of a pointwise region that nothing keeps are never written to memory
        for r in regions:
            for sid in getattr(r, "internal", []):
                if not self.storages[sid].savers:
                    self.storages[sid].virtual = True
        for bc in boxes:
            if bc.kind == "call":
                continue
            kernel = getattr(bc, "_time_flops", None)
            dt = self.compute_dtype(bc.name)
            if kernel is not None:  # inside a fused region: the kernel's FLOPs (ops/*/cost.py)
                bc.time_s = self.dev.time(kernel[0], ZERO, bc.io_bytes, dt)
                bc.time_bwd_s = self.dev.time(kernel[1], ZERO, bc.io_bytes_bwd, dt)
            else:
                bc.time_s = self.dev.time(bc.run_mm, bc.flops - bc.run_mm, bc.io_bytes, dt)
                bc.time_bwd_s = self.dev.time(
                    bc.run_mm_bwd, bc.flops_bwd - bc.run_mm_bwd, bc.io_bytes_bwd, dt
                )
        fwd, bwd, base = _schedule(c, boxes, self.storages, self.wires)
        return Analysis(
            c,
            boxes,
            self.storages,
            fwd,
            bwd,
            prune(fwd + bwd),
            base,
            total,
            input_saved,
            regions,
        )

    # -- one box
    def box(self, i: int, box, region: Region | None) -> BoxCost:
        c = self.c
        name = box.name
        srcs = c.sources[name]
        ins = {p: _resolve(c, t) for p, t in c.ins[name].items()}
        outs = {p: _resolve(c, t) for p, t in c.outs[name].items()}
        params = {p: _resolve(c, t) for p, t in c.params[name].items()}
        in_wires = {p: self.wires[srcs[p]] for p in ins}
        for w in in_wires.values():
            for s in _storages(w):
                self.storages[s].last_use = i
        grads = {p: w.grad for p, w in in_wires.items()}
        layouts = {p: w.layout for p, w in in_wires.items()}
        bc = BoxCost(name, box.kind, box.label, box.group)
        tied = c.circuit.tied
        for p, t in params.items():
            if f"{name}.{p}" in tied:  # the owner's tensor, counted and kept there
                bc.notes.append(f"{p} tied to {tied[f'{name}.{p}']}")
                continue
            trained = getattr(box, "trained", True)  # a fixed param box: a buffer
            self.new_storage(f"param:{name}.{p}", t, "param", -1, trained)
            bc.params += t.numel() if trained else 0
            bc.param_bytes += self.nbytes(t)
        if box.kind == "call":
            return self.call(i, box, bc, in_wires, outs)
        view = R.BoxView(box, ins, outs, params, grads, layouts, self.nbytes,
                         self.units(ins, outs), self.dev.platform, c.resolve,
                         c.number)  # fmt: skip
        rule = R.RULES[box.kind](view)
        if region is not None and region.kind != "pointwise" and name == region.boxes[-1]:
            # a fused kernel writes its output in the output's own (row-major) order
            rule.layout = {p: t.names for p, t in outs.items() if isinstance(t, TensorType)}
        grad_out = (any(grads.values()) or bool(params)) and not _no_gradient(box)
        # outputs: shared storage (views, tuples) or a new one
        new_bytes = ZERO
        for p, t in outs.items():
            src = rule.alias.get(p)
            if src == "@weight":
                sid = f"param:{tied.get(f'{name}.weight', f'{name}.weight')}"
                self.wires[(name, p)] = _Wire(sid, t.names, True, t)
            elif src == "*":  # pack: a tuple of its inputs' wires
                self.wires[(name, p)] = _Wire(
                    f"tuple:{name}", (), grad_out, t, {n: in_wires[n] for n in box.items}
                )
            elif src is not None:
                w = in_wires[src]
                if w.members is not None and box.kind == "unpack":
                    self.wires[(name, p)] = w.members[p]
                else:
                    lay = rule.layout.get(p, w.layout)
                    self.wires[(name, p)] = _Wire(w.storage, lay, w.grad, t, w.members)
            else:
                sid = f"{name}.{p}"
                self.new_storage(sid, t, "act", i, grad_out)
                lay = rule.layout.get(p, t.names if isinstance(t, TensorType) else ())
                self.wires[(name, p)] = self.make_wire(t, sid, lay, grad_out)
                new_bytes += self.value_bytes(t)
        # saved tensors
        for s in rule.saved:
            if s.where == "in":
                w = in_wires[s.ref]
                bc.saved.append((s.what, w.storage, self.storages[w.storage].nbytes))
            elif s.where == "out":
                w = self.wires[(name, s.ref)]
                bc.saved.append((s.what, w.storage, self.storages[w.storage].nbytes))
            else:
                sid = f"{name}:{s.ref}"
                self.storages[sid] = _Storage(sid, s.nbytes, "own", i, i)
                bc.saved.append((s.what, sid, s.nbytes))
        bc.flops, bc.mm_flops, bc.mm_flops_bwd = rule.flops, rule.mm, rule.mm_bwd
        bc.mm_run, bc.mm_run_bwd = rule.mm_run, rule.mm_run_bwd
        other = rule.flops - rule.mm
        bc.flops_bwd = rule.flops_bwd if rule.flops_bwd is not None else 2 * other + rule.mm_bwd
        if not grad_out:
            bc.flops_bwd = bc.mm_flops_bwd = ZERO
            bc.mm_run_bwd = None
        is_alias = bool(rule.alias) or box.kind in R.ALIAS_KINDS
        read = sum(
            (self.nbytes(t) for t in ins.values() if isinstance(t, TensorType)),
            ZERO,
        )
        if rule.io is not None:
            bc.io_bytes = rule.io
        elif is_alias:
            bc.io_bytes = ZERO
        else:
            bc.io_bytes = read + bc.param_bytes + new_bytes + rule.extra_io
        if rule.io_bwd is not None:
            bc.io_bytes_bwd = rule.io_bwd if grad_out else ZERO
        elif is_alias or not grad_out:
            bc.io_bytes_bwd = ZERO
        else:
            saved_b = sum((nb for _, _, nb in bc.saved), ZERO)
            gin = sum((self.nbytes(ins[p]) for p, g in grads.items() if g and p in ins), ZERO)
            bc.io_bytes_bwd = saved_b + new_bytes + gin + 2 * bc.param_bytes + rule.extra_io_bwd
        bc.kernel = rule.fused
        bc.notes += list(rule.notes)
        bc._temps = rule.temps  # type: ignore[attr-defined]
        bc._bwd_temps = rule.bwd_temps if grad_out else ZERO  # type: ignore[attr-defined]
        bc._grad_through = rule.grad_through  # type: ignore[attr-defined]
        bc._frees_kept = rule.frees_kept  # type: ignore[attr-defined]
        return bc

    def call(self, i, box, bc, in_wires, outs) -> BoxCost:
        c = self.c
        sub_checked = c.calls[box.name]
        n = c.resolve(parse_size(box.repeat))
        grads = {p: w.grad for p, w in in_wires.items()}
        walker = _Walker(sub_checked, self.lowering, self.dev, self.dtype, grads)
        walker.matched = _on_its_own(sub_checked)
        sub = walker.run()
        bc.repeat, bc.sub = n, sub
        for f in ("flops", "mm_flops", "flops_bwd", "mm_flops_bwd", "io_bytes", "io_bytes_bwd"):
            setattr(bc, f, n * sum((getattr(b, f) for b in sub.boxes), ZERO))
        if any(b.mm_run is not None or b.mm_run_bwd is not None for b in sub.boxes):
            bc.mm_run = n * sum((b.run_mm for b in sub.boxes), ZERO)
            bc.mm_run_bwd = n * sum((b.run_mm_bwd for b in sub.boxes), ZERO)
        bc.time_s = n * sum((b.time_s for b in sub.boxes), ZERO)
        bc.time_bwd_s = n * sum((b.time_bwd_s for b in sub.boxes), ZERO)
        sub_params = sum((b.params for b in sub.boxes), ZERO)
        sub_pbytes = sum((b.param_bytes for b in sub.boxes), ZERO)
        bc.params, bc.param_bytes = n * sub_params, n * sub_pbytes
        self.storages[f"param:{box.name}"] = _Storage(
            f"param:{box.name}", bc.param_bytes, "param", grad=True
        )
        grad_out = any(grads.values()) or sub_params != 0
        for p, t in outs.items():
            sid = f"{box.name}.{p}"
            self.new_storage(sid, t, "act", i, grad_out)
            self.wires[(box.name, p)] = self.make_wire(t, sid, t.names, grad_out)
        # block 1 keeps the call's inputs; blocks 2..N keep their own inputs (outputs of the
        # block before), except those the subcircuit hands on unchanged (one tensor in every
        # block), and every block keeps its inner tensors.
        ins_kept = renewed = ZERO
        for name, nb in sub.input_saved.items():
            w = in_wires[name]
            bc.saved.append((f"input {name} (block 1)", w.storage, self.storages[w.storage].nbytes))
            ins_kept += nb
            if not _handed_on(sub_checked, name):
                renewed += nb
        inner = sub.activation - ins_kept
        kept = n * inner + (n - 1) * renewed
        sid = f"{box.name}:blocks"
        self.storages[sid] = _Storage(sid, kept, "own", i, i)
        bc.saved.append((f"inside {n} × {sub_checked.circuit.name}", sid, kept))
        # peak during the call: the repetitions before the current one hold their tensors
        # (and, in the backward pass, their parameters' gradients)
        bc._peak_fwd = [  # type: ignore[attr-defined]
            (n - 1) * sub.activation + p - sub.base for p in prune(sub.peak_fwd)
        ]
        # going backward through repetition k, the k-1 before it still hold their tensors
        # and the N-k after it hold their parameters' gradients: the worst k is the first or
        # the last
        bc._peak_bwd = [  # type: ignore[attr-defined]
            (n - 1) * held + p - sub.base
            for p in prune(sub.peak_bwd)
            for held in (sub.activation, sub_pbytes)
        ]
        bc._temps = ZERO  # type: ignore[attr-defined]
        bc.notes = [f"{n} × subcircuit {sub_checked.circuit.name}; peak inside it approximated"]
        return bc

    # -- the backward pass autograd runs
    def _cut_backward(self, boxes: list[BoxCost]) -> None:
        """Autograd runs the backward of a box only where one of its outputs reaches an
        output through wires with gradients (a comparison's result has none): the other boxes
        get no backward FLOPs, IO or temporaries, and their wires no gradient. What they keep
        is still saved in the forward (PyTorch saves it whenever an input needs a gradient),
        but no backward holds it: it is freed with the last tensor of the cut-off branch."""
        c = self.c
        needed = {
            sid
            for src in c.output_sources.values()
            for sid in _storages(self.wires[src])
            if self.storages[sid].grad
        }
        index = {name: i for i, name in enumerate(c.order)}
        death: dict[int, int] = {}  # unreached box -> forward step after which its node dies
        for i in range(len(boxes) - 1, -1, -1):
            name, bc = c.order[i], boxes[i]
            outs = [sid for p in c.outs[name] for sid in _storages(self.wires[(name, p)])]
            srcs = [s for src in c.sources[name].values() for s in _storages(self.wires[src])]
            if any(sid in needed for sid in outs):
                needed.update(s for s in srcs if self.storages[s].grad)
                continue
            bc.flops_bwd = bc.mm_flops_bwd = bc.io_bytes_bwd = ZERO
            bc.mm_run_bwd = None
            bc._bwd_temps = ZERO  # type: ignore[attr-defined]
            if getattr(bc, "_time_flops", None) is not None:
                bc._time_flops = (bc._time_flops[0], ZERO)  # type: ignore[attr-defined]
            end = max([death.get(i, i), *(self.storages[s].last_use for s in outs)])
            for box, _ in c.sources[name].values():  # its inputs' nodes live as long
                if box in index:
                    death[index[box]] = max(death.get(index[box], index[box]), end)
            for _, sid, _ in bc.saved:
                st = self.storages[sid]
                if i in st.savers:
                    st.savers.remove(i)
                    st.last_use = max(st.last_use, end)
        for sid, st in self.storages.items():
            if st.kind in ("input", "act", "own") and sid not in needed:
                st.grad = False

    # -- fused lowering
    def _apply_regions(self, regions: list[Region], boxes: list[BoxCost]) -> None:
        c = self.c
        by_name = {b.name: b for b in boxes}
        index = {b: i for i, b in enumerate(c.order)}
        readers: dict[tuple[str, str], set[str]] = {}
        for b in c.order:
            for src in c.sources[b].values():
                readers.setdefault(src, set()).add(b)
        outputs = set(c.output_sources.values())
        for r in regions:
            members = set(r.boxes)
            if r.kind == "pointwise":
                for b in r.boxes:
                    bc = by_name[b]
                    ins = {p: _resolve(c, t) for p, t in c.ins[b].items()}
                    io = ZERO
                    for p, src in c.sources[b].items():
                        if src[0] not in members:
                            io += self.nbytes(ins[p])
                    for p, t in c.outs[b].items():
                        rd = readers.get((b, p), set())
                        if (b, p) in outputs or rd - members:
                            io += self.nbytes(_resolve(c, t))
                        else:
                            r.internal = [*getattr(r, "internal", []), f"{b}.{p}"]
                    bc.io_bytes = io
                    bc.kernel = r.name
                    bc.time_s = self.dev.time(
                        bc.run_mm, bc.flops - bc.run_mm, io, self.compute_dtype(b)
                    )
                continue
            if r.kind == "add_norm":
                _add_norm_io(self, r, by_name)
                continue
            if r.kind == "short_conv":
                _short_conv_io(self, r, by_name)
                continue
            q, k, v = (self.wires[r.inputs[p]] for p in ("q", "k", "v"))
            qt, kt, vt = q.type, k.type, v.type
            head, key = r.dims["head"], r.dims["key"]
            K = qt.axis(head).size
            T = sympy.Mul(*[qt.axis(a).size for a in r.dims["query"].split()])
            S = kt.axis(key).size
            B = qt.numel() / (T * K)
            V = vt.numel() / (S * B)
            last = by_name[r.boxes[-1]]
            bp = DTYPE_BYTES[self.dtype or qt.dtype]
            mk = R.MaskCost()
            if r.kind == "attention":
                masked = "mask" in r.inputs
                if masked:
                    mk = _region_mask(self, r, q, k, bp)
                causal = r.causal and not masked  # a mask takes the causal pattern in
                io = attention_cost.io_forward(B, T, 1, K, V, S, causal=causal, bytes_per=bp)
                io_b = attention_cost.io_backward(B, T, 1, K, V, S, causal=causal, bytes_per=bp)
                kf = attention_cost.flops_forward(B, T, 1, K, V, S, causal=causal) + mk.flops
                kb = attention_cost.flops_backward(B, T, 1, K, V, S, causal=causal) + mk.flops
                io, io_b = io + mk.io, io_b + mk.io_bwd
                kernel = R.softmax_attention_kernel(masked)
            else:
                la, nz = linear_attention_cost, r.normalize
                io = la.io_forward(B, T, 1, K, V, bytes_per=bp, normalize=nz)
                io_b = la.io_backward(B, T, 1, K, V, bytes_per=bp, normalize=nz)
                kf = la.flops_forward(B, T, 1, K, V, normalize=nz, precise=bp < 4)
                kb = la.flops_backward(B, T, 1, K, V, normalize=nz, precise=bp < 4)
                kernel = "ncd.ops.linear_attention" + (" (normalize)" if nz else "")
            for b in r.boxes:
                bc = by_name[b]
                bc.io_bytes = bc.io_bytes_bwd = ZERO
                # the FLOP figures stay the diagram's; the time is the kernel's own work
                last_box = b == r.boxes[-1]
                bc._time_flops = (kf if last_box else ZERO, kb if last_box else ZERO)
                bc.kernel = f"{kernel} ({r.name})"
                for _, sid, _ in bc.saved:
                    if self.storages[sid].kind == "own":
                        self.storages[sid].virtual = True
                bc.saved, bc.activation_bytes = [], ZERO
                bc._temps = bc._bwd_temps = ZERO  # type: ignore[attr-defined]
                if b != r.boxes[-1]:
                    for p in c.outs[b]:
                        self.storages[f"{b}.{p}"].virtual = True
            last.io_bytes, last.io_bytes_bwd = io, io_b
            out = self.wires[r.output]
            copied, do_copy = _relayouts(r, q, k, v, out)
            for role, w in (("q", q), ("k", k), ("v", v)):
                if role in copied:  # the op keeps its own [B, T, H, K] copy
                    sid = f"{last.name}:{role}_copy"
                    nb = self.storages[w.storage].nbytes
                    self.storages[sid] = _Storage(sid, nb, "own", index[last.name])
                    last.saved.append((f"{role}, copied to [B, T, H, K]", sid, nb))
                else:
                    last.saved.append((role, w.storage, self.storages[w.storage].nbytes))
            if r.kind == "attention" and not mk.saved:
                sid = self.wires[r.output].storage
                last.saved.append(("output o", sid, self.storages[sid].nbytes))
            for kept in mk.saved:  # SDPA's own output, the bias, the rows left a key
                sid = f"{last.name}:{kept.ref}"
                self.storages[sid] = _Storage(sid, kept.nbytes, "own", index[last.name])
                last.saved.append((kept.what, sid, kept.nbytes))
            last._bwd_temps += mk.bwd_temps  # type: ignore[attr-defined]
            last.notes += mk.notes
            if do_copy:
                # the output's gradient reaches the op as a permuted view: copied for the kernels
                extra = self.nbytes(out.type)
                last._bwd_temps += extra  # type: ignore[attr-defined]
                last.notes.append("its output's gradient is copied to [B, T, H, V] in the backward")
            if copied:
                last.notes.append(f"{', '.join(copied)} copied to [B, T, H, K] by the op and kept")
            if r.kind == "attention":
                last._bwd_temps += (  # type: ignore[attr-defined]
                    attention_cost.backward_temp_bytes(B, T, 1)
                )
                sid = f"{last.name}:lse"
                self.storages[sid] = _Storage(sid, 4 * B * T, "own", index[last.name])
                last.saved.append(("log-sum-exp per query (float32)", sid, 4 * B * T))
            if r.normalize:  # the float32 output and denominator (ops/linear_attention/cost.py)
                sid, nb = f"{last.name}:o32_den", 4 * B * T * (V + 1)
                self.storages[sid] = _Storage(sid, nb, "own", index[last.name])
                last.saved.append(("output and denominator (float32)", sid, nb))
                last._bwd_temps += (  # type: ignore[attr-defined]
                    linear_attention_cost.backward_temp_bytes(
                        B, T, 1, K, V, bytes_per=bp, normalize=True
                    )
                )
            last.notes.append(f"fused: IO and kept tensors of {kernel} (ops/*/cost.py)")


def _region_mask(self: _Walker, r: Region, q: _Wire, k: _Wire, bp) -> R.MaskCost:
    """A drawn chain's mask or bias (the `where`'s condition, the add's other operand) as
    the masked attention box its rewrite makes would run it (`rules.mask_cost`), SDPA's own
    output kept in the place of the region's."""
    m = self.wires[r.inputs["mask"]]
    mt, T, S = m.type, r.dims["query"], r.dims["key"]
    n_sdpa = mt.numel()
    if r.causal:
        for a, t in ((T, q.type), (S, k.type)):
            if mt.axis(a) is None:
                n_sdpa *= t.axis(a).size
    BH = q.type.numel() / (q.type.axis(T).size * q.type.axis(r.dims["head"]).size)
    out = self.nbytes(self.wires[r.output].type)
    keep = mt.dtype == "bool"
    mb = self.nbytes(TensorType((), mt.dtype))
    mk = R.mask_cost(BH, q.type.axis(T).size, k.type.axis(S).size, mt.numel(), mb, n_sdpa,
                     keep, bp, out, r.causal, m.grad and not keep)  # fmt: skip
    mk.saved.insert(0, R.Saved("SDPA's output (before empty rows are zeroed)", "own", "o", out))
    return mk


def _add_norm_io(self: _Walker, r: Region, by_name) -> None:
    """add → norm as ncd.ops.add_layer_norm / add_rms_norm (ops/norm/cost.py): reads x and h,
    writes the sum (kept: the norm's input) and the output once; forward and backward bytes
    on the norm, none on the add; RMSNorm keeps no x/rms."""
    c = self.c
    add, norm = r.boxes
    nb = c.box(norm)
    s = _resolve(c, c.outs[add]["out"])
    N = sympy.Mul(*[s.axis(a).size for a in nb.over])
    M = s.numel() / N
    bp = DTYPE_BYTES[self.dtype or s.dtype]
    kw = dict(rms=nb.kind == "rmsnorm", residual=True, affine=nb.affine)
    a, last = by_name[add], by_name[norm]
    a.io_bytes = a.io_bytes_bwd = ZERO
    a._time_flops = (ZERO, ZERO)
    last.io_bytes = norm_cost.io_forward(M, N, bp, **kw)
    last.io_bytes_bwd = norm_cost.io_backward(M, N, bp, **kw)
    last._time_flops = (norm_cost.flops_forward(M, N, **kw), norm_cost.flops_backward(M, N, **kw))
    kernel = "ncd.ops.add_rms_norm" if kw["rms"] else "ncd.ops.add_layer_norm"
    for bc in (a, last):
        bc.kernel = f"{kernel} ({r.name})"
    for what, sid, _ in list(last.saved):
        if what.startswith("x/rms"):
            self.storages[sid].virtual = True
            last.saved.remove((what, sid, _))
    last.notes.append(f"fused: IO of {kernel} (ops/norm/cost.py)")


def _short_conv_io(self: _Walker, r: Region, by_name) -> None:
    """conv → slice → [silu] as ncd.ops.short_conv (ops/short_conv/cost.py): x read and the
    output written once, x the only tensor kept (the SiLU's input is recomputed); forward and
    backward bytes and time on the last box, none on the others."""
    c = self.c
    conv = c.box(r.boxes[0])
    x = _resolve(c, c.ins[r.boxes[0]]["x"])
    C = x.axis(r.dims["channel"]).size
    M = x.numel() / C
    W = conv._norm("kernel")[0]
    bp = DTYPE_BYTES[self.dtype or x.dtype]
    end = c.box(r.boxes[-1])
    silu = end.kind == "unary" and end.fn == "silu"
    kw = dict(silu=silu, bias=conv.bias)
    kernel = "ncd.ops.short_conv"
    for name in r.boxes:
        bc = by_name[name]
        bc.io_bytes = bc.io_bytes_bwd = ZERO
        bc._time_flops = (ZERO, ZERO)
        bc.kernel = f"{kernel} ({r.name})"
        if name != r.boxes[0]:  # what SiLU keeps, and the padded output, are never written
            for _, sid, _ in bc.saved:
                if self.storages[sid].kind == "own":
                    self.storages[sid].virtual = True
            bc.saved = []
        if name != r.boxes[-1]:  # the padded output (the slice is a view of it)
            for p in c.outs[name]:
                self.storages[self.wires[(name, p)].storage].virtual = True
    last = by_name[r.boxes[-1]]
    last.io_bytes = short_conv_cost.io_forward(M, C, W, bp, bias=conv.bias)
    last.io_bytes_bwd = short_conv_cost.io_backward(M, C, W, bp, bias=conv.bias, silu=silu)
    last._time_flops = (short_conv_cost.flops_forward(M, C, W, **kw),
                        short_conv_cost.flops_backward(M, C, W, **kw))  # fmt: skip
    last._bwd_temps += short_conv_cost.workspace_backward(M, C, W, bp, silu)  # type: ignore[attr-defined]
    last.notes.append(f"fused: IO and kept tensors of {kernel} (ops/short_conv/cost.py)")


def _relayouts(r: Region, q: _Wire, k: _Wire, v: _Wire, o: _Wire) -> tuple[list[str], bool]:
    """(which of q, k, v the op copies and keeps, whether its output's gradient is copied)
    for a fused region (`rules.relayouts`)."""
    d, ws = r.dims, {"q": q, "k": k, "v": v, "out": o}
    names = {p: w.type.names for p, w in ws.items()}
    layouts = {p: w.layout for p, w in ws.items()}
    return R.relayouts(r.kind, d["query"], d["key"], d["head"], names, layouts)


def _no_gradient(box) -> bool:
    """Whether the box's lowering gives results without autograd history (comparisons)."""
    return box.kind == "binary" and box.fn in ("ge", "gt", "le", "lt", "eq")


def _on_its_own(sub_checked):
    """A called subcircuit checked on its own, where its fused regions are matched (as the
    compiler's rewrite matches them: a call site's types and sizes do not change them)."""
    try:
        return check(sub_checked.circuit)
    except NcdError:
        return sub_checked


def _handed_on(sub_checked, name: str) -> bool:
    """Whether a repeated subcircuit's output that feeds input `name` of the next block is
    that input itself (wired straight through): every block then holds one tensor."""
    outs = sub_checked.output_sources
    if name in outs:
        return outs[name] == ("", name)
    return len(outs) == len(sub_checked.inputs) == 1 and next(iter(outs.values())) == ("", name)


def _float(t) -> bool:
    return isinstance(t, TensorType) and t.dtype.startswith(("float", "bfloat"))


def _storages(w: _Wire) -> list[str]:
    if w.members is not None:
        return [s for m in w.members.values() for s in _storages(m)]
    return [w.storage]


class _Sum:
    """A running sum of byte counts as {monomial: coefficient}: adding a storage is a dict
    update, so a schedule of n steps costs O(n) however many tensors are alive; sympy sees
    only the candidates that survive pruning."""

    def __init__(self, terms: dict | None = None):
        self.terms: dict = dict(terms or {})

    def add(self, expr, sign: int = 1) -> None:
        for m, k in _terms(expr):
            v = self.terms.get(m, 0) + sign * k
            if v == 0:
                self.terms.pop(m, None)
            else:
                self.terms[m] = v

    def plus(self, *exprs, sign: int = 1) -> _Sum:
        out = _Sum(self.terms)
        for e in exprs:
            out.add(e, sign)
        return out


_TERMS: dict = {}


def _terms(expr) -> tuple:
    """`expr` expanded, as ((monomial, coefficient), ...); coefficients are ints where they
    are integers. Cached: a circuit's storages repeat a few byte counts many times."""
    got = _TERMS.get(expr)
    if got is None:
        if len(_TERMS) > 100_000:
            _TERMS.clear()
        d = sympy.expand(expr).as_coefficients_dict() if expr != 0 else {}
        got = tuple((m, int(k) if k.is_Integer else k) for m, k in d.items() if k != 0)
        _TERMS[expr] = got
    return got


def _to_expr(s: _Sum) -> sympy.Expr:
    return sympy.Add(*[k * m for m, k in s.terms.items()]) if s.terms else ZERO


def _pareto(cands: list[_Sum]) -> list[sympy.Expr]:
    """The candidates no other dominates, as sympy formulas, in their order (`prune`)."""
    if len(cands) <= 1:
        return [_to_expr(c) for c in cands]
    monomials: dict = {}
    fast = True
    for c in cands:
        for m, k in c.terms.items():
            if m not in monomials:
                monomials[m] = len(monomials)
                fast = fast and monomial(m)
            fast = fast and isinstance(k, int) and abs(k) < 2**62
    if not fast:
        return prune([_to_expr(c) for c in cands])
    vecs = [[0] * len(monomials) for _ in cands]
    for v, c in zip(vecs, cands):
        for m, k in c.terms.items():
            v[monomials[m]] = k
    return [_to_expr(cands[i]) for i in prune_vectors(vecs, list(monomials))]


def _schedule(c, boxes, storages, wires):
    """Liveness over forward then backward in the compiled order; returns the candidate peak
    expressions of each step (those no other step's dominates, forward then backward) and the
    baseline (inputs and parameters)."""
    n = len(boxes)
    base = sympy.Add(*[s.nbytes for s in storages.values() if s.kind in ("input", "param")])
    live = _Sum()
    live.add(base)
    fwd: list[_Sum] = []
    keep_until: dict[str, int] = {}  # storage -> backward step that frees it
    for s in storages.values():
        if s.savers and s.kind in ("act", "own"):
            keep_until[s.id] = min(s.savers)
    out_storages = {sid for src in c.output_sources.values() for sid in _storages(wires[src])}
    produced: dict[int, list[_Storage]] = {}
    released: dict[int, list[_Storage]] = {}  # forward step after which a storage is freed
    for s in storages.values():
        if s.kind in ("act", "own") and not s.virtual and s.producer >= 0:
            produced.setdefault(s.producer, []).append(s)
            if s.id not in keep_until and s.id not in out_storages:
                released.setdefault(max(s.producer, s.last_use), []).append(s)
    alive: set[str] = set()
    for i, bc in enumerate(boxes):
        for s in produced.get(i, []):
            alive.add(s.id)
            live.add(s.nbytes)
        extra = getattr(bc, "_peak_fwd", None)
        if extra is not None:
            before = live.plus(*(s.nbytes for s in produced.get(i, [])), sign=-1)
            fwd += [before.plus(e) for e in extra]
        fwd.append(live.plus(getattr(bc, "_temps", ZERO)))
        for s in released.get(i, []):
            alive.discard(s.id)
            live.add(s.nbytes, -1)
    # backward: seed the outputs' gradients, then each box in reverse order. A gradient
    # lives in a buffer; a box that passes its output's gradient through unchanged to an
    # input (`grad_through`: an add) hands that input the same buffer. A tensor read by
    # several boxes gets its buffer from the last reader's backward (the first to run); each
    # earlier reader's backward makes its own gradient, which autograd adds into the buffer
    # and frees: a transient of the tensor's size during that step. The outputs' gradients
    # are the caller's, held until the backward returns.
    bwd: list[_Sum] = []
    buf: dict[str, str] = {}  # storage -> the buffer holding its gradient
    refs: dict[str, int] = {}  # buffer -> storages (and the caller) holding it
    size: dict[str, sympy.Expr] = {}
    consumed: dict[int, list[str]] = {}  # backward step at which a gradient is consumed

    def hold(sid: str, b: str) -> None:
        buf[sid] = b
        refs[b] = refs.get(b, 0) + 1
        s = storages[sid]
        if s.kind == "act" and s.producer >= 0:
            consumed.setdefault(s.producer, []).append(sid)

    for sid in sorted(out_storages):
        s = storages[sid]
        if s.grad and s.kind != "input":
            size[sid] = s.nbytes
            refs[sid] = 1  # the caller's
            hold(sid, sid)
            live.add(s.nbytes)
    until_at: dict[int, list[str]] = {}
    for sid, until in keep_until.items():
        until_at.setdefault(until, []).append(sid)
    order = c.order
    for i in range(n - 1, -1, -1):
        bc = boxes[i]
        name = order[i]
        through = getattr(bc, "_grad_through", ())
        out_bufs = [buf[sid] for p in c.outs[name] for sid in _storages(wires[(name, p)])
                    if sid in buf]  # fmt: skip
        new, transient = [], ZERO
        for p, src in c.sources[name].items():
            for sid in _storages(wires[src]):
                s = storages[sid]
                if not s.grad or s.virtual:
                    continue
                # a leaf's .grad is a clone of a gradient still shared elsewhere
                passed = p in through and len(out_bufs) == 1 and s.kind not in ("input", "param")
                if sid in buf:  # a later reader made its buffer: this one's is added in
                    if not passed:
                        transient += s.nbytes
                elif passed:
                    hold(sid, out_bufs[0])
                else:
                    size[sid] = s.nbytes
                    hold(sid, sid)
                    new.append(s.nbytes)
        pgrad = bc.param_bytes if bc.param_bytes != 0 else ZERO
        before = _Sum(live.terms)
        for nb in new:
            live.add(nb)
        live.add(pgrad)
        extra = getattr(bc, "_peak_bwd", None)
        held = [nb for _, sid, nb in bc.saved if keep_until.get(sid) == i]
        if extra is None and getattr(bc, "_frees_kept", False):
            # what it keeps as its backward starts, or the gradients once it has freed that
            extra = [sum(held, ZERO) + getattr(bc, "_bwd_temps", ZERO), sum(new, ZERO) + pgrad]
        if extra is not None:
            before = before.plus(*held, sign=-1)
            bwd += [before.plus(e, transient) for e in extra]
        else:
            bwd.append(live.plus(getattr(bc, "_bwd_temps", ZERO), transient))
        # the gradients of what this box produced are consumed; its kept tensors are released
        for sid in consumed.pop(i, []):
            b = buf.pop(sid, None)
            if b is not None:
                refs[b] -= 1
                if refs[b] == 0:
                    live.add(size[b], -1)
        for sid in until_at.pop(i, []):
            if sid in alive and sid not in out_storages:  # the caller holds the outputs
                alive.discard(sid)
                live.add(storages[sid].nbytes, -1)
                del keep_until[sid]
    return _pareto(fwd), _pareto(bwd), base


def known_sizes(circuit, checked=None) -> set[str]:
    """Every size name the circuit uses: axes, bound sizes, sizes named in expressions."""
    checked = checked or circuit.check()
    known = set(checked.symbols()) | set(circuit.sizes) | set(circuit.axes)
    known |= {s.name for s in checked.unifier.subst}  # sizes unified with others (S = T)
    for sub in circuit.subcircuits.values():
        known |= set(sub.axes) | set(sub.sizes)
    for c in [circuit, *circuit.subcircuits.values()]:
        for b in c.boxes:
            for f in ("factor", "stop", "sizes", "repeat", "flops", "scale"):
                v = getattr(b, f, None)
                for text in v if isinstance(v, tuple) else [v]:
                    if isinstance(text, str):
                        known |= {s.name for s in parse_size(text).free_symbols}
    return known


def analyse(
    circuit,
    sizes: dict[str, int] | None = None,
    lowering: str = "fused",
    device: str | Device = "h200",
    *,
    dtype: str | None = None,
    grad_inputs: bool = True,
    symbolic: bool = False,
):
    """Cost of `circuit`: FLOPs (a multiply-add counts 2), parameters, activation memory kept
    for the backward pass, peak memory over forward + backward, HBM traffic, roofline time.

    sizes: binds axis sizes (on top of the circuit's default `sizes`); every figure is also a
        sympy formula in the sizes. Unbound sizes are an error (`CostError` naming them)
        unless `symbolic=True`, which gives formulas only.
    lowering: "fused" (fused regions count only the wires crossing their border; attention
        patterns priced with ncd.ops' kernels) or "unfused" (every box its own kernel).
    device: a profile name ("h200") or a `Device`, for the roofline time.
    dtype: count floating tensors at this element type (e.g. "bfloat16") instead of theirs.
    grad_inputs: whether floating inputs need gradients (as a layer inside a network does).
    Returns a `Report`.
    """
    from .report import Report

    if lowering not in LOWERINGS:
        raise CostError(f"lowering must be one of {', '.join(LOWERINGS)}, found {lowering!r}")
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise CostError(f"unknown dtype {dtype!r}; one of {', '.join(DTYPE_BYTES)}")
    dev = get_device(device)
    sizes = dict(sizes or {})
    try:
        checked = circuit.check(sizes=None)
    except NcdError:
        raise
    unknown = sorted(set(sizes) - known_sizes(circuit, checked))
    if unknown:
        raise CostError(
            f"circuit '{circuit.name}' has no size {', '.join(unknown)}; its sizes are "
            f"{', '.join(sorted(set(checked.symbols()) | set(circuit.sizes))) or 'none'}"
        )
    binding = {**circuit.sizes, **sizes}
    if sizes:  # without sizes of its own the binding is the circuit's: checked already
        checked = circuit.check(sizes=binding)
    an = _Walker(checked, lowering, dev, dtype, {} if grad_inputs else _no_grads(checked)).run()
    report = Report.build(circuit, an, binding, lowering, dev, dtype, derived_axes(an.checked))
    missing = report.unbound()
    if missing and not symbolic:
        raise CostError(
            f"sizes not bound for circuit '{circuit.name}': {', '.join(missing)}; pass "
            + ",".join(f"{m}=…" for m in missing)
            + " (--sizes on the command line), or ask for formulas only (symbolic=True, "
            "--symbolic)"
        )
    return report


def _no_grads(checked) -> dict[str, bool]:
    return dict.fromkeys(checked.inputs, False)


__all__ = ["BoxCost", "analyse", "known_sizes"]
