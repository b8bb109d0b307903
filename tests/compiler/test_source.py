"""Generated source: standalone (torch only, ncd.ops optional), loads a compiled state_dict,
and stays harmless whatever names a circuit carries."""

from __future__ import annotations

import inspect
import io
import subprocess
import sys
import textwrap
import tokenize

import torch

from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.cli import main
from ncd.compiler import compile as ncd_compile
from ncd.compiler import to_source
from ncd.compiler.names import class_name

from .helpers import example_inputs, load_source

PAYLOAD = "'); open('pwned', 'w'); ('"
NASTY = [
    PAYLOAD,
    '"""; open("pwned2", "w"); """',
    "__import__('os')",
    "x\u2028open('pwned3','w')",
    "class",
    "self",
    "forward",
    "torch",
    "conv",
    "0day",
    "#nope",
]


def _nasty_circuit():
    b = Builder(
        "evil'); open('pwned4', 'w'); ('",
        title="t\nopen('pwned5','w')",
        doc="line\n\"\"\"\nopen('pwned6','w')\n# \\",
        sizes={"B": 2, "T": 3, "D": 4},
    )
    x = b.input(NASTY[0], "B T D")
    y = b.input(NASTY[1], "B T D")
    h = x
    for i, name in enumerate(NASTY[2:]):
        h = b.linear(h, "D", "D", name=name, label=f"L\n{i}'\"") if i % 2 else b.add(
            h, y, name=name
        )  # fmt: skip
    b.output(NASTY[3], h)
    b.output(PAYLOAD + "2", b.relu(h, name="relu\"'"))
    return b.build()


def test_hostile_names_compile_to_harmless_code(tmp_path):
    c = _nasty_circuit()
    text = to_source(c)
    names = {
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.NAME
    }
    assert not names & {"open", "__import__", "exec", "eval", "system"}, names
    path = tmp_path / "model.py"
    path.write_text(text)
    model = ncd_compile(c)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    script = textwrap.dedent(f"""
        import importlib.util, sys, torch
        sys.modules["ncd"] = None  # the file must stand alone
        spec = importlib.util.spec_from_file_location("m", {str(path)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        model = m.{class_name(c.name)}()
        model.load_state_dict(torch.load({str(tmp_path / "w.pt")!r}))
        out = model(torch.randn(2, 3, 4), torch.randn(2, 3, 4))
        print(sorted(out))
    """)
    r = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob("pwned*"))
    assert repr(NASTY[3]) in r.stdout  # the output names survive, as data


def test_fused_kernels_fall_back_without_ncd(tmp_path):
    """With rewrites on, the file imports ncd.ops; without ncd it uses its own fallback."""
    c = gallery.get("transformer_block")
    text = to_source(c, rewrites=True)
    assert "from ncd.ops import softmax_attention" in text
    imports = [ln for ln in text.splitlines() if ln.lstrip().startswith(("import ", "from "))]
    assert all(
        ln.split()[1].split(".")[0] in ("torch", "math", "dataclasses", "ncd") for ln in imports
    )
    model = ncd_compile(c, rewrites=True).eval()
    path = tmp_path / "block.py"
    path.write_text(text)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = example_inputs(c.check(), dtype=torch.float32)[0]
    torch.save(x, tmp_path / "x.pt")
    torch.save(model(x).detach(), tmp_path / "y.pt")
    script = textwrap.dedent(f"""
        import importlib.util, sys, torch
        sys.modules["ncd"] = None
        spec = importlib.util.spec_from_file_location("m", {str(path)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        model = m.TransformerBlock().eval()
        model.load_state_dict(torch.load({str(tmp_path / "w.pt")!r}))
        y = model(torch.load({str(tmp_path / "x.pt")!r}))
        torch.testing.assert_close(y, torch.load({str(tmp_path / "y.pt")!r}), rtol=1e-5, atol=1e-5)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_source_reads_like_the_circuit():
    text = to_source(gallery.get("multihead_attention"))
    assert "class MultiheadAttention(nn.Module):" in text
    assert "self.q_proj = nn.Linear(c.H * c.K, c.H * c.K)" in text  # D is H*K there
    assert "q_proj = self.q_proj(x).unflatten(-1, (c.H, c.K))" in text
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("scores ="))
    assert 'torch.einsum("bthk,bshk->bths", q_proj, k_proj)' in lines[at]
    assert lines[at - 1].strip() == "# scores: contract over K: [B T H K], [B S H K] -> [B T H S]"
    assert "scale = scores * c.K ** -0.5" in text
    forward = text.split("def forward")[1]
    assert forward.count("\n        # ") >= 8  # a comment per box


def test_cli_compile_writes_a_file(tmp_path, capsys):
    out = tmp_path / "tb.py"
    assert main(["compile", "transformer", "--sizes", "N=3", "-o", str(out)]) == 0
    model = load_source(out.read_text(), "Transformer")
    assert len(model.blocks) == 3
    assert main(["compile", "no_such_thing"]) == 1
    assert "neither a JSON file nor a gallery entry" in capsys.readouterr().err


def test_the_file_and_its_class_have_docstrings():
    """help() of a generated file shows the circuit's title, paper and description, quotes
    and backslashes in them kept as written."""
    b = Builder("doc", sizes={"B": 2, "D": 4})
    b.output("y", b.unary(b.input("x", "B D"), "relu"))
    c = b.build().model_copy(
        update={"title": 'A "quoted" \\ title', "paper": "Someone 2024", "doc": 'say """ then'}
    )
    text = to_source(c)
    ns: dict = {"__name__": "ncd_generated"}
    exec(compile(text, "<generated>", "exec", dont_inherit=True), ns)  # our generated code
    assert 'A "quoted" \\ title: generated by `ncd compile`' in ns["__doc__"]
    doc = inspect.cleandoc(ns[class_name("doc")].__doc__)  # as help() shows it
    assert doc.splitlines() == ['A "quoted" \\ title', "Someone 2024", 'say """ then']


def test_a_divisor_that_unification_made_a_product_is_parenthesised():
    """`1/D` where merging H K into D taught D = H*K is written 1 / (c.H * c.K): 1 / c.H *
    c.K is K/H, a different number from the one the compiled graph holds."""
    b = Builder("div", sizes={"B": 2, "H": 2, "K": 4})
    x = b.merge_axes(b.input("x", "B H K"), "H K", "D")
    b.output("y", b.scale(x, "-1/D"))
    c = b.build()
    text = to_source(c)
    assert "* (-(1 / (c.H * c.K)))" in text
    x = torch.randn(2, 2, 4)
    want = x.flatten(1) * -0.125  # -1/D, D = 8
    torch.testing.assert_close(load_source(text, class_name(c.name))(x), want)
    torch.testing.assert_close(ncd_compile(c)(x), want)


def test_a_divisor_that_is_a_sum_has_one_pair_of_parentheses():
    """`4/(D-1)` (a linspace's step over D) is written 4 / (c.D - 1): once parenthesised, as
    ruff's check (UP034) wants it, and the number the compiled graph holds."""
    b = Builder("div", sizes={"B": 2, "D": 6})
    b.output("y", b.scale(b.input("x", "B D"), "4/(D-1)"))
    c = b.build()
    text = to_source(c)
    assert "x * (4 / (c.D - 1))" in text, [ln for ln in text.splitlines() if "/" in ln]
    x = torch.randn(2, 6)
    torch.testing.assert_close(load_source(text, class_name(c.name))(x), x * 0.8)
    torch.testing.assert_close(ncd_compile(c)(x), x * 0.8)
