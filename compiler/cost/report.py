"""The cost report: formulas, leading terms and numbers; a terminal table, HTML, JSON."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

import sympy

from ncd.circuits.sizes import evaluate, symbol

from .devices import Device
from .names import readable
from .pareto import integer_value
from .symbolic import big_o, degree, leading, maximum, ordered, per_doubling, pretty, terms

CONVENTIONS = (
    "FLOPs: a multiply-add counts 2. Training mode; forward pass unless marked backward. "
    "Bytes: element size "
    "of each wire's dtype. Activation: unique tensors autograd keeps for the backward pass. "
    "Peak: liveness over forward + backward in the compiled order, inputs and parameters "
    "included. IO: bytes between HBM and the chip. Time: roofline max(FLOPs/rate, bytes/bw) "
    "per kernel, summed."
)

# Totals in the report, in the order shown: key -> (title, unit); the gallery page's table and
# the scaling plot's panels take their titles from here.
FIGURES = {
    "flops": ("FLOPs (forward, multiply-add = 2)", "flop"),
    "flops_backward": ("FLOPs (backward)", "flop"),
    "mm_flops": ("matmul FLOPs (forward)", "flop"),
    "params": ("parameters", ""),
    "activation_bytes": ("activation memory kept for backward", "B"),
    "peak_bytes": ("peak memory, fwd+bwd", "B"),
    "io_bytes": ("HBM traffic (forward)", "B"),
    "io_bytes_backward": ("HBM traffic (backward)", "B"),
    "time_s": ("roofline time (forward)", "s"),
    "time_train_s": ("roofline time (fwd+bwd)", "s"),
}


# The per-box table's columns (terminal, notebook and gallery page), and one row of it as text.
BOX_COLUMNS = ["box", "kind", "FLOPs", "params", "kept", "IO", "time", "kernel"]


def box_cells(r: dict) -> list[str]:
    """A row of `Report.box_rows()` as the table's cells, in BOX_COLUMNS' order."""
    return [
        r["name"],
        r["kind"],
        human(r["flops"], "flop"),
        human(r["params"]) if r["params"] else "",
        human(r["activation_bytes"], "B") if r["activation_bytes"] else "",
        human(r["io_bytes"], "B") if r["io_bytes"] else "",
        human(r["time_s"], "s"),
        r["kernel"],
    ]


def human(x, unit: str = "") -> str:
    """1.5e9 -> '1.50 G', bytes in binary units."""
    if x is None:
        return "?"
    if unit == "s":
        for u, f in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if abs(x) >= f or u == "ns":
                return f"{x / f:.3g} {u}"
    if unit == "B":
        for u, f in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(x) >= f:
                return f"{x / f:.3g} {u}"
        return f"{int(x)} B"
    for u, f in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g} {u}{'' if unit in ('', 'flop') else unit}"
    return f"{x:g}"


@dataclass
class Report:
    """What `ncd.analyse` returns. Every figure is a sympy formula (`formulas`), with its
    leading term (`leading(key)`) and its number under `sizes` (`numbers`, None if unbound).

    `formulas` are in base sizes; what is shown (leading terms, big-O, printed formulas)
    writes derived sizes by the axes that carry them (`derived`, e.g. the vision
    transformer's T for floor(X/4)·floor(Y/4); names.py says which qualify)."""

    circuit: str
    lowering: str
    device: Device
    dtype: str | None
    sizes: dict[str, int]
    formulas: dict[str, sympy.Expr]
    boxes: list = field(default_factory=list)
    peak_candidates: list[sympy.Expr] = field(default_factory=list)
    analysis: object = None
    derived: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # block -> the block around it
    _shown: dict = field(default_factory=dict, repr=False, compare=False)
    _numbers: dict = field(default_factory=dict, repr=False, compare=False)

    # -- construction
    @classmethod
    def build(cls, circuit, an, binding, lowering, dev, dtype, derived=None) -> Report:
        def tot(f):
            return sympy.expand(sympy.Add(*[getattr(b, f) for b in an.boxes]))

        peak = maximum(an.peak_candidates)
        f = {
            "flops": tot("flops"),
            "flops_backward": tot("flops_bwd"),
            "mm_flops": tot("mm_flops"),
            "mm_flops_backward": tot("mm_flops_bwd"),
            "params": tot("params"),
            "param_bytes": tot("param_bytes"),
            "activation_bytes": sympy.expand(an.activation),
            "peak_bytes": peak,
            "io_bytes": tot("io_bytes"),
            "io_bytes_backward": tot("io_bytes_bwd"),
            "time_s": sympy.Add(*[b.time_s for b in an.boxes]),
            "time_bwd_s": sympy.Add(*[b.time_bwd_s for b in an.boxes]),
        }
        f["time_train_s"] = f["time_s"] + f["time_bwd_s"]
        return cls(
            circuit.name, lowering, dev, dtype, dict(binding), f, an.boxes,
            an.peak_candidates, an, dict(derived or {}), dict(circuit.groups),
        )  # fmt: skip

    # -- numbers
    def _sub(self):
        return {symbol(k): sympy.Integer(v) for k, v in self.sizes.items()}

    def number(self, expr):
        """The value of a formula under the report's sizes (None where sizes stay free)."""
        key = (expr, tuple(sorted(self.sizes.items())))
        if key not in self._numbers:  # tables ask for the same formulas box after box
            self._numbers[key] = self._number(expr)
        return self._numbers[key]

    def _number(self, expr):
        if isinstance(expr, sympy.Max):  # the symbolic peak: its largest candidate
            vals = [self._number(a) for a in expr.args]
            return None if None in vals else max(vals)
        exact = integer_value(expr, self.sizes)
        if exact is not None:
            return exact
        e = sympy.sympify(expr).xreplace(self._sub())
        if e.free_symbols:
            return None
        if e.is_Integer:
            return int(e)
        return float(sympy.N(e, 30))

    @property
    def numbers(self) -> dict:
        out = {k: self.number(v) for k, v in self.formulas.items()}
        cands = [self.number(c) for c in self.peak_candidates]
        if cands and None not in cands:
            out["peak_bytes"] = max(cands)
        return out

    def peak_formula(self) -> sympy.Expr:
        """The step of the schedule that holds the most memory at the report's sizes (the
        whole symbolic maximum `formulas["peak_bytes"]` when sizes are free)."""
        vals = [self.number(c) for c in self.peak_candidates]
        if not vals or None in vals:
            return self.formulas["peak_bytes"]
        return sympy.expand(self.peak_candidates[vals.index(max(vals))])

    def unbound(self) -> list[str]:
        free = set()
        for k in ("flops", "activation_bytes", "io_bytes", "params"):
            free |= {s.name for s in self.formulas[k].free_symbols}
        return sorted(free - set(self.sizes))

    def readable(self, expr) -> sympy.Expr:
        """A formula with derived sizes written as their axes (floor(X/4)·floor(Y/4) -> T);
        equal to `expr` once each axis in `derived` is replaced by its size."""
        key = (sympy.sympify(expr), tuple(sorted(self.derived.items(), key=str)))
        if key not in self._shown:  # tables and JSON show the same formulas several times
            self._shown[key] = readable(expr, self.derived)
        return self._shown[key]

    def show(self, expr) -> str:
        """A formula as printed: derived sizes by name, `·` for products."""
        return pretty(self.readable(expr))

    def leading(self, key: str = "flops") -> sympy.Expr:
        """The leading term of a figure, derived sizes by name: 4·B·H²·K·N·T·(K + V)."""
        return leading(self.readable(self.formulas[key]))

    def big_o(self, key: str = "flops") -> str:
        """The leading term's big-O: how a figure grows when every size grows together."""
        return big_o(self.readable(self.formulas[key]))

    # -- what dominates at the report's sizes
    def _shown_formula(self, key: str) -> sympy.Expr:
        f = self.peak_formula() if key == "peak_bytes" else self.formulas[key]
        return self.readable(f)

    def _values(self) -> dict[sympy.Symbol, int] | None:
        """{size: value} for every size the shown formulas name (named derived axes at the
        value of their size); None while some size is free."""
        if self.unbound():
            return None
        values = {symbol(k): v for k, v in self.sizes.items()}
        for a, size in self.derived.items():
            v = evaluate(size, self.sizes)
            if v is None or v != int(v):
                return None
            values[a] = int(v)
        return values

    def terms(self, key: str = "flops"):
        """The terms of a figure at the report's sizes, largest first, each with its value and
        share (`symbolic.Term`); None while sizes are free. Multi-head attention at T=4096:
        2·T^2·B·H·(K + V) 83 %, 6·T^2·B·H 16 %, then the projections."""
        if ("terms", key) not in self._shown:  # the table and JSON ask for each several times
            values = self._values()
            found = None if values is None else terms(self._shown_formula(key), values)
            self._shown[("terms", key)] = found
        return self._shown[("terms", key)]

    def per_doubling(self, key: str = "flops") -> dict[str, float] | None:
        """{size: factor by which the figure grows when that size alone doubles}, largest
        first, at the report's sizes (None while sizes are free): T 3.97 for attention."""
        values = self._values()
        return None if values is None else per_doubling(self._shown_formula(key), values)

    def dominant(self, key: str = "flops") -> str:
        """The big-O of the figure's largest term at the report's sizes, highest powers first
        (`O(T^2·B·H·(K + V))`); while sizes are free, the leading term's (`big_o`)."""
        found = self.terms(key)
        if not found:
            return big_o(self._shown_formula(key))
        lead = found[0].expr
        return "O(1)" if lead.is_number else f"O({ordered(lead, constant=False)})"

    def scaling_lines(self, key: str = "flops", shown: int = 4) -> list[str]:
        """Two lines: the dominant term with each size's factor per doubling, then the terms
        with their shares (the first `shown`, then what the rest add up to)."""
        ts, dbl = self.terms(key), self.per_doubling(key)
        if not ts or dbl is None:
            f = self._shown_formula(key)
            return [f"leading {pretty(leading(f))}  {big_o(f)} (every size growing together)"]
        factors = ", ".join(f"{a} ×{x:.3g}" for a, x in dbl.items() if abs(x - 1) >= 0.005)
        out = [f"dominant {self.dominant(key)}" + (f"; per doubling {factors}" if factors else "")]
        if len(ts) > 1:
            head = ", ".join(f"{t} {_pct(t.share)}" for t in ts[:shown])
            rest = ts[shown:]
            if rest:
                head += f", {len(rest)} more {_pct(sum(t.share for t in rest))}"
            out.append(f"terms {head}")
        return out

    def degree(self, axis: str, key: str = "flops") -> int | None:
        """Degree of a figure in one size: 2 for softmax attention's FLOPs in T (with S = T);
        for a derived axis (the vision transformer's T), in that axis."""
        f = self.formulas[key]
        return degree(self.readable(f) if symbol(axis) in self.derived else f, axis)

    def at(self, key: str = "flops", **sizes) -> float | None:
        """A figure under other sizes: `report.at("flops", T=2048, S=2048)`."""
        sub = {symbol(k): sympy.Integer(v) for k, v in {**self.sizes, **sizes}.items()}
        e = sympy.sympify(self.formulas[key]).xreplace(sub)
        if key == "peak_bytes":
            vals = [sympy.sympify(c).xreplace(sub) for c in self.peak_candidates]
            return float(max(vals)) if all(not v.free_symbols for v in vals) else None
        return None if e.free_symbols else float(e)

    @property
    def flop_counter_zero(self) -> list[dict]:
        """Boxes whose FLOPs torch's FlopCounterMode counts as zero (elementwise work)."""
        return self._per_box(lambda b: b.flops - b.run_mm)

    @property
    def flop_counter_more(self) -> list[dict]:
        """Boxes whose products FlopCounterMode counts more of than run: causal attention,
        whose every (query, key) pair it counts; `flops` is the difference (forward)."""
        return self._per_box(lambda b: b.mm_flops - b.run_mm)

    def _per_box(self, flops) -> list[dict]:
        """A row for each box where `flops(box)` is not zero: its number and formula."""
        out = []
        for b in self.boxes:
            f = sympy.expand(flops(b))
            if f != 0:
                out.append({"box": b.name, "kind": b.kind, "flops": self.number(f),
                            "formula": self.show(f)})  # fmt: skip
        return out

    # -- output
    def box_rows(self) -> list[dict]:
        rows = []
        for b in self.boxes:
            rows.append(
                {
                    "name": b.name,
                    "kind": b.kind,
                    "label": b.label,
                    "group": b.group,
                    "repeat": self.number(b.repeat),
                    "flops": self.number(b.flops),
                    "flops_formula": self.show(sympy.expand(b.flops)),
                    "mm_flops": self.number(b.mm_flops),
                    "flops_backward": self.number(b.flops_bwd),
                    "mm_flops_backward": self.number(b.mm_flops_bwd),
                    "params": self.number(b.params),
                    "activation_bytes": self.number(b.activation_bytes),
                    "saved": [
                        {"tensor": what, "storage": sid, "bytes": self.number(nb)}
                        for what, sid, nb in b.saved
                    ],
                    "io_bytes": self.number(b.io_bytes),
                    "io_bytes_backward": self.number(b.io_bytes_bwd),
                    "time_s": self.number(b.time_s),
                    "time_backward_s": self.number(b.time_bwd_s),
                    "kernel": b.kernel,
                    "notes": b.notes,
                }
            )
        return rows

    def block_rows(self) -> list[dict]:
        """Per block of the circuit (a drawing's shaded region: a gallery block, an imported
        submodule), in order of first appearance, each inside the blocks around it (`depth`):
        the sums of its boxes' figures and its shares of the circuit's FLOPs and time. `kept`
        sums the boxes' kept tensors (one kept by two boxes counts twice here)."""
        figures = {  # row key -> the box's attribute
            "flops": "flops", "params": "params", "activation_bytes": "activation_bytes",
            "io_bytes": "io_bytes", "time_s": "time_s", "time_backward_s": "time_bwd_s",
        }  # fmt: skip
        blocks: dict[str, dict] = {}
        children: dict[str, list[str]] = {}  # block ('' the top) -> blocks inside, as met
        for box in self.boxes:
            g, path = box.group, []
            while g and g not in path:
                path.append(g)
                g = self.groups.get(g, "")
            outer = ""
            for depth, title in enumerate(reversed(path)):
                if title not in blocks:
                    blocks[title] = {"block": title, "depth": depth, "boxes": 0,
                                     **dict.fromkeys(figures, 0)}  # fmt: skip
                    children.setdefault(outer, []).append(title)
                row, outer = blocks[title], title
                row["boxes"] += 1
                for k, attr in figures.items():
                    v = self.number(getattr(box, attr))
                    row[k] = None if row[k] is None or v is None else row[k] + v
        n = self.numbers
        for row in blocks.values():
            for k, total in (("flops", n["flops"]), ("time_s", n["time_s"])):
                ok = row[k] is not None and total
                row[f"{k}_share"] = row[k] / total if ok else None
        order: list[str] = []  # each block, then the blocks inside it

        def walk(title):
            for inner in children.get(title, []):
                order.append(inner)
                walk(inner)

        walk("")
        return [blocks[t] for t in order]

    def to_dict(self) -> dict:
        n = self.numbers
        total = {
            "flops": n["flops"],
            "flops_formula": self.show(self.formulas["flops"]),
            "flops_leading": pretty(self.leading("flops")),
            "flops_big_o": self.big_o("flops"),
            "flops_dominant": self.dominant("flops"),
            "params": n["params"],
            "activation_bytes": n["activation_bytes"],
            "peak_bytes": n["peak_bytes"],
            "peak_formula": self.show(self.peak_formula()),
            "io_bytes": n["io_bytes"],
            "time_s": n["time_s"],
        }
        for k in self.formulas:
            if k not in total:
                total[k] = n[k]
        shown = {k: self.readable(v) for k, v in self.formulas.items() if not k.startswith("time")}
        shown["peak_bytes"] = self.readable(self.peak_formula())
        formulas = {k: pretty(v) for k, v in shown.items()}
        return {
            "circuit": self.circuit,
            "conventions": CONVENTIONS,
            "lowering": self.lowering,
            "device": {
                "name": self.device.name,
                "matmul_flops": self.device.matmul_flops,
                "bandwidth": self.device.bandwidth,
                "vector_flops": self.device.vector_flops,
                "source": self.device.source,
                "platform": self.device.platform,
            },
            "dtype": self.dtype,
            "sizes": self.sizes,
            "total": total,
            "formulas": formulas,
            "derived_sizes": self.derived_sizes(),
            "leading": {k: pretty(leading(v)) for k, v in shown.items()},
            "dominant": {k: self.dominant(k) for k in shown},
            "per_doubling": {k: self.per_doubling(k) for k in shown},
            "terms": {k: _term_rows(self.terms(k)) for k in shown},
            "flop_counter_zero": self.flop_counter_zero,
            "flop_counter_more": self.flop_counter_more,
            "boxes": self.box_rows(),
            "blocks": self.block_rows(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        """The terminal table: one row per box, then the totals with formulas."""
        rows = []
        for r, b in zip(self.box_rows(), self.boxes):
            kind = b.kind + (f" ×{pretty(b.repeat)}" if b.kind == "call" else "")
            rows.append(box_cells({**r, "kind": kind}))
        out = [
            f"{self.circuit}: lowering {self.lowering}, device {self.device.name}, sizes "
            + (", ".join(f"{k}={v}" for k, v in sorted(self.sizes.items())) or "symbolic")
            + (f", counted as {self.dtype}" if self.dtype else ""),
            *_columns(BOX_COLUMNS, rows),
            "",
        ]
        out += self._block_table()
        kept = [
            f"  {b.name}: "
            + ", ".join(f"{what} {human(self.number(nb), 'B')}" for what, _, nb in b.saved)
            for b in self.boxes
            if b.saved
        ]
        if kept:
            out += ["kept for the backward pass (a tensor kept twice counts once in the total):"]
            out += kept
            out.append("")
        n = self.numbers
        if self.derived:
            out.append("in the formulas, " + self._derived_text())
        w = max(len(title) for title, _ in FIGURES.values())  # the titles' column
        for key, (title, unit) in FIGURES.items():
            f = self.readable(self.peak_formula() if key == "peak_bytes" else self.formulas[key])
            val = human(n.get(key), unit)
            if key.startswith("time"):
                out.append(f"{title:{w}} {val:>10}")
                continue
            out.append(f"{title:{w}} {val:>10}   = {pretty(f)}")
            if not f.is_number:
                out += [f"{'':{w}} {'':>10}   {line}" for line in self.scaling_lines(key)]
        out.append("")
        out.append(CONVENTIONS)
        zero = self.flop_counter_zero
        if zero:
            out.append(  # the amount says which part: a linear box's is its bias add
                "Elementwise FLOPs, which FlopCounterMode counts as zero: "
                + ", ".join(f"{z['box']} ({z['kind']}) {human(z['flops'])}" for z in zero)
            )
        more = self.flop_counter_more
        if more:
            out.append(
                "Products FlopCounterMode counts beyond those priced (every (query, key) pair "
                "of causal attention; the matmul FLOPs above include them): "
                + ", ".join(f"{z['box']} ({z['kind']}) {human(z['flops'])}" for z in more)
            )
        return "\n".join(out)

    def _block_table(self) -> list[str]:
        """The blocks' sums (nested blocks indented), or nothing for a circuit without."""
        blocks = self.block_rows()
        if not blocks:
            return []
        head = ["block", "boxes", "FLOPs", "share", "params", "kept", "IO", "time", "share"]
        rows = [
            [
                "  " * b["depth"] + b["block"],
                str(b["boxes"]),
                human(b["flops"], "flop"),
                _pct(b["flops_share"]) if b["flops_share"] is not None else "",
                human(b["params"]) if b["params"] else "",
                human(b["activation_bytes"], "B") if b["activation_bytes"] else "",
                human(b["io_bytes"], "B") if b["io_bytes"] else "",
                human(b["time_s"], "s"),
                _pct(b["time_s_share"]) if b["time_s_share"] is not None else "",
            ]
            for b in blocks
        ]
        title = "by block (a block's boxes summed, nested blocks indented; shares of the total):"
        return [title, *_columns(head, rows), ""]

    def derived_sizes(self) -> dict[str, str]:
        """{axis: its size} for the axes the formulas name: {"T": "floor(X/4)·floor(Y/4)"}."""
        return {a.name: pretty(sympy.factor(v)) for a, v in sorted(self.derived.items(), key=str)}

    def _derived_text(self) -> str:
        """'T = floor(X/4)·floor(Y/4) (the size of axis T)'."""
        sizes = self.derived_sizes().items()
        return "; ".join(f"{a} = {v} (the size of axis {a})" for a, v in sizes)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        e = html.escape
        n = self.numbers
        rows = []
        for r in self.box_rows():
            cells = box_cells(r)
            rows.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        tot = []
        for key, (title, unit) in FIGURES.items():
            f = self.readable(self.peak_formula() if key == "peak_bytes" else self.formulas[key])
            formula = "" if key.startswith("time") else e(pretty(f))
            lead = "" if key.startswith("time") or f.is_number else e(self.dominant(key))
            tot.append(
                f"<tr><th>{e(title)}</th><td>{e(human(n.get(key), unit))}</td>"
                f"<td><code>{formula}</code></td><td>{lead}</td></tr>"
            )
        blocks = "".join(
            f"<tr><td>{'&nbsp;' * 4 * b['depth']}{e(b['block'])}</td>"
            f"<td>{e(human(b['flops'], 'flop'))}</td>"
            f"<td>{e(_pct(b['flops_share'])) if b['flops_share'] is not None else ''}</td>"
            f"<td>{e(human(b['params']))}</td><td>{e(human(b['time_s'], 's'))}</td></tr>"
            for b in self.block_rows()
        )
        if blocks:
            blocks = (
                "<table><thead><tr><th>block</th><th>FLOPs</th><th>share</th><th>params</th>"
                f"<th>time</th></tr></thead><tbody>{blocks}</tbody></table>"
            )
        return (
            f"<div><b>{e(self.circuit)}</b> — lowering {e(self.lowering)}, device "
            f"{e(self.device.name)}, sizes {e(str(self.sizes))}"
            "<table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in BOX_COLUMNS)
            + "</tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            + blocks
            + "<table>"
            + "".join(tot)
            + "</table>"
            + (f"<p>In the formulas, {e(self._derived_text())}</p>" if self.derived else "")
            + f"<p><small>{e(CONVENTIONS)}</small></p></div>"
        )


def _columns(head: list[str], rows: list[list]) -> list[str]:
    """A terminal table: the header, a rule, the rows, each column as wide as its widest."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    return [
        line,
        "-" * len(line),
        *("  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in rows),
    ]


def _pct(share: float) -> str:
    """83%, 4.2%, <0.1%."""
    pct = 100 * share
    if abs(pct) >= 9.95:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%" if abs(pct) >= 0.05 else "<0.1%"


def _term_rows(found) -> list[dict] | None:
    """[{"term", "value", "share"}] of `Report.terms`, for JSON."""
    if found is None:
        return None
    return [{"term": str(t), "value": t.value, "share": t.share} for t in found]
