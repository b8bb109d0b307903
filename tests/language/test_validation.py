"""Validation reports every problem at once, each located (box, port) with expected/found."""

from __future__ import annotations

import copy

import pytest
import torch

import ncd
from ncd import gallery
from ncd.circuits import io
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError, SchemaError, ValidationError
from ncd.compiler.interpret import interpret


def spec(**over):
    base = {
        "name": "att",
        "inputs": [{"name": "q", "axes": "B H T K"}, {"name": "k", "axes": "B H S K"}],
        "boxes": [
            {"name": "scores", "kind": "contract", "over": "K", "inputs": {"a": "q", "b": "k"}},
            {"name": "p", "kind": "softmax", "over": "S", "inputs": {"x": "scores"}},
        ],
        "outputs": [{"name": "y", "source": "p"}],
    }
    base.update(over)
    return base


def problems(d, sizes=None):
    with pytest.raises(ValidationError) as e:
        io.from_dict(d).check(sizes)
    return e.value.problems


@pytest.mark.parametrize("name", gallery.names())
def test_gallery_validates(name):
    c = gallery.get(name)
    checked = c.check()
    assert checked.outputs
    assert io.loads(c.to_json()) == c


def test_all_problems_reported_together_with_location():
    d = spec()
    d["boxes"][0]["inputs"] = {"a": "q", "b": "nope"}  # unknown source
    d["boxes"][1]["over"] = "Z"  # would fail too, but its input failed first: not cascaded
    d["boxes"].append({"name": "dup", "kind": "unary", "fn": "relu", "inputs": {}})
    d["boxes"].append({"name": "dup", "kind": "unary", "fn": "relu", "inputs": {"x": "q"}})
    ps = problems(d)
    text = [str(p) for p in ps]
    assert any("box 'scores', port 'b'" in t and "unknown source" in t and "'nope'" in t
               for t in text)  # fmt: skip
    assert any("box 'dup'" in t and "duplicate name" in t for t in text)
    assert any("box 'dup', port 'x'" in t and "not connected" in t for t in text)
    assert not any("'p'" in t and "Z" in t for t in text), "a failed input must not cascade"


def test_wrong_axis_names_where_expected_found():
    d = spec()
    d["boxes"][1]["over"] = "Z"
    (p,) = problems(d)
    assert p.where == "box 'p', port 'x'"
    assert "Z" in p.message and p.found == "[B H T S]"


def test_dangling_and_extra_ports():
    d = spec()
    d["boxes"][0]["inputs"] = {"a": "q", "c": "k"}
    ps = {p.where: p for p in problems(d)}
    assert "not connected" in ps["box 'scores', port 'b'"].message
    assert "no such port" in ps["box 'scores', port 'c'"].message


def test_cycle():
    d = spec()
    d["boxes"][0]["inputs"] = {"a": "p", "b": "k"}
    (p,) = problems(d)
    assert "cycle" in p.message and "scores -> p -> scores" in p.found


def test_unknown_kind_is_a_schema_error_naming_the_box():
    d = spec()
    d["boxes"][1]["kind"] = "frobnicate"
    with pytest.raises(SchemaError) as e:
        io.from_dict(d)
    assert "boxes[1]" in str(e.value) and "'p'" in str(e.value) and "frobnicate" in str(e.value)


def test_size_mismatch_and_unification():
    b = Builder("m", axes={"D": "H*K"})
    x = b.input("x", "B T D")
    y = b.merge_axes(b.split_axis(x, "D", "H K"), "H K", "E")
    b.output("y", y)
    c = b.build()
    c.check({"H": 2, "K": 4, "E": 8})
    with pytest.raises(ValidationError) as e:
        c.check({"H": 2, "K": 4, "E": 9})
    assert "E" in str(e.value) and "8" in str(e.value) and "9" in str(e.value)


def test_binary_broadcast_size_mismatch_is_located():
    d = {"name": "add", "axes": {"S": "T+1"},
         "inputs": [{"name": "a", "axes": "B T"}, {"name": "b", "axes": "B S"}],
         "boxes": [{"name": "r", "kind": "rename", "mapping": {"S": "T"}, "inputs": {"x": "b"}},
                   {"name": "s", "kind": "binary", "fn": "add", "inputs": {"a": "a", "b": "r"}}],
         "outputs": [{"name": "y", "source": "s"}]}  # fmt: skip
    ps = problems(d)
    assert any(p.where.startswith("box 'r'") and "size of T" in p.message for p in ps)


@pytest.mark.parametrize("sizes", [{"T": 0}, {"T": -3}, {"T": 2**41}, {"T": True}])
def test_non_positive_or_absurd_bindings(sizes):
    with pytest.raises(ValidationError) as e:
        io.from_dict(spec()).check(sizes)
    assert "size T" in str(e.value)


def test_absurd_tensor():
    (p, *_) = problems(spec(), {"B": 2**20, "H": 2**10, "T": 2**10, "S": 2**10, "K": 1})
    assert "absurdly large" in p.message


def test_unbound_sizes_named_when_required():
    with pytest.raises(ValidationError) as e:
        io.from_dict(spec()).check({"B": 1}, require_bound=True)
    assert "unbound H K S T" in str(e.value)


def test_schema_rejects_non_positive_declared_sizes():
    with pytest.raises(SchemaError) as e:
        io.from_dict(spec(sizes={"T": 0}))
    assert "sizes" in str(e.value)


def test_subcircuit_problems():
    c = gallery.get("transformer")
    d = io.to_dict(c)
    bad = copy.deepcopy(d)
    bad["boxes"][1]["circuit"] = "missing"
    assert "unknown subcircuit" in str(problems(bad)[0])
    rec = copy.deepcopy(d)
    sub = rec["subcircuits"]["transformer_block"]
    sub["boxes"].append({"name": "again", "kind": "call", "circuit": "transformer_block",
                         "inputs": {"x": "res2"}})  # fmt: skip
    sub["subcircuits"] = {"transformer_block": copy.deepcopy(sub)}
    text = str(problems(rec))
    assert "loop" in text or "subcircuit" in text
    # a subcircuit calling itself (it is defined, one level up): named as recursion
    own = copy.deepcopy(d)
    own["subcircuits"]["transformer_block"]["boxes"].append(
        {"name": "again", "kind": "call", "circuit": "transformer_block", "inputs": {"x": "res2"}}
    )
    text = str(problems(own)[0])
    assert "(recursion)" in text and "transformer -> transformer_block -> transformer_block" in text


def test_builder_raises_at_the_wrong_line():
    b = Builder("x")
    x = b.input("x", "B T")
    with pytest.raises(BuildError) as e:
        b.softmax(x, "S", name="sm")
    assert "box 'sm'" in str(e.value) and "S" in str(e.value)
    with pytest.raises(BuildError):
        b.input("x", "B T")  # duplicate name
    with pytest.raises(BuildError):
        b.rearrange(x, "B (T U) -> B U T Q")


def test_rearrange_is_split_permute_merge():
    b = Builder("r", axes={"D": "H*K"})
    x = b.input("x", "B T D")
    y = b.rearrange(x, "B T (H K) -> B H T K")
    assert y.axes == ("B", "H", "T", "K")
    z = b.rearrange(y, "B H T K -> B T (H K)")
    assert z.axes == ("B", "T", "HK")


def test_rearrange_adds_and_removes_unit_axes():
    """`"B T H -> B T H V"` with V of size 1 gives the values one feature per head (Mamba-1
    as linear attention); it was refused ("both sides must name the same axes"). An axis on
    one side only is a unit axis, added or taken away; it must be known to be 1, as a
    split that keeps an axis' name asks."""
    import torch

    import ncd

    b = Builder("units", sizes={"B": 2, "T": 3, "H": 4, "V": 1})
    x = b.input("x", "B T H")
    y = b.rearrange(x, "B T H -> B T H V")
    assert y.axes == ("B", "T", "H", "V")
    assert b.rearrange(x, "B T H -> V B H T").axes == ("V", "B", "H", "T")
    assert b.rearrange(x, "B T H -> B (T V) H").axes == ("B", "TV", "H")
    back = b.rearrange(y, "B T H V -> B H T")
    assert back.axes == ("B", "H", "T")
    b.output("y", y)
    b.output("back", back)
    model = ncd.compile(b.build())
    t = torch.randn(2, 3, 4)
    out = model(t)
    torch.testing.assert_close(out["y"], t.unsqueeze(-1))  # what einops' `b t h -> b t h 1` is
    torch.testing.assert_close(out["back"], t.permute(0, 2, 1))
    # an axis of another size, or of none, is not a unit axis: the pattern and the reason
    b = Builder("units", sizes={"B": 2, "T": 3, "H": 4, "V": 2})
    x = b.input("x", "B T H")
    for pattern, found in (("B T H -> B T H V", "found 2"), ("B T H -> B T H W", "found W, "),
                           ("B T H -> B H", "found 3")):  # fmt: skip
        with pytest.raises(BuildError) as e:
            b.rearrange(x, pattern)
        assert str(e.value).startswith(f"rearrange '{pattern}': ")
        assert "is a unit axis" in str(e.value) and found in str(e.value)


def test_concat_takes_an_operand_without_the_axis_as_one_position():
    b = Builder("cls", sizes={"B": 2, "T": 5, "D": 3})
    x, c = b.input("x", "B T D"), b.input("c", "B D")
    y = b.concat(c, x, axis="T")
    assert y.axes == ("B", "T", "D") and str(y.type.axis("T").size) in ("T + 1", "6")
    assert b.concat(b.input("d", "D B"), x, axis="T").axes == ("B", "T", "D")  # by name
    shared = b.concat(b.input("k", "D"), x, axis="T")  # one position, repeated over B
    assert shared.axes == ("B", "T", "D") and str(shared.type.axis("T").size) in ("T + 1", "6")
    with pytest.raises(BuildError, match="among those of the widest with T"):
        b.concat(x, b.input("e", "B T F"), axis="T")
    with pytest.raises(BuildError, match="size of T .the operands stacked. disagrees"):
        b.concat(c, c, axis="T")  # no operand has T: a stack of 2, but T is 5


def test_concat_of_operands_without_the_axis_stacks_them():
    """No operand has the axis: each is one position along it (torch.stack at the end), its
    size the operands' number; an operand lacking another axis repeats along it."""
    b = Builder("stack", sizes={"B": 2, "T": 3})
    x = b.input("x", "B T")
    y = b.concat(b.unary(x, "sin"), b.unary(x, "cos"), b.input("c", "T"), axis="P")
    assert y.axes == ("B", "T", "P") and str(y.type.axis("P").size) in ("P", "3")
    b.output("y", y)
    c = b.build()
    assert c.check().number(c.check().outputs["y"].axis("P").size) == 3
    xs, cs = torch.randn(2, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    want = torch.stack([xs.sin(), xs.cos(), cs.expand(2, 3)], -1)
    torch.testing.assert_close(ncd.compile(c, dtype=torch.float64)(xs, cs), want)
    torch.testing.assert_close(interpret(c, [xs, cs], {}), want)


def _unit_split(sizes, declare=None, merge=False):
    """x `B H` -> `B H V` (a split of H that keeps H), or back (`B H V` -> `B H`)."""
    b = Builder("unit", sizes=sizes)
    if declare is not None:
        b.axis("V", declare)
    if merge:
        return b, lambda: b.merge_axes(b.input("x", "B H V"), "H V", "H")
    return b, lambda: b.split_axis(b.input("x", "B H"), "H", "H V")


@pytest.mark.parametrize("merge", [False, True])
def test_a_unit_axis_is_added_or_removed_where_its_size_is_1(merge):
    """Splitting H -> H V keeps H's size only where V is 1 (a unit axis: one value feature per
    head), as merging H V -> H does. The Builder, which checks each line against the sizes
    bound in sizes=, took the line when V was bound to 1, then build(), which checks in
    symbols, refused it. One rule now decides both: V must be known to be 1, declared in the
    axis table or bound in sizes= (a bound 1 then holds for the circuit, as a declared one)."""
    want = ("B", "H", "V") if not merge else ("B", "H")
    for sizes, declare in (({"B": 2, "H": 4, "V": 1}, None), ({"B": 2, "H": 4}, 1),
                           ({"B": 2, "H": 4, "V": 1}, 1)):  # fmt: skip
        b, make = _unit_split(sizes, declare, merge)
        b.output("y", make())
        checked = b.build().check()
        assert checked.outputs["y"].names == want
        assert "V" not in checked.symbols()  # V is 1 in the circuit, not a free size
    # V of another size, or of none, is refused at the line, and by validation alike (the
    # Builder writes a declared size with the bound numbers, validation in symbols)
    for sizes, declare, found, spec_found in (
        ({"B": 2, "H": 4, "V": 2}, None, "found 2", "found 2"),
        ({"B": 2, "H": 4}, None, "found V, which has no size", "found V, which has no size"),
        ({"B": 2, "H": 4}, "H", "found 4", "found H"),
    ):
        b, make = _unit_split(sizes, declare, merge)
        with pytest.raises(BuildError) as e:
            make()
        message = str(e.value)
        assert "V is a unit axis" in message and f"(expected 1, {found})" in message
        # to declare V is the fix only where it has no size yet
        assert message.endswith('declare it: b.axis("V", 1) in Python, or "axes": {"V": "1"} '
                                "in a spec") == ("no size" in found)  # fmt: skip
        message = message.replace(found, spec_found)
        kept = "H V" if merge else "H"
        box = {"name": "u", "inputs": {"x": "x"}}
        box.update({"kind": "merge_axes", "axes": "H V", "into": "H"} if merge else
                   {"kind": "split_axis", "axis": "H", "into": "H V"})  # fmt: skip
        spec = {"name": "unit", "inputs": [{"name": "x", "axes": f"B {kept}"}], "boxes": [box],
                "outputs": [{"name": "y", "source": "u"}], "sizes": sizes,
                "axes": {} if declare is None else {"V": str(declare)}}  # fmt: skip
        with pytest.raises(ValidationError) as e:
            io.from_dict(spec).check()
        assert message.split(": ", 1)[1] in str(e.value)  # the same words


def test_problems_a_new_user_makes_say_what_to_do():
    """Three first attempts at a block, each refused with what to change: keys left over
    the query axis, grouped key/value heads without `heads`/`kv_heads`, and an axis split
    into a new axis of no size (the messages said what was wrong, not what to do)."""
    b = Builder("att", sizes={"B": 2, "T": 8, "H": 4, "G": 2, "K": 8, "V": 8})
    x = b.input("x", "B T H K")
    k, v = b.input("k", "B T G K"), b.input("v", "B T G V")
    with pytest.raises(BuildError) as e:
        b.attention(x, x, v)
    assert str(e.value).endswith('rename theirs (b.rename(k, T="S")), or set key="T"')
    k, v = b.rename(k, T="S"), b.rename(v, T="S")
    with pytest.raises(BuildError) as e:
        b.attention(x, k, v)
    assert "(expected B H, found B G)" in str(e.value)
    assert str(e.value).endswith('for grouped key/value heads, set heads="H", kv_heads="G"')
    assert b.attention(x, k, v, heads="H", kv_heads="G").axes == ("B", "T", "H", "V")
    b.axis("J", "K/2")
    with pytest.raises(BuildError) as e:
        b.split_axis(x, "K", ["R", "J"])
    assert "(expected 8, found 4*R); R has no size: declare it (b.axis(" in str(e.value)
    # in a spec, validation says the same
    d = {
        "name": "s",
        "inputs": [{"name": "x", "axes": "B K"}],
        "axes": {"J": "K/2"},
        "boxes": [{"name": "sp", "kind": "split_axis", "axis": "K", "into": "R J",
                   "inputs": {"x": "x"}}],
        "outputs": [{"name": "y", "source": "sp"}],
    }  # fmt: skip
    [p] = problems(d, {"K": 8})
    assert p.hint.startswith("R has no size: declare it") and p.where == "box 'sp', port 'x'"


def test_builder_names_an_input_that_is_not_a_wire():
    """A box given something other than a wire raised AttributeError ('str' object has no
    attribute 'ref') from inside the builder. Unpacking a box of several outputs
    (`num, den = b.split(...)`) gives its port names, strings: the error names the box, the
    port and what it found, and says how to take a wire of such a box."""
    b = Builder("x", sizes={"B": 2, "V": 4})
    x = b.input("x", "B V")
    num, den = b.split(x, "V", [3, 1], names=("num", "den"))
    with pytest.raises(BuildError) as e:
        b.index(den, "V", 0, name="pick")
    msg = str(e.value)
    assert "box 'pick' (index) port 'x'" in msg and "found str 'den'" in msg
    assert 'out["den"]' in msg
    with pytest.raises(BuildError) as e:
        b.output("y", num)
    assert "output 'y'" in str(e.value) and "found str 'num'" in str(e.value)
    assert "pick" not in b._names  # the refused box's name stays free
