"""The gated variants of `linear_attention` compiled: they call the op library's chunked
functions (no per-token loop), train in 16-bit with float32 gates, take packed sequences, and
the generated file runs them without ncd (its chunked PyTorch fallbacks in compiler/runtime.py,
checked here against the op library's token-by-token references)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import ncd
from ncd import gallery, ops
from ncd.circuits.builder import Builder
from ncd.circuits.errors import BuildError
from ncd.compiler import interpret, runtime, to_source
from ncd.compiler.names import class_name
from ncd.ops.delta_rule import gated_delta_rule_reference
from ncd.ops.gla import gla_reference
from ncd.ops.linear_attention import linear_attention_reference
from ncd.ops.simple_gla import simple_gla_recurrent_reference

from .helpers import randomise

GATED = {ops.simple_gla, ops.gla, ops.delta_rule, ops.gated_delta_rule}


def block(variant: str, gate_dtype: str = "float32", sizes=None):
    """A pre-norm block as the gallery's, whose gates are cast to `gate_dtype` before the
    box (so that 16-bit q, k, v meet float32 gates)."""
    b = Builder(f"{variant}_block", axes={"D": "H*K"},
                sizes=sizes or {"B": 2, "T": 37, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "B T D")
    h = b.rmsnorm(x, "D", name="norm")
    q = b.unary(b.linear(h, "D", "H K", bias=False, name="q_proj"), "silu", name="phi_q")
    k = b.unary(b.linear(h, "D", "H K", bias=False, name="k_proj"), "silu", name="phi_k")
    v = b.linear(h, "D", "H V", bias=False, name="v_proj")
    kw = {}
    if "delta" in variant:
        k = b.normalize(k, "K", name="l2_keys")
        beta = b.unary(b.linear(h, "D", "H", name="b_proj"), "sigmoid", name="beta")
        kw["beta"] = b.cast(beta, gate_dtype, name="beta_cast")
    if variant != "delta":
        axes = "H K" if variant == "gla" else "H"
        g = b.unary(b.linear(h, "D", axes, name="g_proj"), "logsigmoid", name="log_gate")
        kw["g"] = b.cast(g, gate_dtype, name="g_cast")
    o = b.linear_attention(q, k, v, key="T", variant=variant, name="mixer", **kw)
    o = b.linear(b.rmsnorm(o, "V", name="out_norm"), "H V", "D", bias=False, name="o_proj")
    b.output("y", b.add(x, o, name="residual"))
    return b.build()


VARIANTS = ["decay", "gla", "delta", "gated_delta"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_box_calls_the_op_library(variant):
    """The lowered graph calls the family's public function (it picks Triton on CUDA, the
    chunked PyTorch form on the CPU) and nothing of compiler/runtime.py."""
    module = ncd.compile(block(variant))
    targets = {n.target for n in module.graph.nodes if n.op == "call_function"}
    want = {"decay": ops.simple_gla, "gla": ops.gla, "delta": ops.delta_rule,
            "gated_delta": ops.gated_delta_rule}[variant]  # fmt: skip
    assert want in targets
    assert not {getattr(runtime, n, None) for n in ("gla", "simple_gla", "delta_rule",
                                                    "gated_delta_rule")} & targets  # fmt: skip


@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_equals_the_interpreter_in_float64(variant):
    """Outputs and every gradient (input and parameters) against the interpreter's
    token-by-token recurrence."""
    c = block(variant, "float64")
    model = randomise(ncd.compile(c, dtype=torch.float64))
    x = torch.randn(2, 37, 16, dtype=torch.float64, requires_grad=True)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.state_dict().items()}
    y = model(x)
    want = interpret(c, [x], params)
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(y)
    got = torch.autograd.grad((y * w).sum(), [x, *model.parameters()])
    names = [n for n, _ in model.named_parameters()]
    ref = torch.autograd.grad((want * w).sum(), [x, *[params[n] for n in names]])
    for name, a, b in zip(["x", *names], got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("variant", VARIANTS)
def test_16_bit_inputs_with_float32_gates_train(variant, dtype):
    """A block with 16-bit q, k, v and float32 gates: its output is 16-bit and a few SGD
    steps lower the loss."""
    c = block(variant, "float32")
    torch.manual_seed(0)
    model = ncd.compile(c, dtype=dtype)
    x = torch.randn(2, 37, 16, dtype=dtype)
    assert model(x).dtype == dtype
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    target = x.roll(1, 1).float()
    losses = []
    for _ in range(8):
        loss = (model(x).float() - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_one_box_with_16_bit_inputs_and_float32_gates(variant, dtype):
    """The box alone: output in q's and v's dtype, equal to the interpreter's float32
    recurrence to 16-bit rounding; the float32 gates get float32 gradients."""
    b = Builder("box", sizes={"B": 2, "T": 45, "H": 2, "K": 6, "V": 5})
    q, k, v = (b.input(n, f"B T H {d}", dtype) for n, d in (("q", "K"), ("k", "K"), ("v", "V")))
    kw = {}
    if "delta" in variant:
        kw["beta"] = b.input("beta", "B T H")
    if variant != "delta":
        kw["g"] = b.input("g", "B T H K" if variant == "gla" else "B T H")
    b.output("y", b.linear_attention(q, k, v, key="T", variant=variant, name="box", **kw))
    c = b.build()
    assert c.check().outs["box"]["out"].dtype == dtype
    gen = torch.Generator().manual_seed(0)
    t = getattr(torch, dtype)
    xs = {
        "q": torch.randn(2, 45, 2, 6, generator=gen).to(t),
        "k": F.normalize(torch.randn(2, 45, 2, 6, generator=gen), dim=-1).to(t),
        "v": torch.randn(2, 45, 2, 5, generator=gen).to(t),
        "beta": torch.rand(2, 45, 2, generator=gen),
        "g": F.logsigmoid(torch.randn(2, 45, 2, *([6] if variant == "gla" else []),
                                      generator=gen)),
    }  # fmt: skip
    args = [xs[i.name].requires_grad_(True) for i in c.inputs]
    y = ncd.compile(c)(*args)
    assert y.dtype == t
    want = interpret(c, [a.detach() for a in args], {})
    assert want.dtype == t
    torch.testing.assert_close(y.float(), want.float(), rtol=2e-2, atol=2e-2)
    grads = torch.autograd.grad(y.float().sum(), args)
    for i, gr in zip(c.inputs, grads, strict=True):
        assert gr.dtype == xs[i.name].dtype and torch.isfinite(gr).all(), i.name


@pytest.mark.parametrize("name", ["gla_block", "deltanet_block"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gallery_gated_blocks_train(name, dtype):
    torch.manual_seed(0)
    model = ncd.compile(gallery.get(name), dtype=dtype)
    x = torch.randn(2, 32, 16, dtype=dtype)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-4)
    losses = []
    for _ in range(8):
        loss = (model(x).float() - x.roll(1, 1).float()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def packed(variant: str):
    b = Builder(f"packed_{variant}", sizes={"T": 41, "H": 2, "K": 5, "V": 3, "N": 4})
    q, k, v = b.input("q", "T H K"), b.input("k", "T H K"), b.input("v", "T H V")
    offsets = b.input("offsets", "N", "int64")
    kw = {}
    if "delta" in variant:
        k = b.normalize(k, "K", name="l2")
        kw["beta"] = b.unary(b.input("beta", "T H"), "sigmoid", name="beta_")
    if variant in ("decay", "gated_delta"):
        kw["g"] = b.unary(b.input("g", "T H"), "logsigmoid", name="g_")
    if variant == "gla":
        kw["g"] = b.unary(b.input("g", "T H K"), "logsigmoid", name="g_")
    b.output("y", b.linear_attention(q, k, v, key="T", variant=variant, offsets=offsets,
                                     name="mixer", **kw))  # fmt: skip
    return b.build()


@pytest.mark.parametrize("variant", ["linear", "lightning", *VARIANTS])
def test_packed_sequences_each_start_from_a_zero_state(variant):
    """A packed batch (offsets 0, 7, 7, 30, 41: an empty sequence included) equals each
    sequence run on its own; compiled, interpreted and the generated file alike."""
    c = packed(variant)
    cuts = [0, 7, 7, 30, 41]
    gen = torch.Generator().manual_seed(0)
    names = [i.name for i in c.inputs]
    shapes = {"q": (41, 2, 5), "k": (41, 2, 5), "v": (41, 2, 3), "beta": (41, 2),
              "g": (41, 2, 5) if variant == "gla" else (41, 2)}  # fmt: skip
    xs = {n: torch.randn(shapes[n], generator=gen, dtype=torch.float64) for n in shapes}
    xs["offsets"] = torch.tensor(cuts)
    args = [xs[n] for n in names]
    model = ncd.compile(c, dtype=torch.float64)
    y = model(*args)
    torch.testing.assert_close(y, interpret(c, args, {}), rtol=1e-10, atol=1e-10)
    for s, e in zip(cuts[:-1], cuts[1:], strict=True):
        if s == e:
            continue
        part = [xs[n][s:e] if n != "offsets" else torch.tensor([0, e - s]) for n in names]
        alone = ncd.compile(c, sizes={"T": e - s}, dtype=torch.float64)(*part)
        torch.testing.assert_close(y[s:e], alone, rtol=1e-10, atol=1e-10)
    ns: dict = {"__name__": "generated"}
    exec(compile(to_source(c), "<generated>", "exec", dont_inherit=True), ns)
    src = ns[class_name(c.name)]().to(torch.float64)
    assert torch.equal(src(*args), y)


def test_shapes_and_options_are_checked():
    def box(inputs, **kw):
        b = Builder("bad", sizes={"B": 2, "T": 5, "H": 2, "K": 3, "V": 3, "N": 3})
        w = {n: b.input(n, *spec.split(":")) for n, spec in inputs.items()}
        return b.linear_attention(w.pop("q"), w.pop("k"), w.pop("v"), key="T", **w, **kw)

    qkv = {"q": "B T H K", "k": "B T H K", "v": "B T H V"}
    with pytest.raises(BuildError, match=r"port 'g'.*expected B T H, found B H T"):
        box({**qkv, "g": "B H T"}, variant="decay")  # the keys' axes without K, reordered
    with pytest.raises(BuildError, match="no batch axis other than one head axis"):
        box({**qkv, "g": "B T H K", "offsets": "N:int64"}, variant="gla")
    with pytest.raises(BuildError, match="integers along one axis"):
        box({"q": "T K", "k": "T K", "v": "T V", "offsets": "N"})  # float offsets
    with pytest.raises(BuildError, match="a float dtype"):
        box({**qkv, "beta": "B T H:int64"}, variant="delta")
    with pytest.raises(BuildError, match="causal only"):
        box({**qkv, "beta": "B T H"}, variant="delta", causal=False)
    box({**qkv, "g": "H"}, variant="decay")  # a constant per head
    box({"q": "T H K", "k": "T H K", "v": "T H V", "offsets": "N:int32"})


def test_specs_written_before_the_new_variants_still_load():
    spec = gallery.get("gla_block").model_dump(mode="json")
    for box in spec["boxes"]:
        box.pop("packed", None)
    again = type(gallery.get("gla_block")).model_validate(spec)
    assert next(b for b in again.boxes if b.kind == "linear_attention").packed is False


def _inputs(B, T, H, K, V, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    q = torch.randn(B, T, H, K, generator=g, dtype=d)
    k = F.normalize(torch.randn(B, T, H, K, generator=g, dtype=d), dim=-1)
    v = torch.randn(B, T, H, V, generator=g, dtype=d)
    gk = F.logsigmoid(torch.randn(B, T, H, K, generator=g, dtype=d))
    gs = F.logsigmoid(torch.randn(B, T, H, generator=g, dtype=d))
    beta = torch.rand(B, T, H, generator=g, dtype=d)
    return q, k, v, gk, gs, beta


@pytest.mark.parametrize("packed_", [False, True])
def test_fallbacks_equal_the_token_by_token_references(packed_):
    """compiler/runtime.py's chunked forms (copied into generated files) against the op
    library's recurrences from the papers' equations: odd T over several chunks, per-head
    gates, packed sequences of unequal lengths; plain linear attention (per-head decays, one of
    them 1, normalised or not) against its quadratic masked form. GLA with the usual gates
    (scores factored around each chunk's middle row) and with strong ones (each weight exact)."""
    B, T = (1, 150) if packed_ else (2, 150)
    q, k, v, gk, gs, beta = _inputs(B, T, 3, 5, 4)
    cu = torch.tensor([0, 13, 13, 99, 150]) if packed_ else None
    kw = {"cu_seqlens": cu}
    pairs = [
        (runtime.gla(q, k, v, gk, 0.7, cu), gla_reference(q, k, v, gk, 0.7, **kw)),
        # gates near -5 a token: chunks too wide for the factored scores, exact in each weight
        (runtime.gla(q, k, v, 6 * gk, 0.7, cu), gla_reference(q, k, v, 6 * gk, 0.7, **kw)),
        (runtime.simple_gla(q, k, v, gs, 0.7, cu),
         simple_gla_recurrent_reference(q, k, v, gs, 0.7, **kw)),
        (runtime.simple_gla(q, k, v, gs[0, 0], None, cu),
         simple_gla_recurrent_reference(q, k, v, gs[0, 0], None, **kw)),
        (runtime.gated_delta_rule(q, k, v, gs, beta, 0.7, cu),
         gated_delta_rule_reference(q, k, v, gs, beta, scale=0.7, **kw)),
        (runtime.delta_rule(q, k, v, beta, 0.7, cu),
         gated_delta_rule_reference(q, k, v, None, beta, scale=0.7, **kw)),
    ]  # fmt: skip
    if not packed_:  # plain linear attention (with decay, normalised) takes no offsets
        qp, kp = q.abs(), k.abs()  # a positive feature map keeps the normaliser from zero
        decay = torch.tensor([1.0, 0.9, 0.5], dtype=q.dtype)
        for normalize in (False, True):
            kw = dict(decay=decay, normalize=normalize, scale=0.7)
            pairs.append((runtime.linear_attention(qp, kp, v, chunk=64, **kw),
                          linear_attention_reference(qp, kp, v, **kw)))  # fmt: skip
    for (got, _), (want, _) in pairs:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_normalised_fallback_reads_a_zero_denominator_as_zero():
    """The generated file's normalised linear attention gives a query without any nonzero
    feature (after a ReLU) output 0 and no gradient, as ncd.ops.linear_attention does: in
    float16 its dq and dk through num / 1e-10 were inf."""
    g = torch.Generator().manual_seed(2)
    q, k = (torch.relu(torch.randn(1, 70, 2, 8, generator=g)) for _ in "qk")
    v = torch.randn(1, 70, 2, 4, generator=g)
    q[:, [4, 40]] = 0
    k[:, :2] = 0
    do = torch.randn(1, 70, 2, 4, generator=g).half()
    xs = [x.half().requires_grad_() for x in (q, k, v)]
    refs = [x.detach().double().requires_grad_() for x in xs]
    kw = dict(decay=torch.tensor([1.0, 0.9]), normalize=True, scale=0.5)
    o = runtime.linear_attention(*xs, chunk=64, **kw)[0]
    o_ref = linear_attention_reference(*refs, **kw)[0]
    got = [o, *torch.autograd.grad(o, xs, do)]
    want = [o_ref, *torch.autograd.grad(o_ref, refs, do.double())]
    for x, ref in zip(got, want):
        assert bool(x.isfinite().all())
        torch.testing.assert_close(x.double(), ref, rtol=2e-3, atol=2e-3)
    assert bool((o[:, [4, 40]] == 0).all()) and bool((got[1][:, [4, 40]] == 0).all())


@pytest.mark.parametrize("name", ["gla_block", "deltanet_block", "lightning_block"])
def test_generated_file_runs_without_ncd(name, tmp_path):
    """The generated file, with ncd made unimportable, uses its own chunked fallback and
    agrees with ncd.compile's module (outputs and the input's gradient)."""
    c = gallery.get(name)
    text = to_source(c)
    fn = {"gla_block": "gla", "deltanet_block": "delta_rule"}.get(name, "linear_attention")
    assert f"from ncd.ops import {fn}" in text
    imports = [ln for ln in text.splitlines() if ln.lstrip().startswith(("import ", "from "))]
    assert all(
        ln.split()[1].split(".")[0] in ("torch", "math", "dataclasses", "ncd") for ln in imports
    )
    path = tmp_path / "block.py"
    path.write_text(text)
    model = randomise(ncd.compile(c))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = torch.randn(2, 32, 16, requires_grad=True)
    y = model(x)
    (dx,) = torch.autograd.grad(y.square().sum(), x)
    torch.save({"x": x.detach(), "y": y.detach(), "dx": dx}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import importlib.util, sys, torch
        sys.modules["ncd"] = None  # the file must stand alone
        spec = importlib.util.spec_from_file_location("m", {str(path)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        assert m.{fn}.__module__ == "m", m.{fn}.__module__
        model = m.{class_name(name)}()
        model.load_state_dict(torch.load({str(tmp_path / "w.pt")!r}))
        io = torch.load({str(tmp_path / "io.pt")!r})
        x = io["x"].requires_grad_(True)
        y = model(x)
        (dx,) = torch.autograd.grad(y.square().sum(), x)
        torch.testing.assert_close(y, io["y"], rtol=1e-5, atol=1e-5)
        # float32 sums in two chunk orders: dx spans orders of magnitude (the gradient of
        # y.square().sum()), and the small entries' error is set by the largest ones'
        torch.testing.assert_close(dx, io["dx"], rtol=1e-4, atol=1e-5 * io["dx"].abs().max())
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_a_port_with_its_axes_in_another_order_says_how_to_reorder_them():
    """A gate with the keys' axes in another order (RWKV-6's decay as `param H K` plus a
    low-rank map gives `H K B T`) is refused, as the box reads each port in one order; the
    error said what it expected but not what to do. It now names the permute, and the box
    given the permuted gate computes GLA (the op library's token-by-token reference)."""
    sizes = {"B": 2, "T": 5, "H": 2, "K": 3, "V": 4}
    b = Builder("reordered", sizes=sizes)
    q, k, v = b.input("q", "B T H K"), b.input("k", "B T H K"), b.input("v", "B T H V")
    g = b.input("g", "H K B T")
    with pytest.raises(BuildError, match=r'b\.permute\(g, "B T H K"\)'):
        b.linear_attention(q, k, v, g=g, key="T", variant="gla")
    with pytest.raises(BuildError, match=r'b\.permute\(k, "B H T K"\)'):
        other = Builder("keys", sizes=sizes)
        qkv = (other.input(n, a) for n, a in zip("qkv", ("B T H K", "H B T K", "B T H V")))
        other.linear_attention(*qkv, key="T")
    o = b.linear_attention(q, k, v, g=b.permute(g, "B T H K"), key="T", variant="gla")
    b.output("o", o)
    model = ncd.compile(b.build(), dtype=torch.float64)
    q_, k_, v_, gk, _, _ = _inputs(2, 5, 2, 3, 4)
    want, _ = gla_reference(q_, k_, v_, gk, 1.0)
    got = model(q_, k_, v_, gk.permute(2, 3, 0, 1))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
