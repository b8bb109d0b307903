"""Grouped heads in the `linear_attention` box (Mamba-2's B and C shared by groups of heads,
multi-value and GQA-style linear attention, Gated DeltaNet with more value heads than q/k
heads): the compiled box (CPU: the ops' chunked PyTorch forms, on q and k as they are for
every causal variant and repeated to the heads for non-causal `linear`), the interpreter and
the generated file against token-by-token recurrences written here from the papers'
equations, value head h reading query/key group h // (H/G); outputs and every gradient.
Shape rule errors, cost, drawing."""

from __future__ import annotations

import builtins
import math

import pytest
import torch

import ncd
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import compile as ncd_compile
from ncd.compiler import interpret, to_source
from ncd.compiler.names import class_name

SIZES = {"B": 2, "T": 9, "H": 4, "G": 2, "U": 1, "N": 3, "P": 5}
KW = {"key": "T", "head": "N", "value": "P"}


# ---------------------------------------------------------------- the references
def reference(q, k, v, variant, g=None, beta=None, starts=(0,), causal=True, normalize=False):
    """Each value head h of v [B, T, H, P] reads query/key group h // (H / G) of q, k
    [B, T, G, N] ([B, T, N]: one group), token by token, its state restarting at `starts`.

    decay (Mamba-2, Dao & Gu 2024, the SSM with scalar A per head; Δ folded into x and g):
        h_t = exp(g_t) h_{t-1} + x_t B_tᵀ (h [P, N]), y_t = h_t C_t, with B = k, C = q, x = v;
    linear (Katharopoulos et al.): S_t = S_{t-1} + k_tᵀ v_t, o_t = q_t S_t (S [N, P]), with
        `normalize` o_t / (q_t · Σ_{s<=t} k_s), non-causal o_t = q_t Σ_s k_sᵀ v_s;
    lightning: S_t = λ_h S_{t-1} + k_tᵀ v_t, λ_h = exp(-2^(-8h/H)), h = 1 … H;
    gla (Yang et al. 2024): S_t = diag(exp g_t) S_{t-1} + k_tᵀ v_t, g_t per key channel;
    delta (DeltaNet, column form S [P, N]): S_t = S_{t-1} - β_t (S_{t-1} k_t - v_t) k_tᵀ,
        o_t = S_t q_t;
    gated_delta (Gated DeltaNet eq. 10): S_t = S_{t-1} (α_t (I - β_t k_t k_tᵀ)) + β_t v_t k_tᵀ,
        α_t = exp(g_t)."""
    if q.dim() == 3:
        q, k = q[:, :, None], k[:, :, None]
    B, T, G, N = q.shape
    H, P = v.shape[2:]
    heads = []
    for h in range(H):
        grp = h // (H // G)
        qs, ks, vs = q[:, :, grp], k[:, :, grp], v[:, :, h]
        if not causal:
            o = qs @ (ks.transpose(1, 2) @ vs)
            heads.append(o)
            continue
        outs = []
        for t in range(T):
            if t in starts:
                state = q.new_zeros(B, P, N)  # [P, N]: Mamba-2's h, DeltaNet's S
                z = q.new_zeros(B, N)
            kt, qt, vt = ks[:, t], qs[:, t], vs[:, t]
            if variant == "decay":
                a = torch.exp(g[:, t, h])[:, None, None]
                state = a * state + vt[:, :, None] * kt[:, None, :]
            elif variant in ("linear", "lightning"):
                lam = math.exp(-(2.0 ** (-8.0 * (h + 1) / H))) if variant == "lightning" else 1
                state = lam * state + vt[:, :, None] * kt[:, None, :]
                z = lam * z + kt
            elif variant == "gla":
                state = state * torch.exp(g[:, t, h])[:, None, :] + vt[:, :, None] * kt[:, None, :]
            else:  # the delta rules
                a = torch.exp(g[:, t, h]) if variant == "gated_delta" else q.new_ones(B)
                b = beta[:, t, h]
                eye = torch.eye(N, dtype=q.dtype)
                update = a[:, None, None] * (
                    eye - b[:, None, None] * kt[:, :, None] * kt[:, None, :]
                )
                state = state @ update + b[:, None, None] * vt[:, :, None] * kt[:, None, :]
            o = (state @ qt[:, :, None])[..., 0]  # y_t = h_t C_t
            if normalize:
                o = o / ((qt * z).sum(-1, keepdim=True) + 1e-10)
            outs.append(o)
        heads.append(torch.stack(outs, 1))
    return torch.stack(heads, 2)  # [B, T, H, P]


# ---------------------------------------------------------------- the circuits
GROUPS = {"G2": "G", "G1": "U", "none": None}  # two groups; one as an axis; one, no axis


def _circuit(variant="decay", groups="G", **fields):
    b = Builder("grouped", sizes=SIZES)
    qk = f"B T {groups} N" if groups else "B T N"
    q, k, v = b.input("q", qk), b.input("k", qk), b.input("v", "B T H P")
    gates = {}
    if variant in ("decay", "gated_delta"):
        gates["g"] = b.input("g", "B T H")
    if variant == "gla":
        gates["g"] = b.input("g", "B T H N")
    if "delta" in variant:
        gates["beta"] = b.input("beta", "B T H")
    y = b.linear_attention(q, k, v, **KW, variant=variant, heads="H", qk_heads=groups,
                           name="mixer", **gates, **fields)  # fmt: skip
    b.output("y", y)
    return b.build()


def _inputs(c, seed=0):
    """q, k normalised (the delta rules want unit keys), log-decays <= 0, beta in (0, 1)."""
    checked = c.check()
    gen = torch.Generator().manual_seed(seed)
    xs = []
    for inp in c.inputs:
        t = torch.randn([checked.number(a.size) for a in checked.inputs[inp.name].axes],
                        generator=gen, dtype=torch.float64)  # fmt: skip
        if inp.name in ("q", "k"):
            t = torch.nn.functional.normalize(t, dim=-1)
        elif inp.name == "g":
            t = torch.nn.functional.logsigmoid(t + 2)
        elif inp.name == "beta":
            t = torch.sigmoid(t)
        xs.append(t.requires_grad_(True))
    return xs


def _no_ncd_source(c):
    """The generated file run with ncd unimportable: its own torch-only fallbacks."""

    def imports(name, *args, **kw):
        if name.split(".")[0] == "ncd":
            raise ImportError(name)
        return builtins.__import__(name, *args, **kw)

    text = to_source(c)
    ns = {"__name__": "ncd_generated", "__builtins__": {**vars(builtins), "__import__": imports}}
    exec(compile(text, "<generated>", "exec", dont_inherit=True), ns)  # our generated code
    return ns[class_name(c.name)]().to(torch.float64)


def _repeats(c) -> bool:
    """Whether the compiled module and the generated file copy q and k to the heads."""
    nodes = ncd_compile(c).graph.nodes
    graph = any(getattr(n.target, "__name__", n.target) == "repeat_interleave" for n in nodes)
    assert graph == ("repeat_interleave" in to_source(c))
    return graph


def _check(c, want_fn, runs=("compiled", "interpreted")):
    xs = _inputs(c)
    want = want_fn(*xs)
    w = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g_want = torch.autograd.grad((want * w).sum(), xs)
    for run in runs:
        if run == "compiled":
            got = ncd_compile(c, dtype=torch.float64)(*xs)
        elif run == "interpreted":
            got = interpret(c, xs, {})
        else:
            got = _no_ncd_source(c)(*xs)
        torch.testing.assert_close(
            got, want, rtol=1e-10, atol=1e-10, msg=lambda m, r=run: f"{r}: {m}"
        )
        g_got = torch.autograd.grad((got * w).sum(), xs)
        for inp, a, b in zip(c.inputs, g_got, g_want, strict=True):
            where = f"{run} d{inp.name}"
            torch.testing.assert_close(
                a, b, rtol=1e-9, atol=1e-9, msg=lambda m, w=where: f"{w}: {m}"
            )


# ---------------------------------------------------------------- against the references
@pytest.mark.parametrize("groups", sorted(GROUPS))
@pytest.mark.parametrize("variant", ["decay", "linear", "delta"])
def test_grouped_heads_match_the_recurrence(variant, groups):
    """Mamba-2 (decay), linear attention and DeltaNet with H = 4 heads over G = 2 groups, one
    group as an axis of size 1, and one group as no axis (Mamba-2's ngroups = 1): outputs and
    the gradients of q, k, v and the gates, compiled and interpreted. The ops read the groups
    themselves (no repeat_interleave in the module or the file)."""
    c = _circuit(variant, GROUPS[groups])
    assert not _repeats(c)

    def want(q, k, v, *gates):
        names = [i.name for i in c.inputs][3:]
        return reference(q, k, v, variant, **dict(zip(names, gates, strict=True)))

    _check(c, want)


@pytest.mark.parametrize(
    ("variant", "fields"),
    [
        ("lightning", {}),
        ("gla", {}),
        ("gated_delta", {}),
        ("linear", {"normalize": True}),
        ("linear", {"causal": False}),
    ],
    ids=["lightning", "gla", "gated_delta", "normalized", "non-causal"],
)
def test_every_variant_groups_its_heads(variant, fields):
    """The other variants over G = 2 groups, compiled, interpreted and as the generated file
    runs without ncd (its torch-only fallbacks)."""
    c = _circuit(variant, "G", **fields)
    assert _repeats(c) == (not fields.get("causal", 1))  # non-causal linear: two products

    def want(q, k, v, *gates):
        names = [i.name for i in c.inputs][3:]
        return reference(q, k, v, variant, **dict(zip(names, gates, strict=True)), **fields)

    _check(c, want, runs=("compiled", "interpreted", "source"))


def test_the_generated_file_runs_mamba2_without_ncd():
    """Mamba-2 with one group (no group axis) as the standalone file runs it."""
    c = _circuit("decay", None)
    _check(c, lambda q, k, v, g: reference(q, k, v, "decay", g=g), runs=("source",))


def test_mamba_block_reads_its_one_group_in_place():
    """The gallery's mamba_block (B and C of one group read by every head) compiles and
    writes its file without copying them to the heads, and its module equals the
    interpreter (which repeats them): outputs and every input's and parameter's gradient."""
    c = ncd.gallery.get("mamba_block")
    assert not _repeats(c)
    torch.manual_seed(0)
    m = ncd_compile(c, dtype=torch.float64)
    params = dict(m.named_parameters())
    x = torch.randn(2, 32, 16, dtype=torch.float64, requires_grad=True)
    got, want = m(x), interpret(c, [x], params)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    w = torch.randn(want.shape, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((got * w).sum(), [x, *params.values()]),
                    torch.autograd.grad((want * w).sum(), [x, *params.values()])):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_axis_orders_and_a_constant_gate():
    """q and k with their groups first and v with its heads first (the batch axes in one
    order, H in G's place); a log-decay per head, constant over tokens."""
    b = Builder("orders", sizes=SIZES)
    q, k = b.input("q", "G B N T"), b.input("k", "G B T N")
    v, gh = b.input("v", "H B T P"), b.input("gh", "H")
    b.output("y", b.linear_attention(q, k, v, **KW, variant="decay", g=gh, heads="H",
                                     qk_heads="G", name="mixer"))  # fmt: skip
    c = b.build()
    assert c.check().outputs["y"].names == ("H", "B", "P", "T")

    def want(q, k, v, gh):
        B, T = v.shape[1:3]
        y = reference(q.permute(1, 3, 0, 2), k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3),
                      "decay", g=gh.expand(B, T, -1))  # fmt: skip
        return y.permute(2, 0, 3, 1)

    _check(c, want)


@pytest.mark.parametrize("variant", ["delta", "decay"])
def test_packed_sequences_restart_per_sequence(variant):
    """The delta rule and Mamba-2's decay over groups (read in place) on sequences packed
    along T (offsets 0, 4, 9)."""
    b = Builder("packed", sizes={**SIZES, "M": 3})
    q, k = b.input("q", "T G N"), b.input("k", "T G N")
    port = "beta" if variant == "delta" else "g"
    v, gate = b.input("v", "T H P"), b.input(port, "T H")
    offsets = b.input("offsets", "M", dtype="int64")
    y = b.linear_attention(q, k, v, **KW, variant=variant, **{port: gate}, offsets=offsets,
                           heads="H", qk_heads="G", name="mixer")  # fmt: skip
    b.output("y", y)
    c = b.build()
    assert not _repeats(c)
    xs = [x.detach()[0].requires_grad_(True) for x in _inputs(_circuit(variant, "G"))[:4]]
    ins = [*xs, torch.tensor([0, 4, 9])]
    want = reference(*[x[None] for x in xs[:3]], variant, **{port: xs[3][None]},
                     starts=(0, 4))[0]  # fmt: skip
    w = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g_want = torch.autograd.grad((want * w).sum(), xs)
    for got in (ncd_compile(c, dtype=torch.float64)(*ins), interpret(c, ins, {})):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        for a, b_ in zip(torch.autograd.grad((got * w).sum(), xs), g_want, strict=True):
            torch.testing.assert_close(a, b_, rtol=1e-9, atol=1e-9)


def test_traced_packed_scan_takes_the_heads_from_v(monkeypatch):
    """PackedScan as traced (no host read of the offsets: a log-decay of -64 at each
    sequence's start) on q and k of 2 groups and v of 4 heads: the gates are laid out per
    value head, and the result is the untraced one's."""
    from ncd import ops
    from ncd.compiler import runtime

    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 9, 2, 3, generator=gen, dtype=torch.float64) for _ in "qk")
    v = torch.randn(1, 9, 4, 5, generator=gen, dtype=torch.float64)
    offsets = torch.tensor([0, 4, 9])
    scan = runtime.PackedScan(ops.simple_gla)
    for g in (torch.full((4,), -0.1, dtype=torch.float64), -torch.rand(1, 9, 4, generator=gen)):
        want, _ = scan(q, k, v, g.double(), offsets=offsets, scale=0.5)
        monkeypatch.setattr(runtime, "traced", lambda: True)
        got, _ = scan(q, k, v, g.double(), offsets=offsets, scale=0.5)
        monkeypatch.undo()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the shape rule
@pytest.mark.parametrize(
    ("shapes", "fields", "message"),
    [
        (("B T G N", "B T G N", "B T H P"), {"heads": "H", "qk_heads": "G"}, None),
        (("B T N", "B T N", "B T H P"), {"heads": "H"}, None),
        (("B T E N", "B T E N", "B T H P"), {"heads": "H", "qk_heads": "E"}, "dividing H = 4"),
        (("B T G N", "B T G N", "B T H P"), {"qk_heads": "G"}, "`heads` names the values'"),
        (("B T G N", "B T G N", "B T H P"), {"heads": "G", "qk_heads": "G"}, "heads=G"),
        (("B T H N", "B T H N", "B T H P"), {"heads": "H", "qk_heads": "G"}, "no axis H"),
        (("B T G N", "B T N", "B T H P"), {"heads": "H", "qk_heads": "G"}, "axis G"),
        (("B T G N", "B T G N", "B T G P"), {"heads": "H", "qk_heads": "G"}, "axis H"),
        (("T B G N", "T B G N", "B T H P"), {"heads": "H", "qk_heads": "G"}, None),
        (("G B T N", "G B T N", "B T H P"), {"heads": "H", "qk_heads": "G"}, "expected B G"),
        (("B T G N", "B T G N", "B T H P"), {"heads": "H"}, 'set qk_heads="G"'),
        (("B T G N", "B T G N", "B T H P"), {}, 'set heads="H", qk_heads="G"'),
        (("B T N", "B T N", "B T H P"), {}, 'set heads="H"'),
    ],
)
def test_the_shape_rule_checks_the_grouping(shapes, fields, message):
    b = Builder("grouped", sizes={**SIZES, "E": 3})
    q, k, v = (b.input(n, s) for n, s in zip("qkv", shapes, strict=True))
    if message is None:
        b.output("y", b.linear_attention(q, k, v, **KW, **fields))
        assert set(b.build().check().outputs["y"].names) == {"B", "T", "H", "P"}
        return
    with pytest.raises(BuildError, match=message):
        b.linear_attention(q, k, v, **KW, **fields)


@pytest.mark.parametrize(
    ("variant", "gate", "message"),
    [
        ("decay", "B T G", "gates are per head"),
        ("gla", "B T G N", "expected B T H N"),
        ("delta", "B T", "expected B T H"),
    ],
)
def test_gates_are_per_head(variant, gate, message):
    b = Builder("grouped", sizes=SIZES)
    q, k, v = b.input("q", "B T G N"), b.input("k", "B T G N"), b.input("v", "B T H P")
    port = "beta" if variant == "delta" else "g"
    with pytest.raises(BuildError, match=message):
        b.linear_attention(q, k, v, **KW, variant=variant, heads="H", qk_heads="G",
                           **{port: b.input(port, gate)})  # fmt: skip


# ---------------------------------------------------------------- cost and drawing
COST_SIZES = {"B": 2, "T": 256, "H": 8, "G": 2, "N": 64, "P": 64}


def _per_head_box(variant, **fields):
    """The same box with q and k given as the copies the grouped box makes ([B T H N])."""
    b = Builder("per_head", sizes=COST_SIZES)
    q, k, v = b.input("q", "B T H N"), b.input("k", "B T H N"), b.input("v", "B T H P")
    gates = {"g": b.input("g", "B T H")} if variant in ("decay", "gated_delta") else {}
    if variant == "gla":
        gates["g"] = b.input("g", "B T H N")
    if "delta" in variant:
        gates["beta"] = b.input("beta", "B T H")
    b.output("y", b.linear_attention(q, k, v, **KW, variant=variant, name="mixer", **gates,
                                     **fields))  # fmt: skip
    return b.build()


@pytest.mark.parametrize("variant", ["linear", "decay", "delta", "gated_delta", "gla",
                                     "non-causal"])  # fmt: skip
def test_cost_is_the_kernel_of_h_heads_and_the_grouping(variant):
    """The grouped box costs what the kernel of H heads does (FLOPs) and, backward, the sum
    of the per-head gradients of q and k over each group (a temporary of H heads each, read,
    and q's and k's size written). The causal variants read q and k of G groups in place:
    they keep q and k as they come and move no other bytes forward. Non-causal `linear`
    repeats them to the heads: q and k read and written H/G times over forward, the einsums
    reading (and keeping relaid-out copies of) the copies, the gradients of the copies summed
    per group backward."""
    fields = {"causal": False} if variant == "non-causal" else {}
    variant = "linear" if fields else variant
    c = _circuit(variant, "G", **fields)
    r = ncd.analyse(c, sizes=COST_SIZES)
    base = ncd.analyse(_per_head_box(variant, **fields), sizes=COST_SIZES)
    [box], [ref] = r.boxes, base.boxes
    B, T, H, G, N = (COST_SIZES[a] for a in "BTHGN")
    small, big = 4 * B * T * G * N, 4 * B * T * H * N  # float32 q (or k) and its copy
    assert r.number(box.flops) == r.number(ref.flops)
    assert r.number(box.mm_flops) == r.number(ref.mm_flops)
    assert r.number(box.flops_bwd) == r.number(ref.flops_bwd) + 2 * B * T * (H - G) * N
    assert r.number(box.io_bytes_bwd) == r.number(ref.io_bytes_bwd) + 2 * (small + big)
    kept = {what: r.number(n) for what, _, n in box.saved}
    if fields:
        assert r.number(box.io_bytes) == r.number(ref.io_bytes) + 2 * (small + big)
        # (the einsums keep their own relaid-out copies of the repeated q and k)
        assert kept["relaid-out copy of input q"] == kept["relaid-out copy of input k"] == big
        assert r.numbers["activation_bytes"] == base.numbers["activation_bytes"]
        assert any("repeated to the" in n for n in box.notes)
    else:
        assert r.number(box.io_bytes) == r.number(ref.io_bytes)
        assert kept["input q"] == kept["input k"] == small
        assert r.numbers["activation_bytes"] == base.numbers["activation_bytes"] - 2 * (big - small)
        assert any("read in place" in n for n in box.notes)


def test_the_drawing_shows_the_grouping():
    from tests.test_vocabulary_drawing import node_texts

    assert "H:G" in node_texts(ncd.render(_circuit("decay", "G")), "box:mixer")
    assert "H:1" in node_texts(ncd.render(_circuit("decay", None)), "box:mixer")
