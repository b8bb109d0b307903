"""The generated file as a reviewer reads it: a config of the circuit's sizes, PyTorch's own
layers where a box is one, SDPA for attention, sizes written from their expressions, lines
within the project's ruff settings; its state_dict runs in a hand-written nanoGPT-style
pre-norm block (written here from the standard block, not from the generated file)."""

from __future__ import annotations

import ast
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncd import gallery
from ncd.cli import main
from ncd.compiler import compile as ncd_compile
from ncd.compiler import to_source

from .helpers import randomise


class PreNormBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)), a GELU MLP; the attention's heads are the
    projections' channels split head-major (nanoGPT's `view(B, T, n_head, C // n_head)`)."""

    def __init__(self, d: int, heads: int, d_ff: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff_up = nn.Linear(d, d_ff)
        self.ff_down = nn.Linear(d_ff, d)

    def forward(self, x):
        B, T, C = x.shape
        h = self.ln1(x)
        q, k, v = (
            proj(h).view(B, T, self.heads, C // self.heads).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(q, k, v)
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.ff_down(F.gelu(self.ff_up(self.ln2(x))))


def _generated(name="transformer_block", **kw):
    """The class and config class of the file `ncd compile` writes for `name`."""
    text = to_source(gallery.get(name), rewrites={"attention"}, fused="torch", **kw)
    ns: dict = {"__name__": "ncd_generated"}
    exec(compile(text, "<generated>", "exec", dont_inherit=True), ns)  # our generated code
    return text, ns


def test_the_state_dict_runs_in_a_hand_written_pre_norm_block():
    text, ns = _generated()
    model = randomise(ns["TransformerBlock"]()).double().eval()
    ref = PreNormBlock(32, 4, 64).double().eval()
    state = model.state_dict()
    assert list(state) == list(ref.state_dict())  # the same names, in the same order
    ref.load_state_dict(state)  # strict: the same names and shapes
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    torch.testing.assert_close(model(x), ref(x), rtol=1e-12, atol=1e-12)
    # every parameter is nn.Linear's or nn.LayerNorm's as it is, multi-head maps included
    for k, v in ref.state_dict().items():
        assert state[k].shape == v.shape, k


def test_the_state_dict_loads_into_the_hand_written_block_as_it_is():
    _, ns = _generated()
    PreNormBlock(32, 4, 64).load_state_dict(ns["TransformerBlock"]().state_dict())


def test_compiled_module_and_file_keep_the_same_state_dict():
    c = gallery.get("transformer")
    _, ns = _generated("transformer")
    compiled = ncd_compile(c).state_dict()
    written = ns["Transformer"]().state_dict()
    assert list(compiled) == list(written)
    assert all(compiled[k].shape == written[k].shape for k in compiled)


def test_sizes_are_settings_with_the_bound_values_as_defaults():
    text, ns = _generated()
    cfg = ns["TransformerBlockConfig"]()
    assert (cfg.H, cfg.K, cfg.V, cfg.F) == (4, 8, 8, 64)  # D is H*K in the circuit
    assert "c.K ** -0.5" in text and "0.35355" not in text
    assert "(c.H, c.K)" in text and "(4, 8)" not in text
    assert "nn.LayerNorm(c.H * c.K)" in text and "nn.Linear(c.H * c.K, c.F)" in text
    assert "F.scaled_dot_product_attention(" in text and "einsum" not in text
    assert "fx" not in text and "Proxy" not in text
    other = ns["TransformerBlock"](ns["TransformerBlockConfig"](H=2, K=8, V=16, F=24))
    assert other.q_proj.weight.shape == (16, 16) and other.v_proj.weight.shape == (32, 16)
    assert other.o_proj.weight.shape == (16, 32) and other.ff_up.weight.shape == (24, 16)
    assert other(torch.randn(3, 5, 16)).shape == (3, 5, 16)


def test_a_repeated_block_takes_the_config_too():
    text, ns = _generated("transformer", sizes={"N": 3})
    assert "for _ in range(c.N)" in text
    cfg = ns["TransformerConfig"](N=1, W=10)
    model = ns["Transformer"](cfg)
    assert len(model.blocks) == 1 and model.unembed.weight.shape[0] == 10
    assert model(torch.randint(0, 10, (2, 7))).shape == (2, 7, 10)


def test_a_size_learned_in_a_subcircuit_follows_the_config():
    """ivit_block's I-LayerNorm subcircuit names its width D, which the block unifies with
    H*K: the file writes its constants from c.H and c.K (no D setting that H and K would not
    move), and a config with other heads builds the constants ncd.compile builds there."""
    text, ns = _generated("ivit_block")
    cfg = ns["IvitBlockConfig"]
    assert "D" not in cfg.__dataclass_fields__ and "c.D" not in text
    written = ns["IvitBlock"](cfg(H=4)).state_dict()
    compiled = ncd_compile(gallery.get("ivit_block"), sizes={"H": 4}).state_dict()
    assert list(written) == list(compiled)
    for key in compiled:
        assert torch.equal(written[key], compiled[key]), key


def test_box_comments_say_what_the_statistics_are_over():
    # Layer norm's statistics are over D, per position; batch norm's are over every axis but
    # the channel, with a scale and shift per channel: "over C" would say the opposite.
    assert "# ln1: layernorm over D: [B T D]" in to_source(gallery.get("transformer_block"))
    assert "# bn1: batchnorm per C: [B C Y X]" in to_source(gallery.get("resnet_block"))


def test_expressions_are_written_exactly():
    """A size expression is written only where it gives the very number the graph holds."""
    from ncd.circuits.sizes import parse_size
    from ncd.compiler.lower import RealSize, Size
    from ncd.compiler.source import _Sizes

    sizes = _Sizes(gallery.get("attention").check())
    sizes.values = {"X": 12, "s": 4, "K": 8}
    sizes.fields = {"X": "X", "s": "s", "K": "K"}
    cases = {
        "X/s": (Size, 3, "c.X // c.s"),
        "floor(X/5)": (Size, 2, "math.floor(c.X / 5)"),
        "K**-0.5": (RealSize, 8**-0.5, "c.K ** -0.5"),
        "X*s + 1": (Size, 49, "c.X * c.s + 1"),
        "X - s": (Size, 8, "c.X - c.s"),
        "1/sqrt(K)": (RealSize, 8**-0.5, "c.K ** -0.5"),
    }
    for text, (cls, value, want) in cases.items():
        got = sizes.text(cls(value, parse_size(text)), "c")
        assert got is not None and got[0] == want, (text, got)
        ns = {"c": type("C", (), sizes.values), "math": math}
        assert eval(got[0], ns) == value  # noqa: S307 - the printer's own text, under test
    assert sizes.text(Size(4, parse_size("X/s")), "c") is None  # the wrong number: not written


def test_files_pass_the_projects_ruff_check(tmp_path):
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    try:
        subprocess.run([ruff, "--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("ruff is not installed")
    for name in gallery.names():
        (tmp_path / f"{name}.py").write_text(to_source(gallery.get(name), rewrites={"attention"}))
        # with ncd's kernels: each imported, with its plain fallback where ncd is missing
        text = to_source(gallery.get(name), rewrites={"attention"}, fused="ncd")
        (tmp_path / f"{name}_ncd.py").write_text(text)
    assert main(["compile", "transformer", "-o", str(tmp_path / "cli_transformer.py")]) == 0
    settings = [
        "--isolated",
        "--line-length",
        "100",
        "--select",
        "E,F,W,I,B,UP,SIM",
        "--ignore",
        "E741,B905,SIM108",
    ]  # fmt: skip  (pyproject.toml's [tool.ruff])
    r = subprocess.run([ruff, "check", *settings, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_results_of_a_box_of_several_outputs_are_named_by_their_ports():
    """A top-k's values and indices were `top2_part_2` and `top2`: neither said which is
    which, and the indices took the box's own name. Each result is now the box's name and
    its port (`top2_values`, `top2_indices`), and the call they are taken from the box's
    name; a split's pieces likewise."""
    from ncd import Builder

    b = Builder("route", sizes={"B": 2, "T": 8, "E": 4, "D": 6})
    x, s = b.input("x", "B T D"), b.input("s", "B T E")
    top = b.topk(s, "E", 2, name="top2")
    b.output("w", b.mul(top["values"], top["values"], name="sq"))
    b.output("i", top["indices"])
    parts = b.split(x, "D", [2, 4], names=["lo", "hi"], name="halves")
    b.output("y", b.add(parts["lo"], parts["lo"], name="two"))
    b.output("z", parts["hi"])
    code = to_source(b.build()).split("def forward", 1)[1]
    assert "top2 = torch.topk(s, 2, 2)" in code
    assert "top2_values = top2[0]" in code and "top2_indices = top2[1]" in code
    assert "sq = top2_values * top2_values" in code
    assert "halves_lo = " in code and "halves_hi = " in code
    assert "_part" not in code


def _defined_twice(text: str) -> list[str]:
    """Module-level names that two statements of the file define (a `def` or `class`, an
    import): ruff's F811 reports a redefinition only where the first was never read, and a
    fused kernel's fallback reads the helpers it defines (`traced`) before the next one
    defines them again. A `try` that imports a name and defines it where the import fails
    defines it once."""
    seen: dict[str, int] = {}

    def names(stmts) -> set[str]:
        out = set()
        for s in stmts:
            if isinstance(s, ast.FunctionDef | ast.ClassDef):
                out.add(s.name)
            elif isinstance(s, ast.Import | ast.ImportFrom):
                out |= {(a.asname or a.name).split(".")[0] for a in s.names}
        return out

    twice = []
    for i, stmt in enumerate(ast.parse(text).body):
        if isinstance(stmt, ast.Try):
            branches = [stmt.body, *(h.body for h in stmt.handlers)]
            for b in branches:  # within one branch, a name defined twice is still twice
                defs = [s.name for s in b if isinstance(s, ast.FunctionDef | ast.ClassDef)]
                twice += [n for n in set(defs) if defs.count(n) > 1]
            defined = set().union(*(names(b) for b in branches))
        else:
            defined = names([stmt])
        for n in sorted(defined):
            if n in seen:
                twice.append(n)
            seen[n] = i
    return twice


def test_each_helper_is_defined_once():
    """hyena_block and deltanet_packed with ncd's kernels wrote `traced`, `check_offsets` and
    `packed_positions` twice: in short_conv's fallback and again at the top level for
    PackedScan; delta_rule's fallback defined gated_delta_rule, whose own fallback followed."""
    assert _defined_twice("def f(): pass\ntry:\n    import g\nexcept ImportError:\n"
                          "    def g(): f()\ndef f(): pass\n") == ["f"]  # fmt: skip
    for name in gallery.names():
        for fused in ("ncd", "torch"):
            text = to_source(gallery.get(name), rewrites={"attention"}, fused=fused)
            assert _defined_twice(text) == [], (name, fused)
