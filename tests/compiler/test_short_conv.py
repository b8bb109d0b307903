"""The causal short convolution `conv (depthwise, padded W - 1 on both sides) → slice → silu`:
matched once per chain (compiler/patterns.py) in the gallery's DeltaNet and Mamba blocks; the
rewritten circuit (a `short_conv` box named after the conv, holding its parameters) computes
what the original does on the CPU, outputs and gradients, through PyTorch's conv1d and through
ncd.ops.short_conv (the lowering `fused="ncd"` chooses, its reference on CPU tensors); near
misses are left alone; the fused region is priced as ops/short_conv/cost.py says."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import sympy
import torch

import ncd
from ncd import gallery, ops
from ncd.circuits.builder import Builder
from ncd.circuits.validate import check
from ncd.compiler import choices, to_source
from ncd.compiler import compile as ncd_compile
from ncd.compiler.cost import analyse
from ncd.compiler.names import class_name
from ncd.compiler.patterns import find_matches
from ncd.compiler.rewrites import apply_rewrites
from ncd.gallery.linear_family import deltanet_block, mamba_block
from ncd.ops.short_conv import cost as sc_cost

from .helpers import randomise, same_with_rewrites


def _short_convs(checked):
    return [m for m in find_matches(checked) if m.kind == "short_conv"]


def test_matches_the_three_short_convolutions_of_deltanet():
    ms = _short_convs(check(deltanet_block()))
    assert [m.boxes for m in ms] == [
        (f"{p}_conv", f"{p}_causal", f"{p}_act") for p in ("q", "k", "v")
    ]
    r = apply_rewrites(deltanet_block(), names={"short_conv"})
    boxes = {b.name: b for b in r.boxes}
    q = boxes["q_conv"]
    assert (q.kind, q.axis, q.channel, q.kernel, q.bias, q.activation) == (
        "short_conv", "T", "E", 4, False, "silu"
    )  # fmt: skip
    assert "q_causal" not in boxes and "q_act" not in boxes
    assert boxes["q_heads"].inputs == {"x": "q_conv"}  # the SiLU's reader reads the fused box
    assert not _short_convs(r.check())  # nothing left to match


def test_mamba_keeps_its_biases():
    r = apply_rewrites(mamba_block(), names={"short_conv"})
    fused = [b for b in r.boxes if b.kind == "short_conv"]
    assert len(fused) == 3 and all(b.bias and b.activation == "silu" for b in fused)


def _chain(b, x, *, pad=3, stride=1, start=0, depthwise=True, width=4, silu=True):
    h = b.conv(x, "T", "E", "E", width, padding=pad, stride=stride, depthwise=depthwise,
               bias=False, groups=1, name="conv")  # fmt: skip
    h = b.slice(h, "T", start, "T" if start == 0 else None, name="cut")
    return b.silu(h, name="act") if silu else h


def _circuit(**kw):
    b = Builder("t", sizes={"B": 2, "T": 7, "E": 6})
    b.output("y", _chain(b, b.input("x", "B T E"), **kw))
    return b.build()


@pytest.mark.parametrize(
    "kw",
    [dict(pad=2), dict(pad=4), dict(stride=2), dict(start=1), dict(depthwise=False)],
    ids=["short-pad", "long-pad", "strided", "not-from-start", "dense"],
)
def test_no_match_where_the_chain_is_not_a_causal_depthwise_convolution(kw):
    assert not _short_convs(check(_circuit(**kw)))


def test_a_silu_with_another_reader_stays_out_and_no_silu_is_fine():
    b = Builder("t", sizes={"B": 2, "T": 7, "E": 6})
    x = b.input("x", "B T E")
    h = _chain(b, x, silu=False)
    b.output("y", b.silu(h, name="act"))
    b.output("z", h)  # the slice read twice: the SiLU is not fused
    (m,) = _short_convs(check(b.build()))
    assert m.boxes == ("conv", "cut")
    (m,) = _short_convs(check(_circuit(silu=False)))
    assert m.boxes == ("conv", "cut")


class _Transposed(torch.nn.Module):
    """x [B, T, C] through nn.Conv1d on its transpose, cut to T, transposed back, then SiLU."""

    def __init__(self, C=6, W=4, bias=True):
        super().__init__()
        self.conv = torch.nn.Conv1d(C, C, W, groups=C, padding=W - 1, bias=bias)

    def forward(self, x):
        h = self.conv(x.transpose(1, 2))[..., : x.shape[1]]
        return torch.nn.functional.silu(h.transpose(1, 2))


class _MambaStyle(torch.nn.Module):
    """Mamba's slow path as written in PyTorch: projection, transpose, conv cut to T, SiLU on
    the channels-first tensor, transpose back, projection."""

    def __init__(self, C=6, W=4):
        super().__init__()
        self.inp, self.out = torch.nn.Linear(C, C), torch.nn.Linear(C, C)
        self.conv = torch.nn.Conv1d(C, C, W, groups=C, padding=W - 1)

    def forward(self, x):
        h = self.inp(x).transpose(1, 2)
        h = torch.nn.functional.silu(self.conv(h)[..., : x.shape[1]])
        return self.out(h.transpose(1, 2))


@pytest.mark.parametrize("model", [_Transposed, _MambaStyle], ids=lambda m: m.__name__)
def test_imported_chains_match_through_their_renames_and_transposes(model):
    """The importer's chain (the conv names its output channels anew, the cut length gets a
    name of its own, transposes around it) becomes one short_conv box and a rename and
    permute that give the output its names and order; compiled, it computes what the PyTorch
    module computes, through conv1d and through ncd.ops.short_conv."""
    torch.manual_seed(0)
    m = model().double()
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    c = ncd.compiler.from_torch(m, x)
    (match,) = _short_convs(check(c))
    assert match.boxes[-1] == "silu" and match.tail
    r = apply_rewrites(c, names={"short_conv"})
    kinds = [b.kind for b in r.boxes]
    assert "short_conv" in kinds and "conv" not in kinds and "slice" not in kinds
    # the tail's boxes take the names of the chain's own renames and transposes, not the SiLU's
    assert "silu" not in {b.name for b in r.boxes}
    assert not _short_convs(r.check())
    for fused in ("auto", "ncd"):
        module = ncd.compile(c, dtype=torch.float64, rewrites={"short_conv"}, fused=fused)
        assert (ops.short_conv in _targets(module)) == (fused == "ncd")
        torch.testing.assert_close(module(x), m(x), rtol=1e-12, atol=1e-12)
    same_with_rewrites(c, {"short_conv"})
    same_with_rewrites(c, {"short_conv"}, exact=False, fused="ncd")
    priced = {b.name: b for b in analyse(c, {}, lowering="fused").boxes}
    assert "ncd.ops.short_conv" in priced["silu"].kernel  # the cost model sees the same region
    got = sympy.sympify(priced["silu"].io_bytes_bwd)
    got = got.subs({s: c.sizes[s.name] for s in got.free_symbols})
    M = sympy.Symbol("M")  # B T as the model writes it: a symbol, partial sums M / SPAN rows
    assert got == sympy.sympify(sc_cost.io_backward(M, 6, 4, 8, True, silu=True)).subs(M, 22)


def test_a_renamed_chain_read_elsewhere_stays_apart():
    """A rename inside the chain that another box also reads: the chain is not fused there."""
    b = Builder("t", sizes={"B": 2, "T": 7, "E": 6})
    x = b.input("x", "B T E")
    h = b.conv(x, "T", "E", "E", 4, padding=3, depthwise=True, bias=False, name="conv")
    h = b.rename(h, {"T": "F"}, name="sizes")
    b.output("z", h)
    b.output("y", b.slice(h, "F", 0, "T", name="cut"))
    assert not _short_convs(check(b.build()))


def _targets(module):
    return {n.target for m in module.modules() if hasattr(m, "graph") for n in m.graph.nodes}


@pytest.mark.parametrize("entry", [deltanet_block, mamba_block], ids=lambda f: f.__name__)
def test_rewrite_changes_nothing_on_the_cpu(entry):
    """The default lowering on the CPU (PyTorch's conv1d) gives the bits the three boxes
    gave; the parameter names are the conv's."""
    fused = same_with_rewrites(entry(), {"short_conv"})
    assert ops.short_conv not in _targets(fused)


@pytest.mark.parametrize("entry", [deltanet_block, mamba_block], ids=lambda f: f.__name__)
def test_the_kernel_lowering_computes_the_same(entry):
    """`fused="ncd"` on CPU tensors: ncd.ops.short_conv's reference (the W shifted copies
    summed), equal to conv1d to float64 rounding, gradients included."""
    fused = same_with_rewrites(entry(), {"short_conv"}, exact=False, fused="ncd")
    assert ops.short_conv in _targets(fused)


def test_an_inner_axis_and_channels_first():
    """The box on an input laid out [E, T, B]: moved to [B, T, E] for the op and back."""
    b = Builder("t", sizes={"B": 3, "T": 9, "E": 5})
    x = b.input("x", "E T B")
    h = b.conv(x, "T", "E", "E", 3, padding=2, depthwise=True, bias=True, name="conv")
    b.output("y", b.silu(b.slice(h, "T", 0, "T", name="cut"), name="act"))
    same_with_rewrites(b.build(), {"short_conv"}, exact=False, fused="ncd")


def test_generated_file_runs_its_fallback_without_ncd(tmp_path):
    """The rewritten block's file calls short_conv; with ncd made unimportable it runs its
    inlined PyTorch fallback and agrees with ncd.compile's module."""
    text = to_source(deltanet_block(), rewrites=True, fused="ncd")
    assert "from ncd.ops import short_conv" in text and "q_conv = short_conv(" in text
    (tmp_path / "block.py").write_text(text)
    model = randomise(ncd.compile(deltanet_block()))
    x = torch.randn(2, 32, 16)
    torch.save({"w": model.state_dict(), "x": x, "y": model(x).detach()}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import importlib.util, sys, torch
        sys.modules["ncd"] = None  # the file must stand alone
        spec = importlib.util.spec_from_file_location("m", {str(tmp_path / "block.py")!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        assert m.short_conv.__module__ == "m", m.short_conv.__module__
        io = torch.load({str(tmp_path / "io.pt")!r})
        model = m.{class_name("deltanet_block")}()
        model.load_state_dict(io["w"])
        torch.testing.assert_close(model(io["x"]), io["y"], rtol=1e-5, atol=1e-5)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]


def test_fused_region_is_priced_as_the_kernel(monkeypatch):
    """Where the compiler runs the kernel on CUDA (the choices table), the fused lowering
    prices the chain as it: x read and y written once on the last box, only x kept (the SiLU's
    input and the padded output never reach memory); unfused, or while PyTorch's conv1d runs
    it, the conv's padded output is also kept (by the SiLU, whose input is a view of it)."""
    sizes = {"B": 2, "T": 128, "E": 32}  # B T a multiple of the backward's span
    b = Builder("t", sizes=sizes)
    b.output("y", _chain(b, b.input("x", "B T E")))
    c = b.build()
    fused = analyse(c, dict(sizes), lowering="fused")  # the table's default: the kernel
    monkeypatch.setitem(choices.FASTEST, "short_conv", {"cuda": "torch"})
    as_torch = analyse(c, dict(sizes), lowering="fused")
    assert "short_conv" not in as_torch.boxes[-1].kernel
    plain = analyse(c, dict(sizes), lowering="unfused")
    assert plain.numbers["activation_bytes"] == as_torch.numbers["activation_bytes"]

    def num(expr):
        e = sympy.sympify(expr)
        return e.subs({s: sizes[s.name] for s in e.free_symbols})

    per = {x.name: x for x in fused.boxes}
    M, C, W = 2 * 128, 32, 4
    assert num(per["act"].io_bytes) == sc_cost.io_forward(M, C, W, 4)
    assert num(per["conv"].io_bytes) == 0 and num(per["cut"].io_bytes) == 0
    assert num(per["act"].io_bytes_bwd) == sc_cost.io_backward(M, C, W, 4, silu=True)
    assert "ncd.ops.short_conv" in per["act"].kernel
    assert num(fused.numbers["activation_bytes"]) == M * C * 4  # x only
    padded = 2 * (128 + W - 1) * C * 4
    assert num(plain.numbers["activation_bytes"]) == M * C * 4 + padded


def test_a_filter_wider_than_the_kernels_take_is_priced_as_conv1d():
    """Past ops/short_conv's widest filter the compiler keeps PyTorch's conv1d on CUDA, and
    the cost model prices what conv1d keeps (its padded output, SiLU's input)."""
    W = sc_cost.MAX_WIDTH + 4
    sizes = {"B": 2, "T": 64, "E": 8}
    b = Builder("t", sizes=sizes)
    b.output("y", _chain(b, b.input("x", "B T E"), pad=W - 1, width=W))
    c = b.build()
    assert _short_convs(check(c))  # the chain still matches: the rewrite still makes the box
    fused = analyse(c, dict(sizes), lowering="fused")
    assert all("short_conv" not in x.kernel for x in fused.boxes)
    plain = analyse(c, dict(sizes), lowering="unfused")
    assert fused.numbers["activation_bytes"] == plain.numbers["activation_bytes"]


@pytest.mark.parametrize("fused", ["auto", "ncd"])
def test_packed_sequences_are_convolved_apart(fused):
    """A packed `short_conv` box (offsets 0, 3, 4, 11 along T): each sequence's output is that
    of the same box on the sequence alone, through PyTorch's conv1d per sequence (`auto` on
    the CPU) and through ncd.ops.short_conv with cu_seqlens (`ncd`: its reference here)."""

    def circuit(packed, T):
        b = Builder("p", sizes={"T": T, "E": 6, "N": 4})
        x = b.input("x", "T E")
        ins = {"x": x, **({"offsets": b.input("offsets", "N", dtype="int64")} if packed else {})}
        b.output("y", b.box("short_conv", ins, "sc", axis="T", channel="E", kernel=4,
                            bias=True, activation="silu", packed=packed))  # fmt: skip
        return b.build()

    packed = randomise(ncd.compile(circuit(True, 11), dtype=torch.float64, fused=fused))
    x = torch.randn(11, 6, dtype=torch.float64)
    y = packed(x, torch.tensor([0, 3, 4, 11]))
    for a, z in ((0, 3), (3, 4), (4, 11)):
        alone = ncd.compile(circuit(False, z - a), dtype=torch.float64)
        alone.load_state_dict(packed.state_dict())
        torch.testing.assert_close(y[a:z], alone(x[a:z]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["deltanet_block", "gated_deltanet_block", "mamba_block"])
def test_the_causal_cut_leaves_the_length_free(name):
    """The convolution's padded output (T+3) cut back to T is written from its end (`[:, :-3]`),
    so the module runs at any length, as one compiled at that length does (weights shared)."""
    torch.manual_seed(0)
    m = ncd_compile(gallery.get(name)).double()
    at = ncd_compile(gallery.get(name), sizes={"T": 40}).double()
    at.load_state_dict(m.state_dict())
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x), at(x), rtol=0, atol=0)
    assert "[:, :-3]" in to_source(gallery.get(name))
