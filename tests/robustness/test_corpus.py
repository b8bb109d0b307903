"""The hostile-input corpus through every command: each case ends in one located
`ncd: error:` (exit 1, no traceback) or succeeds, within a few seconds and a memory limit,
never crashing, hanging or running code (corpus.py lists the cases)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ncd
from ncd.compiler import compile as ncd_compile
from ncd.compiler import to_source

from . import runner
from .corpus import CASES

CASE_SECONDS = 8.0  # per command and case, far above what a passing case needs
COMMANDS = {
    "validate": [],
    "show": [],
    "render": ["-o", "{tmp}/out.svg"],
    "analyse": ["--symbolic"],
    "compile": ["-o", "{tmp}/out.py"],
}
LOCATED = ("circuit '", "box '", "input '", "output '", "size", "spec", ".json", "axis")


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """The commands' modules loaded once here, so that each forked case starts warm."""
    import ncd.circuits.draw  # noqa: F401
    import ncd.compiler.cost  # noqa: F401
    import ncd.compiler.importer  # noqa: F401


def _check(r: runner.Result, outcome: str, path: Path) -> None:
    where = f"{' '.join(r.argv)}: exit {r.code}, stderr {r.err[:400]!r}"
    assert not r.timed_out, f"{where}: ran past {CASE_SECONDS} s"
    assert r.code in (0, 1), where
    assert "internal error" not in r.err and "Traceback" not in r.err, where
    assert len(r.err) < 20_000 and len(r.out) < 2_000_000, f"{where}: output too long"
    if outcome == "error":
        assert r.code == 1, where
    if outcome == "ok":
        assert r.code == 0, where
    if r.code == 1:
        assert r.err.startswith("ncd: error:"), where
        assert any(w in r.err for w in LOCATED), f"{where}: the error names no place"


@pytest.mark.parametrize("name", list(CASES))
def test_case_through_every_command(name, tmp_path):
    text, outcome = CASES[name]
    path = tmp_path / f"{name}.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for command, extra in COMMANDS.items():
        argv = [command, str(path), *(a.format(tmp=tmp_path) for a in extra)]
        r = runner.run(argv, CASE_SECONDS, cwd=str(tmp_path))
        _check(r, outcome, path)
    made = {p.name for p in tmp_path.iterdir()} - {path.name, "out.svg", "out.py"}
    assert not made, f"unexpected files {made}"  # no code of the spec ran


def _compiled_cases():
    out = []
    for name, (text, outcome) in CASES.items():
        if outcome == "error":
            continue
        try:
            c = ncd.Circuit.from_json(text)
            c.check(require_bound=True)
        except ncd.NcdError:
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("name", _compiled_cases())
def test_what_validates_compiles_and_runs(name, tmp_path):
    """A circuit that validates compiles; its standalone file defines the module ncd.compile
    builds (same outputs with the same weights), whatever its names."""
    c = ncd.Circuit.from_json(CASES[name][0])
    model = ncd_compile(c).eval()
    path = tmp_path / "m.py"
    path.write_text(to_source(c))
    from ncd.commands.compile import _class, load_module
    from ncd.compiler.examples import example_inputs

    mod = load_module(path, f"robust_{name}")
    twin = getattr(mod, _class(c))().eval()
    twin.load_state_dict(model.state_dict())
    xs = example_inputs(c.check())
    with torch.no_grad():
        a, b = model(*xs), twin(*xs)
    a = a if isinstance(a, dict) else {"y": a}
    b = b if isinstance(b, dict) else {"y": b}
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert not list(tmp_path.glob("pwned*"))


IMPORTS = {
    "raises": (["hostile_models:raises"], "the factory hostile_models:raises failed"),
    "exits": (["hostile_models:exits"], "it exited"),
    "number": (["hostile_models:number"], "not an nn.Module"),
    "shape_text": (["hostile_models:lin", "--shape", "2,x"], "--shape expects"),
    "shape_zero": (["hostile_models:lin", "--shape", "2,0"], "--shape expects"),
    "shape_negative": (["hostile_models:lin", "--shape", "2,-4"], "--shape expects"),
    "shape_huge": (["hostile_models:lin", "--shape", "99999999999,9999999"], "MAX_EXAMPLE"),
    "shape_wrong": (["hostile_models:lin", "--shape", "2,3"], "example inputs failed"),
    "name_dotted": (["hostile_models:lin", "--shape", "2,4", "--name", "a.b"], "circuit name"),
    "name_empty": (["hostile_models:lin", "--shape", "2,4", "--name", ""], "circuit name"),
    "no_module": (["no_such_module_here:f"], "cannot import module"),
    "no_factory": (["hostile_models:nope"], "no callable"),
    "dict": (["hostile_models:dict_model", "--shape", "2,4"], None),
    "tuple": (["hostile_models:chunk", "--shape", "2,4"], None),
}


@pytest.mark.parametrize("name", list(IMPORTS))
def test_import_errors_are_located(name, tmp_path):
    shutil.copy(Path(__file__).with_name("hostile_models.py"), tmp_path)
    argv, message = IMPORTS[name]
    r = runner.run(["import", *argv, "-o", str(tmp_path / "out.json")], 30, cwd=str(tmp_path))
    where = f"exit {r.code}, stderr {r.err[:400]!r}"
    assert not r.timed_out and "internal error" not in r.err and "Traceback" not in r.err, where
    if message is None:
        assert r.code == 0, where
        data = json.loads((tmp_path / "out.json").read_text())
        c = ncd.Circuit.from_json(json.dumps(data))
        assert len(c.outputs) == 2 and c.check()
    else:
        assert r.code == 1 and r.err.startswith("ncd: error:") and message in r.err, where


def test_sizes_option_refuses_other_digits(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(CASES["ok_small"][0])
    for bad in ("B=²", "B=１", "B=99999999999999999999999", "B=0", "B==2", "B=2**3"):
        r = runner.run(["validate", str(path), "--sizes", bad], CASE_SECONDS)
        assert r.code == 1 and r.err.startswith("ncd: error:") and "Traceback" not in r.err, (
            bad,
            r.err,
        )


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_a_spec_that_never_ends_is_refused_at_the_limit(source, tmp_path):
    """A device or a pipe reports size 0 and may never end: the spec is read up to
    MAX_SPEC_BYTES and refused there, in bounded time and memory."""
    import os
    import threading

    path = source
    if source == "fifo":
        path = str(tmp_path / "spec.json")
        os.mkfifo(path)

        def feed():  # more than the limit, then the end (or the reader stops at it)
            try:
                with open(path, "wb") as f:
                    for _ in range(33):
                        f.write(b" " * 2**20)
            except BrokenPipeError:
                pass

        threading.Thread(target=feed, daemon=True).start()
    r = runner.run(["validate", path], timeout=CASE_SECONDS)
    _check(r, "error", tmp_path)
    assert "(limit MAX_SPEC_BYTES)" in r.err
