"""Builder code as text (circuits/script.py): every gallery circuit, every kind's case and random
circuits come back equal from their text; code typed by hand in the gallery's style reads as
the Builder run by Python makes it; everything outside the subset is refused at its line."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from ncd import gallery
from ncd.circuits import io
from ncd.circuits.builder import Builder
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError, ScriptError, ValidationError
from ncd.circuits.limits import MAX_SCRIPT_CHARS, MAX_SCRIPT_NESTING
from ncd.circuits.script import from_script, to_script

from ..compiler.kinds_table import TABLE
from ..vocabulary import CASES, one_box
from .test_json_property import circuits


def _round_trip(c):
    text = to_script(c)
    back = from_script(text)
    assert back.model_dump() == c.model_dump()
    assert back.to_json() == c.to_json()  # the same order of boxes, fields and subcircuits
    return text


@pytest.mark.parametrize("name", gallery.names())
def test_gallery_round_trip(name):
    text = _round_trip(gallery.get(name))
    assert all(len(line) <= 100 for line in text.splitlines()), name


@pytest.mark.parametrize("name", sorted(TABLE))
def test_kinds_table_round_trip(name):
    _round_trip(TABLE[name]())


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_kind_round_trips(kind):
    _round_trip(one_box(kind))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits())
def test_random_circuits_round_trip(c):
    _round_trip(c)


def test_text_is_what_ruff_format_leaves(tmp_path):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for name in gallery.names():
        (tmp_path / f"{name}.py").write_text(to_script(gallery.get(name)))
    p = subprocess.run([ruff, "format", "--check", "--line-length", "100", "--no-cache",
                        "--isolated", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr


def test_one_line_per_box_named_after_it():
    text = to_script(gallery.get("transformer"))
    # the subcircuit comes first, as a builder of its own, and the caller uses its variable
    assert text.index('Builder(\n    "transformer_block"') < text.index('"transformer",')
    assert 'blocks = b.call(transformer_block, x=embed, repeat="N", name="blocks")' in text
    assert 'q_proj = b.linear(ln1, "D", "H K", name="q_proj", label="L^Q")' in text
    assert 'with b.group("Residual Component"):\n    ln1 = b.layernorm(x, "D"' in text
    # defaults are not written: layernorm's affine, the name a box would get anyway
    assert "affine" not in text and 'softmax = b.softmax(causal, "S")\n' in text
    assert text.endswith("transformer = b.build()\n")


# The gallery's attention figure as a person types it: nested calls, reused variables, no
# import and no build() (gallery/ncd_paper.py runs the same calls through Python).
ATTENTION = """
NCD = "Abbott, Neural Circuit Diagrams (TMLR 2024)"
b = Builder(
    "attention",
    title="Scaled dot-product attention",
    paper=NCD,
    doc="softmax(q·k / sqrt(K)) · v over named axes; heads H are broadcast.",
    sizes={"B": 2, "H": 4, "T": 16, "S": 16, "K": 8, "V": 8},
)
q = b.input("q", "B H T K")
k = b.input("k", "B H S K")
v = b.input("v", "B H S V")
s = b.contract(q, k, over="K", name="scores")  # B H T S
s = b.scale(s, "K**-0.5", name="scale")
p = b.softmax(s, over="S", name="softmax")
b.output("y", b.contract(p, v, over="S", name="mix"))  # B H T V
"""


def test_hand_typed_attention_is_the_gallery_entry():
    assert from_script(ATTENTION).to_json() == gallery.get("attention").to_json()


def _expected_variants():
    block = Builder("block")
    x = block.input("x", "B T D")
    block.output("x", block.add(x, block.relu(x)))
    block = block.build()
    b = Builder("net", axes={"D": "H*K"}, sizes={"H": 2, "K": 3})
    x = b.input("x", "B T D")
    ids = b.input("ids", "B T", "int64")
    y = b.embedding(ids, "W", "D", name="embed")
    with b.group("Stem"):
        h = b.linear(b.add(x, y), "D", "F", bias=False, name="up")
        with b.group("inner"):
            h = b.dropout(b.gelu(h), 0.25, name="drop")
    h1, h2 = b.copy(h, name="fork")
    parts = b.split(h1, "F", ["F - 2", 2], names=["lo", "hi"], name="cut")
    lo = b.rename(parts["lo"], {"F": "G"})
    one = b.index(h2, "T", -1)
    z = b.box("opaque", {"x": lo}, name="gru", target="torch.nn.GRU", outputs={"y": "B T G"})
    b.subcircuit(block)
    w = b.call("block", x=x, repeat=3, name="blocks")
    b.output("z", z)
    b.output("one", one)
    b.output("hi", parts["hi"])
    b.output("w", w)
    return b.build()


VARIANTS = '''
"""A docstring is allowed, and so are comments."""
from ncd import Builder

b = Builder("block")
x = b.input("x", "B T D")
b.output("x", b.add(x, b.relu(x)))
block = b.build()

net = Builder(name="net", axes={"D": "H*K"}, sizes={"H": +2, "K": 3})
x = net.input("x", axes="B T D")
ids = net.input("ids", "B T", dtype="int64")
y = net.embedding(ids, "W", out="D", name="embed")
with net.group("Stem"):
    h = net.linear(net.add(x, y), "D", "F", bias=False, name="up")
    with net.group(title="inner"):
        h = net.dropout(net.gelu(h), p=0.25, name="drop")
(h1, h2) = net.copy(h, name="fork")
parts = net.split(h1, "F", ("F - 2", 2), names=["lo", "hi"], name="cut")
lo = net.rename(parts["lo"], {"F": "G"})
one = net.index(h2, "T", -1)
z = net.box("opaque", {"x": lo}, "gru", target="torch.nn.GRU", outputs={"y": "B T G"})
name = net.subcircuit(block)
w = net.call(name, x=x, repeat=3, name="blocks")
net.output("z", z)
net.output("one", one)
net.output("hi", parts["hi"])
net.output("w", w)
pass
'''


def test_hand_typed_variants():
    assert from_script(VARIANTS).to_json() == _expected_variants().to_json()


def test_subcircuits_given_by_the_caller():
    block = Builder("block")
    x = block.input("x", "B T D")
    block.output("x", block.relu(x))
    block = block.build()
    text = 'b = Builder("net")\nx = b.input("x", "B T D")\nb.output("y", b.call(block, x=x))\n'
    c = from_script(text, subcircuits={"block": block})
    assert c.subcircuits == {"block": block}
    with pytest.raises(ScriptError, match="name 'block' is not assigned above") as e:
        from_script(text)
    assert (e.value.line, e.value.col) == (3, 22)


def test_boxes_out_of_evaluation_order_are_written_in_it():
    data = io.to_dict(gallery.get("mlp"))
    data["boxes"].reverse()
    c = io.from_dict(data)
    back = from_script(to_script(c))
    assert [b.name for b in back.boxes] == [b.name for b in gallery.get("mlp").boxes]
    assert sorted(back.boxes, key=lambda b: b.name) == sorted(c.boxes, key=lambda b: b.name)


def test_names_that_are_not_python_names():
    b = Builder("odd net", title='say "hi"\n\tthen\u200bgo', doc="x" * 700)
    x = b.input("in", "B D")
    y = b.linear(x, "D", "F", name="1x1 proj", label="L^Q")
    y = b.relu(y, name="class")
    y = b.relu(y, name="b")
    y = b.relu(y, name="Builder")
    y = b.scale(y, 0.125, name="naïve 'x'")
    b.output("out", y)
    c = b.build()
    text = _round_trip(c)
    assert "in_ = b.input" in text and "class_ = b.relu" in text and "\\u200b" in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_circuits_that_cannot_be_written():
    data = io.to_dict(gallery.get("mlp"))
    data["boxes"][1]["inputs"] = {"x": data["boxes"][2]["name"]}
    data["boxes"][2]["inputs"] = {"x": data["boxes"][1]["name"]}
    with pytest.raises(ValidationError, match="cycle"):
        to_script(io.from_dict(data))
    data = io.to_dict(gallery.get("mlp"))
    data["outputs"][0]["source"] = "nowhere"
    with pytest.raises(ValidationError, match="output 'log_probs'.*'nowhere'"):
        to_script(io.from_dict(data))


@pytest.mark.parametrize("text, line, col, words", [
    ("import os", 1, 1, "found an import"),
    ("from os import system", 1, 1, "found another import"),
    ("from ncd.circuits.builder import Builder as B", 1, 1, "found another import"),
    ('b = Builder("c")\nfor i in []:\n    pass', 2, 1, "found a for loop"),
    ('b = Builder("c")\nwhile True:\n    pass', 2, 1, "found a while loop"),
    ('b = Builder("c")\nif b:\n    pass', 2, 1, "found an if statement"),
    ("def f():\n    pass", 1, 1, "found a function definition"),
    ("class C:\n    pass", 1, 1, "found a class definition"),
    ('b = Builder("c")\nx = b.input("x", "B")\nx += 1', 3, 1, "augmented assignment"),
    ('b = Builder("c")\nx = y = 1', 2, 1, "chained assignment"),
    ("f = lambda: 1", 1, 5, "found a lambda"),
    ("xs = [i for i in [1]]", 1, 6, "comprehension"),
    ('n = 2\nname = f"a{n}"', 2, 8, "f-string"),
    ('b = Builder("c")\nd = b.sizes', 2, 5, "attribute access"),
    ('b = Builder("c")\nx = b.input("x", "B")\na = x.axes', 3, 5, "attribute access"),
    ('b = Builder("c")\nb._claim("x")', 2, 1, "no public method '_claim'"),
    ('b = Builder("c")\nb.nonsense()', 2, 1, "no public method 'nonsense'"),
    ('print("hi")', 1, 1, "found a call of print"),
    ('open("/etc/passwd")', 1, 1, "found a call of open"),
    ('__import__("os")', 1, 1, "found a call of __import__"),
    ("x = __builtins__", 1, 5, "dunder name"),
    ("__x = 1", 1, 1, "dunder name"),
    ('b = Builder("c")\nx = b.input("x", "B")\ng = b.group("g")', 3, 5, "with b.group"),
    ('with open("f"):\n    pass', 1, 1, "found another with"),
    ('b = Builder("c")\nxs = []\nb.contract(*xs, over="K")', 3, 12, "*args"),
    ('b = Builder("c")\nkw = {}\nb.input("x", **kw)', 3, 16, "**kwargs"),
    ("n = 1 + 2", 1, 5, "arithmetic"),
    ("n = 1 < 2", 1, 5, "comparison"),
    ("n = -True", 1, 5, "a number after the sign"),
    ("n = 1j", 1, 5, "found 1j"),
    ("n = ...", 1, 5, "found Ellipsis"),
    ("n = " + "9" * 30, 1, 5, "MAX_INT_DIGITS"),
    ("n = {1, 2}", 1, 5, "a set"),
    ("n = [1, 2][0:1]", 1, 12, "slice"),
    ('b = Builder("c")\nx = b.input("x", "B T")\ny = b.relu(z)', 3, 12, "name 'z' is not"),
    ('b = Builder("c")\nx = b.input("x", "B T")\ny = b.softmax(x, "S")', 3, 5, "box 'softmax'"),
    ('b = Builder("c")\nx = b.input("x", "B T")\ny = b.linear(x)', 3, 5, "missing a required"),
    ('b = Builder("c")\nx = b.input("x", "B T")\ny = b.box("nope", {"x": x})', 3, 5,
     "unknown kind 'nope'"),
    ('b = Builder("c")\nx = b.input("x", "B T")\ny = x["out"]', 3, 5, "outputs to pick from"),
    ('b = Builder("c")\nx = b.input("x", "B")\np = b.copy(x)\ny = p["a"]', 4, 7, "no output 'a'"),
    ('b = Builder("c")\nx = b.input("x", "B")\nb = Builder("d")\nb.relu(x)', 4, 8,
     "belongs to another Builder"),
    ('b = Builder("c")\nx = b.input("x", "B")\nb.relu(b)', 3, 8, "found a Builder"),
    ('b = Builder("c")\nx = b.input("x", "B")\nu, v = b.split(x, "B", [1, 1])', 3, 1,
     "parts[\"q\"]"),
    ('b = Builder("c")\nx = b.input("x", "B")\nu, v, w = b.copy(x)', 3, 1, "expected 2 names"),
    ('b = Builder("c")\nx = b.input("x", "B")\nx.y = 1', 3, 1, "a name to assign to"),
    ("Builder = 1", 1, 1, "`Builder` names the Builder"),
    ("b = Builder", 1, 5, "not called"),
    ('b = Builder("c")\nb.relu', 2, 1, "an expression on its own"),
    ('b = Builder("c")\nb.input("x", "B T"', 2, 8, "not valid Python"),
    ('b = Builder("c")\nx = b.input("x", "B")\n', 2, 1, "has no outputs"),
    ('b = Builder("c")\nx = b.input("x", "B")\nb.build()\n\n', 3, 1, "has no outputs"),
    ("x = 1", 1, 1, "found no Builder"),
    ('b = Builder("c", colour="red")', 1, 5, "unexpected keyword argument 'colour'"),
    ('b = Builder("a.b")', 1, 1, "building circuit 'a.b'"),
    ('b = Builder("c")\nb.foo.bar()', 2, 1, "expected a call of a Builder method"),
    ('b = Builder("c")\nx = b.input("x", "B")\nx.relu()', 3, 1, "expected a Builder before"),
])  # fmt: skip
def test_refused_at_its_line(text, line, col, words):
    with pytest.raises(ScriptError) as e:
        from_script(text)
    assert (e.value.line, e.value.col) == (line, col), str(e.value)
    assert words in str(e.value), str(e.value)
    assert str(e.value).startswith(f"line {line}, column {col}: ")
    assert isinstance(e.value, NcdError)


def test_mangled_text_gives_a_circuit_or_a_script_error():
    """Characters deleted, inserted and copied at random into gallery scripts: every result is
    a circuit or a ScriptError with a place, never another exception."""
    rng = random.Random(7)
    texts = [to_script(gallery.get(n)) for n in ("transformer", "unet", "soft_attention")]
    junk = ["(", ")", "[", "]", "{", ",", "=", ".", "'", "\n", "    ", "-", "**", ":", "1e999",
            "None", "b.box", "b.copy(", "b.build()", "Builder(", "\\", "é", "__", '["out"]',
            "with ", " as y", "b.group("]  # fmt: skip
    for _ in range(300):
        t = rng.choice(texts)
        for _ in range(rng.randint(1, 4)):
            p, q = rng.randrange(len(t)), rng.randrange(len(t))
            t = rng.choice([t[:p] + t[p + rng.randint(1, 8) :], t[:p] + rng.choice(junk) + t[p:],
                            t[:p] + t[q : q + rng.randint(1, 40)] + t[p:]])  # fmt: skip
        try:
            assert isinstance(from_script(t), Circuit)
        except ScriptError as e:
            assert e.line >= 1 and e.col >= 1


def test_columns_count_characters_not_bytes():
    with pytest.raises(ScriptError) as e:
        from_script('b = Builder("ñandú")\nx = b.input("x", "B")\nb.output("ü", ñ)')
    assert (e.value.line, e.value.col) == (3, 15)


def test_bounded():
    with pytest.raises(ScriptError, match="MAX_SCRIPT_CHARS"):
        from_script("#" * (MAX_SCRIPT_CHARS + 1))
    deep = "x = " + "[" * (MAX_SCRIPT_NESTING + 5) + "]" * (MAX_SCRIPT_NESTING + 5)
    with pytest.raises(ScriptError, match="MAX_SCRIPT_NESTING"):
        from_script(deep)
    for text in ["x = " + "-" * 100_000 + "1", "x = " + "(" * 1000 + ")" * 1000, "a\x00b"]:
        with pytest.raises(ScriptError):
            from_script(text)
    with pytest.raises(ScriptError, match="is text"):
        from_script(b"b = Builder('c')")


def _deep(n):
    b = Builder("deep", axes={"D": "H*K"})
    x = b.input("x", "B T D")
    for i in range(n // 4):
        with b.group(f"layer {i}"):
            h = b.layernorm(x, "D", name=f"ln{i}")
            h = b.linear(h, "D", "F", name=f"up{i}")
            h = b.gelu(h, name=f"act{i}")
            x = b.add(x, b.linear(h, "F", "D", name=f"down{i}"), name=f"res{i}")
    b.output("y", x)
    return b.build()


def test_speed_at_200_boxes():
    c = _deep(160)
    assert len(c.boxes) == 200
    t0 = time.perf_counter()
    text = to_script(c)
    t1 = time.perf_counter()
    back = from_script(text)
    t2 = time.perf_counter()
    assert back == c
    assert t1 - t0 < 1.0 and t2 - t1 < 1.0, (t1 - t0, t2 - t1)


def test_cli_show_builder(capsys):
    from ncd.cli import main

    assert main(["show", "transformer", "--builder"]) == 0
    out = capsys.readouterr().out
    assert from_script(out).to_json() == gallery.get("transformer").to_json()
    assert textwrap.dedent(out) == out and out.startswith("from ncd.circuits.builder import")
