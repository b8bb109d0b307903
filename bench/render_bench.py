"""Renderer benchmark: time to draw circuits of growing size, up to a 1,000-box circuit.

The circuit is a stack of pre-norm transformer blocks written out box by box (17 boxes each:
the gallery's transformer_block), so that the drawing has the gallery's clusters, copies,
pass-through wires and one wire per axis, at 60 times the size.
Target (issue 4): the 1,000-box circuit renders to SVG in under 10 s.

    .venv/bin/python bench/render_bench.py            # 100, 300, 1000 boxes
    .venv/bin/python bench/render_bench.py --boxes 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import time

from ncd.circuits.builder import Builder
from ncd.circuits.draw import render

BOXES_PER_BLOCK = 17


def stack(n_boxes: int):
    """About `n_boxes` boxes: pre-norm transformer blocks written out box by box (17 boxes
    each, as the gallery's transformer_block), with their groups as titled clusters."""
    b = Builder(
        f"stack{n_boxes}",
        axes={"D": "H*K"},
        sizes={"B": 2, "T": 16, "H": 4, "K": 8, "V": 8, "F": 64},
    )
    x = b.input("x", "B T D")
    for i in range(max(1, n_boxes // BOXES_PER_BLOCK)):
        with b.group(f"Residual {i}"):
            h = b.layernorm(x, "D", name=f"ln1_{i}")
        with b.group(f"Attention {i}"):
            q = b.linear(h, "D", "H K", name=f"q{i}", label="L^Q")
            k = b.rename(b.linear(h, "D", "H K", name=f"k{i}", label="L^K"), T="S", name=f"ks{i}")
            v = b.rename(b.linear(h, "D", "H V", name=f"v{i}", label="L^V"), T="S", name=f"vs{i}")
            s = b.scale(b.contract(q, k, over="K", name=f"qk{i}"), "K**-0.5", name=f"sc{i}")
            p = b.softmax(s, over="S", name=f"sm{i}")
            h = b.linear(b.contract(p, v, over="S", name=f"pv{i}"), "H V", "D", name=f"o{i}")
        x = b.add(x, h, name=f"res1_{i}")
        with b.group(f"MLP {i}"):
            h = b.layernorm(x, "D", name=f"ln2_{i}")
            h = b.linear(h, "D", "F", name=f"up{i}", label="L₊")
            h = b.linear(b.gelu(h, name=f"act{i}"), "F", "D", name=f"down{i}", label="L₊")
        x = b.add(x, h, name=f"res2_{i}")
    b.output("y", x)
    return b.build()


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    dot = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr.strip()
    print(f"# {platform.processor() or platform.machine()}, {dot}")
    # Wall time is what a user waits; CPU time (this process and Graphviz) does not depend on
    # what else runs on the machine.
    print(f"{'boxes':>6} {'wires':>6} {'svg KiB':>8} {'wall s (median)':>16} {'cpu s':>6}")
    for n in args.boxes:
        c = stack(n)
        times, cpus, svg = [], [], ""
        for _ in range(args.repeat):
            c0, t0 = _cpu(), time.perf_counter()
            svg = render(c)
            times.append(time.perf_counter() - t0)
            cpus.append(_cpu() - c0)
        wires = svg.count('class="edge wire')
        kib, med, cpu = len(svg) / 1024, statistics.median(times), statistics.median(cpus)
        print(f"{len(c.boxes):>6} {wires:>6} {kib:>8.0f} {med:>16.2f} {cpu:>6.2f}")


if __name__ == "__main__":
    main()
