"""One small circuit per box kind (several for kinds with options), for the lowering tests.

Each entry builds a circuit with the Builder; sizes are small and odd so that a mixed-up axis
shows as a shape error or a wrong number.
"""

from __future__ import annotations

import torch

from ncd.circuits.builder import Builder

SIZES = {"B": 2, "T": 5, "S": 5, "D": 6, "E": 12, "H": 2, "K": 3, "V": 4, "C": 4, "O": 6, "Y": 7,
         "X": 6, "W": 9, "F": 5, "N": 2}  # fmt: skip


def _b(name, **axes):
    return Builder(name, sizes=dict(SIZES), axes=axes)


def linear():
    b = _b("linear")
    x = b.input("x", "B T D")
    b.output("y", b.linear(x, "D", "H K", name="proj"))
    return b.build()


def linear_inner():  # consumes an axis in the middle, no bias
    b = _b("linear_inner")
    x = b.input("x", "B D T")
    b.output("y", b.linear(x, "D", "F", bias=False, name="proj"))
    return b.build()


def param():
    b = _b("param")
    x = b.input("x", "B T D")
    p = b.param("T D", name="pos")
    b.output("y", b.add(x, p))
    return b.build()


def embedding():
    b = _b("embedding")
    x = b.input("tokens", "B T", dtype="int64")
    b.output("y", b.embedding(x, "W", "D", name="embed"))
    return b.build()


def embedding_multi():
    b = _b("embedding_multi")
    x = b.input("tokens", "B T", dtype="int64")
    b.output("y", b.embedding(x, "W", "H K", name="embed"))
    return b.build()


def contract():
    b = _b("contract")
    q, k = b.input("q", "B T K"), b.input("k", "B S K")
    b.output("y", b.contract(q, k, over="K", out="S B T"))
    return b.build()


def diagonal():
    b = _b("diagonal")
    x = b.input("x", "B T S")
    b.output("y", b.diagonal(x, "T S", "N"))
    return b.build()


def unary():
    b = _b("unary")
    x = b.input("x", "B T D")
    outs = [b.unary(x, fn, name=f"f_{fn}") for fn in
            ("gelu", "gelu_tanh", "silu", "tanh", "softplus", "elu", "elu_plus_one",
             "logsigmoid", "relu6", "hardswish", "sign", "square", "identity", "neg")]  # fmt: skip
    for i, o in enumerate(outs):
        b.output(f"y{i}", o)
    return b.build()


def positive_unary():
    b = _b("positive_unary")
    x = b.input("x", "B T D")
    a = b.unary(b.unary(x, "exp"), "sqrt")
    a = b.unary(b.unary(a, "rsqrt"), "log")
    b.output("y", b.unary(b.unary(a, "abs"), "reciprocal"))
    return b.build()


def binary():
    b = _b("binary")
    x, z = b.input("x", "B T D"), b.input("z", "D T")
    outs = [b.binary(x, z, fn, name=f"f_{fn}") for fn in ("add", "sub", "mul", "maximum")]
    outs.append(b.binary(z, x, "minimum"))  # the other order broadcasts the other way
    for i, o in enumerate(outs):
        b.output(f"y{i}", o)
    return b.build()


def scale_cast():
    b = _b("scale_cast")
    x = b.input("x", "B T D")
    y = b.scale(x, "D**-0.5")
    b.output("y", b.cast(y, "float64"))
    return b.build()


def dropout():
    b = _b("dropout")
    x = b.input("x", "B T D")
    b.output("y", b.dropout(x, 0.5))
    return b.build()


def mask():
    b = _b("mask")
    x = b.input("x", "B S T")  # key axis before the query axis
    y = b.mask(x, "T", "S", name="causal")
    b.output("y", b.mask(y, "T", "S", pattern="window", window=2, fill="0", name="window"))
    return b.build()


def softmax():
    b = _b("softmax")
    x = b.input("x", "B T D")
    b.output("y0", b.softmax(x, "T"))
    b.output("y1", b.softmax(x, "D", variant="log_softmax"))
    b.output("y2", b.softmax(x, "B", variant="softmin"))
    return b.build()


def norms():
    b = _b("norms")
    x = b.input("x", "B D T")  # normalised axes not last: the lowering permutes
    b.output("y0", b.layernorm(x, "D", name="ln"))
    b.output("y1", b.rmsnorm(x, "D T", name="rms"))
    b.output("y2", b.layernorm(x, "T", affine=False, name="ln_plain"))
    return b.build()


def channel_norms():
    b = _b("channel_norms")
    x = b.input("x", "B Y C X")
    b.output("y0", b.batchnorm(x, "C", name="bn"))
    b.output("y1", b.unifiednorm(x, "C", name="un"))
    b.output("y2", b.groupnorm(x, "C", 2, "Y X", name="gn"))
    return b.build()


def normalize():
    b = _b("normalize")
    x = b.input("x", "B T D")
    b.output("y0", b.normalize(x, "T"))
    b.output("y1", b.normalize(x, "D", p=1))
    return b.build()


def reduce():
    b = _b("reduce")
    x = b.input("x", "B T D")
    for i, op in enumerate(("sum", "mean", "max", "min", "prod", "logsumexp")):
        b.output(f"y{i}", b.reduce(x, "B D" if op != "max" else "T", op, name=f"r_{op}"))
    return b.build()


def scan():
    b = _b("scan")
    x = b.input("x", "B T D")
    b.output("y0", b.scan(x, "T"))
    b.output("y1", b.scan(x, "D", "prod", reverse=True))
    b.output("y2", b.scan(x, "T", "max"))
    return b.build()


def topk():
    b = _b("topk")
    x = b.input("x", "B T D")
    r = b.topk(x, "T", 3, into="N")
    b.output("values", r["values"])
    b.output("indices", r["indices"])
    return b.build()


def rearrange():
    b = _b("rearrange", D="H*K", G="T*H")
    x = b.input("x", "B T D")
    y = b.split_axis(x, "D", "H K")  # B T H K
    y = b.permute(y, "K B H T")
    y = b.merge_axes(y, "T H", "G")  # merged from axes not next to each other
    b.output("y", y)
    return b.build()


def copy_rename_pack():
    b = _b("copy_rename_pack")
    x = b.input("x", "B T D")
    c = b.copy(x, 2)
    r = b.rename(c[0], T="S")
    t = b.pack(a=r, b=c[1])
    u = b.unpack(t)
    b.output("y", b.contract(u["a"], u["b"], over="D"))
    return b.build()


def concat_split():
    b = _b("concat_split")
    x, z = b.input("x", "B T D"), b.input("z", "B T D")
    y = b.concat(x, z, axis="D")
    parts = b.split(y, "D", ["D-2", "D+2"], names=("p", "q"))
    b.output("p", parts["p"])
    b.output("q", parts["q"])
    return b.build()


def concat_one():
    """An operand without the joined axis is one position (a class token before patches);
    one without another axis repeats along it (a class token shared by the batch, a table
    shared by the heads), its other axes in any order; one of another size joins along its
    own axis (`along`)."""
    b = _b("concat_one")
    x, c = b.input("x", "T B D"), b.input("c", "B D")
    b.output("y", b.concat(c, x, c, axis="T"))
    shared, first = b.input("s", "D"), b.input("f", "D T")
    b.output("z", b.concat(shared, x, first, axis="T"))
    # pieces of other sizes, each joining along its own axis (E, S), laid out otherwise
    e, s = b.input("e", "B E D"), b.input("pre", "D S")
    b.output("w", b.concat(e, x, s, axis="T", along={0: "E", 2: "S"}))
    return b.build()


def index_slice():
    b = _b("index_slice")
    x = b.input("x", "B T D")
    b.output("y0", b.index(x, "T", -2))
    b.output("y1", b.slice(x, "D", 1, "D-1", 2))
    b.output("y2", b.slice(x, "T", 2))
    return b.build()


def conv():
    b = _b("conv")
    x = b.input("x", "B Y X C")  # channels last: the lowering permutes
    y = b.conv(x, "Y X", "C", "O", 3, stride=2, padding=1, name="conv")
    b.output("y", y)
    return b.build()


def conv_more():
    b = _b("conv_more")
    x = b.input("x", "B C T")
    y = b.conv(x, "T", "C", "O", 3, dilation=2, groups=2, bias=False, name="grouped")
    y = b.conv(y, "T", "O", "C", 2, stride=2, transposed=True, output_padding=1, name="up")
    b.output("y", y)
    return b.build()


def pool_upsample():
    b = _b("pool_upsample")
    x = b.input("x", "B C Y X")
    b.output("y0", b.pool(x, "Y X", 2, "max"))
    b.output("y1", b.pool(x, "Y", 3, "avg", stride=2, padding=1))
    b.output("y2", b.upsample(x, "Y X", 2))
    b.output("y3", b.upsample(x, "X", 3, mode="linear"))
    return b.build()


def attention():
    b = _b("attention")
    q, k, v = b.input("q", "T H B K"), b.input("k", "S H B K"), b.input("v", "H S B V")
    b.output("y", b.attention(q, k, v, query="T", key="S", head="K", value="V", causal=True))
    return b.build()


def attention_nobatch():
    b = _b("attention_nobatch")
    q, k, v = b.input("q", "T K"), b.input("k", "S K"), b.input("v", "S V")
    b.output("y", b.attention(q, k, v, scale="0.3"))
    return b.build()


def linear_attention():
    b = _b("linear_attention")
    q, k, v = b.input("q", "B T H K"), b.input("k", "B T H K"), b.input("v", "B T H V")
    q, k = b.unary(q, "elu_plus_one"), b.unary(k, "elu_plus_one")
    kw = {"query": "T", "key": "T", "head": "K", "value": "V"}
    b.output("plain", b.linear_attention(q, k, v, name="plain", **kw))
    b.output("normed", b.linear_attention(q, k, v, normalize=True, scale="0.5", name="n", **kw))
    b.output("light", b.linear_attention(q, k, v, variant="lightning", name="light", **kw))
    g = b.unary(b.input("g", "B T H K"), "logsigmoid")
    b.output("gla", b.linear_attention(q, k, v, variant="gla", g=g, name="gla", **kw))
    beta = b.unary(b.input("beta", "B T H"), "sigmoid")
    b.output("delta", b.linear_attention(q, k, v, variant="delta", beta=beta, name="dl", **kw))
    gd = b.unary(b.input("gd", "B T H"), "logsigmoid")
    b.output("decay", b.linear_attention(q, k, v, variant="decay", g=gd, name="dec", **kw))
    gh = b.unary(b.param("H", name="head_decay"), "logsigmoid")  # one log-decay per head
    b.output("decay_h", b.linear_attention(q, k, v, variant="decay", g=gh, name="dech", **kw))
    b.output("gdelta", b.linear_attention(q, k, v, variant="gated_delta", g=gd, beta=beta,
                                          name="gdl", **kw))  # fmt: skip
    b.output("both", b.linear_attention(q, k, v, causal=False, normalize=True, name="nc", **kw))
    b.output("light_l", b.linear_attention(q, k, v, variant="lightning", decay_scale="1/3",
                                           name="light_l", **kw))  # fmt: skip
    return b.build()


def call():
    inner = Builder("inner", sizes=dict(SIZES))
    x = inner.input("x", "B T D")
    inner.output("x", inner.add(x, inner.linear(inner.unary(x, "tanh"), "D", "D", name="lin")))
    inner = inner.build()
    b = _b("call")
    x = b.input("x", "B T D")
    y = b.call(inner, x=x, repeat="N", name="blocks")
    b.output("y", b.call(inner, x=y, name="once"))
    return b.build()


def opaque():
    b = _b("opaque")
    x = b.input("x", "B T D")
    outs = {"out": ["B", "T", "D"]}
    y = b.box("opaque", {"x": x}, "mystery", target="torch.cumsum", outputs=outs)
    b.output("y", b.relu(y))
    return b.build()


OPAQUE = {"mystery": lambda x: torch.cumsum(x, 1)}

TABLE = {f.__name__: f for f in (
    linear, linear_inner, param, embedding, embedding_multi, contract, diagonal, unary,
    positive_unary, binary, scale_cast, dropout, mask, softmax, norms, channel_norms, normalize,
    reduce, scan, topk, rearrange, copy_rename_pack, concat_split, concat_one, index_slice, conv,
    conv_more, pool_upsample, attention, attention_nobatch, linear_attention, call, opaque,
)}  # fmt: skip


def kinds_of(circuit) -> set[str]:
    out = {b.kind for b in circuit.boxes}
    for s in circuit.subcircuits.values():
        out |= kinds_of(s)
    return out


def comparisons():
    """The comparison functions of `binary` (1 where they hold, 0 elsewhere), broadcast, as
    masks of x (the comparisons pass no gradient; the masked x does)."""
    b = _b("comparisons")
    x, z = b.input("x", "B T D"), b.input("z", "D T")
    xs = b.copy(x, 7)
    for i, fn in enumerate(("ge", "gt", "le", "lt", "eq")):
        m = b.binary(xs[i], z, fn, name=f"f_{fn}")
        b.output(f"y_{fn}", b.mul(xs[5], m, name=f"masked_{fn}") if i == 0 else m)
    b.output("y_self", b.mul(xs[6], b.binary(x, x, "eq", name="f_eq_self"), name="masked_self"))
    return b.build()


TABLE["comparisons"] = comparisons


def linear_backward_and_product():
    """`linear`'s options: a WTA-CRS backward (budget 1: every row kept, so the gradients
    equal the interpreter's) on an inner axis into two axes, and L-Mul products (3 and 4 bits)
    from two axes, with and without bias."""
    b = _b("linear_backward_and_product")
    x = b.input("x", "B D T")
    h = b.linear(x, "D", "H K", name="sampled", backward="wtacrs", budget=1.0)
    b.output("y_lmul3", b.linear(h, "H K", "F", name="lmul3", product="lmul3"))
    b.output("y_lmul4", b.linear(x, "D", "D", bias=False, name="lmul4", product="lmul4"))
    return b.build()


TABLE["linear_backward_and_product"] = linear_backward_and_product


def integer():
    """Integer arithmetic with honest types: a float cast to int32 (truncating) and to int8,
    an int8 linear map into int32, rounding floor division, bit shifts by a constant and by a
    tensor, a dyadic requantisation per channel, clamps, an integer scale, and a float's bits
    read as int32."""
    b = _b("integer")
    x = b.input("x", "B T D")
    i = b.cast(b.scale(x, 20), "int32", name="to_int")
    q = b.box("requantize", {"x": i}, "to_int8", dtype="int8")
    y = b.box("int_linear", {"x": q}, "imap", over="D", out="F")
    three = b.box("constant", {}, "three", value=3)
    d = b.binary(y, three, "floordiv", name="div3")
    s = b.binary(b.binary(d, three, "shift_left", name="shl"), b.box("constant", {}, "by",
                 axes="F", value=1), "shift_right", name="shr")  # fmt: skip
    r = b.box("requantize", {"x": s}, "per_f", axes="F", dtype="int32")
    b.output("y", b.box("clamp", {"x": r}, "clip", low=-100, high="2**6"))
    b.output("w", b.scale(d, 3, name="times3"))  # an integer times an integer stays integer
    f = b.unary(b.unary(b.scale(x, 2.5), "round", name="rnd"), "floor", name="flr")
    f = b.cast(f, "float32", name="single")  # the tests run in float64
    b.output("z", b.box("cast", {"x": f}, "bits", dtype="int32", bits=True))
    return b.build()


TABLE["integer"] = integer


def add_norm():
    """The residual add + norm box: LayerNorm over the last axis, RMSNorm over two inner axes
    without weight, the sum read on (as the residual stream is)."""
    b = _b("add_norm")
    x, h = b.input("x", "B T D"), b.input("h", "B T D")
    r = b.box("add_norm", {"x": x, "h": h}, "an1", over=["D"])
    b.output("y1", r["out"])
    u, v = b.input("u", "H B T K"), b.input("w", "H B T K")
    r2 = b.box("add_norm", {"x": u, "h": v}, "an2", norm="rmsnorm", over=["T", "K"],
               affine=False, eps=1e-3)  # fmt: skip
    b.output("y2", r2["out"])
    b.output("s", b.add(r["sum"], r["sum"], name="stream"))
    b.output("s2", r2["sum"])
    return b.build()


TABLE["add_norm"] = add_norm


def short_conv():
    """The causal short convolution: over T with the channels last, no bias; over an inner
    axis with a bias and SiLU, the channels first, a width longer than the sequence."""
    b = _b("short_conv")
    x = b.input("x", "B T E")
    b.output("y", b.box("short_conv", {"x": x}, "sc1", axis="T", channel="E", kernel=4))
    u = b.input("u", "C B T K")
    b.output("z", b.box("short_conv", {"x": u}, "sc2", axis="T", channel="C", kernel=7,
                        bias=True, activation="silu"))  # fmt: skip
    return b.build()


TABLE["short_conv"] = short_conv


def short_conv_packed():
    """Sequences packed along T (offsets, N + 1 = 4 values): the channels first."""
    b = _b("short_conv_packed")
    x = b.input("x", "E T")
    off = b.input("offsets", "C", dtype="int64")  # C = 4: three sequences
    b.output("y", b.box("short_conv", {"x": x, "offsets": off}, "sc", axis="T", channel="E",
                        kernel=3, bias=True, activation="silu", packed=True))  # fmt: skip
    return b.build()


TABLE["short_conv_packed"] = short_conv_packed


def routing():
    """Routing by positions (integer inputs below 5, the smallest indexed axis is 5 or more):
    gathers along an inner axis with positions that lack one of x's axes (int32), with no
    axis of positions (one entry per row), with positions whose axes run in another order;
    scatter-adds over one axis (positions reordered, broadcast along D) and over two (int32,
    flattened); one-hot encodings (float64, and bool for a `where`); the six comparisons;
    `where` with two operands and with a -inf fill."""
    b = _b("routing")
    x, s, w = b.input("x", "B T D"), b.input("s", "B T S"), b.input("w", "B T W")
    i_bf = b.input("i_bf", "B F", dtype="int32")
    i_t = b.input("i_t", "T", dtype="int64")
    i_ktb = b.input("i_ktb", "K T B", dtype="int64")
    b.output("g_inner", b.box("gather", {"x": x, "index": i_bf}, "g_inner", axis="D",
                              into="F"))  # fmt: skip
    b.output("g_row", b.box("gather", {"x": s, "index": i_t}, "g_row", axis="S"))
    b.output("g_order", b.box("gather", {"x": w, "index": i_ktb}, "g_order", axis="W",
                              into="K"))  # fmt: skip
    src = b.input("src", "B T K D")
    b.output("s_one", b.box("scatter", {"src": src, "index": i_ktb}, "s_one", axis="S",
                            over="K"))  # fmt: skip
    src2, i_two = b.input("src2", "B T K"), b.input("i_two", "B T K", dtype="int32")
    b.output("s_two", b.box("scatter", {"src": src2, "index": i_two}, "s_two", axis="W",
                            over="T K"))  # fmt: skip
    hot = b.box("one_hot", {"x": i_bf}, "hot", into="S", dtype="float64")  # B F S
    b.output("mixed", b.contract(hot, s, over="S", name="pick"))  # B F T
    z = b.input("z", "D T")
    for fn in ("eq", "ne", "lt", "le", "gt", "ge"):
        b.output(f"c_{fn}", b.box("compare", {"a": x, "b": z}, f"c_{fn}", fn=fn))
    gt = b.box("compare", {"a": x, "b": z}, "c_sel", fn="gt")
    b.output("w_two", b.box("where", {"cond": gt, "a": z, "b": x}, "w_two"))
    mask = b.box("one_hot", {"x": i_t}, "mask", into="S", dtype="bool")  # T S
    b.output("w_fill", b.box("where", {"cond": mask, "a": s}, "w_fill", fill="-inf"))
    return b.build()


TABLE["routing"] = routing


def attention_grouped():
    """Grouped key/value heads (GQA): 4 query heads over 2 key/value heads, the head axes
    first of the batch axes (k and v keep the query's order of batch axes); causal multi-query
    attention (one key/value head) without a batch axis."""
    b = _b("attention_grouped", Q=4, G=2, U=1)
    q, k, v = b.input("q", "Q B T K"), b.input("k", "G B S K"), b.input("v", "G B S V")
    b.output("y", b.attention(q, k, v, heads="Q", kv_heads="G", name="gqa"))
    q1, k1, v1 = b.input("q1", "T Q K"), b.input("k1", "S U K"), b.input("v1", "U S V")
    b.output("y1", b.attention(q1, k1, v1, heads="Q", kv_heads="U", causal=True, name="mqa"))
    return b.build()


TABLE["attention_grouped"] = attention_grouped


def attention_masked():
    """The mask port: a key padding keep-mask (S B, in its own axis order) with causal; a float
    bias per head (H T S, ALiBi's shape) over q's batch axes in another order; a keep-mask
    T S with grouped heads (4 query heads over 2 key/value heads)."""
    b = _b("attention_masked", Q=4, G=2)
    q, k, v = b.input("q", "T H B K"), b.input("k", "S H B K"), b.input("v", "H S B V")
    keep = b.input("keep", "S B", dtype="bool")
    b.output("pad", b.attention(q, k, v, mask=keep, causal=True, name="pad"))
    bias = b.input("bias", "H T S")
    b.output("bias", b.attention(q, k, v, mask=bias, scale="0.7", name="biased"))
    qg, kg, vg = b.input("qg", "B Q T K"), b.input("kg", "B G S K"), b.input("vg", "B G S V")
    pattern = b.input("pattern", "T S", dtype="bool")
    b.output("gqa", b.attention(qg, kg, vg, mask=pattern, heads="Q", kv_heads="G", name="gqa"))
    return b.build()


TABLE["attention_masked"] = attention_masked


def rotary():
    """Rotary position embedding: half pairs over the trailing axes (T, then the features);
    interleaved pairs of the first 4 of 6 features laid out first, the positions in the
    middle, base 500000, a start per B row (int32, the axes H B reordered from x's); the
    positions of sequences packed along T (offsets, C = 4: three sequences) over an axis of
    12 features, 6 of them turned, with the heads after the features."""
    b = _b("rotary")
    x = b.input("x", "B H T D")
    b.output("y_half", b.rotary(x, "T", "D", name="rope"))
    u = b.input("u", "D B T H")
    start = b.input("start", "H B", dtype="int32")
    b.output("y_start", b.rotary(u, "T", "D", base=500000, rotated=4, pairs="interleaved",
                                 start=start, name="rope_start"))  # fmt: skip
    w = b.input("w", "T E H")
    off = b.input("offsets", "C", dtype="int64")
    b.output("y_packed", b.rotary(w, "T", "E", rotated="E/2", offsets=off, name="rope_packed"))
    return b.build()


TABLE["rotary"] = rotary


def linear_attention_grouped():
    """Grouped heads in linear attention: q and k of 2 groups read by 4 value heads (Mamba-2's
    C and B with ngroups = 2; a log-decay per head and token), and q and k of no head axis
    shared by every head (ngroups = 1; the delta rule), the batch axes in other orders."""
    b = _b("linear_attention_grouped", Q=4, G=2)
    q, k = b.input("q", "B T G K"), b.input("k", "B T G K")
    v, g = b.input("v", "B T Q V"), b.unary(b.input("g", "B T Q"), "logsigmoid")
    b.output("ssd", b.linear_attention(q, k, v, key="T", variant="decay", g=g, heads="Q",
                                       qk_heads="G", name="ssd"))  # fmt: skip
    q1, k1 = b.input("q1", "T K B"), b.normalize(b.input("k1", "B T K"), "K")
    v1, beta = b.input("v1", "Q B T V"), b.unary(b.input("beta", "Q B T"), "sigmoid")
    b.output("delta", b.linear_attention(q1, k1, v1, key="T", variant="delta", beta=beta,
                                         heads="Q", name="shared"))  # fmt: skip
    return b.build()


TABLE["linear_attention_grouped"] = linear_attention_grouped


def long_conv():
    """Causal convolutions by FFT: a filter of L = 3 taps per channel D over x [B T D]
    (shorter than T = 5); a filter of T taps per head (taps along T itself, axes [T H]) over
    x laid out [K B T H], broadcast over K; a filter per batch row [B L] over x [T B D],
    broadcast over D."""
    b = _b("long_conv", L=3)
    x, h = b.input("x", "B T D"), b.input("h", "L D")
    b.output("y", b.long_conv(x, h, seq="T", name="conv"))
    u, g = b.input("u", "K B T H"), b.input("g", "T H")
    b.output("y_heads", b.long_conv(u, g, seq="T", name="conv_heads"))
    w, f = b.input("w", "T B D"), b.input("f", "B L")
    b.output("y_rows", b.long_conv(w, f, seq="T", name="conv_rows"))
    return b.build()


TABLE["long_conv"] = long_conv


def positions():
    """Positions along T added to x [B T D] (float32: the module's float type, float64 here);
    positions along T minus those along S (the [T S] table of t − s, broadcast by name);
    int64 positions from a start per (H, B) row (int32, given in that order); int32
    positions of sequences packed along T (offsets, C = 4: three sequences)."""
    b = _b("positions")
    x = b.input("x", "B T D")
    b.output("y_add", b.add(x, b.positions("T", name="pos")))
    b.output("y_dist", b.sub(b.positions("T", name="pos_t"), b.positions("S", name="pos_s")))
    start = b.input("start", "H B", dtype="int32")
    b.output("y_start", b.positions("T", dtype="int64", start=start, name="pos_start"))
    off = b.input("offsets", "C", dtype="int64")
    b.output("y_packed", b.positions("T", dtype="int32", offsets=off, name="pos_packed"))
    return b.build()


TABLE["positions"] = positions
