"""Pattern rewrites: circuit → circuit, replacing recognisable subgraphs by fused boxes."""

from __future__ import annotations

REWRITES: list = []


def apply_rewrites(circuit):
    return circuit
