"""Graph passes on a checked circuit, before lowering: dead boxes and common subexpressions.

(Pattern rewrites, which change the circuit itself, are in rewrites.py; size folding happens in
the lowering, which evaluates every size and constant factor to a number once.)
"""

from __future__ import annotations

import networkx as nx

from ncd.circuits.validate import Checked


def live_boxes(c: Checked) -> set[str]:
    """Boxes some output depends on (dead boxes are not lowered), via a networkx graph."""
    g = nx.DiGraph()
    g.add_nodes_from(c.order)
    for box, srcs in c.sources.items():
        for sb, _ in srcs.values():
            if sb:
                g.add_edge(sb, box)
    live: set[str] = set()
    for sb, _ in c.output_sources.values():
        if sb and sb not in live:
            live.add(sb)
            live |= nx.ancestors(g, sb)
    return live


# random, holding a subcircuit or a callable, or holding buffers of their own (integer kinds)
_NO_CSE = {"dropout", "call", "opaque", "constant", "requantize", "int_linear"}


def common_subexpressions(c: Checked, live: set[str]) -> dict[str, str]:
    """Boxes that compute what an earlier box computes (same kind, options and sources):
    box -> the earlier box. Learned and random boxes are never merged."""
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for name in c.order:
        if name not in live:
            continue
        b = c.box(name)
        # The kind's flag, not `is_learned()`: a batch norm without `affine` learns nothing
        # but keeps running statistics of its own.
        if b.learned or b.kind in _NO_CSE:
            continue
        srcs = tuple(sorted((p, alias.get(sb, sb), sp) for p, (sb, sp) in c.sources[name].items()))
        opts = b.model_dump(exclude={"name", "label", "group", "inputs"})
        key = (b.kind, repr(opts), srcs)
        if key in seen:
            alias[name] = seen[key]
        else:
            seen[key] = name
    return alias
