"""The file `ncd compile -o` writes checks its inputs as `ncd.compile`'s module does, with
torch alone: a wrong size, a missing batch axis or a wrong dtype is a ValueError that names
the input and the axis; a free size (the batch) may vary but must agree across inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from ncd.cli import main
from ncd.compiler import compile as ncd_compile
from ncd.compiler.errors import InputError
from tests.compiler.helpers import positions_circuit

CASES = {
    "ok": "model(torch.randn(2, 16, 32), torch.randn(2, 16))",
    "other_batch": "model(torch.randn(5, 16, 32), torch.randn(5, 16))",
    "wrong_size": "model(torch.randn(2, 12, 32), torch.randn(2, 12))",
    "no_batch_axis": "model(torch.randn(16, 32), torch.randn(2, 16))",
    "batch_disagrees": "model(torch.randn(3, 16, 32), torch.randn(2, 16))",
    "int_input": "model(torch.zeros(2, 16, 32, dtype=torch.int64), torch.randn(2, 16))",
    "bool_input": "model(torch.randn(2, 16, 32), torch.zeros(2, 16, dtype=torch.bool))",
    "float64_input": "model(torch.randn(2, 16, 32).double(), torch.randn(2, 16))",
    "float16_input": "model(torch.randn(2, 16, 32), torch.randn(2, 16).half())",
    "autocast": "with torch.autocast('cpu', dtype=torch.bfloat16): "
    "model(torch.randn(2, 16, 32).bfloat16(), torch.randn(2, 16).bfloat16())",
    "keyword": "model(x=torch.randn(2, 16, 32), gate=torch.randn(2, 15))",
    "not_a_tensor": "model([[0.0]], torch.randn(2, 16))",
    "config_T8": "m.PositionsConfig(T=8) and m.Positions(m.PositionsConfig(T=8))("
    "torch.randn(2, 16, 32), torch.randn(2, 16))",
    "traced": "torch.fx.symbolic_trace(model)(torch.randn(2, 16, 32), torch.randn(2, 16))",
}

# What each case must raise: the input, the axis, what the circuit expects and what was found.
EXPECTED = {
    "ok": None,
    "other_batch": None,
    "wrong_size": "input 'x': axis T has size 16 in the circuit, found 12 (x.shape = (2, 12, 32))",
    "no_batch_axis": "input 'x': expected 3 axes (B T D), found 2 (x.shape = (16, 32))",
    "batch_disagrees": "input 'gate': axis B has size 3 in input 'x' (axis B), found 2 "
    "(gate.shape = (2, 16))",
    "int_input": "input 'x': the circuit declares float32 (kind float), found torch.int64 "
    "(kind int)",
    "bool_input": "input 'gate': the circuit declares float32 (kind float), found torch.bool "
    "(kind bool)",
    "float64_input": "input 'x': the module's parameters are torch.float32, found "
    "torch.float64 (convert the input with .to(torch.float32), the module with "
    ".to(torch.float64), or run under torch.autocast)",
    "float16_input": "input 'gate': the module's parameters are torch.float32, found "
    "torch.float16 (convert the input with .to(torch.float32), the module with "
    ".to(torch.float16), or run under torch.autocast)",
    "autocast": None,
    "keyword": "input 'gate': axis T has size 16 in the circuit, found 15 (gate.shape = (2, 15))",
    "not_a_tensor": "input 'x': expected a tensor with axes B T D, found list",
    "config_T8": "input 'x': axis T has size 8 in the circuit, found 16 (x.shape = (2, 16, 32))",
    "traced": None,
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Each case run against the written file in a Python where ncd cannot be imported."""
    tmp = tmp_path_factory.mktemp("compiled")
    spec = tmp / "positions.json"
    spec.write_text(positions_circuit().to_json())
    assert main(["compile", str(spec), "-o", str(tmp / "out" / "positions.py")]) == 0
    cases = "\n".join(
        f"""
try:
    {code}
    seen[{name!r}] = None
except ValueError as e:
    seen[{name!r}] = str(e)"""
        for name, code in CASES.items()
    )
    script = (
        textwrap.dedent(f"""
        import importlib.util, json, sys, torch
        sys.modules["ncd"] = None
        spec = importlib.util.spec_from_file_location("m", {str(tmp / "out" / "positions.py")!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        model = m.Positions()
        seen = {{}}
    """)
        + cases
        + "\nprint(json.dumps(seen))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_the_written_file_checks_a_free_multiple(tmp_path):
    """A free size written `4*M` (unet's image sides) is checked as a multiple of 4 by the
    written file too, with the compiled module's message."""
    from ncd import gallery

    out = tmp_path / "unet.py"
    assert main(["compile", "unet", "-o", str(out)]) == 0
    script = textwrap.dedent(f"""
        import importlib.util, sys, torch
        sys.modules["ncd"] = None
        spec = importlib.util.spec_from_file_location("m", {str(out)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        model = m.Unet()
        print(tuple(model(torch.randn(1, 3, 12, 8)).shape))
        try:
            model(torch.randn(1, 3, 10, 8))
        except ValueError as e:
            print(e)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    shape, msg = r.stdout.splitlines()[-2:]
    assert shape.endswith("12, 8)")
    with pytest.raises(InputError) as e:
        ncd_compile(gallery.get("unet"))(torch.randn(1, 3, 10, 8))
    assert msg == str(e.value)


@pytest.mark.parametrize("case", list(CASES))
def test_the_written_file_checks_its_inputs(outcomes, case):
    assert outcomes[case] == EXPECTED[case]


@pytest.mark.parametrize("case", [c for c in CASES if EXPECTED[c] and c != "config_T8"])
def test_the_file_and_the_compiled_module_say_the_same(outcomes, case):
    model = ncd_compile(positions_circuit())
    with pytest.raises(InputError) as e:
        eval(CASES[case], {"torch": torch, "model": model})
    assert str(e.value) == outcomes[case]
