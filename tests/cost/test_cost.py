"""The cost model's promises: leading terms, scaling, repeats, lowerings, errors, outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sympy

import ncd
from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.circuits.sizes import symbol
from ncd.compiler.cost import CostError, analyse

B, H, T, S, K, V, N = (symbol(n) for n in "BHTSKVN")


def test_attention_leading_term_is_bhts_k_plus_v():
    r = analyse(gallery.get("attention"))
    assert sympy.simplify(r.leading("flops") - 2 * B * H * T * S * (K + V)) == 0
    assert r.big_o("flops") == "O(B·H·S·T·(K + V))"


def test_linear_attention_is_linear_in_t():
    for lowering in ("fused", "unfused"):
        r = analyse(gallery.get("linear_attention"), lowering=lowering)
        assert r.degree("T") == 1
        assert r.degree("T", "activation_bytes") == 1
    assert sympy.simplify(r.leading("flops") - 4 * B * H * T * K * V) == 0


def test_gla_priced_by_its_cpu_chunks_is_linear_in_t():
    """On the CPU profile GLA is priced by the sequence's own chunks (a tail of T mod 64
    tokens, a first chunk of min(T, 64)): bounded terms, so its costs still grow as T and
    lead with T (the scaling plot's degree was None, its leading term every size's)."""
    from ncd.compiler.cost.plot import _along

    r = analyse(gallery.get("gla_block"), device="cpu")
    for key in ("flops", "flops_backward", "activation_bytes", "peak_bytes"):
        assert r.degree("T", key) == 1, key
    assert T in r.leading("flops").free_symbols
    assert "chunk_tail" not in str(r.leading("flops"))
    assert _along(r, "T", []) == (1, "O(T·B·H^2·K·(2·K + 3·V))")


def test_doubling_t_quadruples_softmax_and_doubles_linear_attention():
    big = {"B": 4, "H": 16, "K": 128, "V": 128}
    att = analyse(gallery.get("attention"), sizes={**big, "T": 4096, "S": 4096})
    ratio = att.at("flops", T=8192, S=8192) / att.numbers["flops"]
    assert ratio == pytest.approx(4.0)
    lin = analyse(gallery.get("linear_attention"), sizes={**big, "T": 4096})
    assert lin.at("flops", T=8192) / lin.numbers["flops"] == pytest.approx(2.0)


@pytest.mark.parametrize("name", gallery.names())
def test_parameters_equal_the_compiled_module(name):
    c = gallery.get(name)
    model = ncd.compile(c)
    assert analyse(c).numbers["params"] == sum(p.numel() for p in model.parameters())


def test_repeat_multiplies_by_n():
    c = gallery.get("transformer")
    r = analyse(c, symbolic=True)
    block = analyse(c.subcircuits["transformer_block"], symbolic=True)  # the causal block
    call = next(b for b in r.boxes if b.kind == "call")
    assert sympy.expand(call.flops - N * block.formulas["flops"]) == 0
    assert sympy.expand(call.params - N * block.formulas["params"]) == 0
    model = ncd.compile(c, sizes={"N": 3})
    assert analyse(c, sizes={"N": 3}).numbers["params"] == sum(
        p.numel() for p in model.parameters()
    )


def test_fused_attention_keeps_no_score_matrix_and_moves_less():
    sizes = {"B": 4, "H": 16, "T": 4096, "S": 4096, "K": 128, "V": 128}
    fused = analyse(gallery.get("attention"), sizes=sizes, lowering="fused")
    unfused = analyse(gallery.get("attention"), sizes=sizes, lowering="unfused")
    st = S * T
    assert sympy.expand(fused.formulas["activation_bytes"]).coeff(B * H * st) == 0
    assert sympy.expand(unfused.formulas["activation_bytes"]).coeff(B * H * st) != 0
    # FlashAttention still re-reads K and V once per block of 128 queries (ops cost formula)
    assert fused.numbers["io_bytes"] < unfused.numbers["io_bytes"] / 2
    assert fused.numbers["peak_bytes"] < unfused.numbers["peak_bytes"]
    lin = analyse(gallery.get("linear_attention"), lowering="fused")
    lin_u = analyse(gallery.get("linear_attention"), lowering="unfused")
    # the running K×V state per position exists only when the chain is not fused
    kv = B * H * T * K * V
    assert sympy.expand(lin.peak_formula()).coeff(kv) == 0
    assert sympy.expand(lin_u.peak_formula()).coeff(kv) != 0


def test_a_fused_pointwise_chain_moves_only_its_border():
    b = Builder("chain", sizes={"B": 8, "D": 16})
    x = b.input("x", "B D")
    b.output("y", b.unary(b.unary(b.unary(x, "exp"), "neg"), "tanh"))
    c = b.build()
    n = 8 * 16 * 4
    assert analyse(c, lowering="fused").numbers["io_bytes"] == 2 * n
    assert analyse(c, lowering="unfused").numbers["io_bytes"] == 6 * n


def test_dtype_counts_bytes_at_that_width():
    a = analyse(gallery.get("attention"), lowering="unfused")
    h = analyse(gallery.get("attention"), lowering="unfused", dtype="bfloat16")
    assert h.numbers["activation_bytes"] * 2 == a.numbers["activation_bytes"]


def test_wtacrs_keeps_the_rows_the_op_samples_at_the_analysed_width():
    """k = ceil(0.3 n) sampled rows (ops.wtacrs.kept_rows), at the analysed dtype's width, plus
    their int64 indices: at B T = 26 rows, k = 8 for both maps (D = 16, F = 32)."""
    from ncd.ops.wtacrs.sampled import kept_rows

    k = kept_rows(2 * 13, 0.3)
    for dtype, per in (("float32", 4), ("bfloat16", 2)):
        a = analyse(gallery.get("wtacrs_linear"), sizes={"T": 13}, dtype=dtype)
        (up,) = [b for b in a.analysis.boxes if b.name == "up"]
        ((what, _, expr),) = up.saved
        sampled = expr.subs({symbol("B"): 2, symbol("T"): 13, symbol("D"): 16})
        assert what == "sampled rows of x" and sampled == k * 16 * per + 8 * k, (dtype, sampled)


@pytest.mark.parametrize("name", gallery.names())
def test_peak_holds_at_least_inputs_parameters_and_kept_tensors(name):
    r = analyse(gallery.get(name))
    n = r.numbers
    assert n["peak_bytes"] >= n["activation_bytes"] + n["param_bytes"]
    assert n["time_s"] > 0 and n["io_bytes"] > 0


@pytest.mark.parametrize("name", gallery.names())
def test_formulas_are_exact(name):
    """No float coefficient in a formula (`62.0·B·H·K·T`): the op library's cost functions
    divide sizes by integers, which sympy keeps as fractions."""
    r = analyse(gallery.get(name))
    inexact = {k: f for k, f in r.formulas.items()
               if k not in ("time_s", "time_bwd_s", "time_train_s")
               and isinstance(f, sympy.Expr) and f.atoms(sympy.Float)}  # fmt: skip
    assert not inexact


def test_errors_name_the_sizes():
    with pytest.raises(CostError, match="no size Q"):
        analyse(gallery.get("attention"), sizes={"Q": 3})
    b = Builder("free")
    x = b.input("x", "B T D")
    b.output("y", b.linear(x, "D", "F"))
    c = b.build()
    with pytest.raises(CostError, match="not bound.*B, D, F, T"):
        analyse(c)
    r = analyse(c, symbolic=True)
    assert sympy.expand(r.formulas["mm_flops"] - 2 * symbol("B") * symbol("T") * symbol("D")
                        * symbol("F")) == 0  # fmt: skip
    with pytest.raises(CostError, match="lowering"):
        analyse(c, symbolic=True, lowering="magic")
    with pytest.raises(CostError, match="unknown device"):
        analyse(c, symbolic=True, device="abacus")


def test_outputs_json_html_table():
    r = analyse(gallery.get("multihead_attention"))
    d = json.loads(r.to_json())
    want = {"flops", "flops_formula", "params", "activation_bytes", "peak_bytes", "io_bytes",
            "time_s"}  # fmt: skip
    assert want <= set(d["total"])
    assert [b["name"] for b in d["boxes"]] == [b.name for b in r.boxes]
    assert "multiply-add counts 2" in d["conventions"]
    assert "<table" in r._repr_html_() and "multiply-add counts 2" in r._repr_html_()
    text = r.table()
    assert "multiply-add counts 2" in text and "FlopCounterMode counts as zero" in text


def test_cli_json_and_plot(tmp_path):
    def ncd_cli(*args):
        p = subprocess.run([sys.executable, "-m", "ncd.cli", *args], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)  # fmt: skip
        return p.returncode, p.stdout, p.stderr

    rc, out, err = ncd_cli("analyse", "attention", "--json", "--sizes", "T=64,S=64")
    assert rc == 0, err
    assert json.loads(out)["total"]["flops"] == 2 * 2 * 4 * 64 * 64 * 16 + 6 * 2 * 4 * 64 * 64
    rc, out, err = ncd_cli("analyse", "attention", "linear_attention", "--plot", "T=256..4096",
                           "-o", "s.svg", "--overlay", "flops")  # fmt: skip
    assert rc == 0, err
    assert "attention: FLOPs grow as T^2" in out and "linear_attention: FLOPs grow as T^1" in out
    assert (tmp_path / "s.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    assert (tmp_path / "s_attention.svg").exists()
    rc, out, err = ncd_cli("analyse", "attention", "--sizes", "Q=1")
    assert rc == 1 and "no size Q" in err and "Traceback" not in err
    # one circuit, both figures: the overlay takes the circuit's name, the plot -o's
    rc, out, err = ncd_cli("analyse", "transformer_block", "--plot", "T=256..4096", "-o",
                           "one.svg", "--overlay", "flops")  # fmt: skip
    assert rc == 0, err
    assert (tmp_path / "one.svg").exists() and (tmp_path / "one_transformer_block.svg").exists()
    # the leading term is that of the swept axis (T with S = T), not of every size together
    assert "leading O(T^2·B·H·(K + V))" in out
    for args, found in (
        (["-o", "c.json"], "none of them"),
        (["--json", "-o", "c.txt"], "--json"),
        (["--overlay", "flops", "-o", "c.json"], "--overlay"),
    ):
        rc, out, err = ncd_cli("analyse", "attention", *args)
        assert (
            rc == 1 and err.startswith("ncd: error: -o names the file of --json") and found in err
        )
        assert not out and not list(tmp_path.glob("c.*"))
    rc, out, err = ncd_cli("analyse", "attention", "--plot", "T=256..99999999999999999999")
    assert rc == 1 and "(limit MAX_SIZE)" in err and not out


def test_causal_attention_is_priced_at_the_pairs_it_computes():
    """FlopCounterMode counts every (query, key) pair of causal attention (the matmul
    FLOPs), the kernel computes about half: the roofline's compute time takes the half, and
    the report lists the rest as counted beyond those priced, not as negative elementwise
    FLOPs (it listed -61.4 k under 'counts as zero', and the compute time was negative)."""
    b = Builder("causal", sizes={"B": 2, "T": 16, "H": 4, "G": 2, "K": 16, "V": 16})
    q, k, v = b.input("q", "B T H K"), b.input("k", "B S G K"), b.input("v", "B S G V")
    b.axis("S", "T")
    b.output("o", b.attention(q, k, v, causal=True, heads="H", kv_heads="G"))
    r = analyse(b.build(), dtype="bfloat16")
    box = next(x for x in r.boxes if x.kind == "attention")
    pairs = 2 * 4 * 16 * 17 // 2  # B H T(T+1)/2
    assert r.number(box.flops) == 2 * pairs * (16 + 16)
    assert r.number(box.mm_flops) == 2 * 2 * 4 * 16 * 16 * (16 + 16)
    assert r.flop_counter_zero == []
    [more] = r.flop_counter_more
    assert more["flops"] == r.number(box.mm_flops - box.flops) > 0
    assert r.table().endswith("include them): attention (attention) 61.4 k")
    # where products dominate (the "cpu" profile), the time is the priced FLOPs at the
    # matmul rate
    big = {"B": 8, "T": 16384, "H": 64, "G": 8, "K": 256, "V": 256}
    r = analyse(b.build(), sizes=big, dtype="bfloat16", device="cpu")
    box = next(x for x in r.boxes if x.kind == "attention")
    assert r.number(box.time_s) == pytest.approx(r.number(box.flops) / r.device.matmul_flops)
