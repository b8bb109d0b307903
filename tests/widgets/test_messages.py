"""Messages the Studio shows say where (box, input or output; field and item), what was
expected and what was found, in the user's words: never pydantic's own (`axes.2: Value error,
...`, `Input should be`, `Field required`), whichever way the mistake was made: the
diagram's intents, the form, the text view, the JSON tab, the palette.

Expectations are written out by hand from the schema's rules.
"""

from __future__ import annotations

import html
import json

import pydantic
import pytest

from ncd.circuits import io
from ncd.circuits.errors import schema_problems
from ncd.circuits.kinds import KINDS
from ncd.spec import studio as Studio  # noqa: N812 - ncd.Studio, names and paths alike

AXIS_RULE = "an axis name is an ASCII identifier (letters, digits, _) of at most 64 characters"
NAME_RULE = "a name is 1 to 64 characters without '.', control or invisible formatting"
# pydantic's wording and its dotted locations (`axes.2`, `out.1`)
PYDANTIC = ["Value error", "Input should", "Field required", "[type=", "Extra inputs",
            "axes.2", "out.1", "over.0", "String should"]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"kind": "linear", "over": "D", "out": "H K!"},
         f"box 'b' (linear), field 'out', item 2: {AXIS_RULE} (found 'K!')"),
        ({"kind": "linear", "over": "D"},
         "box 'b' (linear), field 'out': required (expected a value, found none)"),
        ({"kind": "linear", "over": "D", "out": "H", "bogus": 3},
         "box 'b' (linear), field 'bogus': no such field (found 3)"),
        ({"kind": "linear", "over": "D", "out": "H", "bias": "maybe"},
         "box 'b' (linear), field 'bias': wrong type (expected true or false, found 'maybe')"),
        ({"kind": "linear", "over": "D", "out": "H", "label": "x" * 70},
         "box 'b' (linear), field 'label': too long (expected at most 64 characters, found 70 "
         "characters)"),
        ({"kind": "unary", "fn": "gelux"},
         "box 'b' (unary), field 'fn': not one of the choices (expected 'relu', 'gelu', "),
        ({"kind": "rename", "mapping": {"T!": "S"}},
         f"box 'b' (rename), field 'mapping', key 'T!': {AXIS_RULE} (found 'T!')"),
        ({"kind": "rename", "mapping": {"T": "S!"}},
         f"box 'b' (rename), field 'mapping', entry 'T': {AXIS_RULE} (found 'S!')"),
    ],
    ids=["rule", "missing", "extra", "type", "long", "choice", "key", "entry"],
)  # fmt: skip
def test_pydantic_errors_in_the_users_words(fields, said):
    kind = fields["kind"]
    with pytest.raises(pydantic.ValidationError) as e:
        KINDS[kind].model_validate({"name": "b", "inputs": {}, **fields})
    text = str(schema_problems(e.value, f"box 'b' ({kind})")[0])
    assert text.startswith(said), text


def shown(studio) -> str:
    """The status line and the messages panel, as text."""
    return studio.canvas.status + "\n" + html.unescape(studio.messages.value)


def said(studio, *expected):
    text = shown(studio)
    assert not studio.canvas.status_ok, text
    for part in expected:
        assert part in text, text
    assert [w for w in PYDANTIC if w in text] == [], text


def test_every_way_of_making_a_mistake_is_told_in_the_users_words():
    """Review 3: `axes.2: Value error, ...` reached the status line from the text view, and
    `field 'axes.2': Value error, ...` from the toolbar; the JSON tab said `Input tag
    'linearr' found using 'kind' does not match any of the expected tags`."""
    studio = Studio("transformer_block")
    cv = studio.canvas
    cv.intent("add_input", name="z", axes="B T D!")  # the toolbar
    said(studio, f"input 'z', field 'axes', item 3: {AXIS_RULE} (found 'D!')")
    cv.intent("add_output", name="o.k", ref="x")
    said(studio, f"output 'o.k', field 'name': {NAME_RULE}", "(found 'o.k')")
    cv.intent("rename", name="a.b")
    said(studio, f"circuit, field 'name': {NAME_RULE}", "(found 'a.b')")
    cv.intent("rename", name="")  # the toolbar's name field emptied: said as typed
    said(studio, "could not rename the circuit to '': the circuit is unchanged")
    cv.intent("select", path="box:q_proj")
    studio.form.fields["out"][1].value = "H K!"  # the form
    said(studio, f"box 'q_proj' (linear), field 'out', item 2: {AXIS_RULE} (found 'K!')")
    text = studio.text.value
    studio.text.value = text.replace('name="q_proj"', 'name="q.proj"', 1)  # the text view
    said(studio, f"box 'q.proj' (linear), field 'name': {NAME_RULE}", "(found 'q.proj')")
    studio.text.value = text.replace('"B T D"', '"B T D!"', 1)
    said(studio, f"input 'x', field 'axes', item 3: {AXIS_RULE} (found 'D!')")
    studio.discard_text_button.click()
    data = json.loads(io.dumps(studio.circuit))  # the JSON tab
    data["boxes"][1]["kind"] = "linearr"
    data["boxes"][2]["over"] = ["D!"]
    studio.json_text.value = json.dumps(data)
    studio.apply_json_button.click()
    said(studio, "boxes[1] ('q_proj'): unknown kind (expected 'linear', ",
         "found 'linearr')", f"boxes[2].over[0] ('k_proj'): {AXIS_RULE} (found 'D!')")  # fmt: skip
    cv.intent("add", kind="call")  # the palette: a call names no subcircuit yet
    said(studio, "new call box 'call', field 'circuit': wrong type (expected text, found None)",
         "fill it in the form")  # fmt: skip
