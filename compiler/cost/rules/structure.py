"""Cost rules of opaque boxes (FLOPs as stated) and calls (the analyser expands them)."""

from __future__ import annotations

from ncd.circuits.sizes import parse_size

from .common import BoxView, Rule, _in, costs


@costs("opaque")
def opaque(v: BoxView) -> Rule:
    flops = parse_size(v.box.flops)
    return Rule(
        flops=flops,
        saved=[_in(p) for p in v.ins],
        notes=["opaque: FLOPs as stated on the box; assumed to keep its inputs"],
    )


@costs("call")
def call(v: BoxView) -> Rule:  # pragma: no cover - the analyser expands calls itself
    raise AssertionError("calls are analysed recursively")
