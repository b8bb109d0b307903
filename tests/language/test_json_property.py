"""Property tests: random valid circuits round-trip through JSON unchanged; random corruptions
of valid circuits and hostile JSON always give the clean error (an NcdError), never another
exception."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncd import gallery
from ncd.circuits import io
from ncd.circuits.builder import Builder
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import NcdError

AXES = ["B", "T", "D", "H", "K", "S", "C", "E", "F", "G", "M", "N", "P", "Q"]


@st.composite
def circuits(draw) -> Circuit:
    """A random valid circuit: a random walk of boxes that typecheck on what exists so far."""
    b = Builder(draw(st.sampled_from(["net", "model", "c1"])))
    n_axes = draw(st.integers(1, 4))
    first = draw(st.permutations(AXES))[:n_axes]
    values = [b.input("x", " ".join(first))]
    compound: set[str] = set()
    used = set(first)  # size symbols are shared by name, so new axes take unused names
    for i in range(draw(st.integers(1, 12))):
        x = draw(st.sampled_from(values))
        axes = list(x.axes)
        op = draw(st.sampled_from(["unary", "scale", "softmax", "norm", "linear", "reduce",
                                   "permute", "rename", "add", "split_merge", "slice", "copy",
                                   "scan", "dropout"]))  # fmt: skip
        name = f"b{i}"
        free = [a for a in AXES if a not in used]
        if op == "unary":
            y = b.unary(x, draw(st.sampled_from(["relu", "gelu", "exp", "tanh"])), name=name)
        elif op == "scale":
            factor = draw(st.sampled_from(["2", "K**-0.5", "0.5", "1/T"]))
            y = b.scale(x, factor, name=name)
            used |= {a for a in ("K", "T") if a in factor}  # its size symbols are taken now
        elif op == "softmax":
            y = b.softmax(x, draw(st.sampled_from(axes)), name=name)
        elif op == "norm":
            y = b.layernorm(x, draw(st.sampled_from(axes)), name=name)
        elif op == "linear" and free:
            y = b.linear(x, draw(st.sampled_from(axes)), draw(st.sampled_from(free)),
                         bias=draw(st.booleans()), name=name)  # fmt: skip
        elif op == "reduce" and len(axes) > 1:
            y = b.reduce(x, draw(st.sampled_from(axes)), "mean", name=name)
        elif op == "permute":
            y = b.permute(x, draw(st.permutations(axes)), name=name)
        elif op == "rename" and free:
            old, new = draw(st.sampled_from(axes)), draw(st.sampled_from(free))
            y = b.rename(x, {old: new}, name=name)
            if old in compound:
                compound.add(new)
        elif op == "add":
            same = [v for v in values if set(v.axes) <= set(axes) and v.type.axes == tuple(
                a for a in x.type.axes if a.name in v.axes)]  # fmt: skip
            y = b.add(x, draw(st.sampled_from(same)), name=name)
        elif op == "split_merge" and len(axes) >= 2 and free:
            pair = draw(st.permutations(axes))[:2]
            y = b.merge_axes(x, pair, free[0], name=name)
            compound.add(free[0])
        elif op == "split_merge" and len(free) >= 2 and _leaves(x, compound):
            # a product is never split again: H*K = D*T is not something unification solves
            a = draw(st.sampled_from(_leaves(x, compound)))
            y = b.split_axis(x, a, free[:2], name=name)
            compound |= {a, str(x.type.axis(a).size)}
        elif op == "slice":
            y = b.slice(x, draw(st.sampled_from(axes)), 0, None, draw(st.integers(1, 3)), name=name)
        elif op == "copy":
            y = b.copy(x, name=name)[0]
        elif op == "scan":
            y = b.scan(x, draw(st.sampled_from(axes)), name=name)
        else:
            y = b.dropout(x, draw(st.floats(0, 0.9)), name=name)
        values.append(y)
        used |= set(y.axes)
    b.output("y", values[-1])
    return b.build()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(circuits())
def test_random_circuits_round_trip(c):
    text = c.to_json()
    back = Circuit.from_json(text)
    assert back == c
    assert back.to_json() == text
    back.check()


def _leaves(x, compound):
    # an axis renamed from a split one keeps its size symbol: it is a product too
    return [
        a.name
        for a in x.type.axes
        if a.size.is_Symbol and a.name not in compound and str(a.size) not in compound
    ]


def _mutations():
    junk = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                     st.text(max_size=30), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))  # fmt: skip
    return st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
        ["delete", "junk", "swap_ref", "dup_box", "kind", "axes", "rename"]), junk),
        min_size=1, max_size=4)  # fmt: skip


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _corrupt(d, muts):
    for seed, how, junk in muts:
        paths = [p for p in _paths(d) if p]
        path = paths[seed % len(paths)]
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        boxes = d.get("boxes") if isinstance(d.get("boxes"), list) else []
        if how == "delete":
            del parent[key]
        elif how == "junk":
            parent[key] = junk
        elif how == "swap_ref" and boxes:
            box = boxes[seed % len(boxes)]
            if isinstance(box, dict) and isinstance(box.get("inputs"), dict) and box["inputs"]:
                port = sorted(box["inputs"])[0]
                box["inputs"][port] = ["nowhere", "y", box.get("name", "x"), "x.zz"][seed % 4]
        elif how == "dup_box" and boxes:
            boxes.append(copy.deepcopy(boxes[seed % len(boxes)]))
        elif how == "kind" and boxes and isinstance(boxes[seed % len(boxes)], dict):
            boxes[seed % len(boxes)]["kind"] = ["softmax", "conv", "nope", "call"][seed % 4]
        elif how == "axes" and isinstance(d.get("inputs"), list) and d["inputs"]:
            inp = d["inputs"][seed % len(d["inputs"])]
            if isinstance(inp, dict):
                inp["axes"] = ["B B", "", "Q R", "1x", "T " * 40][seed % 5]
        elif how == "rename" and boxes and isinstance(boxes[0], dict):
            boxes[0]["name"] = ["a.b", "", "x" * 100, "q", "\n"][seed % 5]
    return d


GALLERY = {n: io.to_dict(gallery.get(n)) for n in gallery.names()}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(GALLERY)), _mutations())
def test_corruptions_give_the_clean_error(name, muts):
    d = _corrupt(copy.deepcopy(GALLERY[name]), muts)
    try:
        text = json.dumps(d, allow_nan=True)
        c = io.loads(text)
        c.check()
    except NcdError as e:
        assert str(e)
    except (ValueError, OverflowError) as e:
        # json.dumps itself may refuse the junk (e.g. a float out of range); that is not ours
        assert "JSON" in str(e) or "out of range" in str(e) or "Circular" in str(e)


def test_hostile_json():
    cases = [
        "[" * 100_000 + "]" * 100_000,  # deep nesting
        '{"name": "' + "x" * 10_000 + '"}',  # huge string in a name
        '{"name": "a", "boxes": ' + "[" * 70 + "]" * 70 + "}",
        '{"name": "a", "name": "b"}',  # duplicate keys would silently lose data
        '{"name": "a", "sizes": {"T": NaN}}',
        '{"name": "a", "axes": {"T": "__import__(\'os\').system(\'echo hacked\')"}}',
        '{"name": "a", "axes": {"T": "' + "(" * 500 + "1" + ")" * 500 + '"}}',
        b"\xff\xfe not utf8",
        "not json at all",
        "[]",
        '{"name": "a", "boxes": [{"name": "p", "kind": "__class__"}]}',
    ]
    for text in cases:
        try:
            io.loads(text).check()
        except NcdError as e:
            assert len(str(e)) < 5000
        else:
            raise AssertionError(f"accepted hostile input {str(text)[:60]!r}")


def test_json_schema_lists_every_kind():
    from ncd.circuits.kinds import KINDS

    schema = json.dumps(io.json_schema())
    for kind in KINDS:
        assert f'"const": "{kind}"' in schema or f'"{kind}"' in schema
