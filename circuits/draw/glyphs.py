"""A drawing for every box kind: the NCD pictogram, the bold name of learned maps, a caption.

`GLYPHS[kind](box) -> Drawing`. Every kind of `ncd.circuits.kinds.KINDS` has an entry
(tests/test_vocabulary_drawing.py walks the vocabulary). Fragments are HTML-like label markup;
anything taken from the circuit goes through `markup.text`/`markup.esc`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..sizes import parse_size
from .markup import esc, size, text


@dataclass(frozen=True)
class Drawing:
    """How a box looks: `glyph` (the pictogram, large), `title` (bold name of a learned map or a
    block), `note` (small caption: the axes or the constant the box acts with)."""

    glyph: str = ""
    title: str = ""
    note: str = ""


def _axes(names) -> str:
    """Axis names as size symbols are set in the paper: italic."""
    return " ".join(f"<I>{esc(n)}</I>" for n in names)


def _learned(default: str):
    def draw(b) -> Drawing:
        return Drawing(title=text(b.label or default))

    return draw


def _linear(b) -> Drawing:
    return Drawing(title=text(b.label or ("L₊" if b.bias else "L")))


def _param(b) -> Drawing:
    return Drawing(title=text(b.label or b.name), note=_axes(b.axes))


def _contract(b) -> Drawing:
    # The half-disc; the summed wires enter it and do not leave. An empty sum is an outer
    # product, where the wires only join.
    note = "Σ " + _axes(b.over) if b.over else "⊗"
    return Drawing(glyph="◗", title=text(b.label), note=note)


_UNARY_SHORT = {
    "relu": "R",
    "elu_plus_one": "φ",
    "identity": "id",
    "reciprocal": "1/x",
    "sigmoid": "σ",
    "logsigmoid": "log σ",
}


def _unary(b) -> Drawing:
    name = text(b.label) if b.label else esc(_UNARY_SHORT.get(b.fn, b.fn))
    return Drawing(glyph=f"➤{name}➤")  # NCD's arrowed letter: ➤R➤


_BINARY = {"add": "+", "sub": "−", "mul": "⊙", "div": "÷", "maximum": "max", "minimum": "min"}


def _binary(b) -> Drawing:
    return Drawing(glyph=text(b.label) if b.label else esc(_BINARY.get(b.fn, "^")))


def _scale(b) -> Drawing:
    return Drawing(glyph="∗" + size(parse_size(b.factor)))


def _mask(b) -> Drawing:
    note = "causal" if b.pattern == "causal" else f"window {b.window}"
    return Drawing(glyph="◣", note=esc(note))


_SOFTMAX = {"softmax": "◁", "log_softmax": "log◁", "softmin": "◁<SUP>−</SUP>"}


def _softmax(b) -> Drawing:
    return Drawing(glyph=_SOFTMAX[b.variant], title=text(b.label))


def _norm(short: str):
    def draw(b) -> Drawing:
        note = short + (f" /{b.groups}" if b.kind == "groupnorm" else "")
        if b.kind == "normalize":
            note = f"ℓ{b.p}"
        return Drawing(glyph="○", title=text(b.label), note=esc(note))

    return draw


_REDUCE = {"sum": "Σ", "mean": "μ", "max": "max", "min": "min", "prod": "Π", "logsumexp": "LSE"}


def _reduce(b) -> Drawing:
    return Drawing(glyph=esc(_REDUCE[b.op]), note=_axes(b.over))


def _scan(b) -> Drawing:
    op = {"sum": "Σ", "prod": "Π", "max": "max"}[b.op]
    return Drawing(glyph=f"{op}<SUB>{'≥' if b.reverse else '≤'}</SUB>", note=_axes([b.over]))


def _topk(b) -> Drawing:
    return Drawing(glyph="top", note=esc(f"k={b.k}"))


def _conv(b) -> Drawing:
    k = "×".join(str(i) for i in b.kernel)
    s = b._norm("stride")
    glyph = f"★<SUP>T</SUP>{k}" if b.transposed else f"★{k}"
    strided = any(i > 1 for i in s)
    note = " ".join(
        x
        for x in (
            # NCD draws a strided convolution as a trapezoid; no font has one, so an arrow
            # says the axes shrink (or grow, transposed) by the stride.
            f"{'↑' if b.transposed else '↓'}{'×'.join(map(str, s))}" if strided else "",
            f"g={b.groups}" if b.groups > 1 else "",
        )
        if x
    )
    if b.label:  # the label already names it (`★3 dw`): do not print the star twice
        return Drawing(title=text(b.label), note=esc(note))
    return Drawing(glyph=glyph, note=esc(note))


def _pool(b) -> Drawing:
    w = "×".join(str(i) for i in b.window)
    return Drawing(glyph=("Max " if b.op == "max" else "Avg ") + w)


def _attention(b) -> Drawing:
    # Fused: contraction, softmax, contraction in one box.
    return Drawing(glyph="◗◁◗", title=text(b.label), note="causal" if b.causal else "")


def _linear_attention(b) -> Drawing:
    return Drawing(glyph="◗◗", title=text(b.label), note=esc(b.variant))


def _call(b) -> Drawing:
    return Drawing(title=text(b.label or b.circuit))


def _opaque(b) -> Drawing:
    return Drawing(glyph="?", title=text(b.label or b.name), note=esc(b.target[:32]))


GLYPHS: dict[str, Callable[..., Drawing]] = {
    "linear": _linear,
    "param": _param,
    "embedding": _learned("E"),
    "contract": _contract,
    "diagonal": lambda b: Drawing(glyph="●", note=_axes(b.axes) + " → " + _axes([b.into])),
    "unary": _unary,
    "binary": _binary,
    "scale": _scale,
    "cast": lambda b: Drawing(glyph="⇢", note=esc(b.dtype)),
    "dropout": lambda b: Drawing(glyph="Drop", note=esc(f"p={b.p:g}")),
    "mask": _mask,
    "softmax": _softmax,
    "layernorm": _norm("LN"),
    "rmsnorm": _norm("RMS"),
    "batchnorm": _norm("BN"),
    "groupnorm": _norm("GN"),
    "unifiednorm": _norm("UN"),
    "normalize": _norm(""),
    "reduce": _reduce,
    "scan": _scan,
    "topk": _topk,
    "split_axis": lambda b: Drawing(glyph="≺", note=_axes([b.axis]) + " → " + _axes(b.into)),
    "merge_axes": lambda b: Drawing(glyph="≻", note=_axes(b.axes) + " → " + _axes([b.into])),
    "permute": lambda b: Drawing(glyph="╳"),
    # A renaming is no operation in NCDs, only a wire changing its label: drawn without a box.
    "rename": lambda b: Drawing(
        note=", ".join(f"{_axes([k])}↦{_axes([v])}" for k, v in sorted(b.mapping.items()))
    ),
    "copy": lambda b: Drawing(glyph="●"),
    "pack": lambda b: Drawing(glyph="(,)"),
    "unpack": lambda b: Drawing(glyph=")("),
    "concat": lambda b: Drawing(glyph="‖", note=_axes([b.axis])),
    "split": lambda b: Drawing(glyph="⋔", note=_axes([b.axis])),
    "index": lambda b: Drawing(glyph="⬠", note=_axes([b.axis]) + esc(f"={b.index}")),
    "slice": lambda b: Drawing(
        glyph="⬠",
        note=_axes([b.axis])
        + esc(f"[{b.start}:{b.stop or ''}" + (f":{b.step}]" if b.step > 1 else "]")),
    ),
    "conv": _conv,
    "pool": _pool,
    "upsample": lambda b: Drawing(glyph=f"↑{b.factor}", note=esc(b.mode)),
    "attention": _attention,
    "linear_attention": _linear_attention,
    "call": _call,
    "opaque": _opaque,
}


def drawing(box) -> Drawing:
    """The drawing of `box` (its kind's rule)."""
    return GLYPHS[box.kind](box)
