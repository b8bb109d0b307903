"""The `ncd` command as a newcomer runs it: clear output, errors on stderr, exit 1, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ncd.circuits.kinds import KINDS


def ncd(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "ncd.cli", *args], capture_output=True, text=True,
                       cwd=cwd, timeout=120)  # fmt: skip
    return p.returncode, p.stdout, p.stderr


def test_schema_lists_every_kind():
    rc, out, _ = ncd("schema")
    assert rc == 0
    schema = json.loads(out)
    text = json.dumps(schema)
    for kind in KINDS:
        assert f'"{kind}"' in text, kind


def test_list_json():
    rc, out, _ = ncd("list", "--json")
    entries = json.loads(out)["entries"]
    names = {e["name"] for e in entries}
    assert {"attention", "multihead_attention", "transformer_block", "linear_attention"} <= names
    assert all(set(e) == {"name", "title", "paper"} for e in entries)


@pytest.mark.parametrize("name", ["attention", "multihead_attention", "transformer_block",
                                  "linear_attention"])  # fmt: skip
def test_gallery_validates_and_shows(name):
    rc, out, err = ncd("validate", name)
    assert rc == 0 and out.startswith("ok:"), err
    rc, out, _ = ncd("show", name, "--json")
    d = json.loads(out)
    assert d["name"] == name and d["boxes"]


def test_show_axes_of_attention():
    rc, out, _ = ncd("show", "attention", "--json")
    d = json.loads(out)
    assert d["inputs"]["q"]["axes"] == ["B", "H", "T", "K"]
    assert d["inputs"]["k"]["axes"] == ["B", "H", "S", "K"]
    assert d["outputs"]["y"]["axes"] == ["B", "H", "T", "V"]
    kinds = [b["kind"] for b in d["boxes"]]
    assert kinds == ["contract", "scale", "softmax", "contract"]


BROKEN = {
    "cycle.json": {"name": "c", "inputs": [{"name": "x", "axes": "B T"}],
                   "boxes": [{"name": "a", "kind": "unary", "fn": "relu", "inputs": {"x": "b"}},
                             {"name": "b", "kind": "unary", "fn": "relu", "inputs": {"x": "a"}}],
                   "outputs": [{"name": "y", "source": "b"}]},
    "axis.json": {"name": "c", "inputs": [{"name": "x", "axes": "B T"}],
                  "boxes": [{"name": "sm", "kind": "softmax", "over": "S", "inputs": {"x": "x"}}],
                  "outputs": [{"name": "y", "source": "sm"}]},
    "kind.json": {"name": "c", "boxes": [{"name": "z", "kind": "zap"}]},
}  # fmt: skip


@pytest.mark.parametrize("fname", sorted(BROKEN))
def test_broken_specs_exit_1_with_located_error(tmp_path, fname):
    path = tmp_path / fname
    path.write_text(json.dumps(BROKEN[fname]))
    rc, out, err = ncd("validate", str(path))
    assert rc == 1
    assert "Traceback" not in err and err.startswith("ncd: error:")
    assert {"cycle.json": "box 'a'", "axis.json": "box 'sm', port 'x'",
            "kind.json": "boxes[0] ('z')"}[fname] in err  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "no_such_thing"),
        ("validate", "missing.json"),
        ("show", "attention", "--sizes", "T=abc"),
        ("show", "attention", "--sizes", "T=0"),
        ("validate", "multihead_attention", "--sizes", "D=30,H=4,K=8"),
    ],
)
def test_bad_requests(args, tmp_path):
    rc, _, err = ncd(*args, cwd=tmp_path)
    assert rc == 1 and "Traceback" not in err and err.startswith("ncd: error:"), err


def test_not_json_and_directory(tmp_path):
    (tmp_path / "bad.json").write_text("{ not json")
    rc, _, err = ncd("validate", str(tmp_path / "bad.json"))
    assert rc == 1 and "line 1" in err
    rc, _, err = ncd("validate", str(tmp_path))
    assert rc == 1 and "directory" in err
