"""Hostile and broken inputs: each case is a spec (JSON text) that ncd must refuse with one
located error, or handle, in bounded time and memory, never crashing or running code."""

from __future__ import annotations

import json

X = {"name": "x", "axes": "B T D"}


def spec(boxes, outputs=None, inputs=None, **extra) -> dict:
    last = boxes[-1]["name"] if boxes else "x"
    return {
        "name": extra.pop("name", "c"),
        "inputs": inputs if inputs is not None else [X],
        "boxes": boxes,
        "outputs": outputs if outputs is not None else [{"name": "y", "source": last}],
        **extra,
    }


def unary(name, src, fn="relu"):
    return {"name": name, "kind": "unary", "fn": fn, "inputs": {"x": src}}


def binary(name, a, b, fn="add"):
    return {"name": name, "kind": "binary", "fn": fn, "inputs": {"a": a, "b": b}}


def scale(factor, axes=None, sizes=None, name="c"):
    extra = {"axes": axes} if axes else {}
    if sizes is not None:
        extra["sizes"] = sizes
    return spec([{"name": "s", "kind": "scale", "factor": factor, "inputs": {"x": "x"}}],
                name=name, **extra)  # fmt: skip


def ring(n: int) -> dict:
    boxes = [unary(f"r{i}", f"r{(i + 1) % n}") for i in range(n)]
    return spec(boxes)


def dense(n: int) -> dict:
    """n binary boxes, each reading two others: cycles of every length through them all."""
    boxes = [binary(f"d{i}", f"d{(i + 1) % n}", f"d{(i + 3) % n}") for i in range(n)]
    return spec(boxes)


def chain_calls(depth: int) -> dict:
    """Subcircuits nested `depth` deep, each calling the one inside it."""
    inner = spec([unary("u", "x")], name="s0")
    for i in range(1, depth):
        inner = spec([{"name": "k", "kind": "call", "circuit": f"s{i - 1}", "inputs": {"x": "x"}}],
                     name=f"s{i}", subcircuits={f"s{i - 1}": inner})  # fmt: skip
    return spec([{"name": "k", "kind": "call", "circuit": f"s{depth - 1}", "inputs": {"x": "x"}}],
                subcircuits={f"s{depth - 1}": inner})  # fmt: skip


def named(name: str) -> dict:
    return spec([unary(name, "x"), unary("after", name)], sizes={"B": 2, "T": 3, "D": 4})


def linear(dtype: str) -> dict:
    return spec(
        [{"name": "l", "kind": "linear", "over": "D", "out": "E", "inputs": {"x": "x"}}],
        inputs=[{"name": "x", "axes": "B T D", "dtype": dtype}],
        sizes={"B": 2, "T": 3, "D": 4, "E": 5},
    )


def softmax(dtype: str) -> dict:
    return spec(
        [{"name": "s", "kind": "softmax", "over": "D", "inputs": {"x": "x"}}],
        inputs=[{"name": "x", "axes": "B T D", "dtype": dtype}],
        sizes={"B": 2, "T": 3, "D": 4},
    )


def repeat(n) -> dict:
    block = spec([unary("u", "x")], name="blk")
    return spec(
        [{"name": "k", "kind": "call", "circuit": "blk", "repeat": n, "inputs": {"x": "x"}}],
        subcircuits={"blk": block},
        sizes={"B": 2, "T": 3, "D": 4},
    )


def many_axes(n: int) -> dict:
    axes = " ".join(f"a{i}" for i in range(n))
    return spec([unary("u", "x")], inputs=[{"name": "x", "axes": axes}])


def collide() -> dict:
    """A circuit `net` calling a subcircuit `Net`: one class name once made identifiers."""
    sub = spec([unary("u", "x")], name="Net")
    return spec([{"name": "k", "kind": "call", "circuit": "Net", "inputs": {"x": "x"}}],
                name="net", subcircuits={"Net": sub}, sizes={"B": 2, "T": 3, "D": 4})  # fmt: skip


# name -> (JSON text, what must happen: "error" (exit 1, located), "ok", or "either")
CASES: dict[str, tuple[str, str]] = {}


def case(name: str, data, outcome: str = "error") -> None:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=True)
    CASES[name] = (text, outcome)


# cycles of every shape
case("self_loop", spec([unary("a", "a")]))
case("two_cycle", spec([unary("a", "b"), unary("b", "a")]))
case("ring_40", ring(40))
case("ring_2000", ring(2000))
case("dense_12", dense(12))
case("dense_200", dense(200))
case("cycles_apart", spec([unary("a", "b"), unary("b", "a"), unary("c", "d"), unary("d", "c"),
                           unary("e", "x")]))  # fmt: skip
case("cycle_through_port", spec([{"name": "s", "kind": "split", "axis": "D", "sizes": [1, 1],
                                  "inputs": {"x": "s.0"}}]))  # fmt: skip
# size expressions
for i, text in enumerate(["2**2**2**2**2**2", "9**9**9**9", "B**B**B**B**B**B", "((T**T)**T)**T",
                          "2**(2**(2**(2**(2**2))))", "(T+1)**64", "T**1000000",
                          "10**5000", "T/0", "sqrt(0-1)", "0/0", "0**-1", "T/(T-T)",
                          "1/0.0", "floor(T/0)", "sqrt(-T)", "2**-2**64"]):  # fmt: skip
    case(f"size_{i}", scale("1", axes={"D": text}))
case("size_5000_digits_json", '{"name": "c", "axes": {"D": ' + "9" * 5000 + "}}")
case("size_5000_digits_text", scale("1", axes={"D": "9" * 5000}))
case("size_long_int", scale("1", axes={"D": 2**80}))
case("sizes_true", scale("1", sizes={"B": True}))
case("sizes_float", scale("1", sizes={"B": 1.5}))
case("sizes_negative", scale("1", sizes={"B": -1}))
case("sizes_huge", scale("1", sizes={"B": 2**70}))
case("sizes_inf", '{"name": "c", "sizes": {"B": 1e999}}')
case("sizes_nan", '{"name": "c", "sizes": {"B": NaN}}')
case("tensor_huge", scale("1", sizes={"B": 2**20, "T": 2**20, "D": 2**20}))
case("scale_nan", scale("nan"))
case("scale_inf", scale("inf"))
case("scale_float_huge", scale(1e308))
case("scale_power", scale("T**T**T"))
case("scale_zoo", scale("1/0"))
# repeats
case("repeat_million", repeat(1_000_000))
case("repeat_symbolic_huge", repeat("N") | {"sizes": {"B": 2, "T": 3, "D": 4, "N": 2**40}})
case("repeat_zero", repeat(0))
case("repeat_float", repeat("1.5"))
case("repeat_ok", repeat(3), "ok")
# axes
case("axes_5000", many_axes(5000))
case("axes_100000", many_axes(100_000))
case("axes_60", many_axes(60))
case("axes_40", many_axes(40))
case("axes_dup", spec([unary("u", "x")], inputs=[{"name": "x", "axes": "B B"}]))
# nesting
case("json_deep", "[" * 100_000 + "]" * 100_000)
case("json_deep_obj", '{"a":' * 5000 + "1" + "}" * 5000)
case("calls_deep_20", chain_calls(20))
LOOP = [{"name": "k", "kind": "call", "circuit": "a", "inputs": {"x": "x"}}]
case("calls_recursive", spec(LOOP, subcircuits={"a": spec(LOOP, name="a")}))
# names
case("name_surrogate", '{"name": "c", "inputs": [{"name": "x", "axes": "B"}], "boxes": [{"name": '
     '"\\ud800", "kind": "unary", "fn": "relu", "inputs": {"x": "x"}}], "outputs": [{"name": "y",'
     ' "source": "\\ud800"}]}')  # fmt: skip
case("name_bidi", named("a\u202eb"))
case("name_control", named("a\x00b"))
case("name_newline", named("a\nb"))
case("name_long", named("n" * 65))
case("name_long_255", named("n" * 255))
case("name_code", named("'); import os; os.system('echo pwned'); ('"), "either")
case("name_dunder", named("__init__"), "either")
case("name_meta", named("meta"), "either")
case("name_training", named("training"), "either")
case("name_forward", named("forward"), "either")
case("name_self", named("self"), "either")
case("name_keyword", named("class"), "either")
case("name_digits", named("123"), "either")
case("name_unicode", named("σ·λ"), "either")
case("name_dup", spec([unary("a", "x"), unary("a", "a")]))
case("name_ident_collide", spec([unary("a b", "x"), unary("a_b", "a b")]), "either")
case("name_class_collide", collide(), "either")
case("name_class_collide_repeat", collide() | {"boxes": [{"name": "k", "kind": "call",
      "circuit": "Net", "repeat": 2, "inputs": {"x": "x"}}]}, "either")  # fmt: skip
case("circuit_name_dotted", spec([unary("a", "x")], name="a.b"))
# dtypes the operations cannot take
case("linear_int64", linear("int64"))
case("linear_bool", linear("bool"))
case("softmax_bool", softmax("bool"))
case("softmax_int32", softmax("int32"))
case("linear_float16", linear("float16"), "ok")
# plain schema errors
case("not_json", "{nope")
case("not_object", "[1, 2]")
case("empty_object", "{}")
case("dup_key", '{"name": "c", "name": "d"}')
case("unknown_kind", spec([{"name": "a", "kind": "rm -rf", "inputs": {"x": "x"}}]))
case("unknown_field", spec([unary("a", "x") | {"exec": "print(1)"}]))
case("dangling", spec([unary("a", "nowhere")]))
case("no_outputs", spec([unary("a", "x")], outputs=[]))
case("many_errors", spec([unary(f"u{i}", f"missing{i}") for i in range(5000)]))
case("many_schema_errors", spec([{"name": i, "kind": "unary"} for i in range(5000)]))
case("ok_small", spec([unary("a", "x")], sizes={"B": 2, "T": 3, "D": 4}), "ok")
# input ports of one box (limit MAX_BOX_INPUTS)
case("box_ports_300", spec([unary("u", "x") | {"inputs": {f"p{i}": "x" for i in range(300)}}]))
case("opaque_in_ports_3000", spec([{"name": "o", "kind": "opaque", "outputs": {"y": "B"},
      "in_ports": [f"p{i}" for i in range(3000)], "inputs": {"x": "x"}}]))  # fmt: skip
WIDE = spec([unary("u", "i0")], name="wide",
            inputs=[{"name": f"i{i}", "axes": "B"} for i in range(300)])  # fmt: skip
case("call_of_300_inputs", spec([{"name": "k", "kind": "call", "circuit": "wide",
                                  "inputs": {"x": "x"}}], subcircuits={"wide": WIDE}))  # fmt: skip
