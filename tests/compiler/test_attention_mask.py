"""The `attention` box's mask port: a boolean keep-mask (True: attend) or a float bias added
to the scaled scores, over some of the scores' axes by name. Checked against independent
references: torch's nn.MultiheadAttention with a key_padding_mask (its weights mapped onto the
circuit's linear maps by name), a masked softmax attention written here in float64 from the
definition (outputs, and gradients of q, k, v and of a float bias), ALiBi (Press et al.
2022) given as an additive mask, causal with padding, grouped key/value heads with a mask,
and queries left no key (0, no gradient). Then the shape rule's errors, the routing to
PyTorch's SDPA, the standalone file, the rewrite of drawn masked chains, the cost model
against saved-tensor hooks, and the drawing."""

from __future__ import annotations

import math

import pytest
import torch

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.circuit import Circuit
from ncd.circuits.errors import BuildError, NcdError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, runtime, to_source
from ncd.compiler.choices import attention_backend
from ncd.compiler.names import class_name
from ncd.compiler.rewrites import apply_rewrites
from tests.cost import measure

from .helpers import load_source
from .test_positions import alibi, alibi_attention

SIZES = {"B": 2, "H": 4, "T": 7, "S": 9, "K": 5, "V": 3}
NEG = float("-inf")


# -- the reference, from the definition
def reference(q, k, v, keep=None, bias=None, causal=False, scale=None):
    """o_t = Σ_s p_ts v_s with p_ts = exp(a_ts) / Σ_s' exp(a_ts') over the keys s that query t
    may attend (keep[t, s] True, bias finite, s <= t when causal), a_ts = scale q_t·k_s +
    bias_ts, scale 1/sqrt(K) by default; o_t = 0 where no key is left. q [..., T, K], k
    [..., S, K], v [..., S, V]; keep and bias broadcast against [..., T, S]."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    a = torch.einsum("...tk,...sk->...ts", q, k) * scale
    allowed = torch.ones(a.shape, dtype=torch.bool)
    if bias is not None:
        a = a + bias
        allowed = allowed & (bias > NEG)
    if keep is not None:
        allowed = allowed & keep
    if causal:
        T, S = a.shape[-2:]
        allowed = allowed & (torch.arange(S)[None, :] <= torch.arange(T)[:, None])
    # the largest allowed score of each row, 0 for a row with none (every exp is then 0)
    top = a.masked_fill(~allowed, NEG).amax(-1, keepdim=True).detach()
    top = torch.where(top > NEG, top, torch.zeros_like(top))
    e = torch.exp(torch.where(allowed, a - top, torch.full_like(a, NEG)))
    den = e.sum(-1, keepdim=True)
    p = e / torch.where(den > 0, den, torch.ones_like(den))
    return torch.einsum("...ts,...sv->...tv", p, v)


def _x(*shape, seed, dtype=torch.float64, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def _qkv(B=2, H=4, T=7, S=9, K=5, V=3, G=None):
    kv = H if G is None else G
    return _x(B, H, T, K, seed=1), _x(B, kv, S, K, seed=2), _x(B, kv, S, V, seed=3)


def _circuit(mask_axes, dtype="bool", sizes=None, **fields):
    """q [B H T K], k [B H S K], v [B H S V] (or k, v over `kv_heads`), one mask input."""
    b = Builder("masked", sizes={**SIZES, **(sizes or {})})
    kv = fields.get("kv_heads", "H")
    q, k, v = b.input("q", "B H T K"), b.input("k", f"B {kv} S K"), b.input("v", f"B {kv} S V")
    m = b.input("m", mask_axes, dtype=dtype)
    b.output("y", b.attention(q, k, v, mask=m, name="att", **fields))
    return b.build()


def _check(c, xs, want, fused=("ncd", "torch"), grads=True):
    """The compiled module under each `fused` choice and the interpreter give `want`, and so
    do the gradients of every float input that needs one."""
    w = torch.randn(want.shape, generator=torch.Generator().manual_seed(9), dtype=want.dtype)
    floats = [x for x in xs if x.is_floating_point() and x.requires_grad]
    g_want = torch.autograd.grad((want * w).sum(), floats, retain_graph=True) if grads else ()
    runs = [ncd_compile(c, dtype=torch.float64, fused=f) for f in fused]
    for got in [*(m(*xs) for m in runs), interpret(c, xs, {})]:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        if grads:
            for a, b in zip(torch.autograd.grad((got * w).sum(), floats), g_want, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


# -- against nn.MultiheadAttention
class CrossAttention(torch.nn.Module):
    """Decoder queries over padded encoder memories: nn.MultiheadAttention with a
    key_padding_mask (True: padding, not attended)."""

    def __init__(self, D=12, H=3):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(D, H, batch_first=True)

    def forward(self, x, memory, padding):
        return self.mha(x, memory, memory, key_padding_mask=padding, need_weights=False)[0]


def _cross_circuit(sizes):
    b = Builder("cross", sizes=sizes)
    x, mem = b.input("x", "B T D"), b.input("memory", "B S D")
    keep = b.input("keep", "B S", dtype="bool")
    q = b.linear(x, "D", "H K", name="wq")
    k, v = b.linear(mem, "D", "H K", name="wk"), b.linear(mem, "D", "H V", name="wv")
    b.output("y", b.linear(b.attention(q, k, v, mask=keep, name="attn"), "H V", "D", name="wo"))
    return b.build()


def _mha_weights(mha):
    """nn.MultiheadAttention's parameters by the circuit's names: the packed in-projection
    split into wq, wk, wv (its rows are head-major, h·K + k, as the circuit's flattened
    `H K` outputs), the out-projection as wo."""
    w, bias = mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)
    out = {"wo.weight": mha.out_proj.weight, "wo.bias": mha.out_proj.bias}
    for i, name in enumerate(("wq", "wk", "wv")):
        out[f"{name}.weight"], out[f"{name}.bias"] = w[i], bias[i]
    return out


@pytest.mark.parametrize("fused", ["ncd", "torch"])
def test_cross_attention_with_padding_is_torchs_multihead_attention(fused):
    torch.manual_seed(0)
    sizes = {"B": 3, "T": 5, "S": 8, "D": 12, "H": 3, "K": 4, "V": 4}
    ref = CrossAttention().double().eval()
    model = ncd_compile(_cross_circuit(sizes), dtype=torch.float64, fused=fused).eval()
    with torch.no_grad():
        state = _mha_weights(ref.mha)
        assert set(state) == set(model.state_dict())
        model.load_state_dict(state)
    x, mem = _x(3, 5, 12, seed=4), _x(3, 8, 12, seed=5)
    lengths = torch.tensor([8, 3, 6])  # memories of 8, 3 and 6 real tokens, then padding
    padding = torch.arange(8)[None, :] >= lengths[:, None]
    want = ref(x, mem, padding)
    got = model(x, mem, ~padding)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    w = torch.randn(want.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((got * w).sum(), (x, mem)),
                    torch.autograd.grad((want * w).sum(), (x, mem)), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    # padding changes nothing but the padded keys: their memory rows get no gradient
    g_mem = torch.autograd.grad((model(x, mem, ~padding) * w).sum(), mem)[0]
    assert torch.equal(g_mem[padding], torch.zeros_like(g_mem[padding]))


# -- against the definition
@pytest.mark.parametrize(
    ("axes", "shape"),
    [
        ("B S", (2, 1, 1, 9)),
        ("T S", (1, 1, 7, 9)),
        ("B H T S", (2, 4, 7, 9)),
        ("S", (9,)),
        ("", ()),
    ],
)
def test_keep_masks_over_any_of_the_scores_axes(axes, shape):
    q, k, v = _qkv()
    keep = torch.rand(shape, generator=torch.Generator().manual_seed(7)) < 0.7
    names = axes.split()
    full = ["B", "H", "T", "S"]
    # the circuit's input: the mask's own axes, in the order named (a scalar: no axes)
    m = keep.reshape([keep.shape[full.index(a)] if len(shape) == 4 else 9 for a in names])
    _check(_circuit(axes), [q, k, v, m], reference(q, k, v, keep=keep))


def test_a_mask_in_its_own_axis_order_is_laid_out_by_name():
    q, k, v = _qkv()
    keep = torch.rand(2, 4, 7, 9, generator=torch.Generator().manual_seed(8)) < 0.7
    m = keep.permute(3, 1, 0, 2)  # S H B T
    _check(_circuit("S H B T"), [q, k, v, m], reference(q, k, v, keep=keep))


def test_float_bias_outputs_and_gradients_including_the_bias():
    q, k, v = _qkv()
    bias = _x(4, 7, 9, seed=6)  # H T S: one bias per head
    want = reference(q, k, v, bias=bias[None])
    _check(_circuit("H T S", "float64"), [q, k, v, bias], want)


def test_float_bias_with_minus_infinity_masks():
    q, k, v = _qkv()
    keep = torch.rand(2, 9, generator=torch.Generator().manual_seed(3)) < 0.6
    bias = torch.zeros(2, 9, dtype=torch.float64).masked_fill(~keep, NEG)  # B S
    want = reference(q, k, v, keep=keep[:, None, None, :])
    _check(_circuit("B S", "float64"), [q, k, v, bias], want)


def test_alibi_as_an_additive_mask_is_press_et_als():
    """ALiBi's bias −m_h (t − s), m_h = 2^(−8h/H), given as the mask with causal=True."""
    sizes = {"B": 2, "H": 4, "T": 7, "S": 7, "K": 5, "V": 3}
    q, k, v = _qkv(T=7, S=7)
    slopes = torch.tensor([2.0 ** (-8.0 * h / 4) for h in range(1, 5)], dtype=torch.float64)
    dist = torch.arange(7.0, dtype=torch.float64)[:, None] - torch.arange(7.0)[None, :]
    bias = -slopes[:, None, None] * dist  # H T S
    c = _circuit("H T S", "float64", sizes, causal=True)
    _check(c, [q, k, v, bias], alibi_attention(q, k, v))


def test_drawn_alibi_rewrites_to_one_causal_masked_box():
    """test_positions' ALiBi, drawn from positions boxes and added to the scores before the
    causal mask, becomes one attention box with its bias on the mask port."""
    sizes = {"B": 2, "H": 4, "T": 7, "S": 7, "K": 5, "V": 3}
    c = apply_rewrites(alibi(sizes))
    [att] = [b for b in c.boxes if b.kind == "attention"]
    assert att.masked and att.causal and not [b for b in c.boxes if b.kind == "softmax"]
    q, k, v = _qkv(T=7, S=7)
    got = ncd_compile(alibi(sizes), dtype=torch.float64)(q, k, v)
    torch.testing.assert_close(got, alibi_attention(q, k, v), rtol=1e-12, atol=1e-12)


def test_causal_and_padding_both_apply_and_empty_rows_give_zero():
    """Left padding of 3 keys in row 1 with causal: its queries 0 … 2 see no key. Those rows
    are 0 with no gradient; SDPA's backends differ there (some give NaN), the box does not."""
    q, k, v = _qkv(T=6, S=6)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, :3] = False
    want = reference(q, k, v, keep=keep[:, None, None, :], causal=True)
    assert torch.equal(want[1, :, :3], torch.zeros_like(want[1, :, :3]))
    c = _circuit("B S", sizes={"T": 6, "S": 6}, causal=True)
    _check(c, [q, k, v, keep], want)
    model = ncd_compile(c, dtype=torch.float64)
    g = torch.autograd.grad(model(q, k, v, keep).sum(), q)[0]
    assert torch.equal(g[1, :, :3], torch.zeros_like(g[1, :, :3]))
    src = load_source(to_source(c), class_name(c.name)).to(torch.float64)
    torch.testing.assert_close(src(q, k, v, keep), want, rtol=1e-10, atol=1e-12)


def test_a_fully_masked_bias_row_gives_zero_and_finite_gradients():
    q, k, v = _qkv()
    bias = torch.zeros(7, 9, dtype=torch.float64)
    bias[2] = NEG  # query 2 attends to nothing
    bias.requires_grad_()
    want = reference(q, k, v, bias=bias)
    c = _circuit("T S", "float64")
    for got in (
        ncd_compile(c, dtype=torch.float64)(q, k, v, bias),
        interpret(c, [q, k, v, bias], {}),
    ):
        assert torch.equal(got[:, :, 2], torch.zeros_like(got[:, :, 2]))
        grads = torch.autograd.grad(got.sum(), (q, k, v, bias))
        assert all(torch.isfinite(g).all() for g in grads)
    _check(c, [q, k, v, bias], want)


@pytest.mark.parametrize("G", [2, 1])
def test_grouped_heads_with_a_mask(G):
    """4 query heads over G key/value heads, a keep-mask per query head [B H T S]; query head
    h reads key/value head h // (H/G), one head at a time in the reference."""
    q, k, v = _qkv(G=G)
    keep = torch.rand(2, 4, 7, 9, generator=torch.Generator().manual_seed(5)) < 0.7
    want = torch.stack(
        [reference(q[:, h], k[:, h // (4 // G)], v[:, h // (4 // G)], keep=keep[:, h])
         for h in range(4)], 1,
    )  # fmt: skip
    c = _circuit("B H T S", sizes={"G": G}, heads="H", kv_heads="G")
    _check(c, [q, k, v, keep], want)


def test_scale_and_causal_with_a_bias():
    q, k, v = _qkv(T=9, S=9)
    bias = _x(2, 9, seed=11)
    want = reference(q, k, v, bias=bias[:, None, None, :], causal=True, scale=0.3)
    c = _circuit("B S", "float64", {"T": 9}, causal=True, scale="0.3")
    _check(c, [q, k, v, bias], want)


# -- where it runs
def test_masked_boxes_run_sdpa_whatever_fused_asks():
    assert attention_backend("cuda", "ncd", masked=True) == "torch"
    assert attention_backend("cuda", "ncd") == "ncd"
    assert attention_backend("cpu", "auto", masked=True) == "torch"
    for fused in ("auto", "ncd", "torch"):
        model = ncd_compile(_circuit("B S"), fused=fused)
        targets = {n.target for n in model.graph.nodes if n.op == "call_function"}
        assert runtime.masked_attention in targets
        assert ncd.ops.softmax_attention not in targets
    with pytest.raises(ValueError, match="fused: expected one of"):
        attention_backend("cpu", "triton", masked=True)


def test_the_standalone_file_runs_the_masked_box():
    c = _circuit("B S")
    text = to_source(c)
    assert "def masked_attention(" in text and "m.permute" not in text
    assert "m[:, None, None, :]" in text  # the key padding mask laid out against [B H T S]
    q, k, v = _qkv()
    keep = torch.rand(2, 9, generator=torch.Generator().manual_seed(2)) < 0.7
    src = load_source(text, class_name(c.name)).to(torch.float64)
    want = reference(q, k, v, keep=keep[:, None, None, :])
    torch.testing.assert_close(src(q, k, v, keep), want, rtol=1e-10, atol=1e-12)


# -- the shape rule
@pytest.mark.parametrize(
    ("axes", "dtype", "fields", "message"),
    [
        ("B K", "bool", {}, r"port 'mask': axis K not among the scores' axes \(expected axes "
                            r"among B H T S \(broadcast over the others\), found \[B=2 K=5\]"),
        ("B V S", "float32", {}, "port 'mask': axis V not among the scores' axes"),
        ("B S", "int64", {}, r"port 'mask': the mask is a boolean keep-mask or a float bias "
                             r"\(expected bool \(True: attend\) or a float dtype"),
        ("G S", "bool", {"heads": "H", "kv_heads": "G"},
         "port 'mask': axis G not among the scores' axes.*the scores are per query head: "
         "give the mask the query heads' axis H"),
        ("B W", "bool", {}, "port 'mask': axis W not among"),
    ],
)  # fmt: skip
def test_the_shape_rule_names_the_mask_port(axes, dtype, fields, message):
    b = Builder("bad", sizes={**SIZES, "G": 2, "W": 9})
    kv = fields.get("kv_heads", "H")
    q, k, v = b.input("q", "B H T K"), b.input("k", f"B {kv} S K"), b.input("v", f"B {kv} S V")
    m = b.input("m", axes, dtype=dtype)
    with pytest.raises(BuildError, match=r"box 'att' \(attention\) " + message):
        b.attention(q, k, v, mask=m, name="att", **fields)


def test_a_mask_of_the_wrong_size_is_refused():
    b = Builder("bad", sizes=SIZES)
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    m = b.slice(b.input("m", "B S", dtype="bool"), "S", 1, None)  # S - 1 keys
    with pytest.raises(BuildError, match=r"box 'att' \(attention\) port 'mask': size of S "
                                         r"disagrees \(expected 9, found 8\)"):  # fmt: skip
        b.attention(q, k, v, mask=m, name="att")


def test_the_port_follows_the_field():
    data = _circuit("B S").model_dump()
    data["boxes"][0]["masked"] = False
    with pytest.raises(NcdError, match=r"box 'att', port 'mask': no such port"):
        Circuit.model_validate(data).check()
    data["boxes"][0]["masked"] = True
    del data["boxes"][0]["inputs"]["mask"]
    with pytest.raises(NcdError, match=r"box 'att', port 'mask': port not connected"):
        Circuit.model_validate(data).check()


# -- the rewrite of drawn chains
def _drawn(step, sizes=None):
    """scores → scale → a mask brought in by `step` → softmax → values."""
    b = Builder("drawn", sizes={**SIZES, **(sizes or {})})
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    s = b.scale(b.contract(q, k, over="K", name="scores"), "K**-0.5", name="scale")
    if step == "where":
        m = b.input("keep", "B S", dtype="bool")
        s = b.box("where", {"cond": m, "a": s}, "masked", fill="-inf")
    elif step in ("add", "add then scale"):
        m = b.input("bias", "H T S")
        s = b.add(m, s, name="biased")
        if step == "add then scale":
            s = b.scale(s, "2", name="again")
    elif step == "where, causal":
        m = b.input("keep", "B S", dtype="bool")
        s = b.mask(b.box("where", {"cond": m, "a": s}, "masked", fill="-inf"), "T", "S")
    elif step == "where over K":  # the condition has an axis the scores lack
        m = b.input("keep", "B K", dtype="bool")
        s = b.box("where", {"cond": m, "a": s}, "masked", fill="-inf")
    p = b.softmax(s, "S", name="softmax")
    b.output("y", b.contract(p, v, over="S", name="mix"))
    return b.build()


@pytest.mark.parametrize(
    ("step", "fuses"),
    [("where", True), ("add", True), ("where, causal", True), ("add then scale", False),
     ("where over K", False)],
)  # fmt: skip
def test_drawn_masks_before_the_softmax_fuse_where_the_box_computes_them(step, fuses):
    sizes = {"T": 9, "S": 9} if "causal" in step else {}
    c = _drawn(step, sizes)
    boxes = apply_rewrites(c).boxes
    att = [b for b in boxes if b.kind == "attention"]
    assert bool(att) == fuses
    if not fuses:
        return
    assert att[0].masked and att[0].causal == ("causal" in step)
    checked = c.check()
    xs = [_x(*[checked.number(a.size) for a in checked.inputs[i.name].axes], seed=n)
          if checked.inputs[i.name].dtype != "bool" else
          torch.ones([checked.number(a.size) for a in checked.inputs[i.name].axes],
                     dtype=torch.bool).index_fill_(1, torch.tensor([2, 5]), False)
          for n, i in enumerate(c.inputs)]  # fmt: skip
    fused = ncd_compile(c, dtype=torch.float64)(*xs)
    plain = ncd_compile(c, dtype=torch.float64, rewrites=False)(*xs)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)


# -- cost
@pytest.mark.parametrize(
    ("axes", "fields"),
    [("B S", {"causal": True}), ("B S", {"heads": "H", "kv_heads": "G"}),
     ("T S", {"heads": "H", "kv_heads": "G", "causal": True})],
)  # fmt: skip
def test_kept_memory_is_what_autograd_keeps_around_sdpa(axes, fields):
    """Keep-masks, float32, on the CPU: q, k, v (grouped: repeated to the query heads), SDPA's
    output, its log-sum-exp, the mask as a float bias (with causal: combined with the
    pattern, B 1 T S) and the rows left a key, as saved-tensor hooks see them (PyTorch's CPU
    kernel keeps what the CUDA one does for a keep-mask; for a bias needing a gradient it
    takes the math path, which keeps the T×S probabilities the CUDA kernel does not)."""
    sizes = {"B": 2, "H": 4, "G": 2, "T": 16, "S": 16, "K": 8, "V": 8}
    c = _circuit(axes, sizes=sizes, **fields)
    n = ncd.analyse(c, sizes=sizes).numbers
    kept, tensors = measure.saved_bytes(ncd_compile(c), measure.make_inputs(c, sizes))
    assert kept == n["activation_bytes"], tensors


def test_a_mask_adds_its_bias_and_rows_to_what_is_kept():
    sizes = {"B": 2, "H": 4, "T": 16, "S": 16, "K": 8, "V": 8}
    n = ncd.analyse(_circuit("B S", sizes=sizes, causal=True), sizes=sizes).numbers
    b = Builder("plain", sizes=sizes)
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    b.output("y", b.attention(q, k, v, causal=True))
    unmasked = ncd.analyse(b.build(), sizes=sizes).numbers
    # the bias (B T S float32) and the rows (B T bool) more than without the mask
    assert n["activation_bytes"] - unmasked["activation_bytes"] == 2 * 16 * 16 * 4 + 2 * 16
    # the kernel computes every pair once the causal pattern is in the mask
    assert n["flops"] > unmasked["flops"]


def test_a_drawn_masked_chain_is_priced_as_the_box_it_becomes():
    for step in ("where", "add"):
        c = _drawn(step)
        drawn = ncd.analyse(c, sizes=SIZES).numbers
        boxed = ncd.analyse(apply_rewrites(c), sizes=SIZES).numbers
        for key in ("activation_bytes", "io_bytes"):
            assert drawn[key] == boxed[key], (step, key)


def test_the_report_names_sdpa_for_a_masked_box():
    report = ncd.analyse(_circuit("B S"), sizes=SIZES)
    [box] = report.boxes
    assert box.kernel.startswith("F.scaled_dot_product_attention (mask)")
    assert any("bias kept" in note for note in box.notes)


# -- drawing
def test_the_mask_enters_on_its_own_named_stub():
    from tests.test_vocabulary_drawing import node_texts

    text = node_texts(ncd.render(_circuit("B S")), "box:att")
    assert "mask" in text and "◗◁◗" in text


def test_causal_with_fewer_queries_than_keys_says_how_to_mask_a_cache():
    """A causal box wants one key per query; the error's hint builds the decoding mask from
    positions, which gives a causal softmax over the whole run of keys for the last queries."""
    b = Builder("decode", sizes={"B": 2, "T": 2, "S": 8, "K": 4, "V": 4})
    q, k, v = b.input("q", "B T K"), b.input("k", "B S K"), b.input("v", "B S V")
    with pytest.raises(BuildError, match="causal: size of S = size of T") as e:
        b.attention(q, k, v, causal=True)
    assert "a `compare` box (fn 'le')" in str(e.value) and 'b.positions("S")' in str(e.value)
    start = b.input("start", "B", dtype="int64")
    keys, queries = b.positions("S", dtype="int64"), b.positions("T", dtype="int64", start=start)
    keep = b.box("compare", {"a": keys, "b": queries}, "keep", fn="le")
    b.output("y", b.attention(q, k, v, mask=keep))
    qs, ks, vs = _x(2, 2, 4, seed=1), _x(2, 8, 4, seed=2), _x(2, 8, 4, seed=3)
    got = ncd_compile(b.build(), dtype=torch.float64)(qs, ks, vs, torch.tensor([6, 6]))
    full = torch.softmax((qs @ ks.transpose(1, 2) / 2).masked_fill(
        torch.arange(8) > torch.arange(6, 8)[:, None], NEG), -1) @ vs  # fmt: skip
    torch.testing.assert_close(got, full)
