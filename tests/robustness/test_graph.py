"""circuits/graph.py against networkx (another implementation): the same order, components
and cycles on random graphs; linear time and no recursion limit on long chains and rings."""

from __future__ import annotations

import random
import time

import networkx as nx
import pytest

from ncd.circuits.graph import Digraph


def _random(seed: int):
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    nodes = [f"n{i}" for i in range(n)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randint(0, 2 * n))]
    if seed % 2:  # acyclic: every edge from a node added earlier to one added later
        edges = [(u, v) if nodes.index(u) < nodes.index(v) else (v, u) for u, v in edges if u != v]
    return nodes, edges


def _both(nodes, edges):
    mine = Digraph(nodes)
    theirs = nx.DiGraph()
    theirs.add_nodes_from(nodes)
    for u, v in edges:
        mine.add_edge(u, v)
        theirs.add_edge(u, v)
    return mine, theirs


def _nx_cycles(graph, rank):
    """The cycle report as it was written with networkx."""
    out = []
    for comp in nx.strongly_connected_components(graph):
        first = min(comp, key=rank.__getitem__)
        if len(comp) == 1 and not graph.has_edge(first, first):
            continue
        cyc = [u for u, _ in nx.find_cycle(graph.subgraph(comp), source=first)]
        start = min(range(len(cyc)), key=lambda i: rank[cyc[i]])
        out.append(cyc[start:] + cyc[:start])
    return sorted(out, key=lambda cyc: rank[cyc[0]])


@pytest.mark.parametrize("seed", range(300))
def test_same_as_networkx(seed):
    nodes, edges = _random(seed)
    rank = {n: i for i, n in enumerate(reversed(nodes))}
    mine, theirs = _both(nodes, edges)
    comps = {frozenset(c) for c in mine.components()}
    assert comps == {frozenset(c) for c in nx.strongly_connected_components(theirs)}
    assert mine.cycles(rank) == _nx_cycles(theirs, rank)
    if seed % 2:
        assert nx.is_directed_acyclic_graph(theirs)
        want = list(nx.lexicographical_topological_sort(theirs, key=rank.__getitem__))
        assert mine.order(rank) == want


@pytest.mark.parametrize("shape", ["chain", "ring"])
def test_long_chains_and_rings_in_linear_time(shape):
    n = 100_000
    nodes = [f"b{i}" for i in range(n)]
    g = Digraph(nodes)
    for i in range(n - 1):
        g.add_edge(nodes[i], nodes[i + 1])
    if shape == "ring":
        g.add_edge(nodes[-1], nodes[0])
    rank = {b: i for i, b in enumerate(nodes)}
    t0 = time.perf_counter()
    if shape == "chain":
        assert g.cycles(rank) == [] and g.order(rank) == nodes
    else:
        assert g.cycles(rank) == [nodes]
    assert time.perf_counter() - t0 < 5
