"""What keeps the CLI quick (issue 17: `validate` under 0.3 s, `render` under 1 s, `analyse`
under 1.5 s on a 17-box circuit; bench/cli_speed.py measures them): the commands load only
what they use, and the field descriptions pydantic would read at import are read on demand,
the same as pydantic's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _loaded(argv: list[str], tmp_path) -> set[str]:
    code = (
        "import io, sys, contextlib\n"
        "from ncd.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({argv!r}) == 0\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "argv, never",
    [
        (["validate", "transformer_block"], {"torch", "networkx", "numpy", "graphviz"}),
        (["show", "transformer_block"], {"torch", "networkx", "numpy", "graphviz"}),
        (["analyse", "transformer_block"], {"torch", "networkx", "graphviz", "matplotlib"}),
        (["render", "transformer_block", "-o", "c.svg"], {"torch", "networkx", "matplotlib"}),
    ],
)
def test_commands_load_only_what_they_use(argv, never, tmp_path):
    mods = _loaded(argv, tmp_path)
    assert not mods & never
    assert "ncd.circuits.fielddocs" not in mods  # descriptions are for the schema and editor


def test_field_descriptions_are_pydantics():
    """Every model's field descriptions, read on demand, are what pydantic's own reading of
    attribute docstrings gives (its implementation, called directly on each declaring class);
    a kind's `label` adds, after the shared words, what that kind's drawing makes of it."""
    from pydantic._internal._docs_extraction import extract_docstrings_from_cls

    from ncd.circuits.circuit import Circuit, Input, Output
    from ncd.circuits.draw.glyphs import LABELS
    from ncd.circuits.fielddocs import attach
    from ncd.circuits.kinds import KINDS

    attach()
    checked = 0
    for cls in [*KINDS.values(), Input, Output, Circuit]:
        for name, info in cls.model_fields.items():
            owner = next(b for b in cls.__mro__ if name in getattr(b, "__annotations__", {}))
            want = extract_docstrings_from_cls(owner, use_inspect=True).get(name)
            kind = cls.model_fields["kind"].default if "kind" in cls.model_fields else None
            if name == "label" and kind in LABELS:  # the shared words, then the kind's drawing
                shared = want.split("; what the drawing makes")[0]
                want = f"{shared}. {LABELS[kind]}"
            assert info.description == want, (cls.__name__, name)
            checked += want is not None
    assert checked > 100
    defs = Circuit.model_json_schema()["$defs"]
    assert defs["Circuit"]["properties"]["axes"]["description"].startswith("Axis name -> size")
    linear = defs["Linear"]["properties"]
    assert linear["over"]["description"] and linear["name"]["description"]
