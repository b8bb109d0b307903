"""Edits of the diagram without a browser: the intents the page sends, turned into circuits.

Expectations are circuits written with the Builder directly (the code a user would write by
hand), compared as JSON; the Studio is driven only through `canvas.intent`, as the page does.
"""

from __future__ import annotations

import html
import re

import pytest

from ncd import Builder
from ncd.circuits import io
from ncd.circuits.errors import SchemaError
from ncd.spec import studio as Studio  # noqa: N812 - ncd.Studio, names and paths alike
from ncd.widgets import edits, panels
from ncd.widgets.studio import _palette


def same(a, b) -> bool:
    return io.to_dict(a) == io.to_dict(b)


def mlp_by_intents():
    s = Studio()
    cv = s.canvas
    cv.intent("add_input", name="x", axes="B T D")
    for kind in ["linear", "unary", "linear", "binary"]:
        cv.intent("add", kind=kind, after=cv.selected)
    cv.intent("connect", ref="x", node="box:binary", port="")  # dropped on the box
    cv.intent("add_output", name="y", path="box:binary")
    return s


def test_intents_on_the_selection_take_the_kernels():
    """The page's add, output and delete name no box: the kernel takes its own selection,
    which has the boxes it selected itself after an edit (the page may not have heard of
    them yet when the next click comes) and every select the page sent before."""
    s = Studio()
    cv = s.canvas
    cv.intent("add_input", name="x", axes="B T D")
    for kind in ["linear", "unary", "linear"]:
        cv.intent("add", kind=kind)  # each reads the box added before it
    reads = {b.name: [r for r in b.inputs.values()] for b in s.view.boxes}
    assert reads["unary"] == ["linear"] and reads["linear2"] == ["unary"]
    cv.intent("select", path="box:linear")
    cv.intent("add", kind="unary")  # reads the selected box, not the last one
    assert [r for r in next(b for b in s.view.boxes if b.name == "unary2").inputs.values()] == [
        "linear"
    ]
    cv.intent("select", path="box:linear2")
    cv.intent("add_output", name="y")
    assert [(o.name, o.source) for o in s.view.outputs] == [("y", "linear2")]
    cv.intent("select", path="box:unary2")
    cv.intent("delete")
    assert "unary2" not in {b.name for b in s.view.boxes}


def mlp_by_hand(extra=None):
    b = Builder("untitled")
    x = b.input("x", "B T D")
    h = b.linear(x, over="D", out="D", name="linear")
    h = b.gelu(h, name="unary")
    h = b.linear(h, over="D", out="D", name="linear2")
    b.output("y", b.add(h, x, name="binary"))
    return b.build()


def test_an_mlp_with_a_residual_from_intents():
    s = mlp_by_intents()
    assert same(s.circuit, mlp_by_hand()), s.messages.value
    assert s.canvas.selected == "box:binary"
    assert s.form_title.value == "<b>The selected box: binary</b>"  # whose fields the form shows
    assert 'id="output:y"' in s.canvas.svg and panels.DANGLING not in s.canvas.svg
    assert Studio().form_title.value.startswith("<b>A new ")  # nothing selected yet


def test_a_draft_is_drawn_with_its_loose_ends():
    s = Studio()
    assert s.canvas.svg == "" and "add an input" in s.canvas.placeholder.lower()
    s.canvas.intent("add_input", name="x", axes="B D")
    s.canvas.intent("add", kind="softmax", after="input:x")
    assert not s.circuit.outputs
    assert 'id="output:…softmax"' in s.canvas.svg  # drawn, leaving by a dangling output
    assert s.canvas.ports["box:softmax"] == {"in": ["x"], "out": ["softmax"]}


def test_splice_onto_a_wire_and_onto_the_wire_to_an_output():
    s = mlp_by_intents()
    s.canvas.intent("splice", kind="layernorm", tail="box:linear", head="box:unary")
    s.canvas.intent("splice", kind="dropout", tail="box:binary", head="output:y")
    b = Builder("untitled")
    x = b.input("x", "B T D")
    h = b.linear(x, over="D", out="D", name="linear")
    h = b.gelu(b.layernorm(h, over="D", name="layernorm"), name="unary")
    h = b.linear(h, over="D", out="D", name="linear2")
    res = b.add(h, x, name="binary")
    b.output("y", b.dropout(res, name="dropout"))
    want = b.build()
    # the Builder appends boxes in call order; the Studio appends new boxes at the end
    order = [bx.name for bx in s.circuit.boxes]
    want = want.model_copy(update={"boxes": sorted(want.boxes, key=lambda b: order.index(b.name))})
    assert same(s.circuit, want), s.messages.value


def test_splice_before_a_copy_takes_every_reader():
    s = mlp_by_intents()
    s.canvas.intent("splice", kind="layernorm", tail="input:x", head="box:x/copy")
    c = s.circuit
    assert c.box("linear").inputs == {"x": "layernorm"}
    assert c.box("binary").inputs == {"a": "linear2", "b": "layernorm"}
    assert c.box("layernorm").inputs == {"x": "x"}


def test_delete_reconnects_a_pass_through_and_refuses_otherwise():
    s = mlp_by_intents()
    s.canvas.intent("delete", path="box:unary")
    assert s.circuit.box("linear2").inputs == {"x": "linear"}
    before = s.circuit
    s.canvas.intent("delete", path="box:binary")  # two inputs, read by y
    assert s.circuit is before and "cannot delete" in s.canvas.status
    assert not s.canvas.status_ok


def test_undo_redo_and_escape():
    s = mlp_by_intents()
    full = s.circuit
    s.canvas.intent("delete", path="output:y")
    assert not s.circuit.outputs
    s.canvas.intent("undo")
    assert same(s.circuit, full)
    s.canvas.intent("redo")
    assert not s.circuit.outputs
    s.canvas.intent("select", path="")
    assert s.canvas.selected == ""


def test_a_refused_edit_marks_the_box_and_keeps_the_circuit():
    s = mlp_by_intents()
    before = s.circuit
    s.canvas.intent("connect", ref="x", node="box:unary", port="x")  # fine: same shape
    assert s.circuit.box("unary").inputs == {"x": "x"}
    s.edit_here(lambda c: edits.update_box(c, "linear2", over=("T",), out=("D",)))
    assert "box:linear2" in s.canvas.marks or "box:binary" in s.canvas.marks, s.canvas.marks
    assert s.circuit.box("linear2").over == before.box("linear2").over


def test_inputs_outputs_name_and_title():
    s = mlp_by_intents()
    s.canvas.intent("add_input", name="m", axes="B T")
    s.canvas.intent("rename", name="mlp")
    s.canvas.intent("retitle", title="An MLP")
    assert s.circuit.name == "mlp" and s.circuit.title == "An MLP"
    assert s.canvas.name == "mlp" and s.canvas.title == "An MLP"
    s.canvas.intent("delete", path="input:m")
    s.canvas.intent("delete", path="input:x")  # read by boxes: refused
    assert [i.name for i in s.circuit.inputs] == ["x"]
    s.canvas.intent("rename", name="bad.name")
    assert s.circuit.name == "mlp" and not s.canvas.status_ok


def test_collapse_a_nested_block_and_the_block_around_it():
    # gated_deltanet_block: Decay is drawn inside Gated DeltaNet. Its toggle collapses it to
    # one box inside the outer block; the outer block's toggle hides both.
    s = Studio("gated_deltanet_block")
    assert 'id="block:Decay"' in s.canvas.svg and 'id="box:A_exp"' in s.canvas.svg
    s.canvas.intent("toggle", path="block:Decay")
    assert 'id="group:Decay"' in s.canvas.svg and 'id="box:A_exp"' not in s.canvas.svg
    assert 'id="block:Gated DeltaNet"' in s.canvas.svg
    s.canvas.intent("toggle", path="block:Gated DeltaNet")
    assert 'id="group:Gated DeltaNet"' in s.canvas.svg
    assert 'id="group:Decay"' not in s.canvas.svg and 'id="block:Decay"' not in s.canvas.svg
    s.canvas.intent("toggle", path="group:Gated DeltaNet")
    s.canvas.intent("toggle", path="group:Decay")
    assert 'id="block:Decay"' in s.canvas.svg and 'id="box:A_exp"' in s.canvas.svg
    # An edit keeps the nesting.
    s.canvas.intent("add", kind="dropout", after="box:A_exp")
    assert s.circuit.groups == {"Decay": "Gated DeltaNet"}


def test_collapse_and_expand_and_enter_a_subcircuit():
    s = Studio("transformer")
    assert 'id="box:blocks/ln1"' in s.canvas.svg
    s.canvas.intent("toggle", path="block:blocks/MLP")
    assert 'id="group:blocks/MLP"' in s.canvas.svg and 'id="box:blocks/ff_up"' not in s.canvas.svg
    s.canvas.intent("toggle", path="group:blocks/MLP")
    assert 'id="box:blocks/ff_up"' in s.canvas.svg
    s.canvas.intent("enter", path="box:blocks/ln2")
    assert s.scope == ("blocks",) and s.canvas.selected == "box:ln2"
    assert 'id="box:ln2"' in s.canvas.svg and s.canvas.crumbs[-1].startswith("blocks")
    s.canvas.intent("add", kind="dropout", after="box:ln2")
    # The status line names the circuit the breadcrumb ends at, not the top one.
    assert s.canvas.status.startswith(
        "added dropout: transformer_block (19 boxes), in transformer;"
    )
    s.canvas.intent("delete", path="box:dropout")
    assert s.canvas.status == "deleted dropout: transformer_block (18 boxes), in transformer"
    s.canvas.intent("undo")
    assert s.canvas.status == "undo: 2 of 3, transformer_block (19 boxes), in transformer"
    inner = s.circuit.subcircuits["transformer_block"]
    assert inner.box("dropout").inputs == {"x": "ln2"}  # the edit is in the called block
    s.canvas.intent("undo")
    assert "dropout" not in {b.name for b in s.circuit.subcircuits["transformer_block"].boxes}
    s.canvas.intent("crumb", index=0)
    assert s.scope == () and 'id="box:blocks/ln1"' in s.canvas.svg


def test_sizes_are_bounded_and_belong_to_the_loaded_circuit():
    s = Studio(mlp_by_hand())
    s.sizes.value = f"D={2**41}"
    s.tabs.selected_index = 1  # Cost
    assert "MAX_SIZE" in s.cost.value
    s.load(mlp_by_hand())
    assert s.sizes.value == ""


def test_a_huge_size_allocates_nothing(tmp_path):
    """F=20000000 with D=512 would be 40 GB of weights if anything made them: the Cost and
    Code panels must stay small (measured in a fresh process: its peak memory)."""
    script = tmp_path / "huge.py"
    script.write_text(
        "import resource\n"
        "from ncd import Builder\n"
        "from ncd.widgets import Studio\n"
        "b = Builder('big', sizes={'B': 1, 'T': 8, 'D': 512})\n"
        "x = b.input('x', 'B T D')\n"
        "b.output('y', b.linear(b.linear(x, over='D', out='F'), over='F', out='D'))\n"
        "s = Studio(b.build())\n"
        "s.sizes.value = 'F=20000000'\n"
        "for tab in (1, 2):\n"
        "    s.tabs.selected_index = tab\n"
        "assert '20000000' in s.code.value or '20_000_000' in s.code.value, s.code.value[:500]\n"
        "assert 'no cost report' not in s.cost.value, s.cost.value[:500]\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) < 2000  # MiB, far below the 40 GB of weights


def test_save_asks_before_overwriting(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("old")
    s = Studio(mlp_by_hand())
    s.path.value = str(path)
    s.save_button.click()
    assert path.read_text() == "old" and "overwrite" in s.messages.value
    s.save_button.click()
    assert same(io.load(path), s.circuit)


def test_export_py_is_the_compilers_source(tmp_path):
    from ncd.compiler import to_source

    s = Studio(mlp_by_hand())
    s.export_path.value = str(tmp_path / "m.py")
    s.export_button.click()  # the code needs numbers: refused, saying which sizes
    assert not (tmp_path / "m.py").exists() and "B D T" in s.messages.value
    s.sizes.value = "B=2,T=4,D=8"
    s.export_button.click()
    want = to_source(mlp_by_hand(), {"B": 2, "T": 4, "D": 8})
    assert (tmp_path / "m.py").read_text() == want


def test_edits_refuse_with_a_located_reason():
    c = mlp_by_hand()
    with pytest.raises(SchemaError, match="box 'nope'"):
        edits.delete_box(c, "nope")
    with pytest.raises(SchemaError, match="no input port 'q'"):
        edits.connect(c, "x", "linear", "q")
    with pytest.raises(SchemaError, match="cannot read itself"):
        edits.connect(c, "linear", "linear", "x")
    with pytest.raises(SchemaError, match="name is taken"):
        edits.add_input(c, "linear", "B")
    assert edits.fresh_name(c, "linear") == "linear3"  # linear, linear2 taken


def test_history_is_bounded_and_drops_the_redo_branch():
    h = edits.History(0, limit=3)
    for k in range(1, 6):
        h.push(k)
    assert h.current == 5
    while h.undo():
        pass
    assert h.current == 3  # the three latest kept
    h.push(9)
    assert not h.can_redo and h.current == 9


# ---- subcircuits made in the Studio, dict fields typed as T=S ------------------------------
def test_a_new_subcircuit_is_called_on_the_selected_value_and_starts_as_the_identity():
    """The intent `add_subcircuit` gives what a user writes by hand: a subcircuit with input x
    of the selected value's axes and output y = x, called on that value."""
    s = Studio()
    cv = s.canvas
    cv.intent("add_input", name="x", axes="B T D")
    cv.intent("add", kind="layernorm", after=cv.selected)
    cv.intent("add_subcircuit", name="attention", after="box:layernorm")

    inner = Builder("attention")
    inner.output("y", inner.input("x", "B T D"))
    b = Builder("untitled")
    h = b.layernorm(b.input("x", "B T D"), "D", name="layernorm")
    sub = b.subcircuit(inner.build())
    call = b.box("call", {"x": h}, name="attention", circuit=sub)
    b.output("y", call)
    want = b.build()
    got = s.circuit
    assert io.to_dict(got)["subcircuits"] == io.to_dict(want)["subcircuits"]
    assert [(x.kind, x.name) for x in got.boxes] == [
        ("layernorm", "layernorm"),
        ("call", "attention"),
    ]
    assert got.boxes[1].inputs == {"x": "layernorm"}


def test_a_subcircuit_name_taken_or_missing_is_refused_with_the_reason():
    c = mlp_by_hand()
    with pytest.raises(SchemaError, match="no name given"):
        edits.add_subcircuit(c, "", "linear", ("B", "T", "D"))
    c2 = edits.add_subcircuit(c, "attn", "linear", ("B", "T", "D"))
    with pytest.raises(SchemaError, match="subcircuit 'attn': the name is taken"):
        edits.add_subcircuit(c2, "attn", "linear", ("B", "T", "D"))
    with pytest.raises(SchemaError, match="no source 'nowhere'"):
        edits.add_subcircuit(c, "attn", "nowhere", ("B", "T", "D"))


@pytest.mark.parametrize(
    "text, want",
    [
        ("T=S", {"T": "S"}),
        (" T = S , U=V ", {"T": "S", "U": "V"}),
        ('{"T": "S"}', {"T": "S"}),
        ("", {}),
    ],
)
def test_dict_fields_take_key_value_pairs_or_json(text, want):
    from ncd.widgets.forms import _parse_dict

    assert _parse_dict(text) == want


def test_a_dict_field_without_an_equals_sign_says_what_it_expected():
    from ncd.widgets.forms import _parse_dict

    with pytest.raises(ValueError, match="expected key=value pairs .* found 'T S'"):
        _parse_dict("T S")


def test_the_palette_search_finds_a_kind_by_a_value_of_its_fields():
    """`relu` is no kind: it is a value of unary's `fn`; the palette lists it, and an add with
    that field gives what the Builder's `b.relu` writes."""
    unary = next(p for p in _palette() if p["kind"] == "unary")
    assert "relu" in unary["choices"]["fn"] and "dtype" not in unary["choices"]
    s = Studio()
    s.canvas.intent("add_input", name="x", axes="B D")
    s.canvas.intent("add", kind="unary", after="input:x", fields={"fn": "relu"})
    s.canvas.intent("add_output", name="y", path="box:unary")
    b = Builder("untitled")
    b.output("y", b.unary(b.input("x", "B D"), "relu", name="unary"))
    assert same(s.circuit, b.build()), s.messages.value


# ---- boxes wired in steps: ports that read nothing yet ---------------------------------------
def projections():
    """A draft (no outputs yet): x: B T D and the projections of a gated linear attention."""
    b = Builder("untitled")
    x = b.input("x", "B T D")
    q = b.linear(x, over="D", out="H K", name="q_proj")
    k = b.linear(x, over="D", out="H K", name="k_proj")
    v = b.linear(x, over="D", out="H V", name="v_proj")
    g = b.linear(x, over="D", out="H K", name="g_proj")
    b.output("y", x)  # the Builder wants an output; the draft below has none
    return b, (q, k, v, g)


def draft(b):
    return b.build().model_copy(update={"outputs": []})


def test_linear_attention_from_the_palette_reads_its_queries_and_leaves_the_rest_loose():
    """Audit bug 1: `gla` searched and added on q (B T H K) took key S, never on the wire, and
    every port read q. Now: key is the wire's sequence axis, the searched variant is kept, q
    reads the selection, and k, v, g are loose ends until values are dragged onto them."""
    b, _ = projections()
    s = Studio(draft(b))
    cv = s.canvas
    cv.intent("select", path="box:q_proj")
    cv.intent("add", kind="linear_attention", after="box:q_proj", fields={"variant": "gla"})
    assert cv.status_ok, cv.status
    assert "k v g read nothing yet" in cv.status
    la = s.circuit.box("linear_attention")
    assert la.inputs == {"q": "q_proj"} and (la.variant, la.key, la.query) == ("gla", "T", "T")
    assert cv.selected == "box:linear_attention"
    assert cv.ports["box:linear_attention"]["open"] == ["k", "v", "g"]
    for port in "kvg":  # each drawn as a loose end, a node that leads into the box
        assert f'id="box:{panels.loose_input("linear_attention", port)}"' in cv.svg
    assert {p: dd.value for p, dd in s.port_widgets.items()} == {
        "q": "q_proj", "k": "—", "v": "—", "g": "—"
    }  # fmt: skip
    s.tabs.selected_index = 1  # Cost: says what is missing instead of a number
    cost = html.unescape(s.cost.value)
    assert "box 'linear_attention', port 'k': port not connected" in cost

    before = s.circuit  # nothing may read a box until it is complete
    cv.intent("add", kind="linear", after="box:linear_attention")
    assert s.circuit is before and not cv.status_ok
    assert cv.status.startswith("could not add linear reading linear_attention")
    assert "whose ports are not all wired yet" in cv.status

    cv.intent("connect", ref="k_proj", node="box:linear_attention", port="")  # onto the box
    cv.intent("connect", ref="v_proj", node="box:…linear_attention:v", port="")  # its loose end
    cv.intent("connect", ref="g_proj", node="box:linear_attention", port="g")  # onto the handle
    b, (q, k, v, g) = projections()
    b.linear_attention(q, k, v, g=g, key="T", variant="gla", name="linear_attention")
    assert same(s.circuit, draft(b)), cv.status
    assert "open" not in cv.ports["box:linear_attention"]
    assert panels.loose_input("linear_attention", "k") not in cv.svg


def test_a_loose_end_is_labelled_as_a_port_to_wire_not_as_a_box():
    """Trial: the loose ends of a linear attention were labelled k, v and g, as the user's own
    projections named k, v and g are. Each is labelled with its port and a `?`."""
    b = Builder("untitled")
    x = b.input("x", "B T D")
    for name in ("q", "k", "v"):
        b.linear(x, over="D", out="H K", name=name)
    b.output("y", x)
    s = Studio(draft(b))
    s.canvas.intent("add", kind="linear_attention", after="box:q")
    assert s.circuit.box("linear_attention").inputs == {"q": "q"}
    svg = s.canvas.svg
    labels = re.findall(r'<g id="box:(…linear_attention:\w+)".*?<text[^>]*>([^<]*)</text>',
                        svg, re.S)  # fmt: skip
    assert labels == [("…linear_attention:k", "k?"), ("…linear_attention:v", "v?")], labels
    assert re.search(r'<g id="box:k".*?<text[^>]*>L', svg, re.S)  # the user's k: a linear


def test_shift_click_adds_boxes_beside_the_selected_one():
    """Trial: each of q, k and v took a click on x before its `linear`. A Shift+click in the
    palette (`beside`) adds a box reading what the selected box reads, with its fields when
    of the same kind, and selects it: q, then k and v by two Shift+clicks."""
    s = Studio()
    cv = s.canvas
    cv.intent("add_input", name="x", axes="B T D")
    cv.intent("add", kind="linear")  # q: reads x (the last value)
    s.form.fields["out"][1].value = "H K"
    cv.intent("add", kind="linear", beside=True)  # k: reads x, out H K as q
    assert "added linear2 beside linear" in cv.status
    cv.intent("add", kind="linear", beside=True)  # v: beside k
    s.form.fields["out"][1].value = "H V"
    want = Builder("untitled")
    x = want.input("x", "B T D")
    for name, out in [("linear", "H K"), ("linear2", "H K"), ("linear3", "H V")]:
        want.linear(x, over="D", out=out, name=name)
    want.output("y", x)
    assert same(s.circuit, draft(want)), cv.status
    # another kind beside: it reads the same value, its fields guessed
    cv.intent("add", kind="unary", beside=True)
    assert s.circuit.box("unary").inputs == {"x": "x"}
    # a searched field is kept, over the fields of a box of the same kind
    cv.intent("add", kind="unary", beside=True, fields={"fn": "relu"})
    assert s.circuit.box("unary2").fn == "relu" and s.circuit.box("unary2").inputs == {"x": "x"}
    # a plain click still reads the selected box's result, and says how to add beside it
    cv.intent("add", kind="layernorm")
    assert s.circuit.box("layernorm").inputs == {"x": "unary2"}
    assert "Shift+click a kind: one beside it, reading unary2" in cv.status
    # beside an input (nothing to read beside): that input, as a plain add
    cv.intent("select", path="input:x")
    cv.intent("add", kind="dropout", beside=True)
    assert s.circuit.box("dropout").inputs == {"x": "x"}


def test_add_box_wires_the_chosen_ports_and_guesses_the_keys_axis():
    c = draft(projections()[0])
    got = edits.add_box(c, "linear_attention", source="q_proj", axes=("B", "T", "H", "K"),
                        wire=["q"], variant="gla")  # fmt: skip
    la = got.box("linear_attention")
    assert la.inputs == {"q": "q_proj"} and edits.open_ports(la) == ["k", "v", "g"]
    assert (la.key, la.query, la.head) == ("T", "T", "K")
    with pytest.raises(Exception, match="not all wired"):  # read before it is complete
        panels.check_draft(edits.set_output(got, "y", "linear_attention"))


def test_attention_from_the_palette_attends_over_its_queries_sequence():
    """Trial (a new user's multi-head attention): `attention` added on q (B T H K) kept the
    default key S, on no wire; k and v, projections of the same x, were taken one by one and
    the last drag was refused for port k ("axis S not on the input"). Now the key axis is
    q's sequence axis, as a linear attention's is, and the three drags make the block."""
    b, _ = projections()
    s = Studio(draft(b))
    cv = s.canvas
    cv.intent("add", kind="attention", after="box:q_proj")
    assert cv.status_ok and "k v read nothing yet" in cv.status, cv.status
    att = s.circuit.box("attention")
    assert (att.query, att.key, att.head) == ("T", "T", "K") and att.inputs == {"q": "q_proj"}
    cv.intent("connect", ref="k_proj", node="box:attention", port="")
    cv.intent("connect", ref="v_proj", node="box:attention", port="")
    assert cv.status_ok, cv.status
    b, (q, k, v, _) = projections()
    b.attention(q, k, v, key="T", name="attention")
    assert same(s.circuit, draft(b))


def test_a_palette_add_that_does_not_fit_leaves_its_fields_and_the_selection_in_the_form():
    """The fallback form keeps what the search chose and reads the selected box, not the last
    value (audit bug 1, second half)."""
    b, _ = projections()
    s = Studio(draft(b))
    before = s.circuit
    s.canvas.intent("add", kind="softmax", after="box:q_proj", fields={"over": "Q"})  # no axis Q
    assert s.circuit is before and not s.canvas.status_ok
    assert s.canvas.status.startswith("could not add softmax reading q_proj")
    assert s.form_title.value == "<b>A new softmax box</b>"
    assert s.form.fields["over"][1].value == "Q" and s.port_widgets["x"].value == "q_proj"
    assert s.box_name.value == "softmax"


def test_renaming_a_box_keeps_the_ports_of_what_read_it():
    b = Builder("untitled")
    top = b.topk(b.input("x", "B T D"), over="D", k=2, name="tk")
    b.output("y", top["indices"])
    c = b.build()
    renamed = c.box("tk").model_copy(update={"name": "best"})
    got = edits.replace_box(c, "tk", renamed)
    assert [o.source for o in got.outputs] == ["best.indices"]
    with pytest.raises(SchemaError, match="the name is taken"):
        edits.replace_box(c, "tk", c.box("tk").model_copy(update={"name": "x"}))


def test_selecting_an_input_stops_the_form_editing_the_last_box():
    """Audit bug 8: after a box, selecting an input left the form on that box."""
    s = mlp_by_intents()
    s.canvas.intent("select", path="box:unary")
    assert s.form_title.value == "<b>The selected box: unary</b>"
    s.canvas.intent("select", path="input:x")
    assert "input x: B T D, float32" in s.form_title.value and s.box_select.value is None
    before = s.circuit
    s.form.fields["label"][1].value = "oops"  # the form is a new box's: nothing changes
    assert same(s.circuit, before)
    s.canvas.intent("select", path="")
    assert s.form_title.value.startswith("<b>A new ")


def test_undo_and_redo_at_the_ends_say_there_is_nothing_to_do():
    """Audit bug 14: undo at the first state repeated `undo: 1 of 2`."""
    s = mlp_by_intents()
    n = len(s._history._items)
    for _ in range(n - 1):
        s.canvas.intent("undo")
    s.canvas.intent("undo")
    assert s.canvas.status == f"nothing to undo: this is the oldest state kept (1 of {n})"
    for _ in range(n - 1):
        s.canvas.intent("redo")
    s.canvas.intent("redo")
    assert s.canvas.status == f"nothing to redo: this is the newest state ({n} of {n})"
    assert same(s.circuit, mlp_by_hand())


def test_an_input_without_axes_is_refused():
    """Audit bug 12: an empty name and axes added a scalar input x2."""
    s = mlp_by_intents()
    before = s.circuit
    s.canvas.intent("add_input", name="", axes="")
    assert s.circuit is before and not s.canvas.status_ok
    assert "no axes given (expected axis names such as B T D, found none)" in s.canvas.status


def test_a_refused_edit_says_what_was_tried_where_and_what_was_expected():
    """Audit bug 11: `edit not taken (added ...)` read as if it happened; an empty name gave
    `new linear box ''` for an existing box and `expected ?`."""
    s = mlp_by_intents()
    s.canvas.intent("delete", path="box:binary")
    assert s.canvas.status.startswith("could not delete binary: the circuit is unchanged")
    s.canvas.intent("select", path="box:linear")
    s.box_name.value = ""
    status = s.canvas.status
    assert status.startswith("could not change box 'linear' (name = ''): the circuit is unchanged")
    assert "box 'linear' (linear), field 'name': a name is 1 to 64 characters" in status
    assert "(found '')" in status and "new " not in status and "expected ?" not in status
    assert s.box_name.value == "linear"  # the form shows the box as it is
