"""Cost rules of rearrangements, copies, tuples, indexing, concatenation: views, no FLOPs."""

from __future__ import annotations

from .common import BoxView, Rule, _follow, _is_view, costs


@costs("split_axis")
def split_axis(v: BoxView) -> Rule:
    b = v.box
    lay = []
    for a in v.layouts["x"]:
        lay += list(b.into) if a == b.axis else [a]
    return Rule(alias={"out": "x"}, layout={"out": tuple(lay)})


@costs("merge_axes")
def merge_axes(v: BoxView) -> Rule:
    b = v.box
    lay = v.layouts["x"]
    if _is_view(lay, [list(b.axes)], v.units):
        i = lay.index(b.axes[0])
        new = (*[a for a in lay[:i]], b.into, *[a for a in lay[i:] if a not in b.axes])
        return Rule(alias={"out": "x"}, layout={"out": tuple(new)})
    return Rule(notes=["axes not adjacent in memory: reshape copies"])


@costs("permute")
def permute(v: BoxView) -> Rule:
    return Rule(alias={"out": "x"}, layout=_follow(v))


@costs("rename")
def rename(v: BoxView) -> Rule:
    m = v.box.mapping
    return Rule(alias={"out": "x"}, layout={"out": tuple(m.get(a, a) for a in v.layouts["x"])})


@costs("copy")
def copy(v: BoxView) -> Rule:
    return Rule(alias={str(i): "x" for i in range(v.box.n)})


@costs("pack")
def pack(v: BoxView) -> Rule:
    return Rule(alias={"out": "*"})


@costs("unpack")
def unpack(v: BoxView) -> Rule:
    return Rule(alias={p: "x" for p in v.outs})


@costs("index")
def index(v: BoxView) -> Rule:
    return Rule(
        alias={"out": "x"}, layout={"out": tuple(a for a in v.layouts["x"] if a != v.box.axis)}
    )


@costs("slice")
def slice_(v: BoxView) -> Rule:
    return Rule(alias={"out": "x"}, layout=_follow(v))


@costs("split")
def split(v: BoxView) -> Rule:
    return Rule(alias={p: "x" for p in v.outs}, layout={p: v.layouts["x"] for p in v.outs})


@costs("concat")
def concat(v: BoxView) -> Rule:
    return Rule()
