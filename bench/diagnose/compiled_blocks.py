"""torch.compile (fullgraph) and torch.export of ncd-compiled gallery blocks on CUDA (bf16, the
gallery's sizes; a diagnosis aid, not a test): whether each traces whole, its outputs and
parameter gradients against eager, the ncd operators in the exported program, and the training
step's time eager, under torch.compile and, for the blocks named in RO, under
torch.compile(mode="reduce-overhead") (the step replayed from a CUDA graph).

    NAMES=gla_block,lightning_block RO=gla_block python bench/diagnose/compiled_blocks.py
    SIZES=B=4,T=4096,H=16,K=128,V=128 NAMES=deltanet_block python bench/diagnose/compiled_blocks.py

SIZES binds the named sizes in place of the gallery's (the others keep theirs). CHOOSE sets
entries of the compiler's choice table on CUDA (compiler/choices.py), e.g. CHOOSE=l2_norm=ncd.
"""

import os
import time
import traceback

import torch
from triton.testing import do_bench

from ncd import gallery
from ncd.compiler import choices
from ncd.compiler import compile as ncd_compile
from ncd.compiler.examples import example_inputs

BLOCKS = "gla_block,gated_deltanet_block,lightning_block,mamba_block"


def first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def sizes() -> dict[str, int]:
    pairs = [p.split("=") for p in os.environ.get("SIZES", "").split(",") if p]
    return {name: int(value) for name, value in pairs}


def choose_from_env() -> None:
    for pair in filter(None, os.environ.get("CHOOSE", "").split(",")):
        kind, impl = pair.split("=")
        choices.FASTEST.setdefault(kind, {})["cuda"] = impl


def one_block(name, reduce_overhead):
    t0 = time.time()
    c = gallery.get(name)
    m = ncd_compile(c, sizes() or None, dtype=torch.bfloat16, device="cuda")
    xs = example_inputs(c.check(sizes()), dtype=torch.bfloat16, device="cuda")
    xs = [x.requires_grad_() if x.is_floating_point() else x for x in xs]

    def step(mod):
        y = first(mod(*xs))
        y.float().square().mean().backward()
        return y.detach()

    want = step(m)
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    try:
        compiled, whole = torch.compile(m, fullgraph=True), "fullgraph"
        got = step(compiled)
    except Exception as e:  # a graph break: compiled again, breaks allowed
        print(f"  {name}: fullgraph FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
        torch._dynamo.reset()
        compiled, whole = torch.compile(m), "with breaks"
        got = step(compiled)
    worst = max((rel(p.grad, grads[n]) for n, p in m.named_parameters() if n in grads), default=0)
    try:
        program = torch.export.export(m, tuple(x.detach() for x in xs))
        calls = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
        ncd_ops = sorted({t for t in calls if t.startswith("ncd.")})
        exported = f"export ok ({ncd_ops}), out rel {rel(first(program.module()(*xs)), want):.1e}"
    except Exception as e:
        exported = f"export FAILED {type(e).__name__}: {str(e)[:200]}"
    eager = do_bench(lambda: step(m), warmup=5, rep=40, return_mode="median")
    comp = do_bench(lambda: step(compiled), warmup=5, rep=40, return_mode="median")
    line = (f"{name}: {whole}; out rel {rel(got, want):.1e}, worst grad rel {worst:.1e}; "
            f"step eager {eager:.3f} ms, compile {comp:.3f} ms")  # fmt: skip
    if reduce_overhead:
        torch._dynamo.reset()
        graphed = torch.compile(m, mode="reduce-overhead", fullgraph=whole == "fullgraph")
        for _ in range(3):
            step(graphed)
        line += f", reduce-overhead {do_bench(lambda: step(graphed), warmup=5, rep=40, return_mode='median'):.3f} ms"  # noqa: E501
    print(f"{line}; {exported} [{time.time() - t0:.0f} s]", flush=True)


def main():
    choose_from_env()
    names = os.environ.get("NAMES", BLOCKS).split(",")
    ro = set(os.environ.get("RO", "gla_block").split(","))
    for name in names:
        try:
            one_block(name, name in ro)
        except Exception as e:
            print(f"  {name}: FAILED {type(e).__name__}: {str(e)[:400]}", flush=True)
            traceback.print_exc(limit=4)


if __name__ == "__main__":
    main()
