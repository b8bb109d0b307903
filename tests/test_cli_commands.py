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
    """unet drawn whole is far wider than a page: the note says how wide and names blocks
    --collapse takes; asked for narrower (a block collapsed), no note; attention, no note."""
    import re

    from ncd.cli import main

    assert main(["render", "unet", "-o", str(tmp_path / "u.svg")]) == 0
    err = capsys.readouterr().err
    width = float(re.search(r'width="([0-9.]+)pt"', (tmp_path / "u.svg").read_text()).group(1))
    assert f"the figure is {width / 72:.0f} in wide" in err and "'Down 1'" in err
    assert main(["render", "unet", "--collapse", "Down 1", "-o", str(tmp_path / "v.svg")]) == 0
    assert main(["render", "attention", "-o", str(tmp_path / "a.svg")]) == 0
    assert "wide" not in capsys.readouterr().err
