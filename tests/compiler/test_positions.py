"""The `positions` box (an axis's indices as a tensor) against references written here from
the papers' equations: the sinusoidal encoding of "Attention Is All You Need" (Vaswani et al.
2017, section 3.5: PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(t / 10000^(2i/D)))
drawn from positions and elementwise boxes; ALiBi (Press et al. 2022: causal attention
whose score of query t and key s gets −m_h (t − s), slopes m_h = 2^(−8h/H)) drawn with
positions along T and S, against a hand-written PyTorch ALiBi attention (outputs and
gradients, float64); decoding from a start and packed sequences against rows of the full
table; the standalone file; shape and run-time errors; drawing, help and cost."""

from __future__ import annotations

import math
import sys

import pytest
import torch

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, to_source
from ncd.compiler.names import class_name
from tests.cost import measure

from .helpers import load_source


# -- references, from the papers' equations
def sinusoidal_table(positions, d_model):
    """PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(t / 10000^(2i/D)), element by
    element in float64, for each position t of `positions`."""
    pe = torch.zeros(len(positions), d_model, dtype=torch.float64)
    for row, t in enumerate(positions):
        for i in range(d_model // 2):
            angle = t / 10000 ** (2 * i / d_model)
            pe[row, 2 * i] = math.sin(angle)
            pe[row, 2 * i + 1] = math.cos(angle)
    return pe


def alibi_attention(q, k, v):
    """Causal softmax attention with ALiBi's bias (Press et al. 2022, section 3): the score
    of query t and key s is q_t·k_s / sqrt(K) − m_h (t − s) for s ≤ t, m_h = 2^(−8h/H) for
    heads h = 1 … H. q [B, H, T, K], k [B, H, S, K], v [B, H, S, V]."""
    _, H, T, K = q.shape
    S = k.shape[2]
    m = torch.tensor([2.0 ** (-8.0 * h / H) for h in range(1, H + 1)], dtype=q.dtype)
    t = torch.arange(T, dtype=q.dtype)[:, None]
    s = torch.arange(S, dtype=q.dtype)[None, :]
    scores = q @ k.transpose(-1, -2) / math.sqrt(K) - m[:, None, None] * (t - s)
    scores = scores.masked_fill(s > t, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# -- the circuits, drawn with positions
def sinusoidal(sizes, start=False, packed=False):
    """x + PE for x [B T D], and PE itself: the angle t·10000^(−2i/D) of each position t
    and pair i (I = D/2 pairs), its sine on the pair's first feature and its cosine on the
    second (P = 2: member p selects sin + p (cos − sin)), the pairs merged into D = I·P."""
    b = Builder("sinusoidal", sizes=sizes)
    x = b.input("x", "B T D")
    ins = {}
    if start:
        ins["start"] = b.input("start", "B", dtype="int64")
    if packed:
        ins["offsets"] = b.input("offsets", "N", dtype="int64")
    t = b.positions("T", name="t", **ins)
    two_i = b.scale(b.positions("I", name="i"), 2, name="two_i")
    base = b.box("constant", {}, "base", value=10000, dtype="float32")
    freq = b.binary(base, b.scale(two_i, "-1/D"), "pow", name="freq")  # 10000^(−2i/D)
    angle = b.mul(t, freq, name="angle")
    sin, cos = b.unary(angle, "sin", name="sin"), b.unary(angle, "cos", name="cos")
    p = b.positions("P", name="p")  # 0 on a pair's first feature, 1 on its second
    pe = b.merge_axes(b.add(sin, b.mul(p, b.sub(cos, sin))), "I P", "D", name="pe")
    b.output("y", b.add(x, pe, name="embed"))
    b.output("pe", pe)
    return b.build()


def alibi(sizes):
    """Causal attention, scores q·k/sqrt(K) minus m_h (t − s): positions along T minus
    positions along S (a [T S] table), times the slopes 2^(−8h/H) for h = 1 … H (positions
    along H plus one), the causal mask, softmax over S, the values summed."""
    b = Builder("alibi", sizes=sizes)
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    scores = b.scale(b.contract(q, k, over="K", name="qk"), "K**-0.5", name="scaled")
    dist = b.sub(b.positions("T", name="t"), b.positions("S", name="s"), name="dist")
    two = b.box("constant", {}, "two", value=2, dtype="float32")
    one = b.box("constant", {}, "one", value=1, dtype="float32")
    h = b.add(b.positions("H", name="h0"), one, name="h")  # 1 … H
    slopes = b.binary(two, b.scale(h, "-8/H"), "pow", name="slopes")
    bias = b.scale(b.mul(slopes, dist), -1, name="bias")  # −m_h (t − s)
    masked = b.mask(b.add(scores, bias, name="biased"), "T", "S")
    o = b.contract(b.softmax(masked, over="S"), v, over="S", name="out")
    b.output("y", o)
    return b.build()


SIN_SIZES = {"B": 2, "T": 7, "I": 4, "P": 2}
D = 8


def _x(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()


def _run(c, xs, dtype=torch.float64):
    """The compiled module's outputs and the interpreter's, on the module's own buffers."""
    model = ncd_compile(c, dtype=dtype)
    params = {k: v.detach() for k, v in model.state_dict().items()}
    return model(*xs), interpret(c, xs, params), model


def test_sinusoidal_encoding_is_the_papers():
    c = sinusoidal(SIN_SIZES)
    x = _x(2, 7, D)
    want = sinusoidal_table(range(7), D)
    got, interpreted, _ = _run(c, [x])
    for out in (got, interpreted):
        torch.testing.assert_close(out["pe"], want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["y"], x + want, rtol=1e-12, atol=1e-12)
    # float32 positions are the module's float type: float32 here, to float32's precision
    got32 = ncd_compile(c)(x.detach().float())
    assert got32["pe"].dtype == torch.float32
    torch.testing.assert_close(got32["pe"].double(), want, rtol=1e-5, atol=1e-5)


def test_decoding_from_a_start_gives_the_full_tables_rows():
    """One step of 3 tokens at position p of each row (the cache's length) is rows p … p+2
    of the full table; packed sequences restart at row 0."""
    full = sinusoidal_table(range(40), D)
    c = sinusoidal({**SIN_SIZES, "T": 3}, start=True)
    x, start = _x(2, 3, D), torch.tensor([5, 37])
    want = torch.stack([full[5:8], full[37:40]])
    got, interpreted, _ = _run(c, [x, start])
    for out in (got, interpreted):
        assert out["pe"].shape == (2, 3, D)
        torch.testing.assert_close(out["pe"], want, rtol=1e-12, atol=1e-12)
    c = sinusoidal({**SIN_SIZES, "N": 4}, packed=True)
    x, offsets = _x(2, 7, D), torch.tensor([0, 3, 3, 7])  # sequences of 3, 0 and 4 tokens
    want = full[[0, 1, 2, 0, 1, 2, 3]]
    got, interpreted, model = _run(c, [x, offsets])
    for out in (got, interpreted):
        torch.testing.assert_close(out["pe"], want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"positions: offsets: expected non-decreasing from 0 to "
                                         r"T=7, found \[0, 5, 3, 7\]"):  # fmt: skip
        model(x, torch.tensor([0, 5, 3, 7]))


def test_alibi_is_press_et_als_with_gradients():
    sizes = {"B": 2, "H": 4, "T": 7, "S": 7, "K": 5, "V": 3}
    c = alibi(sizes)
    q, k, v = _x(2, 4, 7, 5, seed=1), _x(2, 4, 7, 5, seed=2), _x(2, 4, 7, 3, seed=3)
    want = alibi_attention(q, k, v)
    got, interpreted, _ = _run(c, [q, k, v])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(interpreted, want, rtol=1e-12, atol=1e-12)
    w = torch.randn(want.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    g_got = torch.autograd.grad((got * w).sum(), (q, k, v))
    g_want = torch.autograd.grad((want * w).sum(), (q, k, v))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_distances_by_axis_name_and_integer_positions():
    """Positions along T minus positions along S broadcast by name to t − s laid out [T S]
    (and [S T] the other way round); int64 positions stay int64 in a float64 module."""
    b = Builder("dist", sizes={"T": 4, "S": 3})
    ti, si = b.positions("T", dtype="int64"), b.positions("S", dtype="int64")
    b.output("ts", b.sub(ti, si))
    b.output("st", b.sub(si, ti))
    c = b.build()
    got = ncd_compile(c, dtype=torch.float64)()
    want = torch.arange(4)[:, None] - torch.arange(3)[None, :]
    assert got["ts"].dtype == torch.int64 and torch.equal(got["ts"], want)
    assert torch.equal(got["st"], -want.T)
    assert torch.equal(interpret(c, [], {})["ts"], want)


def test_the_written_file_runs_with_torch_alone(monkeypatch):
    c = sinusoidal({**SIN_SIZES, "T": 3}, start=True)
    text = to_source(c)
    assert "import ncd" not in text and "from ncd" not in text
    assert "def positions(" in text and "positions(c.T, torch.float32, like=x, start=start)" in text
    model = ncd_compile(c)
    monkeypatch.setitem(sys.modules, "ncd", None)  # the file must stand alone
    src = load_source(text, class_name(c.name))
    src.load_state_dict(model.state_dict())
    x, start = _x(2, 3, D, dtype=torch.float32).detach(), torch.tensor([2, 9])
    got, want = src(x, start), model(x, start)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda b, w: b.positions("t", name="pos"),
         "box 'pos' (positions): positions along an axis the circuit does not know: no wire "
         "carries t and no size is given (expected an axis of the circuit: B D T, found t); "
         "give it a size"),
        (lambda b, w: b.positions("T", dtype="bfloat16", name="pos"),
         "box 'pos' (positions), field 'dtype': not one of the choices (expected 'float32', "
         "'float64', 'int32' or 'int64', found 'bfloat16')"),
        (lambda b, w: b.positions("T", start=w["x"], name="pos"),
         "box 'pos' (positions) port 'start': start positions are integers (expected an int32 "
         "or int64 tensor, found float32)"),
        (lambda b, w: b.positions("T", start=w["bt"], name="pos"),
         "box 'pos' (positions) port 'start': a start per row: axes other than the positions' "
         "T (expected axes without T, found [B=2 T=5] int64)"),
        (lambda b, w: b.positions("T", start=w["b"], offsets=w["b"], name="pos"),
         "box 'pos' (positions) port 'start': packed sequences start at position 0 (expected "
         "start or packed, not both"),
        (lambda b, w: b.positions("T", offsets=w["bt"], name="pos"),
         "box 'pos' (positions) port 'offsets': packed sequences: the offsets are integers "
         "along one axis (expected one axis, int32 or int64, found [B=2 T=5] int64)"),
    ],
)  # fmt: skip
def test_errors_say_where_what_and_found(make, message):
    b = Builder("c", sizes={"B": 2, "T": 5, "D": 3})
    w = {"x": b.input("x", "B T D"), "b": b.input("b", "B", dtype="int64"),
         "bt": b.input("bt", "B T", dtype="int64")}  # fmt: skip
    with pytest.raises(BuildError) as e:
        make(b, w)
    assert message in str(e.value), str(e.value)


def test_validation_of_a_spec_says_which_axis_is_unknown():
    """A spec (not the builder) with positions along an axis nothing carries: the validator
    names the box."""
    b = Builder("c", sizes={"T": 5})
    b.output("y", b.positions("T", name="pos"))
    spec = b.build().model_dump()
    spec["boxes"][0]["axis"] = "U"
    with pytest.raises(ncd.NcdError, match="box 'pos': positions along an axis the circuit does "
                                           "not know: no wire carries U"):  # fmt: skip
        ncd.Circuit.model_validate(spec).check()


def test_positions_a_16_bit_module_cannot_hold_are_refused():
    """In a module run in bfloat16, float32 positions are bfloat16, whose integers are exact
    to 256: 300 positions, or a start past it, are refused when the module runs; int64
    positions of the same circuit are exact."""

    def circuit(dtype, start=False):
        b = Builder("c", sizes={"B": 1, "T": 300 if not start else 4, "D": 2})
        x = b.input("x", "B T D")
        ins = {"start": b.input("start", "B", dtype="int64")} if start else {}
        b.output("y", b.add(x, b.positions("T", dtype=dtype, **ins)))
        return b.build()

    x = torch.zeros(1, 300, 2, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="positions: bfloat16 holds integers exactly only up to "
                                         "256, found positions up to 299"):  # fmt: skip
        ncd_compile(circuit("float32"), dtype="bfloat16")(x)
    y = ncd_compile(circuit("int64"), dtype="bfloat16")(x)
    assert y.dtype == torch.bfloat16  # int64 positions added to bfloat16 x
    model = ncd_compile(circuit("float32", start=True), dtype="bfloat16")
    x = torch.zeros(1, 4, 2, dtype=torch.bfloat16)
    assert torch.equal(model(x, torch.tensor([250]))[0, :, 0].float(), torch.arange(250.0, 254.0))
    with pytest.raises(ValueError, match="found positions up to 1003"):
        model(x, torch.tensor([1000]))


def test_drawing_and_builder_help():
    b = Builder("c", sizes={"B": 2, "T": 5})
    s = b.input("s", "B", dtype="int64")
    b.output("y", b.positions("T", dtype="int64", start=s))
    svg = ncd.render(b.build())
    for text in ("0,1,…", "along", "int64, + start"):
        assert text in svg, text
    doc = Builder.positions.__doc__
    assert "The `positions` box" in doc and "ncd schema positions" in doc
    for field in ("axis", "dtype", "start", "packed"):
        assert field in doc


def test_cost_rule_against_measurement():
    """FLOPs by hand (an add per element from a start, a subtraction per packed position);
    nothing kept for the backward (saved-tensor hooks); peak memory with the CPU allocator."""
    b = Builder("c", sizes={"B": 4, "T": 256, "D": 16, "N": 5})
    x = b.input("x", "B T D")
    s = b.input("s", "B", dtype="int64")
    off = b.input("off", "N", dtype="int64")
    y = b.add(x, b.positions("T", start=s, name="pos"))
    b.output("y", b.add(y, b.positions("T", offsets=off, name="packed")))
    c = b.build()
    n = ncd.analyse(c, lowering="unfused", device="cpu").numbers
    adds = 2 * 4 * 256 * 16  # the two adds of [B T D]
    assert n["flops"] == 4 * 256 + 256 + adds and n["mm_flops"] == 0
    module = ncd_compile(c)
    xs = measure.make_inputs(c)
    kept, _ = measure.saved_bytes(module, xs)
    assert kept == n["activation_bytes"] == 0
    peak, _ = measure.peak_bytes(module, measure.make_inputs(c))
    assert abs(peak - n["peak_bytes"]) <= 0.05 * peak, (peak, n["peak_bytes"])
