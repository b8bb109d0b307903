"""Each op's CUDA kernels traced (a diagnosis aid, not a test): torch.compile(fullgraph=True,
aot_eager) and torch.export of one call per op in bf16, against the eager call, outputs and
every input gradient (tests/ops/test_traced.py does the same under Triton's interpreter, where
the Gluon kernels and the compiled launch path do not run).

    python bench/diagnose/traced_ops.py [--ops simple_gla,gla]
"""

import argparse
import time

import torch
import torch.nn.functional as F

from ncd import ops

B, T, H, K = 2, 1024, 4, 64


def cases():
    def r(*shape, dtype=torch.bfloat16):
        return torch.randn(*shape, device="cuda").to(dtype)

    def gates(*shape):
        return F.logsigmoid(r(*shape, dtype=torch.float32) + 1) / 4

    def qkv(b=B):
        return [r(b, T, H, K) for _ in range(3)]

    cu = torch.tensor([0, 300, T], device="cuda", dtype=torch.int32)
    f32 = torch.float32
    return {
        "simple_gla": ([*qkv(), gates(B, T, H), r(B, H, K, K, dtype=f32)],
                       lambda q, k, v, g, s: ops.simple_gla(q, k, v, g, initial_state=s,
                                                            output_final_state=True)),
        "linear_attention": (qkv(), lambda q, k, v: ops.linear_attention(q, k, v)[0]),
        "gla": ([*qkv(), gates(B, T, H, K)], lambda q, k, v, g: ops.gla(q, k, v, g)[0]),
        "delta_rule": ([*qkv(), torch.sigmoid(r(B, T, H))],
                       lambda q, k, v, b: ops.delta_rule(q, k, v, b, use_qk_l2norm=True)[0]),
        "gated_delta_rule": ([*qkv(1), gates(1, T, H), torch.sigmoid(r(1, T, H))],
                             lambda q, k, v, g, b: ops.gated_delta_rule(
                                 q, k, v, g, b, cu_seqlens=cu, use_qk_l2norm=True)[0]),
        "softmax_attention": ([r(B, H, T, K) for _ in range(3)],
                              lambda q, k, v: ops.softmax_attention(q, k, v, causal=True)),
        "layer_norm": ([r(T, 512), r(512), r(512)], lambda x, w, b: ops.layer_norm(x, w, b)),
        "add_rms_norm": ([r(T, 512), r(T, 512), r(512)],
                         lambda x, res, w: ops.add_rms_norm(x, res, w)),
        "short_conv": ([r(B, T, 256), r(256, 4), r(256)],
                       lambda x, w, b: ops.short_conv(x, w, b, activation="silu")),
        "wtacrs_linear": ([r(T, 256), r(128, 256), r(128)],
                          lambda x, w, b: ops.wtacrs_linear(x, w, b, budget=0.3)),
    }  # fmt: skip


def outputs(out):
    return [t for t in (out if isinstance(out, tuple) else (out,)) if t is not None]


def run(fn, inputs):
    leaves = [x.clone().requires_grad_() for x in inputs]
    torch.manual_seed(0)  # the same draws (WTA-CRS) in every run
    outs = outputs(fn(*leaves))
    weights = [torch.linspace(-1, 1, o.numel(), device="cuda").view(o.shape) for o in outs]
    sum((o.float() * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
    return [o.detach() for o in outs] + [x.grad for x in leaves]


def check(name, inputs, fn):
    t0 = time.time()
    want = run(fn, inputs)
    torch._dynamo.reset()
    got = run(torch.compile(fn, backend="aot_eager", fullgraph=True), inputs)
    same = all(torch.equal(a, b) for a, b in zip(got, want, strict=True))

    class Op(torch.nn.Module):
        def forward(self, *xs):
            return tuple(outputs(fn(*xs)))

    program = torch.export.export(Op(), tuple(inputs))
    calls = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    exported = sorted({c for c in calls if c.startswith("ncd.")})
    torch.manual_seed(0)
    e = outputs(program.module()(*inputs))
    torch.manual_seed(0)
    e_same = all(torch.equal(a, b) for a, b in zip(e, outputs(fn(*inputs)), strict=True))
    print(f"{name:18s} compiled whole, equal: {same}; exported {exported}, equal: {e_same} "
          f"[{time.time() - t0:.0f} s]", flush=True)  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", default=None, help="comma-separated names (default: all)")
    args = ap.parse_args()
    table = cases()
    for name in args.ops.split(",") if args.ops else table:
        try:
            check(name, *table[name])
        except Exception as e:
            print(f"{name:18s} FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)


if __name__ == "__main__":
    main()
