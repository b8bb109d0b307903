"""A drawing for every box kind: the NCD pictogram, the bold name of learned maps, a caption.

`GLYPHS[kind](box) -> Drawing`; a kind's rule is filed with `@draws("kind")` (the registration
idiom of `ncd.circuits.kinds`, whose checklist says what else a kind needs). Fragments are
HTML-like label markup; anything taken from the circuit goes through `markup.text`/`markup.esc`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..kinds.registry import Registry
from ..sizes import parse_size
from .markup import esc, size, text
from .markup import factor as scale_factor


@dataclass(frozen=True)
class Drawing:
    """How a box looks: `glyph` (the pictogram, large), `title` (the box's name: `L^Q`, `LN`, a
    block's title; bold where the box is learned), `note` (small caption: the axes or the
    constant the box acts with), `mark` (an exponent on the pictogram). A learned box without
    a title has its glyph bold (`★3`)."""

    glyph: str = ""
    title: str = ""
    note: str = ""
    mark: str = ""
    """An exponent on the pictogram, set small and raised in the text's font (scatter's −1)."""


GLYPHS = Registry("drawing", "circuits/draw/glyphs.py", "@draws")
draws = GLYPHS.register


def _axes(names) -> str:
    """Axis names as size symbols are set in the paper: italic, and with their subscripts
    as the wires' labels set them (`Y_1`: Y₁, a part of Y that a reshape made)."""
    return " ".join(f"<I>{text(n)}</I>" for n in names)


# ---------------------------------------------------------------- learned
@draws("linear")
def _linear(b) -> Drawing:
    # Without a label every map would be the same `L`: its name, small, tells them apart.
    note = "<BR/>".join(x for x in ("" if b.label else esc(b.name), _linear_note(b)) if x)
    return Drawing(title=text(_biased(b.label or "L", b.bias)), note=note)


def _biased(label: str, bias: bool) -> str:
    """A linear map's label with its bias marked as in `L₊`: `L^R` -> `L₊^R` (the ₊ before the
    first script), unless the label marks it already."""
    if not bias or "₊" in label:
        return label
    at = min((i for i in (label.find("^", 1), label.find("_", 1)) if i > 0), default=len(label))
    return label[:at] + "₊" + label[at:]


_SCRIPTED_NAME = re.compile(r"[A-Za-z][_^]\{?[A-Za-z0-9]+\}?")


def _name_or_label(b) -> str:
    """A box's label as markup (`W_q`: a subscript), else its name: with scripts only where
    the name is written as a symbol with one (`W_q`, `A_log`), literal otherwise (an imported
    `log_A_real` or `dt_bias` is a Python name, not log with subscript A)."""
    if b.label or _SCRIPTED_NAME.fullmatch(b.name):
        return text(b.label or b.name)
    return esc(b.name)


@draws("param")
def _param(b) -> Drawing:
    return Drawing(title=_name_or_label(b), note=_axes(b.axes))


@draws("embedding")
def _embedding(b) -> Drawing:
    return Drawing(title=text(b.label or "E"))


# ---------------------------------------------------------------- contraction
@draws("contract")
def _contract(b) -> Drawing:
    # The half-disc; the summed wires enter it and do not leave. An empty sum is an outer
    # product, where the wires only join.
    note = "Σ " + _axes(b.over) if b.over else "⊗"
    return Drawing(glyph="◗", title=text(b.label), note=note)


@draws("diagonal")
def _diagonal(b) -> Drawing:
    return Drawing(glyph="●", note=_axes(b.axes) + " → " + _axes([b.into]))


# ---------------------------------------------------------------- elementwise
_UNARY_SHORT = {
    "relu": "R",
    "elu_plus_one": "φ",
    "identity": "id",
    "reciprocal": "1/x",
    "sigmoid": "σ",
    "logsigmoid": "log σ",
}


@draws("unary")
def _unary(b) -> Drawing:
    if not b.label:
        return Drawing(glyph=f"➤{esc(_UNARY_SHORT.get(b.fn, b.fn))}➤")  # NCD's arrowed letter: ➤R➤
    # A label names the role (φ, Δ); the function it is goes small below, unless it says it.
    fn = _UNARY_NAME.get(b.fn, b.fn)
    return Drawing(glyph=f"➤{text(b.label)}➤", note="" if b.label in (fn, b.fn) else esc(fn))


# How a function is written under a label that names its role (`➤φ➤` over "elu+1").
_UNARY_NAME = {"elu_plus_one": "elu+1", "logsigmoid": "log σ", "sigmoid": "σ"}


_BINARY = {"add": "+", "sub": "−", "mul": "⊙", "div": "÷", "maximum": "max", "minimum": "min"}


@draws("binary")
def _binary(b) -> Drawing:
    return Drawing(glyph=text(b.label) if b.label else esc(_BINARY.get(b.fn, "^")))


@draws("scale")
def _scale(b) -> Drawing:
    factor = scale_factor(parse_size(b.factor))
    if b.label:  # the label names the factor (`∗1/τ`); its value goes small below
        return Drawing(glyph="∗" + text(b.label), note=factor)
    return Drawing(glyph="∗" + factor)


@draws("cast")
def _cast(b) -> Drawing:
    return Drawing(glyph="⇢", note=esc(b.dtype + (" bits" if b.bits else "")))


@draws("dropout")
def _dropout(b) -> Drawing:
    return Drawing(glyph="Drop", note=esc(f"p={b.p:g}"))


@draws("mask")
def _mask(b) -> Drawing:
    note = "causal" if b.pattern == "causal" else f"window {b.window}"
    return Drawing(glyph="◣", note=esc(note))


@draws("rotary")
def _rotary(b) -> Drawing:
    # Rotary position embedding: a turn (↻) of the feature pairs by angles that grow with the
    # position; the note says which axis holds the positions and which the pairs, then θ and
    # what differs from LLaMA's form (all pairs, halves, positions from 0).
    base = f"{b.base:.0f}" if b.base.is_integer() and b.base < 1e15 else f"{b.base:g}"
    note = "pos " + _axes([b.seq]) + ", pairs " + _axes([b.feature])
    extra = [
        esc(f"θ={base}"),
        size(parse_size(b.rotated)) + " turned" if b.rotated is not None else "",
        "interleaved" if b.pairs == "interleaved" else "",
        "packed" if b.packed else "+ start" if b.start else "",
    ]
    note += "<BR/>" + ", ".join(e for e in extra if e)
    return Drawing(glyph="↻", title=text(b.label), note=note)


@draws("positions")
def _positions(b) -> Drawing:
    # The paper draws no index tensor; the count itself says it, and the axis it runs along
    # leaves the box as its wire. The note says what differs from counting 0, 1, ... in the
    # circuit's float type.
    extra = [
        "" if b.dtype == "float32" else esc(b.dtype),
        "packed" if b.packed else "+ start" if b.start else "",
    ]
    note = "along " + _axes([b.axis])
    if any(extra):
        note += "<BR/>" + ", ".join(e for e in extra if e)
    return Drawing(glyph="0,1,…", title=text(b.label), note=note)


# ---------------------------------------------------------------- normalisation
_SOFTMAX = {"softmax": "◁", "log_softmax": "log◁", "softmin": "◁<SUP>−</SUP>"}


@draws("softmax")
def _softmax(b) -> Drawing:
    return Drawing(glyph=_SOFTMAX[b.variant], title=text(b.label))


_NORM_SHORT = {
    "layernorm": "LN",
    "rmsnorm": "RMS",
    "batchnorm": "BN",
    "groupnorm": "GN",
    "unifiednorm": "UN",
}


@draws("layernorm", "rmsnorm", "batchnorm", "groupnorm", "unifiednorm")
def _norm(b) -> Drawing:
    # The norm's name is its title (bold when it learns a scale); the kind is noted only where
    # a label names it otherwise (`SRMS` says RMS already).
    title, note = _norm_name(b.label, b.kind)
    if b.kind == "groupnorm":
        note = " ".join(x for x in (note, f"g={b.groups}") if x)
    return Drawing(glyph="○", title=title, note=esc(note))


@draws("normalize")
def _normalize(b) -> Drawing:
    return Drawing(glyph="○", title=text(b.label), note=esc(f"ℓ{b.p}"))


def _norm_name(label: str, kind: str) -> tuple[str, str]:
    """(title, note) of a norm: its label or short name, and the short name where the label
    does not contain it."""
    short = _NORM_SHORT[kind]
    if not label:
        return esc(short), ""
    return text(label), "" if short in label else short


# ---------------------------------------------------------------- reduction
_REDUCE = {"sum": "Σ", "mean": "μ", "max": "max", "min": "min", "prod": "Π", "logsumexp": "LSE"}


@draws("reduce")
def _reduce(b) -> Drawing:
    return Drawing(glyph=esc(_REDUCE[b.op]), note=_axes(b.over))


@draws("scan")
def _scan(b) -> Drawing:
    op = {"sum": "Σ", "prod": "Π", "max": "max"}[b.op]
    return Drawing(glyph=f"{op}<SUB>{'≥' if b.reverse else '≤'}</SUB>", note=_axes([b.over]))


@draws("topk")
def _topk(b) -> Drawing:
    # The axis selected from, as a reduction names its own, then the axis of the kept entries
    # with their count, as a wire of bound size is labelled (`k=2`).
    return Drawing(glyph="top", note=_axes([b.over]) + " → " + _axes([b.into]) + esc(f"={b.k}"))


# ---------------------------------------------------------------- rearrangement
@draws("split_axis")
def _split_axis(b) -> Drawing:
    return Drawing(glyph="≺", note=_axes([b.axis]) + " → " + _axes(b.into))


@draws("merge_axes")
def _merge_axes(b) -> Drawing:
    return Drawing(glyph="≻", note=_axes(b.axes) + " → " + _axes([b.into]))


@draws("permute")
def _permute(b) -> Drawing:
    return Drawing(glyph="╳")


@draws("rename")
def _rename(b) -> Drawing:
    # A renaming is no operation in NCDs, only a wire changing its label: drawn without a box.
    return Drawing(
        note=", ".join(f"{_axes([k])}↦{_axes([v])}" for k, v in sorted(b.mapping.items()))
    )


@draws("copy")
def _copy(b) -> Drawing:
    return Drawing(glyph="●")


@draws("pack")
def _pack(b) -> Drawing:
    return Drawing(glyph="(,)")


@draws("unpack")
def _unpack(b) -> Drawing:
    return Drawing(glyph=")(")


@draws("concat")
def _concat(b) -> Drawing:
    return Drawing(glyph="‖", note=_axes([*dict.fromkeys([b.axis, *b.along.values()])]))


@draws("split")
def _split(b) -> Drawing:
    return Drawing(glyph="⋔", note=_axes([b.axis]))


@draws("index")
def _index(b) -> Drawing:
    return Drawing(glyph="⬠", note=_axes([b.axis]) + esc(f"={b.index}"))


@draws("slice")
def _slice(b) -> Drawing:
    step = f":{b.step}]" if b.step > 1 else "]"
    return Drawing(glyph="⬠", note=_axes([b.axis]) + esc(f"[{b.start}:{b.stop or ''}" + step))


# ---------------------------------------------------------------- spatial
@draws("conv")
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
            f"d={'×'.join(map(str, b._norm('dilation')))}" if max(b.dilation) > 1 else "",
            "dw" if b.depthwise and "dw" not in b.label else "",
        )
        if x
    )
    if b.label:  # the label already names it (`★3 dw`): do not print the star twice
        return Drawing(title=text(b.label), note=esc(note))
    return Drawing(glyph=glyph, note=esc(note))


@draws("long_conv")
def _long_conv(b) -> Drawing:
    # The convolution's star, not bold (the filter is data, entering on its own stub), noted
    # with the axis it runs along and its direction; the filter wire's size is its length.
    return Drawing(glyph="★", title=text(b.label), note="causal " + _axes([b.seq]))


@draws("pool")
def _pool(b) -> Drawing:
    w = "×".join(str(i) for i in b.window)
    return Drawing(glyph=("Max " if b.op == "max" else "Avg ") + w)


@draws("upsample")
def _upsample(b) -> Drawing:
    return Drawing(glyph=f"↑{b.factor}", note=esc(b.mode))


# ---------------------------------------------------------------- fused and structure
@draws("attention")
def _attention(b) -> Drawing:
    # Fused: contraction, softmax, contraction in one box; grouped heads as query heads per
    # key/value head (H:G).
    note = "causal" if b.causal else ""
    if b.kv_heads is not None:
        note = " ".join(x for x in (note, _axes([b.heads]) + ":" + _axes([b.kv_heads])) if x)
    return Drawing(glyph="◗◁◗", title=text(b.label), note=note)


@draws("linear_attention")
def _linear_attention(b) -> Drawing:
    # The variant, then what else tells two such boxes apart: the lightning decay's factor c
    # (λ_h = exp(−c·2^(−8h/H)); c = 0 is no decay at all), causal, the normaliser, the scale,
    # grouped heads as value heads per query/key group (H:G; H:1 where q and k have no head
    # axis).
    packing = (" packed" if b.causal else " windows") if b.packed else ""
    options = ["causal" if b.causal else ""]
    if b.variant == "lightning":
        c = parse_size(b.decay_scale or "1")
        options.append("no decay" if c.is_number and c == 0 else "decay c=" + size(c))
    options.append("norm" if b.normalize else "")
    options.append("∗" + size(parse_size(b.scale)) if b.scale is not None else "")
    if b.heads is not None:  # grouped heads: value heads per query/key group (H:G, H:1)
        options.append(_axes([b.heads]) + ":" + (_axes([b.qk_heads]) if b.qk_heads else "1"))
    note = "<BR/>".join(
        x for x in (esc(b.variant + packing), ", ".join(filter(None, options))) if x
    )
    return Drawing(glyph="◗◗", title=text(b.label), note=note)


@draws("call")
def _call(b) -> Drawing:
    return Drawing(title=text(b.label or b.circuit))


@draws("opaque")
def _opaque(b) -> Drawing:
    return Drawing(glyph="?", title=_name_or_label(b), note=esc(b.target[:32]))


# What each kind's drawing makes of a box's label, for the `label` field's documentation
# (`fielddocs.attach`); tests/test_vocabulary_drawing.py holds it to the drawings.
_NOT_DRAWN = "In the drawing: not drawn (the pictogram and its axes say what the box is)."
_BESIDE = "In the drawing: the box's title, beside its pictogram; none when empty."


def _instead(default: str) -> str:
    return f"In the drawing: the box's title, in place of {default}, which it shows when empty."


def _for_glyph(default: str) -> str:
    return f"In the drawing: written in place of the pictogram ({default}), drawn when empty."


_NORM_LABEL = _instead("its short name (`LN`, `RMS`, ...), then noted unless the label holds it")
LABELS: dict[str, str] = {
    **dict.fromkeys(
        ("cast", "concat", "copy", "diagonal", "dropout", "index", "mask", "merge_axes", "pack",
         "permute", "pool", "reduce", "rename", "scan", "slice", "split", "split_axis", "topk",
         "unpack", "upsample"),
        _NOT_DRAWN,
    ),
    **dict.fromkeys(
        ("attention", "contract", "gather", "linear_attention", "long_conv", "normalize",
         "one_hot", "positions", "requantize", "rotary", "scatter", "softmax"),
        _BESIDE,
    ),
    **dict.fromkeys(
        ("layernorm", "rmsnorm", "batchnorm", "groupnorm", "unifiednorm", "add_norm"),
        _NORM_LABEL,
    ),
    "linear": "In the drawing: the map's title, in place of `L` (a bias adds `₊`: `L₊^Q`); "
    "`L` above the box's name when empty.",
    "int_linear": _instead("`L` (a bias adds `₊`)"),
    "embedding": _instead("`E`"),
    "param": "In the drawing: the box's title; the box's name when empty.",
    "opaque": "In the drawing: the box's title; the box's name when empty.",
    "call": "In the drawing: the title of the subcircuit's block (or of its box, collapsed); "
    "the subcircuit's title or name when empty.",
    "binary": _for_glyph("`+`, `⊙`, `max`, ..."),
    "clamp": _for_glyph("`clip`"),
    "compare": _for_glyph("`=`, `<`, ..."),
    "where": _for_glyph("`?:`"),
    "constant": _for_glyph("its value"),
    "conv": _for_glyph("`★k`; a label such as `★3 dw` says it"),
    "short_conv": _for_glyph("`★k`"),
    "unary": "In the drawing: between the arrows (`➤φ➤`), the function noted below unless the "
    "label names it; the function (`➤R➤`) when empty.",
    "scale": "In the drawing: after the `∗` (`∗1/τ`), the factor's value noted below; the "
    "value itself (`∗K^-1/2`) when empty.",
}  # fmt: skip


def drawing(box) -> Drawing:
    """The drawing of `box` (its kind's rule)."""
    return GLYPHS[box.kind](box)


_PORT_SYMBOLS = {"beta": "β"}


def port_name(port: str) -> str:
    """An input port's name as written on its stub (`q`, `g`, `β` for port `beta`)."""
    return esc(_PORT_SYMBOLS.get(port, port))


# Comparisons (binary): 1 where they hold, 0 elsewhere.
_BINARY.update({"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "eq": "="})


def _linear_note(b) -> str:
    """A linear map's non-default arithmetic: its sampled backward or its L-Mul products."""
    if b.backward == "wtacrs":
        return esc(f"∇ WTA-CRS {b.budget:.0%}")
    if b.product != "exact":
        return esc(f"L-Mul {b.product[-1]}-bit")
    return ""


# ---------------------------------------------------------------- integer arithmetic
_UNARY_SHORT.update({"round": "⌊x⌉", "floor": "⌊x⌋"})
_BINARY.update({"shift_left": "≪", "shift_right": "≫", "floordiv": "⌊÷⌋"})


@draws("clamp")
def _clamp(b) -> Drawing:
    lo = "−∞" if b.low is None else size(parse_size(b.low))
    hi = "∞" if b.high is None else size(parse_size(b.high))
    return Drawing(glyph=text(b.label) if b.label else "clip", note=f"[{lo}, {hi}]")


@draws("constant")
def _constant(b) -> Drawing:
    # A constant is a number written where it enters the circuit, not a box of its own.
    glyph = text(b.label) if b.label else size(parse_size(b.value))
    return Drawing(glyph=glyph, note=" ".join(x for x in (_axes(b.axes), esc(b.dtype)) if x))


@draws("requantize")
def _requantize(b) -> Drawing:
    # Dyadic arithmetic: a multiply by b and a shift right by c.
    per = (" per " + _axes(b.axes)) if b.axes else ""
    return Drawing(glyph="∗b ≫c", title=text(b.label), note=esc(f"→ {b.dtype}") + per)


@draws("int_linear")
def _int_linear(b) -> Drawing:
    return Drawing(title=text(_biased(b.label or "L", b.bias)), note=esc("int8 → int32"))


@draws("short_conv")
def _short_conv(b) -> Drawing:
    # Fused: the causal depthwise star, and SiLU when it follows.
    note = "causal dw" + (", SiLU" if b.activation == "silu" else "")
    note += ", packed" if b.packed else ""
    if b.label:
        return Drawing(title=text(b.label), note=esc(note))
    return Drawing(glyph=f"★{b.kernel}", note=esc(note))


@draws("add_norm")
def _add_norm(b) -> Drawing:
    # Fused: the residual add, then the norm's circle.
    title, note = _norm_name(b.label, b.norm)
    return Drawing(glyph="+○", title=title, note=esc(note))


# ---------------------------------------------------------------- routing
# Indexing is NCD's pentagon tag: gather tags the indexed axis with the positions' axes,
# scatter (its inverse) writes them back into the new axis: ⬠ with the exponent −1, not ᵀ,
# since a letter there would read as an axis (the tokens' T). The exponent is the `mark`,
# set small and raised in the text's font, as a reader sees f⁻¹ in a paper: the pictograms'
# font's Unicode ⁻¹ is as tall as the pentagon and level with it, and read as "⬠ −1" (an
# index less one). No font at hand has the pentagon turned over, which would mirror
# gather's tag as ≻ mirrors ≺.
_COMPARE = {"eq": "=", "ne": "≠", "lt": "<", "le": "≤", "gt": ">", "ge": "≥"}


@draws("gather")
def _gather(b) -> Drawing:
    into = _axes(b.into) if b.into else "·"
    # brackets as character references: Graphviz misreads a bare ']' after markup
    return Drawing(glyph="⬠", title=text(b.label),
                   note=_axes([b.axis]) + "&#91;" + into + "&#93;")  # fmt: skip


@draws("scatter")
def _scatter(b) -> Drawing:
    return Drawing(glyph="⬠", mark="−1", title=text(b.label),
                   note=_axes(b.over) + " → " + _axes([b.axis]))  # fmt: skip


@draws("one_hot")
def _one_hot(b) -> Drawing:
    dtype = "" if b.dtype == "float32" else " " + esc(b.dtype)
    # On the line, not subscripted: Graphviz gives a subscript no room, and it ran into the
    # note below.
    return Drawing(glyph="1&#91;·&#93;", title=text(b.label), note=_axes([b.into]) + dtype)


@draws("compare")
def _compare(b) -> Drawing:
    return Drawing(glyph=text(b.label) if b.label else esc(_COMPARE[b.fn]), note="bool")


@draws("where")
def _where(b) -> Drawing:
    note = "" if b.fill is None else esc(f"else {b.fill}")
    return Drawing(glyph=text(b.label) if b.label else "?:", note=note)
