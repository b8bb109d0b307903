"""The pre-norm residual step `s = x + h; y = norm(s)`: matched once (compiler/patterns.py)
for the rewrite and the cost model, in the gallery's transformer_block and inside the
transformer's repeated blocks; the rewritten circuit computes bit for bit what the original
does on the CPU (outputs and gradients), also through ncd.ops' fused functions (the lowering
chosen on CUDA, run here on CPU tensors); the fused region is priced as ncd.ops'
add_layer_norm (ops/norm/cost.py)."""

from __future__ import annotations

import pytest
import sympy

from ncd import ops
from ncd.circuits.builder import Builder
from ncd.circuits.validate import check
from ncd.compiler import lowerings
from ncd.compiler.cost import analyse
from ncd.compiler.patterns import find_matches
from ncd.compiler.rewrites import apply_rewrites
from ncd.gallery.ncd_paper import transformer, transformer_block
from ncd.ops.norm import cost as norm_cost

from .helpers import same_with_rewrites


def _add_norms(checked):
    return [m for m in find_matches(checked) if m.kind == "add_norm"]


def test_matches_the_second_residual_of_the_block():
    """ln1 reads the block's input (no add before it); ln2 reads res1 = x + MHA(...), which
    res2 reads too: one match, whose sum the fused box hands on to res2."""
    m = _add_norms(check(transformer_block()))
    assert [(x.boxes, x.inputs) for x in m] == [
        (("res1", "ln2"), {"x": ("", "x"), "h": ("o_proj", "out")})
    ]
    r = apply_rewrites(transformer_block(), names={"add_norm"})
    boxes = {b.name: b for b in r.boxes}
    assert "res1" not in boxes and boxes["ln2"].kind == "add_norm"
    assert boxes["ln2"].inputs == {"x": "x", "h": "o_proj"}
    assert boxes["ff_up"].inputs == {"x": "ln2.out"}
    assert boxes["res2"].inputs["a"] == "ln2.sum"
    assert not _add_norms(r.check())  # nothing left to match


def test_matches_inside_the_transformers_blocks():
    """The called block is matched on its own; ln_f reads the call's output (no add)."""
    r = apply_rewrites(transformer(), names={"add_norm"})
    sub = r.subcircuits["transformer_block"]
    assert {b.name: b.kind for b in sub.boxes}["ln2"] == "add_norm"
    assert {b.name: b.kind for b in r.boxes}["ln_f"] == "layernorm"


def _no_match(build):
    b = Builder("t", sizes={"B": 2, "T": 3, "D": 8})
    build(b)
    return not _add_norms(check(b.build()))


def test_no_match_where_the_add_broadcasts_promotes_or_is_not_an_add():
    def broadcast(b):
        x, h = b.input("x", "B T D"), b.input("h", "T D")
        b.output("y", b.layernorm(b.add(x, h), "D"))

    def promoted(b):
        x, h = b.input("x", "B T D"), b.input("h", "B T D", dtype="float64")
        b.output("y", b.layernorm(b.add(x, h), "D"))

    def product(b):
        x, h = b.input("x", "B T D"), b.input("h", "B T D")
        b.output("y", b.rmsnorm(b.mul(x, h), "D"))

    def permuted(b):
        x, h = b.input("x", "B T D"), b.input("h", "T B D")
        b.output("y", b.layernorm(b.add(x, h), "D"))

    assert all(_no_match(f) for f in (broadcast, promoted, product, permuted))


def _norm_kernels(monkeypatch):
    return lambda: monkeypatch.setattr(lowerings, "runs_norm_kernels", lambda L, kind="norm": True)


@pytest.mark.parametrize("entry", [transformer_block, transformer], ids=lambda f: f.__name__)
def test_rewrite_changes_nothing_on_the_cpu(entry):
    fused = same_with_rewrites(entry(), {"add_norm"})
    targets = {n.target for n in fused.graph.nodes} | {
        n.target for m in fused.modules() if hasattr(m, "graph") for n in m.graph.nodes
    }
    assert ops.add_layer_norm not in targets  # the CPU lowering: the add, then nn.LayerNorm


def test_kernel_lowering_changes_nothing_on_cpu_tensors(monkeypatch):
    """The lowering chosen on CUDA (ncd.ops.layer_norm / add_layer_norm on the holders'
    parameters) run on CPU tensors, where ncd.ops runs F.layer_norm after the add: the same
    bits as nn.LayerNorm after the add, and the same parameter names."""
    fused = same_with_rewrites(transformer_block(), True, patch=_norm_kernels(monkeypatch))
    targets = {n.target for n in fused.graph.nodes}
    assert ops.add_layer_norm in targets and ops.layer_norm in targets


def test_rms_and_multi_axis_kernel_lowering(monkeypatch):
    """RMSNorm over two axes that are not last, through ncd.ops.add_rms_norm's lowering (the
    axes moved last and flattened: one reduction of H K values, not nn.RMSNorm's over (H, K),
    so equal to rounding) and the plain lowering."""
    b = Builder("rms2", sizes={"B": 2, "T": 3, "H": 2, "K": 4})
    x, h = b.input("x", "B H T K"), b.input("h", "B H T K")
    s = b.add(x, h, name="res")
    b.output("y", b.rmsnorm(s, "H K", name="norm"))
    b.output("s", b.scale(s, 2, name="on"))
    fused = same_with_rewrites(b.build(), True, patch=_norm_kernels(monkeypatch), exact=False)
    assert ops.add_rms_norm in {n.target for n in fused.graph.nodes}


def test_region_is_priced_as_what_the_compiler_runs(monkeypatch):
    """Where the compiler's choices run PyTorch's norms on CUDA (the table as it stands), the
    fused lowering prices the add and the norm as two kernels, as the unfused one does; the
    region appears only where they run ncd.ops' add_layer_norm."""
    from ncd.compiler import choices

    c = transformer_block()
    sizes = dict(c.sizes)
    for kernel in ("torch", "ncd"):
        monkeypatch.setitem(choices.FASTEST, "norm", {"cuda": kernel})
        ln2 = {b.name: b for b in analyse(c, sizes, lowering="fused").boxes}["ln2"]
        assert ("add_layer_norm" in ln2.kernel) == (kernel == "ncd")
        if kernel == "torch":
            unfused = {b.name: b for b in analyse(c, sizes, lowering="unfused").boxes}["ln2"]
            assert sympy.simplify(ln2.io_bytes_bwd - unfused.io_bytes_bwd) == 0


def test_fused_region_is_priced_as_the_kernel(monkeypatch):
    """Under the fused lowering, where the kernel runs, the add moves nothing and the norm
    moves what add_layer_norm moves (x and h read, the sum and y written once); unfused, the
    sum is written by the add and read again by the norm."""
    from ncd.compiler import choices

    monkeypatch.setitem(choices.FASTEST, "norm", {"cuda": "ncd"})
    c = transformer_block()
    sizes = c.sizes
    M, N = sizes["B"] * sizes["T"], sizes["H"] * sizes["K"]
    fused = {b.name: b for b in analyse(c, dict(sizes), lowering="fused").boxes}
    unfused = {b.name: b for b in analyse(c, dict(sizes), lowering="unfused").boxes}

    def num(expr):
        return sympy.sympify(expr).subs(
            {s: sizes[s.name] for s in sympy.sympify(expr).free_symbols}
        )

    assert num(fused["res1"].io_bytes) == 0
    assert num(fused["ln2"].io_bytes) == norm_cost.io_forward(M, N, 4, residual=True)
    assert num(fused["ln2"].io_bytes_bwd) == norm_cost.io_backward(M, N, 4, residual=True)
    assert "add_layer_norm" in fused["ln2"].kernel
    both = num(unfused["res1"].io_bytes + unfused["ln2"].io_bytes)
    # the sum's second trip saved; the kernel's float32 statistics (8 bytes a row) counted,
    # which the unfused norm's rule does not count as traffic
    assert both - num(fused["ln2"].io_bytes) == M * N * 4 - 8 * M
