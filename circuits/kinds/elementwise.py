"""Elementwise boxes (arrowed letters in NCDs), scaling, casts, dropout and masks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ShapeProblem
from ..sizes import parse_size, show
from ..types import DTYPE_BYTES, Dtype, TensorType
from .base import (
    AxisList,
    AxisName,
    BoxBase,
    SizeExpr,
    broadcast,
    need,
    new_axes,
    promote,
    tensor,
)
from .registry import box_kind

UNARY = (
    "relu",
    "gelu",
    "gelu_tanh",
    "silu",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "neg",
    "abs",
    "sqrt",
    "rsqrt",
    "square",
    "reciprocal",
    "softplus",
    "elu",
    "sin",
    "cos",
    "identity",
    "logsigmoid",
    "sign",
    "elu_plus_one",
    "relu6",
    "hardswish",
    "round",
    "floor",
)
# The comparisons give 1 where they hold and 0 elsewhere, in the operands' type (no gradient).
BINARY = (
    "add",
    "sub",
    "mul",
    "div",
    "maximum",
    "minimum",
    "pow",
    "ge",
    "gt",
    "le",
    "lt",
    "eq",
    "shift_left",
    "shift_right",
    "floordiv",
)


@box_kind
class Unary(BoxBase):
    """An elementwise function of one tensor (`➤R➤` for ReLU)."""

    kind: Literal["unary"] = "unary"
    fn: Literal[UNARY]
    """The function applied to every element."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if self.fn not in INTEGER_UNARY and not is_float(x.dtype):
            raise ShapeProblem(
                f"{self.fn} is defined on floating-point numbers only", "x", "a float tensor",
                x.dtype,
            )  # fmt: skip
        return {"out": x}


@box_kind
class Binary(BoxBase):
    """An elementwise function of two tensors, broadcast by axis name (`+` where wires merge)."""

    kind: Literal["binary"] = "binary"
    fn: Literal[BINARY]
    """The function applied pairwise."""
    family = "elementwise"

    def ports(self):
        return ["a", "b"]

    def infer(self, ins, ctx):
        a, b = tensor(ins, "a"), tensor(ins, "b")
        _integer_operands(self.fn, a, b)
        axes = broadcast([("a", a), ("b", b)], ctx)
        return {"out": a.with_axes(axes, promote([a.dtype, b.dtype]))}


@box_kind
class Scale(BoxBase):
    """Multiplication by a constant, a size expression such as `K**-0.5` (`*k^{-1/2}`)."""

    kind: Literal["scale"] = "scale"
    factor: SizeExpr
    """The constant, possibly in terms of axis sizes."""
    family = "elementwise"

    def infer(self, ins, ctx):
        f = parse_size(self.factor)
        x = tensor(ins, "x")
        if not is_float(x.dtype) and f.is_number and not f.is_integer:
            raise ShapeProblem(
                "a non-integer factor would make an integer tensor floating-point", "x",
                "a float tensor (or an integer factor)", f"{x.dtype} times {self.factor}",
            )  # fmt: skip
        return {"out": x}


@box_kind
class Cast(BoxBase):
    """Converts the element type."""

    kind: Literal["cast"] = "cast"
    dtype: Dtype
    """The new element type."""
    bits: bool = False
    """Reinterpret the bit pattern (float32 <-> int32, float64 <-> int64) instead of converting
    the value (converting a float to an integer truncates toward zero)."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if self.bits and (DTYPE_BYTES[x.dtype] != DTYPE_BYTES[self.dtype] or "bool" in
                          (x.dtype, self.dtype)):  # fmt: skip
            raise ShapeProblem(
                "a bit reinterpretation keeps the element size", "x",
                f"a {DTYPE_BYTES[self.dtype]}-byte element type other than bool", x.dtype,
            )  # fmt: skip
        return {"out": x.with_axes(x.axes, self.dtype)}


@box_kind
class Dropout(BoxBase):
    """Zeroes elements with probability `p` while training, scaling the rest by 1/(1-p)."""

    kind: Literal["dropout"] = "dropout"
    p: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Drop probability."""
    family = "elementwise"

    def infer(self, ins, ctx):
        return {"out": tensor(ins, "x")}


@box_kind
class Mask(BoxBase):
    """Masks a score tensor over a query axis and a key axis: causal, or a causal window.

    Masked entries take `fill` (-inf before a softmax, 0 for linear attention).
    """

    kind: Literal["mask"] = "mask"
    query: AxisName
    """Axis of query positions (rows)."""
    key: AxisName
    """Axis of key positions (columns)."""
    pattern: Literal["causal", "window"] = "causal"
    """causal: key <= query; window: query - window < key <= query."""
    window: int = Field(default=0, ge=0, le=2**31)
    """Window length for `window` masks."""
    fill: Literal["-inf", "0"] = "-inf"
    """Value of masked entries."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.query, self.key), "x")
        if self.pattern == "window" and self.window < 1:
            raise ShapeProblem("a window mask needs a window", "x", "window >= 1", "0")
        return {"out": x}

    def acts_on(self):
        return (self.query, self.key)


@box_kind
class Rotary(BoxBase):
    """Rotary position embedding (RoPE; Su et al., RoFormer 2021): feature pairs turned by
    angles that grow with the position. Pair i = 0 … d/2 − 1 of the d rotated features,
    (a, b) at position p, is turned by p·θ_i, θ_i = base^(−2i/d): (a, b) → (a cos pθ_i −
    b sin pθ_i, b cos pθ_i + a sin pθ_i). The queries and keys of LLaMA, GPT-NeoX, GPT-J, Phi.

    Pairs are features i and i + d/2 (`half`: GPT-NeoX, Hugging Face's LLaMA `rotate_half`)
    or 2i and 2i + 1 (`interleaved`: GPT-J, RoFormer, Meta's LLaMA as complex numbers).
    Features past the first d pass unchanged (partial rotary: GPT-NeoX, Phi). Position p is
    the index along `seq`; with `start`, plus an integer start per row (decoding after a
    cache); `packed`, the index within each sequence packed along `seq`. The angles are
    computed in float32 (float64 for float64 inputs), their cosines and sines then taken in
    the input's type, as Hugging Face's LLaMA does.
    """

    kind: Literal["rotary"] = "rotary"
    seq: AxisName
    """Axis of positions (the sequence): position p is the index along it."""
    feature: AxisName
    """Axis of the features turned in pairs (a head's features, `K`)."""
    base: float = Field(default=10000.0, gt=1.0, le=2.0**64)
    """θ of the frequencies base^(−2i/d) (10000 in RoFormer and LLaMA, 500000 in LLaMA 3)."""
    rotated: SizeExpr | None = None
    """How many features, from the first, are turned (d, even); all when empty. A size
    expression: `K/4` rotates a quarter (GPT-NeoX's rotary_pct 0.25), `32` the first 32."""
    pairs: Literal["half", "interleaved"] = "half"
    """half: feature i with i + d/2 (GPT-NeoX, LLaMA's rotate_half); interleaved: 2i with
    2i + 1 (GPT-J, RoFormer)."""
    start: bool = False
    """Positions count from port `start`: integers over some of the input's axes other than
    `seq` and `feature` (a start per batch row), or none (one start), e.g. the length of
    the cache before a decoding step."""
    packed: bool = False
    """`seq` holds several sequences end to end, positions restarting at 0 at each: port
    `offsets`, an integer tensor of one axis with each sequence's first position and then the
    total length (N + 1 values, as `cu_seqlens`, and as packed `short_conv` and
    `linear_attention` boxes take them)."""
    family = "elementwise"

    def ports(self):
        return ["x", *(["start"] if self.start else []), *(["offsets"] if self.packed else [])]

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        need(x, (self.seq, self.feature), "x")
        if self.seq == self.feature:
            raise ShapeProblem("positions and features are two axes", "x",
                               "seq and feature distinct", self.seq)  # fmt: skip
        if not is_float(x.dtype):
            raise ShapeProblem("rotates floating-point features", "x", "a float tensor", x.dtype)
        n = ctx.resolve(x.axis(self.feature).size)
        d = n if self.rotated is None else ctx.resolve(parse_size(self.rotated))
        what = f"{self.feature}={show(n)}" if self.rotated is None else f"rotated={show(d)}"
        if d.is_number and (not d.is_integer or int(d) % 2 or d < 2):
            raise ShapeProblem(
                "turns features in pairs: the rotated width is even", "x",
                f"an even number of {self.feature} features, 2 or more", what,
                "" if self.rotated is not None else "or rotated= an even part (partial rotary)",
            )  # fmt: skip
        if self.rotated is not None and d.is_number and n.is_number and d > n:
            raise ShapeProblem("rotates no more features than there are", "x",
                               f"rotated at most {self.feature}={show(n)}", show(d))  # fmt: skip
        if self.start and self.packed:
            raise ShapeProblem(
                "packed sequences start at position 0", "start", "start or packed, not both",
                "start=True, packed=True",
            )  # fmt: skip
        if self.start:
            s = tensor(ins, "start")
            if s.dtype not in INTEGER_DTYPES:
                raise ShapeProblem("start positions are integers", "start",
                                   "an int32 or int64 tensor", s.dtype)  # fmt: skip
            rows = [a for a in x.names if a not in (self.seq, self.feature)]
            if not set(s.names) <= set(rows):
                raise ShapeProblem(
                    "a start per row: axes among the input's other than positions and "
                    "features", "start", " ".join(rows) or "no axes", " ".join(s.names),
                )  # fmt: skip
            for a in s.names:
                ctx.unify(x.axis(a).size, s.axis(a).size, "start", f"size of {a}")
        if self.packed:
            from .fused import _check_offsets

            _check_offsets(ins)
        return {"out": x}

    def acts_on(self):
        return (self.seq, self.feature)


@box_kind
class Positions(BoxBase):
    """The positions along an axis as a tensor: `[T]` holding 0, 1, …, T − 1. Arithmetic on
    them draws what needs the index: a sinusoidal encoding (Vaswani et al. 2017), ALiBi's
    distances (positions along T minus positions along S is the `[T S]` table, as binary
    boxes broadcast by name), a relative-position table.

    With `start`, each row counts from its own start (integers over other axes: `[B T]`
    holding start[b] + t, decoding after a cache); `packed`, the index within each sequence
    packed along the axis (0 at each sequence's first token). A step or a first position
    other than 0 is a `scale` or a `binary` add after the box."""

    kind: Literal["positions"] = "positions"
    axis: AxisName
    """The axis whose positions the tensor holds (an input's axis, or one the circuit gives a
    size)."""
    dtype: Literal["float32", "float64", "int32", "int64"] = "float32"
    """Element type. float32, the circuit's float type, follows the float inputs in a compiled
    module run in another float type (float64, bfloat16), where positions past the last
    integer that type holds exactly (256 in bfloat16, 2048 in float16) are refused when the
    module runs; integer positions are exact in any module."""
    start: bool = False
    """Positions count from port `start`: integers over other axes (a start per batch row) or
    none (one start), e.g. the length of the cache before a decoding step. The result has the
    start's axes, then `axis`."""
    packed: bool = False
    """`axis` holds several sequences end to end, positions restarting at 0 at each: port
    `offsets`, an integer tensor of one axis with each sequence's first position and then the
    total length (N + 1 values, as `cu_seqlens`, and as packed `rotary` boxes take them)."""
    family = "elementwise"

    def ports(self):
        return [*(["start"] if self.start else []), *(["offsets"] if self.packed else [])]

    def infer(self, ins, ctx):
        if not ctx.known(self.axis):
            known = " ".join(ctx.known_axes()) or "none yet"
            raise ShapeProblem(
                f"positions along an axis the circuit does not know: no wire carries "
                f"{self.axis} and no size is given", "", f"an axis of the circuit: {known}",
                self.axis,
                f"give it a size (Builder(sizes={{'{self.axis}': n}}) or b.axis('{self.axis}', "
                "n)) or name an axis the inputs carry",
            )  # fmt: skip
        if self.start and self.packed:
            raise ShapeProblem(
                "packed sequences start at position 0", "start", "start or packed, not both",
                "start=True, packed=True",
            )  # fmt: skip
        rows: list = []
        if self.start:
            s = tensor(ins, "start")
            if s.dtype not in ("int32", "int64"):
                raise ShapeProblem("start positions are integers", "start",
                                   "an int32 or int64 tensor", s.dtype)  # fmt: skip
            if s.axis(self.axis) is not None:
                raise ShapeProblem(
                    f"a start per row: axes other than the positions' {self.axis}", "start",
                    f"axes without {self.axis}", str(s),
                )  # fmt: skip
            rows = list(s.axes)
        if self.packed:
            from .fused import _check_offsets

            _check_offsets(ins)
        return {"out": TensorType((*rows, *new_axes((self.axis,), ctx)), self.dtype)}

    def acts_on(self):
        return (self.axis,)


# ---------------------------------------------------------------- integer arithmetic
# Integer-only inference (I-ViT, HAWQ-V3): the functions of `unary` that keep an integer an
# integer, the checks that keep types honest, and the kinds that hold integer state.
INTEGER_UNARY = ("relu", "neg", "abs", "square", "identity", "sign", "relu6", "round", "floor")
INTEGER_DTYPES = ("int8", "int32", "int64")


def is_float(dtype: str) -> bool:
    return "float" in dtype


def _integer_operands(fn: str, a: TensorType, b: TensorType) -> None:
    """Bit shifts take integers; a true division of two integers is not an integer."""
    if fn in ("shift_left", "shift_right"):
        for port, t in (("a", a), ("b", b)):
            if t.dtype not in INTEGER_DTYPES:
                raise ShapeProblem(
                    f"{fn} shifts integers by integers", port, "an integer tensor", t.dtype
                )
    if fn == "div" and not is_float(a.dtype) and not is_float(b.dtype):
        raise ShapeProblem(
            "a true division of integers is not an integer (floordiv divides integers)",
            "a", "a float operand", f"{a.dtype} / {b.dtype}",
        )  # fmt: skip


def _integer_bound(x: TensorType, value, port: str, what: str) -> None:
    v = parse_size(value)
    if x.dtype in INTEGER_DTYPES and v.is_number and not v.is_integer:
        raise ShapeProblem(f"{what} of an integer tensor is an integer", port, "an integer",
                           str(value))  # fmt: skip


@box_kind
class Clamp(BoxBase):
    """Clips every element to `[low, high]` (either bound may be left open)."""

    kind: Literal["clamp"] = "clamp"
    low: SizeExpr | None = None
    """Lower bound (a number or size expression such as `-2**7`), or none."""
    high: SizeExpr | None = None
    """Upper bound, or none."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if self.low is None and self.high is None:
            raise ShapeProblem("a clamp needs a bound", "x", "low or high", "neither")
        for v, what in ((self.low, "the lower bound"), (self.high, "the upper bound")):
            if v is not None:
                _integer_bound(x, v, "x", what)
        return {"out": x}


@box_kind
class Constant(BoxBase):
    """A fixed tensor with named axes (not trained): an integer constant, or one that
    calibration sets (`x₀ = ⌊−1/S⌋`, an integer bias). It is a buffer loaded with the weights
    (`<box>.value`), first filled with `value`."""

    kind: Literal["constant"] = "constant"
    axes: AxisList = ()
    """Axes of the tensor (none: a scalar, broadcast wherever it is used)."""
    dtype: Dtype = "int32"
    """Element type."""
    value: SizeExpr = "0"
    """The value every element starts with (a number or size expression such as `2**30`)."""
    family = "elementwise"

    def ports(self):
        return []

    def infer(self, ins, ctx):
        t = TensorType(tuple(new_axes(self.axes, ctx)), self.dtype)
        _integer_bound(t, self.value, "value", "the value")
        return {"out": t}

    def acts_on(self):
        return self.axes


@box_kind
class Requantize(BoxBase):
    """Dyadic requantisation (HAWQ-V3): y = clamp(⌊(x·b + 2^(c−1)) / 2^c⌋) to the range of
    `dtype`, computed in int64: an integer multiply by b and an arithmetic shift right by c,
    rounding half up. b/2^c stands for the real ratio of scales S_in/S_out; b and c are buffers
    (`<box>.multiplier`, `<box>.shift`, int32) over `axes` (per channel), first 1 and 0."""

    kind: Literal["requantize"] = "requantize"
    axes: AxisList = ()
    """Axes the multiplier and shift vary over (none: one for the whole tensor)."""
    dtype: Literal["int8", "int32"] = "int8"
    """Element type of the result, whose range the result is clamped to."""
    family = "elementwise"

    def infer(self, ins, ctx):
        x = tensor(ins, "x")
        if x.dtype not in INTEGER_DTYPES:
            raise ShapeProblem(
                "requantisation takes integers (quantise a float tensor first)", "x",
                "an int8, int32 or int64 tensor", x.dtype,
            )  # fmt: skip
        need(x, self.axes, "x", "of the multipliers")
        return {"out": x.with_axes(x.axes, self.dtype)}

    def acts_on(self):
        return self.axes


@box_kind
class IntLinear(BoxBase):
    """An integer linear map (`L₊` on int8): int8 inputs times an int8 weight over axes `over`,
    products accumulated in int32, plus an int32 bias; the weight (`[*out, *over]`) and bias
    are buffers loaded with the weights (quantised, not trained)."""

    kind: Literal["int_linear"] = "int_linear"
    over: AxisList
    """Input axes the map consumes."""
    out: AxisList
    """Output axes the map produces, put where the first consumed axis stood."""
    bias: bool = True
    """Whether an int32 bias over `out` is added."""
    family = "learned"
    learned = True  # a learned map, quantised: drawn bold (its buffers are not trained)

    def infer(self, ins, ctx):
        from .base import clash, replace_axes

        x = tensor(ins, "x")
        if x.dtype != "int8":
            raise ShapeProblem("an integer linear map takes int8 inputs", "x", "int8", x.dtype)
        need(x, self.over, "x", "consumed by the map")
        y = replace_axes(x, self.over, new_axes(self.out, ctx), "int32")
        clash(list(y.axes), "x")
        return {"out": y}

    def acts_on(self):
        return self.over + self.out
