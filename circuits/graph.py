"""The wiring of a circuit as a directed graph: a topological order that breaks ties by the
order boxes were written in, and one cycle per strongly connected component, both in linear
time and without recursion (a spec may hold 20,000 boxes in one chain)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class Digraph:
    """Nodes in the order added; each node's successors in the order their edges were added
    (an edge added twice is kept once)."""

    def __init__(self, nodes: Iterable[str] = ()):
        self.succ: dict[str, dict[str, None]] = {n: {} for n in nodes}

    def add_edge(self, u: str, v: str) -> None:
        self.succ.setdefault(v, {})
        self.succ.setdefault(u, {})[v] = None

    def order(self, rank: dict[str, int]) -> list[str]:
        """Every node, each after the nodes it reads from; among those ready, the lowest
        `rank` first. Assumes no cycle (nodes on one are left out)."""
        indegree = dict.fromkeys(self.succ, 0)
        for targets in self.succ.values():
            for v in targets:
                indegree[v] += 1
        ready = [(rank[n], n) for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            _, n = heapq.heappop(ready)
            out.append(n)
            for v in self.succ[n]:
                indegree[v] -= 1
                if indegree[v] == 0:
                    heapq.heappush(ready, (rank[v], v))
        return out

    def components(self) -> list[list[str]]:
        """The strongly connected components (Tarjan's algorithm, iteratively)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        out = []
        for root in self.succ:
            if root in index:
                continue
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            work = [(root, iter(self.succ[root]))]
            while work:
                node, edges = work[-1]
                for v in edges:
                    if v not in index:
                        index[v] = low[v] = len(index)
                        stack.append(v)
                        on_stack.add(v)
                        work.append((v, iter(self.succ[v])))
                        break
                    if v in on_stack:
                        low[node] = min(low[node], index[v])
                else:
                    work.pop()
                    if work:
                        parent = work[-1][0]
                        low[parent] = min(low[parent], low[node])
                    if low[node] == index[node]:
                        comp = []
                        while True:
                            w = stack.pop()
                            on_stack.discard(w)
                            comp.append(w)
                            if w == node:
                                break
                        out.append(comp)
        return out

    def cycle_from(self, source: str, within: set[str]) -> list[str]:
        """A cycle among the nodes `within` reached by depth-first search from `source`
        (successors in the order added): the path from the first node met twice on the
        current path back to it. Empty when there is none."""
        path, on_path = [source], {source: 0}
        done: set[str] = set()
        work = [iter(v for v in self.succ[source] if v in within)]
        while work:
            for v in work[-1]:
                if v in on_path:
                    return path[on_path[v] :]
                if v not in done:
                    on_path[v] = len(path)
                    path.append(v)
                    work.append(iter(w for w in self.succ[v] if w in within))
                    break
            else:
                work.pop()
                done.add(path[-1])
                del on_path[path.pop()]
        return []

    def cycles(self, rank: dict[str, int]) -> list[list[str]]:
        """One cycle per strongly connected component that has one, each found from and
        starting at its lowest-ranked node, in the order of those nodes."""
        out = []
        for comp in self.components():
            first = min(comp, key=rank.__getitem__)
            if len(comp) == 1 and first not in self.succ[first]:
                continue
            cyc = self.cycle_from(first, set(comp))
            start = min(range(len(cyc)), key=lambda i: rank[cyc[i]])
            out.append(cyc[start:] + cyc[:start])
        return sorted(out, key=lambda cyc: rank[cyc[0]])
