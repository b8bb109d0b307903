"""The CLI's language commands and what its commands load: --sizes names checked against the
circuit, `show` with every box's settings, whole sentences in `schema --kinds`, the gallery
listed from its source, and the cost model and the parser without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ncd import gallery
from ncd.circuits.kinds import KINDS
from ncd.cli import main
from ncd.commands.language import first_sentence, gallery_listing

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", ["validate", "show", "compile", "render", "analyse"])
def test_an_unknown_size_is_an_error_that_lists_the_sizes(command, capsys):
    assert main([command, "attention", "--sizes", "T=8,Q=3"]) == 1
    err = capsys.readouterr().err
    assert "has no size Q" in err and "B, H, K, S, T, V" in err


def test_show_prints_every_box_setting(capsys):
    assert main(["show", "transformer_block", "--json"]) == 0
    boxes = {b["name"]: b for b in json.loads(capsys.readouterr().out)["boxes"]}
    c = gallery.get("transformer_block")
    assert len(boxes) == len(c.boxes) == 17
    # as written in the builder: the scale is K^-1/2, the projections map D to H K
    assert boxes["scale"]["settings"]["factor"] == "K**-0.5"
    assert boxes["q_proj"]["settings"]["over"] == ["D"]
    assert boxes["q_proj"]["settings"]["out"] == ["H", "K"]
    assert boxes["q_proj"]["settings"]["bias"] is True  # defaults too
    assert boxes["ln1"]["settings"]["eps"] == 1e-05
    assert boxes["act"]["settings"]["fn"] == "gelu"
    assert main(["show", "transformer_block"]) == 0
    text = capsys.readouterr().out
    assert "factor=K**-0.5" in text and "over=D out=H,K" in text and "fn=gelu" in text


def test_show_gives_a_parameter_axis_its_size_where_the_table_has_another(tmp_path, capsys):
    """Two convolutions of kernels 3 and 16 both have a kernel axis kT: the table holds the
    first's size, and the second's weight was shown as `weight[D D_g kT]`, as if 3 wide."""
    from ncd.circuits.builder import Builder

    b = Builder("two_convs", sizes={"B": 1, "T": 16, "D": 4})
    x = b.input("x", "B T D")
    y = b.conv(x, "T", "D", "D", 3, padding=1, depthwise=True, name="short")
    y = b.conv(y, "T", "D", "D", 16, padding=15, depthwise=True, bias=False, name="long")
    b.output("y", b.slice(y, "T", 0, "T"))
    spec = tmp_path / "two_convs.json"
    spec.write_text(b.build().to_json())
    assert main(["show", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "params weight[D D_g kT], bias[D]" in text  # the short conv: as the table says
    assert "params weight[D D_g kT=16]" in text


def test_schema_kinds_prints_whole_sentences(capsys):
    assert main(["schema", "--kinds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(KINDS)
    for line in lines:
        assert line.rstrip().endswith((".", ")", "`")), line
    assert first_sentence("Calls a subcircuit; `repeat` N > 1 chains\n    N copies. More.") == (
        "Calls a subcircuit; `repeat` N > 1 chains N copies."
    )
    assert first_sentence("Unified Normalization (Yang et al.): per channel.") == (
        "Unified Normalization (Yang et al.): per channel."
    )


def test_schema_of_one_kind_gives_its_fields_ports_and_builder_call(capsys):
    """A new user looking for grouped heads: `help(b.attention)` was empty and its fields
    hid in `**kw`; `ncd schema attention` now says them, and the method's help points there."""
    from ncd.circuits.builder import Builder

    assert main(["schema", "attention"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("attention: Fused softmax attention")
    assert "ports: q, k, v" in text and "\n  kv_heads = null\n      Grouped key/value" in text
    assert "Python: b.attention(q, k, v, *, mask=None, name=None" in text
    assert main(["schema", "linear_attention"]) == 0
    assert "One of: linear, lightning, decay, gla, delta, gated_delta." in capsys.readouterr().out
    assert main(["schema", "where"]) == 0
    assert 'b.box("where", {"cond": cond, "a": a, "b": b}' in capsys.readouterr().out
    assert main(["schema", "atention"]) == 1
    assert "no box kind 'atention' (did you mean attention" in capsys.readouterr().err
    assert "kv_heads" in Builder.attention.__doc__
    assert "`ncd schema attention`" in Builder.attention.__doc__
    assert Builder.add.__doc__.startswith("The `binary` box: An elementwise function")


def test_the_gallery_listing_read_from_source_is_the_gallery():
    want = [{"name": e.name, "title": e.title, "paper": e.paper} for e in gallery.ENTRIES.values()]
    assert gallery_listing() == want


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return set(out.stdout.split())


def test_the_parser_and_the_listing_load_neither_sympy_nor_torch():
    mods = _loaded("from ncd.cli import parser; parser(); from ncd.cli import main; main(['list'])")
    assert not mods & {"torch", "sympy", "pydantic", "triton"}


def test_the_cost_model_loads_without_torch():
    mods = _loaded(
        "from ncd import gallery; from ncd.compiler.cost import analyse; "
        "analyse(gallery.get('transformer_block')).table()"
    )
    assert "sympy" in mods and not mods & {"torch", "triton"}


def test_render_notes_a_figure_too_wide_for_a_page(tmp_path, capsys):
    """unet drawn whole (--max-width 0) is far wider than a page: the note says how wide and
    names blocks --collapse takes; by default it is wrapped into rows, and a note says so;
    asked for narrower (a block collapsed), no too-wide note; attention, none."""
    import re

    from ncd.cli import main

    assert main(["render", "unet", "-o", str(tmp_path / "w.svg")]) == 0
    assert "drawn in 4 rows to fit a page" in capsys.readouterr().err
    assert main(["render", "unet", "--max-width", "0", "-o", str(tmp_path / "u.svg")]) == 0
    err = capsys.readouterr().err
    width = float(re.search(r'width="([0-9.]+)pt"', (tmp_path / "u.svg").read_text()).group(1))
    assert f"the figure is {width / 72:.0f} in wide" in err and "'Down 1'" in err
    assert main(["render", "unet", "--collapse", "Down 1", "-o", str(tmp_path / "v.svg")]) == 0
    assert main(["render", "attention", "-o", str(tmp_path / "a.svg")]) == 0
    assert "the figure is" not in capsys.readouterr().err


def test_weights_missing_an_entry_are_refused(tmp_path, capsys):
    """A weights file (or dict) without some of the module's parameters is an error naming
    them, not completed with fresh random values."""
    from safetensors.torch import save_file

    from ncd.compiler import compile as ncd_compile
    from ncd.compiler.attached import WeightsError

    state = ncd_compile(gallery.get("mlp")).state_dict()
    assert "hidden.weight" in state
    del state["hidden.weight"]
    with pytest.raises(WeightsError, match=r"missing 1 of .*\(hidden\.weight\)"):
        ncd_compile(gallery.get("mlp"), weights=state)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    capsys.readouterr()
    out = tmp_path / "m.py"
    assert main(["compile", "mlp", "--weights", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing 1 of" in err and "hidden.weight" in err
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("axis,defined", [("S", "S = T, so S cannot vary on its own; plot along T"),
                                          ("D", "D = H*K, so D cannot vary on its own; "
                                                "plot along H or K")])  # fmt: skip
def test_plot_along_a_size_the_circuit_defines_is_refused(axis, defined, tmp_path, capsys):
    """S = T and D = H*K in the transformer block: a sweep of S or D alone is no sweep."""
    out = tmp_path / "p.png"
    assert main(["analyse", "transformer_block", "--plot", f"{axis}=16..64", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and defined in err and not out.exists()


def test_json_with_a_plot_keeps_stdout_json(tmp_path, capsys):
    out = tmp_path / "p.png"
    argv = ["analyse", "transformer_block", "--json", "--plot", "T=16..64", "-o", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["total"]["flops"] > 0
    assert "FLOPs grow as T^2" in captured.err and f"wrote {out}" in captured.err
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    "argv,words",
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["validate"], "required: spec (see ncd validate --help)"),
        (["render", "mlp", "-o", "x.svg", "--overlay", "bogus"], "argument --overlay"),
    ],
)
def test_usage_errors_are_one_line_and_exit_1(argv, words):
    p = subprocess.run([sys.executable, "-m", "ncd.cli", *argv], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("ncd: error: ") and p.stderr.count("\n") == 1, p.stderr
    assert words in p.stderr


def test_spec_text_messages(tmp_path, capsys):
    """A NUL in a string: its place, said once; a UTF-8 byte order mark: read past; a schema
    error: the value as JSON writes it."""
    spec = {"name": "c", "sizes": {"B": 2}, "inputs": [{"name": "x", "axes": ["B"]}],
            "boxes": [], "outputs": [{"name": "y", "source": "x"}]}  # fmt: skip
    nul, bom, wrong = tmp_path / "nul.json", tmp_path / "bom.json", tmp_path / "wrong.json"
    nul.write_bytes(json.dumps(spec).replace('"c"', '"c\x00"').encode())
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(spec).encode())
    wrong.write_text(json.dumps({**spec, "sizes": {"B": True}, "name": 5}))
    assert main(["validate", str(nul)]) == 1
    assert "Invalid control character at line 1, column 12" in capsys.readouterr().err
    assert main(["validate", str(bom)]) == 0
    assert main(["validate", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert "found true)" in err and "found 5)" in err and "'True'" not in err


def test_python_m_ncd_runs_the_cli():
    """`python -m ncd` is the CLI, as the `ncd` script is (a venv without the script on PATH,
    or one Python among several; it said "'ncd' is a package and cannot be directly
    executed")."""
    p = subprocess.run([sys.executable, "-m", "ncd", "list", "--json"], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "transformer_block" in {e["name"] for e in json.loads(p.stdout)["entries"]}


def test_compile_keeps_the_weights_float_type(tmp_path, capsys):
    """float64 weights beside a JSON spec were loaded into a float32 module and written as
    float32 for the standalone file: rounded, silently. They keep their type now, and the
    written file's module in that type gives the numbers of `ncd.compile`'s."""
    import importlib.util

    import torch
    from safetensors.torch import load_file, save_file

    from ncd.compiler import compile as ncd_compile
    from tests.compiler.helpers import example_inputs, randomise

    c = gallery.get("mlp")
    (tmp_path / "mlp.json").write_text(c.to_json())
    model = randomise(ncd_compile(c, dtype=torch.float64))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "mlp.safetensors")
    assert main(["compile", str(tmp_path / "mlp.json"), "-o", str(tmp_path / "m.py")]) == 0
    assert "float64" in capsys.readouterr().out
    written = load_file(tmp_path / "m.safetensors")
    assert all(written[k].dtype == torch.float64 and torch.equal(written[k], v)
               for k, v in state.items())  # fmt: skip
    spec = importlib.util.spec_from_file_location("m", tmp_path / "m.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    alone = m.Mlp().to(torch.float64)
    alone.load_state_dict(written)
    xs = example_inputs(c.check())
    torch.testing.assert_close(alone(*xs), model(*xs), rtol=1e-13, atol=1e-13)
