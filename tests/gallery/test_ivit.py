"""gallery/integer.py `ivit_block` against a hand-written integer PyTorch block, written from
I-ViT's equations (Li & Gu, ICCV 2023) and HAWQ-V3's dyadic requantisation (Yao et al. 2021),
not from the circuit: bit for bit, compiled module and interpreter alike. Its error against
the float ViT block with the same (dequantised) weights is printed and bounded; the entry
lists, renders, analyses and compiles; its cost counts the integer operations.

The reference computes in int64 and checks that every value the paper keeps in int32 fits
there, so a wrap-around in the circuit would show as a mismatch, not hide in both.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

import ncd
from ncd import gallery
from ncd.compiler import interpret

B, T, H, K, F_ = 2, 8, 2, 16, 64
D = H * K
I32 = 2**31


# ---------------------------------------------------------------- integer reference
def fits32(t: torch.Tensor, where: str) -> torch.Tensor:
    assert t.abs().max() < I32, f"{where}: leaves int32 ({int(t.abs().max())})"
    return t


def dyadic(ratio: float) -> tuple[int, int]:
    """HAWQ-V3's dyadic number b/2^c for a ratio of scales: b an int32 of 31 significant bits
    (|b| in [2^30, 2^31)), c >= 0."""
    c = 30 - math.floor(math.log2(abs(ratio)))
    c = max(0, min(62, c))
    return round(ratio * 2**c), c


def requant(x: torch.Tensor, b, c, bits: int) -> torch.Tensor:
    """I' = clip(round(b · I / 2^c)) (I-ViT Sec. 3.2, HAWQ-V3 Sec. 3: dyadic b/2^c), halves
    rounded up, clipped to `bits`-bit signed integers; by exact integer division, in int64."""
    b = torch.as_tensor(b, dtype=torch.int64)
    c = torch.as_tensor(c, dtype=torch.int64)
    num = x.to(torch.int64) * b
    den = torch.ones_like(c) << c
    y = torch.div(2 * num + den, 2 * den, rounding_mode="floor")
    return y.clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def shift_exp(i: torch.Tensor, x0: int, n: int) -> torch.Tensor:
    """Shiftmax's exponential (I-ViT Sec. 3.3, within eqs. 7 to 13) for I <= 0 at scale S with
    x0 = floor(-1/S): e^(S I) = 2^(S I log2 e), I log2 e ~ I + I/2 - I/16 by shifts;
    S I_p = -q + S r with q = floor(I_p / x0); 2^(S r) ~ 1 + S r / 2; scaled by 2^n."""
    ip = i + (i >> 1) - (i >> 4)
    ip = torch.maximum(ip, torch.tensor(n * x0))
    q = torch.div(ip, x0, rounding_mode="floor")
    r = ip - q * x0
    return fits32(((r >> 1) - x0) * 2 ** (n - q), "ShiftExp")


def int_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """IntDiv (I-ViT Sec. 3.3): (floor(2^M / den) num) >> (M - (k_out - 1)), 2^31 - 1, k_out 8."""
    f = torch.div(torch.full_like(den, 2**31 - 1), den, rounding_mode="floor")
    return fits32(f * num, "IntDiv") >> 24


def shiftmax(s: torch.Tensor, x0: int, dim: int) -> torch.Tensor:
    """Shiftmax (I-ViT Sec. 3.3, eqs. 7 to 13): softmax of S·s over `dim`, out at 2^-7."""
    e = shift_exp(s - s.amax(dim, keepdim=True), x0, 16)
    return int_div(e, fits32(e.sum(dim, keepdim=True), "Shiftmax sum"))


def shiftgelu(u: torch.Tensor, x0: int) -> torch.Tensor:
    """ShiftGELU (I-ViT Sec. 3.4, eqs. 14 to 16): GELU(x) ~ x·sigmoid(1.702 x), 1.702 ~
    1.1011b by shifts, sigmoid(S I) = e^(S (I - I_max)) / (e^(S (I - I_max)) + e^(-S I_max))."""
    ip = u + (u >> 1) + (u >> 3) + (u >> 4)
    m = ip.amax(-1, keepdim=True)
    e1, e2 = shift_exp(ip - m, x0, 23), shift_exp(-m, x0, 23)
    return u * int_div(e1, fits32(e1 + e2, "ShiftGELU sum"))


def isqrt(var: torch.Tensor) -> torch.Tensor:
    """I-LayerNorm's square root (I-ViT eq. 19): ten Newton steps k <- (k + floor(var/k)) / 2
    from 2^16 (the authors' released code; the paper starts at 2^floor(bits(var)/2))."""
    k = torch.full_like(var, 2**16)
    for _ in range(10):
        k = (k + torch.div(var, k, rounding_mode="floor")) // 2
    return k


def ilayernorm(x: torch.Tensor, bias_int: torch.Tensor) -> torch.Tensor:
    """I-LayerNorm (I-ViT Sec. 3.5, eqs. 17 to 19): y = I - round(mean I), std =
    isqrt(sum y^2), y·floor(2^30/std) + bias, at scale sqrt(D)/2^30 times gamma (applied by the
    requantisation after it)."""
    n = x.shape[-1]
    mean = torch.div(2 * x.sum(-1, keepdim=True) + n, 2 * n, rounding_mode="floor")
    y = x - mean
    std = isqrt(fits32((y * y).sum(-1, keepdim=True), "variance"))
    return fits32(y * (2**30 // std) + bias_int, "I-LayerNorm")


def int_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """int8 x int8 products summed in int32 (I-ViT Sec. 3.2)."""
    return fits32(x @ w.T + bias, "integer linear map")


def int_block(x: torch.Tensor, p: dict) -> torch.Tensor:
    """The integer encoder block, every tensor int64 holding integers; `p` holds int8
    weights, int32 biases, dyadic (b, c) pairs and the x0 of the two ShiftExp uses."""

    def rq(t, name, bits=8):
        return requant(t, *p[name], bits)

    h = rq(ilayernorm(x, p["ln1.bias"]), "ln1_q")
    q = rq(int_linear(h, *p["q"]), "q_q").reshape(B, T, H, K)
    k = rq(int_linear(h, *p["k"]), "k_q").reshape(B, T, H, K)
    v = rq(int_linear(h, *p["v"]), "v_q").reshape(B, T, H, K)
    s = rq(fits32(torch.einsum("bthk,bshk->bhts", q, k), "scores"), "scores_q")
    a = shiftmax(s, p["softmax.x0"], -1)
    o = rq(fits32(torch.einsum("bhts,bshk->bthk", a, v), "mix"), "mix_q").reshape(B, T, D)
    o = int_linear(o, *p["o"])
    x1 = rq(rq(x, "skip1", 32) + rq(o, "branch1", 32), "res1_q")
    h = rq(ilayernorm(x1, p["ln2.bias"]), "ln2_q")
    u = rq(int_linear(h, *p["up"]), "ff_up_q")
    g = rq(shiftgelu(u, p["act.x0"]), "act_q")
    m = int_linear(g, *p["down"])
    return rq(rq(x1, "skip2", 32) + rq(m, "branch2", 32), "res2_q")


# ---------------------------------------------------------------- float block, calibration
def float_block(x, w, keep=None):
    """The pre-norm ViT block in float64: x + MHA(LN(x)), then + MLP(LN(.)), exact softmax and
    GELU. `keep` collects the tensors the integer block quantises, for calibration."""
    keep = {} if keep is None else keep

    def ln(t, i):
        return F.layer_norm(t, (D,), w[f"ln{i}.g"], w[f"ln{i}.b"], eps=1e-12)

    h = keep["ln1"] = ln(x, 1)
    q = keep["q"] = F.linear(h, *w["q"])
    k = keep["k"] = F.linear(h, *w["k"])
    v = keep["v"] = F.linear(h, *w["v"])
    q, k, v = (t.reshape(B, T, H, K) for t in (q, k, v))
    s = keep["scores"] = torch.einsum("bthk,bshk->bhts", q, k) * K**-0.5
    o = keep["mix"] = torch.einsum("bhts,bshk->bthk", torch.softmax(s, -1), v).reshape(B, T, D)
    x1 = keep["res1"] = x + F.linear(o, *w["o"])
    h = keep["ln2"] = ln(x1, 2)
    u = keep["up"] = F.linear(h, *w["up"])
    g = keep["act"] = F.gelu(u)
    y = keep["res2"] = x1 + F.linear(g, *w["down"])
    return y


def calibrate(seed=0):
    """Float weights and input, their int8 quantisation (symmetric, max-abs scales), the float
    block on the dequantised weights and input, activation scales from its tensors, and the
    integer block's parameters: a dict for the reference, a state dict for the circuit."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * s

    shapes = {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D), "up": (F_, D), "down": (D, F_)}
    x = rnd(B, T, D)
    sx = x.abs().max().item() / 127
    xi = torch.round(x / sx).to(torch.int64)
    wq, sw = {}, {}
    for n, (o, i) in shapes.items():
        w = rnd(o, i, s=i**-0.5)
        sw[n] = w.abs().max().item() / 127
        wq[n] = torch.round(w / sw[n]).to(torch.int64)
    lnw = {f"ln{i}.g": 1 + rnd(D, s=0.2) for i in (1, 2)} | {f"ln{i}.b": rnd(D, s=0.2)
                                                               for i in (1, 2)}  # fmt: skip
    # the biases are quantised at S_in · S_w, S_in from a first run with float biases; the
    # float block of the comparison then runs on the dequantised weights and biases
    keep: dict = {}
    bias = {n: rnd(o, s=0.1) for n, (o, _) in shapes.items()}
    w = {n: (wq[n].double() * sw[n], bias[n]) for n in shapes} | lnw
    float_block(xi.double() * sx, w, keep)
    act = {n: t.abs().max().item() / 127 for n, t in keep.items()}
    s_in = {"q": act["ln1"], "k": act["ln1"], "v": act["ln1"], "o": act["mix"],
            "up": act["ln2"], "down": act["act"]}  # fmt: skip
    bq = {n: torch.round(bias[n] / (s_in[n] * sw[n])).to(torch.int64) for n in shapes}
    w = {n: (wq[n].double() * sw[n], bq[n].double() * s_in[n] * sw[n]) for n in shapes} | lnw
    keep = {}
    y_float = float_block(xi.double() * sx, w, keep)
    act = {n: t.abs().max().item() / 127 for n, t in keep.items()}
    act["ln1"], act["ln2"] = s_in["q"], s_in["up"]  # the scales the biases were quantised at
    act["mix"], act["act"] = s_in["o"], s_in["down"]
    r1 = keep["res1"].abs().max().item() / 2**20  # the residual adds' int32 scales
    r2 = keep["res2"].abs().max().item() / 2**20
    s_ln = math.sqrt(D) / 2**30
    p: dict = {n: (wq[n], bq[n]) for n in shapes}
    state: dict = {}
    for n, name in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "o_proj"),
                    ("up", "ff_up"), ("down", "ff_down")):  # fmt: skip
        state[f"{name}.weight"] = wq[n].to(torch.int8)
        state[f"{name}.bias"] = bq[n].to(torch.int32)
    ratios = {
        "q_q": act["ln1"] * sw["q"] / act["q"],
        "k_q": act["ln1"] * sw["k"] / act["k"],
        "v_q": act["ln1"] * sw["v"] / act["v"],
        "scores_q": act["q"] * act["k"] * K**-0.5 / act["scores"],
        "mix_q": 2**-7 * act["v"] / act["mix"],
        "skip1": sx / r1,
        "branch1": act["mix"] * sw["o"] / r1,
        "res1_q": r1 / act["res1"],
        "ff_up_q": act["ln2"] * sw["up"] / act["up"],
        "act_q": act["up"] * 2**-7 / act["act"],
        "skip2": act["res1"] / r2,
        "branch2": act["act"] * sw["down"] / r2,
        "res2_q": r2 / act["res2"],
    }
    for name, r in ratios.items():
        p[name] = dyadic(r)
    for i, name in ((1, "ln1_q"), (2, "ln2_q")):
        gamma, beta = lnw[f"ln{i}.g"], lnw[f"ln{i}.b"]
        pairs = [dyadic(gm * s_ln / act[f"ln{i}"]) for gm in gamma.tolist()]
        p[name] = (torch.tensor([b for b, _ in pairs]), torch.tensor([c for _, c in pairs]))
        p[f"ln{i}.bias"] = torch.round(beta / (gamma * s_ln)).to(torch.int64)
        state[f"ln{i}.bias.value"] = p[f"ln{i}.bias"].to(torch.int32)
    for name in [*ratios, "ln1_q", "ln2_q"]:
        b, c = p[name]
        state[f"{name}.multiplier"] = torch.as_tensor(b, dtype=torch.int32)
        state[f"{name}.shift"] = torch.as_tensor(c, dtype=torch.int32)
    p["softmax.x0"] = math.floor(-1 / act["scores"])
    p["act.x0"] = math.floor(-1 / act["up"])
    state["softmax.x0.value"] = torch.tensor(p["softmax.x0"], dtype=torch.int32)
    state["act.x0.value"] = torch.tensor(p["act.x0"], dtype=torch.int32)
    return xi, p, state, y_float, act["res2"]


@pytest.fixture(scope="module")
def setup():
    xi, p, state, y_float, sy = calibrate()
    model = ncd.compile(gallery.get("ivit_block")).eval()
    full = model.state_dict()
    assert set(state) <= set(full), sorted(set(state) - set(full))
    full.update({k: v.reshape(full[k].shape) for k, v in state.items()})  # [H K D] weights
    model.load_state_dict(full)
    return xi, p, full, model, y_float, sy


# ---------------------------------------------------------------- tests
def test_compiled_and_interpreted_block_equal_the_integer_reference_bit_for_bit(setup):
    xi, p, state, model, _, _ = setup
    want = int_block(xi, p)
    assert want.abs().max() > 20  # not a block of zeros
    got = model(xi.to(torch.int8))
    assert got.dtype == torch.int8
    assert torch.equal(got.to(torch.int64), want)
    again = interpret(gallery.get("ivit_block"), [xi.to(torch.int8)], state)
    assert again.dtype == torch.int8
    assert torch.equal(again.to(torch.int64), want)


def test_error_against_the_float_block_is_reported_and_bounded(setup):
    xi, p, _, model, y_float, sy = setup
    y = model(xi.to(torch.int8)).to(torch.float64) * sy
    rel = ((y - y_float).norm() / y_float.norm()).item()
    worst = ((y - y_float).abs().max() / y_float.abs().max()).item()
    print(f"\nivit_block vs the float ViT block (same dequantised weights): relative L2 error "
          f"{rel:.4f}, largest error {worst:.4f} of the largest output")  # fmt: skip
    # int8 activations (scale max/127) through two residual components, Shiftmax's 8-bit
    # probabilities and ShiftGELU's shift-based exponentials: a few per cent
    assert rel < 0.08, rel


def test_shiftmax_and_shiftgelu_approximate_their_float_functions():
    """The reference's integer functions against the float ones they stand for (I-ViT's
    claims, on ViT-like inputs): softmax within 0.07 per probability (2^-f ~ 1 - f/2 is off by
    up to 6% of a probability, plus 2^-7 of rounding), GELU within 0.1 of the input range."""
    g = torch.Generator().manual_seed(2)
    s = torch.randn(4, 8, 16, generator=g, dtype=torch.float64) * 3
    sc = s.abs().max().item() / 127
    si = torch.round(s / sc).to(torch.int64)
    p = shiftmax(si, math.floor(-1 / sc), -1) * 2**-7
    assert (p - torch.softmax(si * sc, -1)).abs().max() < 0.07
    u = torch.randn(4, 64, generator=g, dtype=torch.float64) * 2
    su = u.abs().max().item() / 127
    ui = torch.round(u / su).to(torch.int64)
    gelu = shiftgelu(ui, math.floor(-1 / su)) * su * 2**-7
    assert (gelu - F.gelu(ui * su)).abs().max() < 0.1 * u.abs().max()


def test_types_are_honest():
    """int8 in and out, int32 accumulators; float-only functions refuse integers."""
    from ncd.circuits.builder import Builder
    from ncd.circuits.errors import BuildError

    c = gallery.get("ivit_block").check()
    assert c.inputs["x"].dtype == "int8" and c.outs["res2_q"]["out"].dtype == "int8"
    assert c.outs["q_proj"]["out"].dtype == c.outs["scores"]["out"].dtype == "int32"
    b = Builder("bad", sizes={"T": 4})
    x = b.input("x", "T", dtype="int32")
    for make, msg in (
        (lambda: b.unary(x, "exp"), "floating-point"),
        (lambda: b.div(x, x), "floordiv"),
        (lambda: b.scale(x, 0.5), "integer"),
        (lambda: b.box("int_linear", {"x": x}, over="T", out="F"), "int8"),
        (lambda: b.binary(b.input("f", "T"), x, "shift_right"), "integer"),
    ):
        with pytest.raises(BuildError, match=msg):
            make()
    d = b.binary(x, b.box("constant", {}, value=3), "floordiv")  # an int32 stays int32
    assert d.type.dtype == "int32"


def test_floordiv_runs_in_int32_in_module_and_interpreter():
    from ncd.circuits.builder import Builder

    b = Builder("div", sizes={"T": 5})
    x, y = b.input("x", "T", dtype="int32"), b.input("y", "T", dtype="int32")
    b.output("q", b.binary(x, y, "floordiv"))
    c = b.build()
    xs = [torch.tensor([7, -7, 2**30 + 1, -1, 0], dtype=torch.int32),
          torch.tensor([2, 2, 3, 5, -3], dtype=torch.int32)]  # fmt: skip
    want = torch.tensor([3, -4, 357913941, -1, 0], dtype=torch.int32)
    for got in (ncd.compile(c)(*xs), interpret(c, xs, {})):
        assert got.dtype == torch.int32 and torch.equal(got, want)


def test_list_render_analyse_compile_and_integer_cost(tmp_path):
    from ncd.cli import main
    from ncd.compiler import to_source

    assert "ivit_block" in gallery.names()
    png = tmp_path / "ivit.png"
    assert main(["render", "ivit_block", "-o", str(png), "--depth", "0"]) == 0
    assert png.stat().st_size > 10_000
    r = ncd.analyse(gallery.get("ivit_block"))
    rows = {b.name: b for b in r.boxes}
    n = B * T
    assert r.number(rows["q_proj"].mm_flops) == 2 * n * D * D  # int8 products, int32 sums
    assert r.number(rows["ff_up"].mm_flops) == 2 * n * D * F_
    assert r.number(rows["q_q"].flops) == 5 * n * D  # multiply, round, shift, clip (2)
    assert any("integer" in note for note in rows["q_proj"].notes)
    assert r.numbers["params"] == 0  # int8 weights are buffers, not trained
    assert r.numbers["flops_backward"] == 0
    src = to_source(gallery.get("ivit_block"))
    assert "requantize(" in src and "torch.bitwise_right_shift" in src


# ---------------------------------------------------------------- the CUDA path, on the CPU
def _loaded(model, state):
    full = model.state_dict()
    full.update({k: v.reshape(full[k].shape) for k, v in state.items()})
    model.load_state_dict(full)
    return model.eval()


def _int_products(model):
    """The calls of ncd.ops.int8_matmul in a compiled module and its batched products."""
    from ncd import ops
    from ncd.compiler import runtime

    calls = [n for n in model.graph.nodes if n.target is ops.int8_matmul]
    batched = [m for m in model.modules() if isinstance(m, runtime.BatchedMatmul)]
    return calls, batched


@pytest.mark.parametrize("how", ["table", "fused"])
def test_the_cuda_rule_runs_int8_matmul_and_stays_bit_exact(setup, monkeypatch, how):
    """The lowering CUDA gets (the table's int_matmul row, forced here for the CPU, or
    fused="ncd"), run on CPU tensors, where ncd.ops.int8_matmul runs its integer reference:
    the six linear maps and both attention products go through it, bit for bit the reference
    block's integers."""
    from ncd.compiler import choices

    xi, p, state, _, _, _ = setup
    if how == "table":
        monkeypatch.setitem(choices.FASTEST, "int_matmul", {"cpu": "ncd"})
        model = ncd.compile(gallery.get("ivit_block"))
    else:
        model = ncd.compile(gallery.get("ivit_block"), fused="ncd")
    _loaded(model, state)
    calls, batched = _int_products(model)
    assert len(calls) == 6 and len(batched) == 2  # q k v o up down; scores and mix
    assert not [n for n in model.graph.nodes if n.target is torch.einsum]
    got = model(xi.to(torch.int8))
    assert got.dtype == torch.int8 and torch.equal(got.to(torch.int64), int_block(xi, p))


def test_the_default_cpu_rule_is_unchanged(setup):
    """On the CPU the table keeps torch's int32 einsum: no call of ncd.ops."""
    calls, batched = _int_products(setup[3])
    assert not calls and not batched


def test_float64_products_where_torch_has_no_integer_product(setup, monkeypatch):
    """Off the CPU with fused="torch" every integer product (linear maps and both attention
    contractions) runs as float64 einsum cast back: forced here on the CPU, no integer einsum
    is left and the block stays bit-exact (torch has no int32 matrix product on CUDA)."""
    from ncd.compiler import lowerings

    xi, p, state, _, _, _ = setup
    monkeypatch.setattr(lowerings, "_int_path", lambda L: "float64")
    model = _loaded(ncd.compile(gallery.get("ivit_block"), fused="torch"), state)
    widened = [n for n in model.graph.nodes if n.target == "to" and torch.float64 in n.args]
    assert len(widened) >= 16  # both operands of 6 linear maps and 2 contractions
    got = model(xi.to(torch.int8))
    assert got.dtype == torch.int8 and torch.equal(got.to(torch.int64), int_block(xi, p))


def _run_file(text: str, state, x):
    ns: dict = {"__name__": "ncd_generated"}
    exec(compile(text, "<generated>", "exec", dont_inherit=True), ns)  # our generated code
    model = ns["IvitBlock"]().eval()
    model.load_state_dict(state)
    return model(x)


def test_generated_file_runs_int8_matmul_or_its_fallback_bit_exactly(setup, monkeypatch):
    """The file (written for any device) imports ncd.ops.int8_matmul, with a float64 fallback
    where ncd is missing; the file with fused="torch" (as CUDA's torch rule: float64 einsum)
    needs no ncd. Each runs on the CPU bit for bit as the reference block."""
    from ncd.compiler import to_source

    xi, p, state, _, _, _ = setup
    want = int_block(xi, p)
    x = xi.to(torch.int8)
    text = to_source(gallery.get("ivit_block"))
    assert "from ncd.ops import int8_matmul" in text and "BatchedMatmul(int8_matmul)" in text
    assert torch.equal(_run_file(text, state, x).to(torch.int64), want)
    plain = to_source(gallery.get("ivit_block"), fused="torch")
    assert "int8_matmul" not in plain and "torch.float64" in plain
    monkeypatch.setitem(sys.modules, "ncd.ops", None)  # `from ncd.ops import` fails
    for t in (text, plain):
        assert torch.equal(_run_file(t, state, x).to(torch.int64), want)


def test_int8_contractions_of_any_layout_run_int8_matmul():
    """Contractions of int8 values widened to int32, as the lowering CUDA gets: batch axes in
    any order, several free axes, none, and a widened value read elsewhere too (its cast
    kept), against the interpreter (which sums in int64); int32 values that are not widened
    int8 stay einsums."""
    from ncd.circuits.builder import Builder

    b = Builder("contractions", sizes={"B": 2, "T": 3, "S": 5, "H": 2, "K": 7, "E": 4})
    x = b.input("x", "B T H K", dtype="int8")
    y = b.input("y", "H S K B", dtype="int8")
    z = b.input("z", "K E", dtype="int32")
    x32, y32 = b.cast(x, "int32", name="x32"), b.cast(y, "int32", name="y32")
    b.output("s", b.contract(x32, y32, over="K", name="scores"))  # [B T H S]
    b.output("t", b.contract(y32, x32, over="K H", name="no_heads"))  # batch B
    b.output("u", b.contract(x32, b.cast(b.rename(x, T="U"), "int32"), over="B H K"))  # T U
    e = b.cast(b.input("e", "K E", dtype="int8"), "int32", name="e32")
    b.output("m", b.contract(x32, e, over="K", name="rows"))  # B T H rows, E columns
    b.output("w", b.contract(x32, z, over="K", name="wide"))  # z is int32: einsum
    b.output("x32", x32)
    c = b.build()
    g = torch.Generator().manual_seed(3)
    xs = [torch.randint(-128, 128, (2, 3, 2, 7), generator=g, dtype=torch.int8),
          torch.randint(-128, 128, (2, 5, 7, 2), generator=g, dtype=torch.int8),
          torch.randint(-2**20, 2**20, (7, 4), generator=g, dtype=torch.int32),
          torch.randint(-128, 128, (7, 4), generator=g, dtype=torch.int8)]  # fmt: skip
    model = ncd.compile(c, fused="ncd")
    calls, batched = _int_products(model)
    assert len(calls) == 2 and len(batched) == 2  # u and rows have no batch axis
    assert [n.target for n in model.graph.nodes].count(torch.einsum) == 1
    got, want, plain = model(*xs), interpret(c, xs, {}), ncd.compile(c)(*xs)
    for k in want:
        assert got[k].dtype == plain[k].dtype == torch.int32, k  # the circuit's type
        assert torch.equal(got[k].to(torch.int64), want[k].to(torch.int64)), k
