"""Files: every gallery circuit in every format; bad requests get one RenderError (exit 1 on the
command line) and leave no file, half-written or otherwise, behind."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from ncd import gallery
from ncd.circuits.draw import FORMATS, RenderError, render
from ncd.circuits.errors import NcdError
from ncd.cli import main

XLINK = "{http://www.w3.org/1999/xlink}"
MAGIC = {"svg": b"<?xml", "pdf": b"%PDF-", "png": b"\x89PNG\r\n\x1a\n", "dot": b"digraph"}


@pytest.mark.parametrize("name", gallery.names())
def test_gallery_circuit_in_every_format(name, tmp_path):
    c = gallery.get(name)
    for fmt in FORMATS:
        path = tmp_path / f"{name}.{fmt}"
        render(c, path)
        assert path.read_bytes().startswith(MAGIC[fmt]), fmt
    root = ET.parse(tmp_path / f"{name}.svg").getroot()
    ids = {g.get("id") for g in root.iter("{http://www.w3.org/2000/svg}g")}
    # A block collapsed to fit the page names its boxes in its tooltip ("block T: a, b").
    inside = set()
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        if "role-group" in g.get("class", "").split():
            tip = next(g.iter("{http://www.w3.org/2000/svg}a")).get(XLINK + "title")
            inside |= set(tip.split(": ", 1)[1].split(", "))
    # Every box is drawn: as a box, (a call) as the block its subcircuit is drawn in, or
    # inside a block drawn collapsed.
    for b in c.boxes:
        drawn = f"box:{b.name}" in ids or (b.kind == "call" and f"block:{b.name}" in ids)
        assert drawn or b.name in inside, b.name
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def _attention():
    return gallery.get("attention")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"theme": "poster"}, "unknown theme"),
        ({"collapse": ["Attention Block"]}, "cannot collapse 'Attention Block'"),
        ({"depth": -1}, "depth"),
        ({"overlay": {"mix": -0.1}}, "overlay"),
    ],
)
def test_bad_requests_leave_the_old_file_alone(tmp_path, kw, message):
    path = tmp_path / "figure.svg"
    path.write_text("old")
    with pytest.raises(RenderError, match=message):
        render(_attention(), path, **kw)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["figure.svg"]


def test_unknown_format_and_unwritable_paths(tmp_path):
    with pytest.raises(RenderError, match=r"expected \.svg \.pdf \.png \.dot, found \.jpg"):
        render(_attention(), tmp_path / "figure.jpg")
    with pytest.raises(RenderError, match="no such folder"):
        render(_attention(), tmp_path / "missing" / "figure.svg")
    (tmp_path / "folder.svg").mkdir()
    with pytest.raises(RenderError, match="is a folder"):
        render(_attention(), tmp_path / "folder.svg")
    assert sorted(os.listdir(tmp_path)) == ["folder.svg"]


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "figure.png"

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(RenderError, match="No space left on device"):
        render(_attention(), path)
    assert os.listdir(tmp_path) == []


def test_missing_dot_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    with pytest.raises(RenderError, match="Graphviz is not installed"):
        render(_attention(), tmp_path / "figure.pdf")
    assert os.listdir(tmp_path) == []
    assert issubclass(RenderError, NcdError)


def test_cli_writes_every_format(tmp_path, capsys):
    for fmt in FORMATS:
        out = tmp_path / f"block.{fmt}"
        args = ["render", "transformer_block", "-o", str(out), "--collapse", "MLP"]
        assert main(args + ["--theme", "notebook", "--sizes", "default"]) == 0
        assert out.read_bytes().startswith(MAGIC[fmt])
    dot = (tmp_path / "block.dot").read_text()
    assert 'id="group:MLP"' in dot and 'id="box:ff_up"' not in dot and "<I>D</I>=32" in dot
    assert main(["render", "transformer", "--depth", "0"]) == 0
    out = capsys.readouterr().out  # after the "wrote …" lines of the renders above
    svg = ET.fromstring(out[out.index("<svg") :])
    texts = [t for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    # the repeat count, its size symbol N in italics as on the wires
    count = next(i for i, t in enumerate(texts) if t.text == "× ")
    assert texts[count + 1].text == "N" and texts[count + 1].get("font-style") == "italic"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "x.jpg"], "cannot tell the format"),
        (["-o", "x.svg", "--theme", "poster"], "unknown theme"),
        (["-o", "x.svg", "--collapse", "Nope"], "cannot collapse 'Nope'"),
        (["-o", "x.svg", "--sizes", "T=zero"], "--sizes expects"),
    ],
)
def test_cli_errors_exit_1_with_one_message(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["render", "attention", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ncd: error:") and message in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_cli_overlay_from_the_cost_model(tmp_path):
    out = tmp_path / "cost.svg"
    assert main(["render", "transformer_block", "-o", str(out), "--overlay", "flops"]) == 0
    svg = out.read_text()
    assert "FLOP share" in svg


def test_pdf_and_png_are_byte_identical_run_after_run(tmp_path, monkeypatch):
    import time as clock

    c = gallery.get("attention")
    first = {}
    for fmt in ("pdf", "png"):
        render(c, tmp_path / f"a.{fmt}")
        first[fmt] = (tmp_path / f"a.{fmt}").read_bytes()
    clock.sleep(1.1)  # the PDF's creation time would move by a second
    for fmt in ("pdf", "png"):
        render(c, tmp_path / f"b.{fmt}")
        assert (tmp_path / f"b.{fmt}").read_bytes() == first[fmt], fmt
    assert b"/CreationDate (D:19700101000000" in first["pdf"]
