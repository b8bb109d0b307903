"""Kept memory of the gated linear-attention boxes against what their kernels' autograd
Functions save.

The cost model prices each variant as the kernel it lowers to on CUDA (compiler/fused.py).
On the CPU the op runs its chunked PyTorch form, whose autograd keeps other tensors (the CPU
profile prices GLA so: tests/cost/test_measure_sizes.py), so the measurement runs the Triton
Functions themselves: in a subprocess under Triton's interpreter
(`TRITON_INTERPRET=1`), with the compiled module's op calls switched to `backend="triton"`,
saved-tensor hooks record the storages kept by the forward (forward only: the backward is
not needed to see what is kept). The interpreter runs GLA with chunks of 32 where the GPU
runs 64: the measurement is compared with the model at the chunk the kernels ran with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ncd
from ncd import gallery
from ncd.circuits.builder import Builder
from ncd.compiler.cost.rules import linear_attention as la_rules
from ncd.ops import config as ops_config

ROOT = Path(__file__).parents[2]
# The sizes of the issue that reported kept memory modelled far below what was measured.
SIZES = {"T": 128, "H": 4, "K": 64, "V": 64}

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import ncd
    from ncd import ops
    from ncd.circuits.circuit import Circuit
    from ncd.ops.gla import chunk as gla_chunk
    from ncd.ops.delta_rule import chunk as delta_chunk
    sys.path.insert(0, {root!r})
    from tests.cost import measure

    for name, on in {keep!r}.items():
        setattr(ops.config.settings, name, on)
    circuit = Circuit.model_validate_json({spec!r})
    sizes, dtype = {sizes!r}, getattr(torch, {dtype!r})
    m = ncd.compile(circuit, sizes=sizes, dtype=dtype)
    FNS = (ops.simple_gla, ops.gla, ops.delta_rule, ops.gated_delta_rule)
    for n in m.graph.nodes:
        if n.target in FNS:
            n.kwargs = {{**n.kwargs, "backend": "triton"}}
    m.recompile()
    xs = measure.make_inputs(circuit, sizes, dtype=dtype)
    params = {{p.untyped_storage().data_ptr() for p in m.parameters()}}
    state = {{"box": None}}
    kept = {{}}

    class Run(torch.fx.Interpreter):
        def run_node(self, n):
            state["box"] = n.meta.get("ncd_box") if n.target in FNS else None
            try:
                return super().run_node(n)
            finally:
                state["box"] = None

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            kept.setdefault(s.data_ptr(), [s.nbytes(), set()])[1].add(state["box"])
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        Run(m).run(*xs)
    boxes = {{}}
    for nbytes, where in kept.values():
        for b in where - {{None}}:
            boxes[b] = boxes.get(b, 0) + nbytes
    total = sum(n for n, _ in kept.values())
    interp = delta_chunk.interpreting()
    delta = delta_chunk.INTERPRET_CHUNK if interp else delta_chunk.CHUNK
    every = delta_chunk.INTERPRET_CHECKPOINT if interp else delta_chunk.CHECKPOINT_CHUNKS
    chunks = {{"gla": gla_chunk.CHUNK, "delta": delta, "delta_segment": delta * every}}
    print(json.dumps({{"boxes": boxes, "total": total, "chunks": chunks}}))
""")


def measured(circuit, dtype, keep=None):
    script = SCRIPT.format(root=str(ROOT), spec=circuit.model_dump_json(), sizes=SIZES,
                           dtype=dtype, keep=keep or {})  # fmt: skip
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def gated_box_circuit():
    """`decay` (per-token and per-head gates) and `gated_delta` boxes over projections."""
    b = Builder("gated_boxes", axes={"D": "H*K"}, sizes={"B": 2})
    x = b.input("x", "B T D")
    q, k, v = (b.linear(x, "D", f"H {d}", bias=False, name=n) for n, d in
               (("q", "K"), ("k", "K"), ("v", "V")))  # fmt: skip
    k = b.normalize(k, "K", name="l2")
    g = b.unary(b.linear(x, "D", "H", name="g"), "logsigmoid", name="log_g")
    beta = b.unary(b.linear(x, "D", "H", name="b"), "sigmoid", name="beta")
    gh = b.unary(b.param("H", name="gh"), "logsigmoid", name="log_gh")
    b.output("tok", b.linear_attention(q, k, v, key="T", variant="decay", g=g, name="dec"))
    b.output("head", b.linear_attention(q, k, v, key="T", variant="decay", g=gh, name="dech"))
    b.output("gd", b.linear_attention(q, k, v, key="T", variant="gated_delta", g=g, beta=beta,
                                      name="gdl"))  # fmt: skip
    return b.build()


def grouped_box_circuit():
    """Grouped heads, read in place by every causal variant's kernels, which keep q and k as
    they are: `decay` over q and k of G = 2 groups read by the H = 4 heads (Mamba-2's C and
    B), `gla` and `gated_delta` over the same groups (their gates per value head), and the
    delta rule over q and k of no head axis (one group)."""
    b = Builder("grouped_boxes", axes={"D": "H*K", "G": 2}, sizes={"B": 2})
    x = b.input("x", "B T D")
    q, k = (b.linear(x, "D", "G K", bias=False, name=n) for n in ("q", "k"))
    v = b.linear(x, "D", "H V", bias=False, name="v")
    g = b.unary(b.linear(x, "D", "H", name="g"), "logsigmoid", name="log_g")
    gk = b.unary(b.linear(x, "D", "H K", name="gk"), "logsigmoid", name="log_gk")
    beta = b.unary(b.linear(x, "D", "H", name="b"), "sigmoid", name="beta")
    b.output("ssd", b.linear_attention(q, k, v, key="T", variant="decay", g=g, heads="H",
                                       qk_heads="G", name="ssd"))  # fmt: skip
    b.output("gla", b.linear_attention(q, k, v, key="T", variant="gla", g=gk, heads="H",
                                       qk_heads="G", name="ggla"))  # fmt: skip
    kn = b.normalize(k, "K", name="l2g")
    b.output("gdn", b.linear_attention(q, kn, v, key="T", variant="gated_delta", g=g,
                                       beta=beta, heads="H", qk_heads="G", name="gdn"))  # fmt: skip
    q1 = b.linear(x, "D", "K", bias=False, name="q1")
    k1 = b.normalize(b.linear(x, "D", "K", bias=False, name="k1"), "K", name="l2")
    b.output("delta", b.linear_attention(q1, k1, v, key="T", variant="delta", beta=beta,
                                         heads="H", name="shared"))  # fmt: skip
    return b.build()


# Kept tensors the model prices per token at the GPU's chunk of 64, with the family whose
# chunk the kernels ran with (smaller under the interpreter).
PER_CHUNK = {"intra-chunk scores A": "gla", "T, each chunk's WY inverse": "delta"}
# ... and those it prices per chunk (one per 64 tokens).
PER_64 = {"the state entering each chunk": "delta"}
# ... and per segment of 16 chunks (config delta_checkpoint_states)
PER_SEGMENT = "the state entering every 16th chunk"


def _at_chunk(what, n, chunks):
    """n bytes of kept tensor `what` at the chunk the kernels ran with."""
    if what.startswith(PER_SEGMENT):  # one per segment of each sequence, the model's of 1,024
        T = SIZES["T"]
        return n // -(-T // (64 * 16)) * -(-T // chunks["delta_segment"])
    family = next((f for prefix, f in PER_CHUNK.items() if what.startswith(prefix)), None)
    if family is not None:
        return n * chunks[family] // 64
    family = next((f for prefix, f in PER_64.items() if what.startswith(prefix)), None)
    return n if family is None else n * 64 // chunks[family]


def model_kept(report, box, chunks):
    """The model's kept bytes of `box`, per-chunk tensors at the chunk the kernels ran with."""
    b = next(b for b in report.boxes if b.name == box)
    return sum(_at_chunk(what, report.number(n), chunks) for what, _, n in b.saved)


CASES = {
    "gla_block": (lambda: gallery.get("gla_block"), "float32", ["mixer"], {}),
    "deltanet_block": (lambda: gallery.get("deltanet_block"), "float32", ["mixer"], {}),
    "gated_boxes": (gated_box_circuit, "float16", ["dec", "dech", "gdl"], {}),
    "grouped_boxes": (grouped_box_circuit, "float32", ["ssd", "ggla", "gdn", "shared"], {}),
    # the delta rule's forward keeping its chunk states and V' (ops config delta_keep_states)
    "deltanet_block keeping states": (
        lambda: gallery.get("deltanet_block"),
        "float32",
        ["mixer"],
        {"delta_keep_states": True},
    ),  # fmt: skip
    # ... or state checkpoints (delta_checkpoint_states)
    "deltanet_block checkpointing states": (
        lambda: gallery.get("deltanet_block"),
        "float32",
        ["mixer"],
        {"delta_checkpoint_states": True},
    ),  # fmt: skip
    # ... or V' in place of -W (delta_keep_values)
    "deltanet_block keeping values": (
        lambda: gallery.get("deltanet_block"),
        "float32",
        ["mixer"],
        {"delta_keep_values": True},
    ),  # fmt: skip
    # the gated rule keeping V' in place of -W (gated_delta_keep_values)
    "gated_boxes keeping values": (
        gated_box_circuit,
        "float16",
        ["dec", "dech", "gdl"],
        {"gated_delta_keep_values": True},
    ),  # fmt: skip
}


@pytest.mark.interpret
@pytest.mark.parametrize("case", sorted(CASES))
def test_kept_memory_is_what_the_kernels_save(case, monkeypatch):
    make, dtype, boxes, keep = CASES[case]
    circuit = make()
    got = measured(circuit, dtype, keep)
    # The measurement runs the Triton Functions on CPU tensors (backend="triton"), where the
    # CPU profile prices GLA as the chunked PyTorch form that CPU tensors run: told the same.
    monkeypatch.setattr(la_rules, "_runs_chunked_form", lambda *a: False)
    with ops_config.override(**keep):
        # the other boxes run PyTorch's CPU kernels
        report = ncd.analyse(circuit, sizes=SIZES, lowering="unfused", dtype=dtype, device="cpu")
    for box in boxes:
        model = model_kept(report, box, got["chunks"])
        assert abs(model - got["boxes"][box]) <= 0.10 * got["boxes"][box], (box, model, got)
    # the whole module: every box's kept tensors (parameters excluded), the fused ones as
    # their kernels keep them (tests/cost/test_measure.py checks the other boxes alone)
    shrink = sum(
        report.number(n) - _at_chunk(what, report.number(n), got["chunks"])
        for b in report.boxes
        if b.kind == "linear_attention"
        for what, _, n in b.saved
    )
    model_total = report.numbers["activation_bytes"] - shrink
    assert abs(model_total - got["total"]) <= 0.10 * got["total"], (model_total, got)


def test_each_variant_is_priced_as_its_kernel():
    """The mixer of each gallery block names the kernel it lowers to and keeps no chunk
    states: q, k, v and the gates (GLA: also its float32 intra-chunk scores A; the delta rule
    its chunks' WY inverse T, 64 values per token, and V', V per token, or with config
    delta_keep_values off -W, K per token, in its place, and with delta_checkpoint_states, on
    by default, one float32 K x V state per head and 1,024 tokens of each sequence)."""
    r = ncd.analyse(gallery.get("gla_block"), sizes=SIZES, dtype="bfloat16")
    mixer = next(b for b in r.boxes if b.name == "mixer")
    assert mixer.kernel == "ncd.ops.gla"
    B, T, H, K = 2, 128, 4, 64
    assert sum(r.number(n) for _, _, n in mixer.saved) == B * T * H * (2 * (3 * K + K) + 4 * 64)
    with ops_config.override(delta_keep_values=False):
        r = ncd.analyse(gallery.get("deltanet_block"), sizes=SIZES, dtype="bfloat16")
    mixer = next(b for b in r.boxes if b.name == "mixer")
    assert mixer.kernel == "ncd.ops.delta_rule"
    kept = {what: r.number(n) for what, _, n in mixer.saved}
    assert kept["beta, float32 [B, T, H]"] == 4 * B * T * H  # bf16 beta, converted
    assert kept["T, each chunk's WY inverse (64 per token)"] == 2 * 64 * B * T * H
    assert kept["-W = -T diag(beta gamma) K (K per token)"] == 2 * K * B * T * H
    checkpoints = 4 * K * K * B * H * 1  # T = 128: one segment of 1,024 tokens
    assert kept["the state entering every 16th chunk (float32 K x V)"] == checkpoints
    assert sum(kept.values()) == B * T * H * (2 * 4 * K + 4 + 2 * 64) + checkpoints
    with ops_config.override(delta_keep_values=False, delta_checkpoint_states=False):
        r = ncd.analyse(gallery.get("deltanet_block"), sizes=SIZES, dtype="bfloat16")
    mixer = next(b for b in r.boxes if b.name == "mixer")
    assert sum(r.number(n) for _, _, n in mixer.saved) == B * T * H * (2 * 4 * K + 4 + 2 * 64)
    with ops_config.override(delta_checkpoint_states=False):  # delta_keep_values: on
        r = ncd.analyse(gallery.get("deltanet_block"), sizes=SIZES, dtype="bfloat16")
    mixer = next(b for b in r.boxes if b.name == "mixer")
    kept = {what: r.number(n) for what, _, n in mixer.saved}
    assert kept["V' = U - W S (V per token)"] == 2 * K * B * T * H
    assert "-W = -T diag(beta gamma) K (K per token)" not in kept
    assert sum(kept.values()) == B * T * H * (2 * 4 * K + 4 + 2 * 64)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_prepared_products_are_priced(dtype):
    """Config delta_prepared_qk: deltanet_block's forward and backward FLOPs and HBM traffic
    move by what ops/delta_rule/cost.py's prepared formulas add (Q K^T once per chunk instead
    of once per value block; q read and Q K^T written by the prepare kernel and by the
    backward's _qk_kernel, read by each scan program)."""
    from ncd.ops.delta_rule import cost as dr

    circuit = gallery.get("deltanet_block")
    got = {}
    for prepared in (False, True):
        with ops_config.override(delta_prepared_qk=prepared):
            r = ncd.analyse(circuit, sizes=SIZES, lowering="fused", dtype=dtype)
        keys = ("flops", "io_bytes", "flops_backward", "io_bytes_backward")
        got[prepared] = [r.number(r.formulas[key]) for key in keys]
        notes = next(b for b in r.boxes if b.name == "mixer").notes
        assert any("delta_prepared_qk on" in n for n in notes) == prepared  # the report says so
        sizes = r.sizes
    B, T, K, V = sizes["B"] * sizes["H"], sizes["T"], sizes["K"], sizes["V"]
    bp = 2 if dtype == "bfloat16" else 4
    want = [
        f(B, T, 1, K, V, prepared=True) - f(B, T, 1, K, V)
        for f in (
            dr.flops_forward,
            lambda *a, **kw: dr.io_forward(*a, bytes_per=bp, **kw),
            dr.flops_backward,
            lambda *a, **kw: dr.io_backward(*a, bytes_per=bp, **kw),
        )
    ]
    assert want[1] > 0 and want[3] > 0 and want[0] <= 0 and want[2] <= 0
    assert [t - f for t, f in zip(got[True], got[False])] == pytest.approx(want, rel=1e-9)


def test_factored_decay_is_named_and_priced_as_the_decay_matrix():
    """Config gated_delta_factored changes which elementwise work the gated scans do, not
    their products, bytes or kept tensors: the gated delta box's report names the switch and
    keeps every figure; the ungated rule's report does not name it."""
    keys = ("flops", "io_bytes", "flops_backward", "io_bytes_backward", "activation_bytes")
    reports = {}
    for factored in (False, True):
        with ops_config.override(gated_delta_factored=factored):
            reports[factored] = (
                ncd.analyse(gated_box_circuit(), sizes=SIZES, lowering="fused"),
                ncd.analyse(gallery.get("deltanet_block"), sizes=SIZES, lowering="fused"),
            )
    for before, after in zip(reports[False], reports[True]):
        assert [before.number(before.formulas[k]) for k in keys] == [
            after.number(after.formulas[k]) for k in keys
        ]
    gated = {f: next(b for b in reports[f][0].boxes if b.name == "gdl") for f in reports}
    assert any("gated_delta_factored off" in n for n in gated[False].notes)
    assert not any("gated_delta_factored" in n for n in gated[True].notes)  # the default
    ungated = next(b for b in reports[False][1].boxes if b.name == "mixer")
    assert not any("gated_delta_factored" in n for n in ungated.notes)
