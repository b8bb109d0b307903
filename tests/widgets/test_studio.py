"""The Studio driven as a user drives it: set widget values, click buttons, read panels.

Expectations come from elsewhere: circuits built with the Builder directly, the renderer,
cost model and compiler called on those, and the JSON files on disk.
"""

from __future__ import annotations

import html
import itertools
import json
import re

import pytest

from ncd import Builder
from ncd.circuits import io
from ncd.circuits.circuit import Output
from ncd.circuits.draw import render
from ncd.circuits.errors import ValidationError
from ncd.compiler import to_source
from ncd.compiler.cost import analyse
from ncd.spec import studio as Studio  # noqa: N812 - ncd.Studio, names and paths alike

SIZES = {"B": 2, "T": 4, "D": 8, "F": 16}


def base(extra=None):
    """x: B T D -> proj (linear D -> F) -> y, optionally more boxes via `extra(b, proj)`."""
    b = Builder("block", sizes=SIZES)
    x = b.input("x", "B T D")
    proj = b.linear(x, over="D", out="F", name="proj")
    b.output("y", extra(b, proj) if extra else proj)
    return b.build()


def add_box(studio, kind, name, ports, **fields):
    """A new box through the form: nothing selected (a selected box is shown in the form, and
    a field set there would change it), then the kind, name, fields and ports, and `add box`."""
    studio.canvas.intent("select", path="")
    studio.palette.value = kind
    studio.box_name.value = name
    for field, value in fields.items():
        studio.form.fields[field][1].value = value
    for port, source in ports.items():
        studio.port_widgets[port].value = source
    studio.add_box_button.click()


def set_output(studio, name, source):
    studio.output_name.value = name
    studio.output_source.value = source
    studio.set_output_button.click()


def drawn(svg: str) -> tuple[list[tuple[str, str]], list[str]]:
    """What a drawing shows: its nodes (path and role class; the editor's ids name the role
    too, the renderer's do not) and its wires' axes, sorted.
    The editor lays out once, so positions may differ from ncd.render's figure."""
    node = r'<g id="[a-z]+:([^"]*)" class="node [^"]*role&#45;(\w+)'
    boxes = sorted(re.findall(node, svg))
    wires = sorted(re.findall(r'<g id="wire:[^"]*" class="edge wire ([^ "]*)', svg))
    return boxes, wires


def shown(studio, tab: str) -> str:
    """Show a tab (its panel is computed then, not on every edit) and read it."""
    studio.tabs.selected_index = ["Messages", "Cost", "Code", "JSON"].index(tab)
    return {"Cost": studio.cost, "Code": studio.code, "JSON": studio.json_text}[tab].value


def same(a, b) -> bool:
    return io.to_dict(a) == io.to_dict(b)


def errors(studio) -> str:
    return html.unescape(studio.messages.value)


def test_add_boxes_through_palette_form_and_wiring():
    studio = Studio(base())
    add_box(studio, "unary", "act", {"x": "proj"}, fn="gelu")
    add_box(studio, "binary", "res", {"a": "proj", "b": "act"}, fn="add")
    set_output(studio, "y", "res")

    expected = base(lambda b, proj: b.add(proj, b.gelu(proj, name="act"), name="res"))
    assert same(studio.circuit, expected), errors(studio)
    assert "ncd-problems" not in studio.messages.value
    assert drawn(render(expected)) == drawn(studio.canvas.svg)  # the circuit's drawing
    assert studio.code.value == ""  # not computed until its tab is shown
    assert html.escape(to_source(expected)) in shown(studio, "Code")
    assert "res" in studio.box_select.options and "res" in studio.output_source.options


def test_empty_start_builds_a_circuit_step_by_step():
    studio = Studio()
    studio.input_name.value, studio.input_axes.value = "x", "B T D"
    studio.add_input_button.click()
    assert "draft" in studio.messages.value  # no outputs yet: accepted as a draft
    add_box(studio, "linear", "proj", {"x": "x"}, over="D", out="F")
    set_output(studio, "y", "proj")
    studio.sizes.value = "B=2, T=4, D=8, F=16"
    studio.default_sizes_button.click()
    expected = base().model_copy(update={"name": "untitled"})
    assert same(studio.circuit, expected), errors(studio)
    code = shown(studio, "Code")
    assert "class" in code and "proj" in code


def test_invalid_edit_is_located_and_keeps_the_circuit():
    studio = Studio(base())
    before = studio.circuit
    add_box(studio, "softmax", "sm", {"x": "proj"}, over="S")  # proj has no axis S
    msg = errors(studio)
    assert "box 'sm'" in msg and "S" in msg and "unchanged" in msg
    assert studio.circuit is before
    add_box(studio, "linear", "l2", {"x": "proj"}, over="F 1x", out="G")  # not an axis name
    assert "new linear box 'l2', field 'over', item 2" in errors(studio)
    assert studio.circuit is before
    assert drawn(render(before)) == drawn(studio.canvas.svg)


def test_undo_redo_round_trip():
    studio = Studio(base())
    first = studio.circuit
    add_box(studio, "unary", "act", {"x": "proj"}, fn="relu")
    second = studio.circuit
    set_output(studio, "z", "act")
    third = studio.circuit
    assert len(third.outputs) == 2
    studio.undo_button.click()
    studio.undo_button.click()
    assert same(studio.circuit, first) and studio.undo_button.disabled
    studio.undo_button.click()  # at the start: a no-op
    assert same(studio.circuit, first)
    studio.redo_button.click()
    assert same(studio.circuit, second)
    # act's result is read by nothing yet: drawn leaving by a dashed output named `…act`
    loose = second.model_copy(
        update={"outputs": [*second.outputs, Output(name="…act", source="act")]}
    )
    assert drawn(render(loose)) == drawn(studio.canvas.svg)
    studio.redo_button.click()
    assert same(studio.circuit, third) and studio.redo_button.disabled
    studio.undo_button.click()
    studio.input_name.value, studio.input_axes.value = "m", "B T"
    studio.add_input_button.click()  # a new edit drops the redo branch
    assert studio.redo_button.disabled and [i.name for i in studio.circuit.inputs] == ["x", "m"]


def test_json_panel_round_trip():
    studio = Studio(base())
    assert json.loads(shown(studio, "JSON")) == io.to_dict(base())
    data = json.loads(studio.json_text.value)
    data["boxes"][0]["out"] = ["G"]
    data["sizes"]["G"] = 3
    studio.json_text.value = json.dumps(data)
    studio.apply_json_button.click()
    assert studio.circuit.box("proj").out == ("G",)
    assert json.loads(studio.json_text.value) == data
    edited = studio.circuit
    for bad in ["{not json", '{"name": "c", "boxes": [{"kind": "nope"}]}', "[]"]:
        studio.json_text.value = bad
        studio.apply_json_button.click()
        assert "unchanged" in errors(studio) and studio.circuit is edited


def test_json_not_applied_is_kept_until_applied_or_discarded():
    """Trial: JSON typed in its tab and refused on apply was rewritten, lost, by the next
    edit of the circuit while the tab was open. It stays, saying it is not the circuit's."""
    studio = Studio(base())
    shown(studio, "JSON")
    draft = studio.json_text.value.replace('"linear"', '"linaer"')
    studio.json_text.value = draft
    studio.apply_json_button.click()
    assert "unchanged" in errors(studio) and studio.json_text.value == draft
    studio.canvas.intent("add", kind="unary", after="box:proj")  # an edit: taken
    assert studio.canvas.status_ok and "unary" in {b.name for b in studio.circuit.boxes}
    assert studio.json_text.value == draft
    assert "not applied" in studio.json_status.value
    assert studio.discard_json_button.layout.display == ""
    studio.discard_json_button.click()
    assert json.loads(studio.json_text.value) == io.to_dict(studio.circuit)
    assert studio.json_status.value == "" and studio.discard_json_button.layout.display == "none"
    studio.canvas.intent("undo")  # the JSON tab follows the circuit again
    assert json.loads(studio.json_text.value) == io.to_dict(base())
    # a draft that is applied is taken, and the tab shows the circuit's own JSON after it
    data = json.loads(studio.json_text.value)
    data["boxes"][0]["out"], data["sizes"]["G"] = ["G"], 3
    studio.json_text.value = json.dumps(data)
    studio.apply_json_button.click()
    assert studio.circuit.box("proj").out == ("G",), studio.canvas.status
    assert json.loads(studio.json_text.value) == io.to_dict(studio.circuit)
    assert studio.json_status.value == ""


def test_save_and_load_file(tmp_path):
    path = tmp_path / "block.json"
    studio = Studio(base())
    add_box(studio, "unary", "act", {"x": "proj"}, fn="tanh")
    studio.path.value = str(path)
    studio.save_button.click()
    assert same(io.load(path), studio.circuit)
    saved = studio.circuit

    other = Studio("attention")
    other.path.value = str(path)
    other.load_button.click()
    assert same(other.circuit, saved)
    assert same(Studio(path).circuit, saved)
    other.undo_button.click()  # loading is an edit like any other
    assert other.circuit.name == "attention"

    other.path.value = str(tmp_path / "missing.json")
    other.load_button.click()
    assert "cannot read" in errors(other) and other.circuit.name == "attention"


def matmul_flops(cost_html: str) -> str:
    return re.search(r"matmul FLOPs \(forward\)</th><td>([^<]*)<", cost_html).group(1)


def test_cost_panel_follows_sizes():
    circuit = base()
    studio = Studio(circuit)
    assert shown(studio, "Cost") == analyse(circuit)._repr_html_()
    # independent: the linear map's matmul FLOPs are 2·B·T·D·F (B=2, D=8, F=16)
    assert matmul_flops(studio.cost.value) == f"{2 * 2 * 4 * 8 * 16 / 1e3:.2f} k"  # T=4
    studio.sizes.value = "T=128"
    assert matmul_flops(studio.cost.value) == f"{2 * 2 * 128 * 8 * 16 / 1e3:.1f} k"
    assert studio.cost.value == analyse(circuit, {"T": 128})._repr_html_()
    studio.sizes.value = "T=abc"  # shown where the numbers were, nothing raised
    assert "T=abc" in html.unescape(studio.cost.value)
    assert studio.circuit is not None and "ncd-problems" not in studio.messages.value


def test_export(tmp_path):
    studio = Studio(base())
    for suffix in ["svg", "png"]:
        studio.export_path.value = str(tmp_path / f"d.{suffix}")
        studio.export_button.click()
        assert (tmp_path / f"d.{suffix}").stat().st_size > 100, errors(studio)
    assert (tmp_path / "d.svg").read_text() == render(base())


@pytest.mark.parametrize(
    "action",
    [
        # (an empty name is no longer one: add box names the new box, as the palette does)
        lambda s: add_box(s, "unary", "a.b", {"x": "proj"}, fn="relu"),  # not a name
        lambda s: add_box(s, "unary", "proj", {"x": "proj"}, fn="relu"),  # name taken
        lambda s: add_box(s, "layernorm", "ln", {"x": "proj"}, over="Q"),  # unknown axis
        lambda s: add_box(s, "rename", "r", {"x": "proj"}, mapping="{oops"),  # bad JSON field
        lambda s: add_box(s, "topk", "t", {"x": "proj"}, over="F", k="0"),  # k out of range (typed)
        lambda s: add_box(s, "dropout", "d", {"x": "proj"}, p=1.5),  # p out of range
        lambda s: (setattr(s.input_name, "value", ""), s.add_input_button.click()),
        lambda s: (setattr(s.input_name, "value", "x"), s.add_input_button.click()),  # taken
        lambda s: (
            setattr(s.input_name, "value", "m"),
            setattr(s.input_axes, "value", "B 1x"),  # not an axis name
            s.add_input_button.click(),
        ),
        lambda s: (setattr(s.output_name, "value", ""), s.set_output_button.click()),
        lambda s: (setattr(s.json_text, "value", ""), s.apply_json_button.click()),
        lambda s: (setattr(s.sizes, "value", "B=0"), s.default_sizes_button.click()),
        lambda s: (setattr(s.path, "value", ""), s.save_button.click()),
        lambda s: (  # a folder that cannot exist: its parent is a file (cwd is tmp_path)
            open("a_file", "w").close(),
            setattr(s.path, "value", "a_file/c.json"),
            s.save_button.click(),
        ),
        lambda s: (setattr(s.path, "value", "no_such_gallery_entry"), s.load_button.click()),
        lambda s: (setattr(s.export_path, "value", "d.xyz"), s.export_button.click()),
        lambda s: (setattr(s.box_select, "value", "proj"), s.delete_box_button.click()),
    ],
)
def test_bad_input_never_raises(action, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    studio = Studio(base())
    before = studio.circuit
    action(studio)  # would raise out of the callback if any error escaped
    assert studio.circuit is before
    msg = studio.messages.value
    assert "#c62828" in msg and "internal error" not in msg  # shown as an error, a known one


def test_every_kind_has_a_form_and_every_gallery_circuit_opens():
    from ncd import gallery
    from ncd.circuits.kinds import KINDS

    studio = Studio()
    assert {k for _, k in studio.palette.options} == set(KINDS)
    for _, kind in studio.palette.options:
        studio.palette.value = kind
        # a param, a constant and positions (without a start) have no inputs; a call has
        # those of its subcircuit (none here)
        no_inputs = ("param", "call", "constant", "positions")
        assert bool(studio.port_widgets) == (kind not in no_inputs), kind
    for name in gallery.names():
        assert studio.load(name), errors(studio)
        assert "<svg" in studio.canvas.svg, name


def test_call_box_is_wired_by_its_subcircuit_inputs():
    from ncd import gallery

    studio = Studio("transformer")
    sub = gallery.get("transformer").subcircuits["transformer_block"]
    studio.palette.value = "call"
    studio.form.fields["circuit"][1].value = "transformer_block"
    assert list(studio.port_widgets) == [i.name for i in sub.inputs]


def test_every_problem_of_a_rejected_edit_is_listed():
    data = io.to_dict(base())
    data["boxes"] += [
        {"name": "sm", "kind": "softmax", "inputs": {"x": "proj"}, "over": "S"},
        {"name": "ln", "kind": "layernorm", "inputs": {"x": "nowhere"}, "over": ["F"]},
    ]
    studio = Studio(base())
    studio.json_text.value = json.dumps(data)
    studio.apply_json_button.click()
    with pytest.raises(ValidationError) as err:  # independent: the validator on the same spec
        io.from_dict(data).check()
    listed = re.findall(r"<li><b>([^<]*)</b>", errors(studio))
    assert listed == [p.where for p in err.value.problems] and len(listed) == 2
    assert any("'sm'" in w for w in listed) and any("'ln'" in w for w in listed)
    assert same(studio.circuit, base())


def test_an_invalid_file_is_not_taken(tmp_path):
    data = io.to_dict(base())
    data["outputs"] = [{"name": "y", "source": "missing_box"}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    studio = Studio(base())
    assert not studio.load(path)
    assert "missing_box" in errors(studio) and same(studio.circuit, base())


def test_theme_toggle_redraws():
    studio = Studio(base())
    studio.theme.value = "notebook"
    assert drawn(render(base(), theme="notebook")) == drawn(studio.canvas.svg)
    assert 'font-family="Helvetica' in studio.canvas.svg
    assert render(base(), theme="notebook") != render(base(), theme="paper")


def test_a_failing_view_does_not_stop_the_editor(monkeypatch):
    import ncd.compiler

    def broken(*args, **kwargs):
        raise RuntimeError("compiler bug")

    monkeypatch.setattr(ncd.compiler, "to_source", broken)
    studio = Studio(base())
    add_box(studio, "unary", "act", {"x": "proj"}, fn="relu")
    assert [b.name for b in studio.circuit.boxes] == ["proj", "act"]
    code = shown(studio, "Code")
    assert "internal error" in code and "compiler bug" in code
    assert "<svg" in studio.canvas.svg


def test_forms_follow_the_schema():
    import ipywidgets as w

    from ncd.circuits.kinds import KINDS, UNARY
    from ncd.widgets.forms import BoxForm, palette_options

    ln = BoxForm("layernorm").fields
    assert isinstance(ln["over"][1], w.Text) and isinstance(ln["affine"][1], w.Checkbox)
    assert isinstance(ln["eps"][1], w.FloatText) and ln["eps"][1].value == 1e-5
    fn = BoxForm("unary").fields["fn"][1]
    assert isinstance(fn, w.Dropdown) and set(fn.options) == {(f, f) for f in UNARY}
    assert isinstance(BoxForm("conv").fields["kernel"][1], w.Text)  # a list of ints: "3 3"
    families = [KINDS[k].family for _, k in palette_options()]
    runs = [f for f, _ in itertools.groupby(families)]
    assert len(runs) == len(set(families))  # each family's kinds sit together


def test_edit_a_box_in_the_form_and_replace_it():
    studio = Studio(base())
    studio.box_select.value = "proj"
    studio.edit_box_button.click()
    assert studio.palette.value == "linear" and studio.box_name.value == "proj"
    assert studio.form.fields["over"][1].value == "D" and studio.port_widgets["x"].value == "x"
    studio.form.fields["out"][1].value = "G"
    studio.form.fields["bias"][1].value = False
    studio.replace_box_button.click()

    b = Builder("block", sizes=SIZES)
    b.output("y", b.linear(b.input("x", "B T D"), over="D", out="G", bias=False, name="proj"))
    assert same(studio.circuit, b.build()), errors(studio)
    studio.box_name.value = "renamed"  # the name is a field: it applies, and y follows it
    b = Builder("block", sizes=SIZES)
    x = b.input("x", "B T D")
    b.output("y", b.linear(x, over="D", out="G", bias=False, name="renamed"))
    assert same(studio.circuit, b.build()), errors(studio)
    assert studio.form_title.value == "<b>The selected box: renamed</b>"


def test_undo_history_is_bounded(monkeypatch):
    import ncd.widgets.studio as studio_module

    monkeypatch.setattr(studio_module, "MAX_UNDO", 3)
    studio = Studio(base())
    for n in range(5):
        studio.sizes.value = f"B={n + 1}"
        studio.default_sizes_button.click()
    assert studio.circuit.sizes["B"] == 5
    for _ in range(5):
        studio.undo_button.click()
    assert studio.circuit.sizes["B"] == 3  # the three latest circuits are kept


def test_a_box_chosen_in_the_list_is_selected_and_shown_in_the_form():
    """Choosing a box in the list did nothing visible: the form went on showing a new box of
    the palette's kind under the chosen name until "edit in form" was pressed."""
    studio = Studio("transformer_block")
    studio.box_select.value = "q_proj"
    assert studio.canvas.selected == "box:q_proj"
    assert studio.form_title.value == "<b>The selected box: q_proj</b>"
    assert studio.palette.value == "linear" and studio.box_name.value == "q_proj"
    assert studio.form.fields["out"][1].value == "H K"
    node = next(b for b in studio.circuit.boxes if b.kind == "layernorm").name
    studio.box_select.value = node  # another choice follows it
    assert studio.canvas.selected == f"box:{node}" and studio.palette.value == "layernorm"


def test_box_choice_survives_an_edit():
    """Choosing a box, then making an unrelated edit, leaves that box chosen."""
    studio = Studio("transformer_block")
    studio.box_select.value = "q_proj"
    studio.sizes.value = "B=4"  # a refresh that is not an edit of the box list
    studio.input_name.value, studio.input_axes.value = "m", "B T"
    studio.add_input_button.click()  # an edit, not of q_proj
    assert "m" in [i.name for i in studio.circuit.inputs]
    assert studio.box_select.value == "q_proj"
    studio.delete_box_button.click()  # the kept choice is the one acted on
    assert "q_proj" in studio.messages.value


# ---- the form follows the circuit (audit bugs 3-7) --------------------------------------------
def gla_block(**mixer):
    """Gallery gla_block as JSON, its mixer's fields updated by `mixer`."""
    from ncd.spec import load_spec

    data = io.to_dict(load_spec("gla_block"))
    next(b for b in data["boxes"] if b["name"] == "mixer").update(mixer)
    return data


def form_of(studio):
    return {f: wd.value for f, (_, wd) in studio.form.fields.items()}


def test_undo_refills_the_form_and_the_next_field_edit_keeps_the_undone_change_undone():
    """Audit bug 3: after an undo the form still showed the undone variant, and the next
    field edit silently redid it."""
    studio = Studio("gla_block")
    studio.canvas.intent("select", path="box:mixer")
    studio.form.fields["variant"][1].value = "lightning"
    assert studio.circuit.box("mixer").variant == "lightning"
    studio.canvas.intent("undo")
    assert form_of(studio)["variant"] == "gla" and studio.port_widgets["g"].value == "temperature"
    studio.form.fields["scale"][1].value = "0.5"
    assert io.to_dict(studio.circuit) == gla_block(scale="0.5"), errors(studio)
    studio.canvas.intent("undo")
    studio.canvas.intent("redo")  # the redone edit is in the form too
    assert form_of(studio)["scale"] == "0.5"


def test_a_refused_field_edit_is_not_kept_and_leaves_no_error_behind():
    """Audit bug 4: the form kept a refused value (every later edit failed with its error),
    and a field or the text put back left the red status and marks on a valid circuit."""
    studio = Studio("gla_block")
    before = studio.circuit
    studio.canvas.intent("select", path="box:q_proj")
    studio.form.fields["over"][1].value = "E"  # no axis E on x
    assert studio.circuit is before and not studio.canvas.status_ok
    assert studio.canvas.status.startswith("could not change box 'q_proj' (over = 'E')")
    assert "box:q_proj" in studio.canvas.marks
    assert form_of(studio)["over"] == "D"  # the form shows the box as the circuit has it
    studio.form.fields["label"][1].value = "Q"  # a later edit is taken on its own
    assert studio.circuit.box("q_proj").label == "Q" and studio.canvas.status_ok
    assert studio.canvas.marks == {}
    text = studio.text.value
    studio.text.value = text + "\nnot code(\n"
    assert not studio.canvas.status_ok and studio.text_status.value
    studio.text.value = text  # put back as it was
    assert studio.canvas.status_ok and studio.text_status.value == ""
    assert studio.canvas.marks == {}


def test_a_box_that_others_read_is_renamed_in_the_form():
    """Audit bug 5: renaming q_proj was refused (`unknown source 'q_proj'`): its readers now
    follow the name, which applies like any field (on Enter: the field sends on Enter)."""
    studio = Studio("gla_block")
    assert studio.box_name.continuous_update is False
    studio.canvas.intent("select", path="box:q_proj")
    studio.box_name.value = "q"
    want = json.loads(json.dumps(gla_block()).replace('"q_proj"', '"q"'))
    assert io.to_dict(studio.circuit) == want, errors(studio)
    assert studio.canvas.selected == "box:q" and studio.form_title.value == (
        "<b>The selected box: q</b>"
    )


def test_add_box_selects_the_new_box():
    """Audit bug 6: after add box the next palette click read the old selection. The new box
    is selected; the form stays a new box's (for the next one), and says so."""
    studio = Studio(base())
    studio.canvas.intent("select", path="box:proj")
    add_box(studio, "unary", "act", {"x": "proj"}, fn="gelu")
    assert studio.canvas.selected == "box:act" and studio.box_select.value == "act"
    assert studio.form_title.value.startswith("<b>The next new unary box</b> (act was added")
    studio.canvas.intent("add", kind="unary", after=studio.canvas.selected)
    assert studio.circuit.box("unary").inputs == {"x": "act"}


def test_fill_add_fill_add_makes_two_boxes():
    """Trial: after add box, the form edited the box just added, so a field changed for the
    next box changed the first one, and the second add box made a copy of it. The form now
    stays a new box's after add box: fill, add, fill, add makes two boxes; the box added is
    edited by a click on it, or by apply to box."""
    studio = Studio()
    studio.input_name.value, studio.input_axes.value = "x", "B T D"
    studio.add_input_button.click()
    assert studio.palette.value == "linear" and studio.port_widgets["x"].value == "x"
    studio.form.fields["over"][1].value = "D"
    studio.form.fields["out"][1].value = "H K"
    studio.add_box_button.click()
    assert studio.canvas.status_ok, studio.canvas.status
    assert "the form is ready for the next box" in studio.canvas.status
    assert studio.box_name.value == "" and studio.form.fields["out"][1].value == "H K"
    studio.form.fields["out"][1].value = "H V"  # Enter: the next box, not the first
    assert studio.circuit.box("linear").out == ("H", "K")
    studio.add_box_button.click()
    b = Builder("untitled")
    x = b.input("x", "B T D")
    b.linear(x, over="D", out="H K", name="linear")
    b.linear(x, over="D", out="H V", name="linear2")
    b.output("y", x)
    assert same(studio.circuit, b.build().model_copy(update={"outputs": []})), errors(studio)
    assert studio.canvas.selected == "box:linear2"
    # apply to box: the form's fields onto the box chosen (here the one just added), whose
    # name it keeps; the form then shows that box
    studio.form.fields["out"][1].value = "F"
    studio.replace_box_button.click()
    assert studio.circuit.box("linear2").out == ("F",), errors(studio)
    assert studio.form_title.value == "<b>The selected box: linear2</b>"
    studio.form.fields["out"][1].value = "G"  # now a field applies to it at once
    assert studio.circuit.box("linear2").out == ("G",)
    assert [b.name for b in studio.circuit.boxes] == ["linear", "linear2"]


def test_a_kind_chosen_with_a_box_selected_says_what_apply_to_box_does():
    """Trial: a kind chosen with a box selected headed the form "A new unary box", and apply
    to box turned the selected box into a unary. The heading now says both: add box adds
    it, apply to box turns the selected box into it; each does what it says."""
    studio = Studio(base())
    studio.canvas.intent("select", path="box:proj")
    studio.palette.value = "unary"
    title = studio.form_title.value
    assert title.startswith("<b>A new unary box</b> (<b>add box</b> adds it;"), title
    assert "<b>apply to box</b> turns proj (a linear) into it" in title
    # the status said to change a field of proj, which no longer applies: it follows
    assert studio.canvas.status.startswith("a new unary box in the form: add box adds it")
    studio.add_box_button.click()  # a new unary, under a name of its own
    assert studio.circuit.box("unary").inputs == {"x": "x"}, errors(studio)
    assert studio.circuit.box("proj") == base().box("proj")
    studio.canvas.intent("select", path="box:proj")
    studio.palette.value = "unary"
    studio.form.fields["fn"][1].value = "tanh"
    studio.replace_box_button.click()  # proj becomes a unary, in place, under its name
    proj = studio.circuit.box("proj")
    assert (proj.kind, proj.fn, proj.inputs) == ("unary", "tanh", {"x": "x"}), errors(studio)
    assert "changed proj from a linear into a unary" in studio.canvas.status
    assert studio.form_title.value == "<b>The selected box: proj</b>"


def test_a_blank_studio_opens_on_a_linear_box_and_no_field_says_required():
    """Trial: a blank Studio's form opened on the palette's first kind, an embedding, its
    vocab field reading "required" before anything was typed. It opens on a linear map, the
    box most often drawn first on an input, and says nothing is wrong."""
    studio = Studio()
    assert studio.palette.value == "linear"
    assert studio.form_title.value == "<b>A new linear box</b>"
    shown = [wd.placeholder for _, wd in studio.form.fields.values() if hasattr(wd, "placeholder")]
    assert "required" not in shown, shown
    assert studio.canvas.status_ok and "required" not in studio.canvas.status
    assert "ncd-problems" not in studio.messages.value


def test_a_variant_that_drops_a_port_says_so_and_one_that_adds_it_back_takes_its_source():
    """Audit bug 7: gla -> lightning dropped port g silently; back to gla wired g to the last
    value (a cycle the user did not make)."""
    studio = Studio("gla_block")
    studio.canvas.intent("select", path="box:mixer")
    studio.form.fields["variant"][1].value = "lightning"
    assert "port g dropped (it read temperature)" in studio.canvas.status
    want = gla_block(variant="lightning")
    del next(b for b in want["boxes"] if b["name"] == "mixer")["inputs"]["g"]
    assert io.to_dict(studio.circuit) == want, errors(studio)
    studio.form.fields["variant"][1].value = "gla"
    assert io.to_dict(studio.circuit) == gla_block(), errors(studio)
    # A port it never had reads nothing: the mixer is read (by out_norm), so it changes once
    # that port has a source, chosen in the form.
    studio.form.fields["variant"][1].value = "delta"
    assert studio.circuit.box("mixer").variant == "gla"
    assert studio.port_widgets["beta"].value == "—" and studio.canvas.status_ok
    assert "port beta reads nothing yet; out_norm reads mixer" in studio.canvas.status


def test_a_tab_says_it_is_computing_before_its_contents_arrive():
    """The Code and Cost panels first show a note (sent to the page as it is set), then the
    panel: a large block's code takes seconds, and a blank tab would look broken."""
    studio = Studio(base())
    seen = {"Code": [], "Cost": []}
    studio.code.observe(lambda ch: seen["Code"].append(ch["new"]), "value")
    studio.cost.observe(lambda ch: seen["Cost"].append(ch["new"]), "value")
    for tab in ("Code", "Cost"):
        final = shown(studio, tab)
        assert len(seen[tab]) == 2 and "computing the" in seen[tab][0], seen[tab][:1]
        assert seen[tab][1] == final and "computing the" not in final


def test_text_not_taken_is_never_overwritten_by_a_diagram_edit():
    """Review 1 (lost work): text typed in the text view that does not read yet stays, with
    its error, through every edit of the diagram: those are refused, saying why, until the
    text is fixed (then taken) or discarded. Moving about (opening a tab) keeps it too."""
    studio = Studio(base())
    before = io.to_dict(studio.circuit)
    draft = studio.text.value.replace(
        "b.output(", 'up = b.linear(proj, "F", "D", name="up"\nb.output('
    )
    studio.text.value = draft  # an unclosed `(`: not taken
    assert "never closed" in studio.text_status.value and not studio.canvas.status_ok
    assert studio.discard_text_button.layout.display != "none"
    assert studio.export_button.layout.display != "none"  # its own layout, not the buttons'
    for action in (
        lambda: studio.canvas.intent("add", kind="dropout", after="box:proj"),
        lambda: studio.canvas.intent("delete", path="box:proj"),
        lambda: studio.canvas.intent("undo"),
        lambda: add_box(studio, "dropout", "drop", {"x": "proj"}),
        lambda: studio.load(base()),
    ):
        action()
        assert studio.text.value == draft, "the user's text was overwritten"
        assert io.to_dict(studio.circuit) == before
        assert "the text view has changes that were not taken" in studio.canvas.status
        assert "never closed" in studio.canvas.status and not studio.canvas.status_ok
    shown(studio, "JSON")
    assert studio.text.value == draft
    # fixed: taken, and the text is the circuit's again; then the diagram edits it as before
    studio.text.value = draft.replace('name="up"\n', 'name="up")\n')
    assert studio.canvas.status_ok, studio.canvas.status
    assert "up" in {b.name for b in studio.circuit.boxes}
    assert studio.discard_text_button.layout.display == "none"
    studio.canvas.intent("add", kind="dropout", after="box:up")
    assert "b.dropout(up" in studio.text.value
    # discarded: the text shows the circuit, and edits are taken again
    kept = studio.text.value
    studio.text.value = kept + "\nnot code(\n"
    studio.canvas.intent("undo")
    assert studio.text.value.endswith("not code(\n")
    studio.discard_text_button.click()
    assert studio.text.value == kept and studio.text_status.value == ""
    studio.canvas.intent("undo")
    assert "dropout" not in {b.name for b in studio.circuit.boxes}
    assert "b.dropout(" not in studio.text.value


def test_the_text_of_a_draft_with_open_ports_reads_back():
    """Review 3: while a box has ports that read nothing yet, the text view writes it as
    `b.box("attention", {"q": linear})`; the text reader took none of it ("ports q k v
    expected, found q"), so no text edit was taken. Now the text reads back as the draft, an
    edit of another line is taken with the box still open, and wiring it in the text
    completes it."""
    b = Builder("draft", sizes=SIZES)
    tok = b.input("tok", "B T D")
    b.output("y", b.linear(tok, "D", "D", name="linear"))
    studio = Studio(b.build())
    # the kind's own key and head (not guessed from the wire): the box is written with no field
    fields = {"key": "S", "head": "K"}
    studio.canvas.intent("add", kind="attention", after="box:linear", fields=fields)
    assert edits_open(studio) == {"attention": ["k", "v"]}
    text = studio.text.value
    assert 'b.box("attention", {"q": linear})' in text
    studio.text.value = text.replace('"tok", "B T D"', '"tok", "B T D", "float16"')
    assert studio.canvas.status_ok, studio.canvas.status
    assert studio.circuit.inputs[0].dtype == "float16"
    assert edits_open(studio) == {"attention": ["k", "v"]}
    assert studio.text.value.count('b.box("attention", {"q": linear})') == 1
    # a box named otherwise, inside a group, keeps its name and group
    studio.text.value = studio.text.value.replace(
        'b.box("attention", {"q": linear})', 'b.box("attention", {"q": linear}, name="att")'
    )
    assert edits_open(studio) == {"att": ["k", "v"]}, studio.canvas.status
    # wired in the text: the box is complete, and its kind's shape rule runs (located)
    studio.text.value = studio.text.value.replace(
        '{"q": linear}', '{"q": linear, "k": linear, "v": linear}'
    )
    assert "line 6" in studio.canvas.status and "port 'q'" in studio.canvas.status
    assert "expected, found" not in studio.canvas.status
    studio.discard_text_button.click()
    # a box reading a draft is refused, located, and the text stays
    bad = studio.text.value.replace('b.output("y", linear)', 'z = b.relu(att)\nb.output("y", z)')
    studio.text.value = bad
    assert not studio.canvas.status_ok and "reads box 'att'" in studio.canvas.status
    assert studio.text.value == bad and edits_open(studio) == {"att": ["k", "v"]}


def edits_open(studio):
    from ncd.widgets import edits

    return edits.open_boxes(studio.circuit)


def test_add_box_adds_a_new_box_while_the_form_shows_the_selected_one():
    """Review 6: with a box selected, its name filled the `name` field under "Add a box", so
    add box always failed ("the name is taken"). Now the name belongs with the selected box's
    fields, and add box adds a new box of the form's kind and fields under a fresh name,
    leaving the selected one as it was."""
    studio = Studio(base())
    studio.canvas.intent("select", path="box:proj")
    assert studio.box_name.value == "proj"
    left = studio.children[0].children[0]
    selected = left.children[0].children
    assert studio.box_name in selected and studio.form_box in selected
    adding = left.children[2].children
    assert studio.add_box_button in adding and studio.box_name not in adding
    studio.add_box_button.click()
    assert studio.canvas.status_ok, studio.canvas.status
    new = studio.circuit.box("linear")
    assert new.over == ("D",) and new.out == ("F",) and new.inputs == {"x": "x"}
    assert studio.circuit.box("proj") == base().box("proj")
    assert studio.canvas.selected == "box:linear" and studio.box_select.value == "linear"
    assert studio.box_name.value == ""  # the form stays a new box's, for the next one
    # nothing selected and no name typed: a fresh name too
    add_box(studio, "dropout", "", {"x": "proj"})
    assert studio.canvas.status_ok and studio.circuit.box("dropout").inputs == {"x": "proj"}
    # a name typed that another box has is still refused
    add_box(studio, "dropout", "proj", {"x": "proj"})
    assert "the name is taken" in studio.canvas.status


def test_export_py_without_sizes_points_at_the_sizes_field(tmp_path):
    """Review 7: the hint named the CLI's `--sizes`, which the Studio has not; an unknown
    suffix listed `.dot` (not offered) and left out `.py`."""
    b = Builder("free")
    x = b.input("x", "B T D")
    b.output("y", b.linear(x, "D", "F", name="proj"))
    studio = Studio(b.build())
    studio.export_path.value = str(tmp_path / "m.py")
    studio.export_button.click()
    assert "--sizes" not in studio.canvas.status + studio.messages.value
    assert "sizes field" in studio.messages.value and not (tmp_path / "m.py").exists()
    studio.export_path.value = str(tmp_path / "m.txt")
    studio.export_button.click()
    assert "expected .svg, .pdf, .png or .py" in studio.canvas.status
