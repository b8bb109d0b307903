"""Correctness of every option of the op library on the GPU (bf16 included), against the
float64 references; a check to run on a CUDA machine, where the CPU tests cannot reach.

    python bench/ops_gpu_check.py            # on the GPU machine (ncd.ops importable)
    TRITON_INTERPRET=1 python bench/ops_gpu_check.py --device cpu --dtypes float32,float16

Prints one line per case with the largest relative RMS error over the outputs and every
gradient (and which one it was), and exits 1 if any case exceeds its bound (5e-3 for 16-bit
types; 1e-4 for float32, whose products run as three tf32 products on the GPU: one tf32
product, Triton's default, left 1-2.3e-3).
"""

import argparse
import sys

import torch

from ncd.ops import linear_attention, softmax_attention
from ncd.ops.attention import fused
from ncd.ops.attention.reference import softmax_attention_reference
from ncd.ops.linear_attention import linear_attention_reference

# Steps (forward + backward) run before the checked one, so that the checked one launches
# the compiled kernels directly (`_backend.FAST_LAUNCH`), as every step after the first does.
REPEAT = 0
BOUND = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 5e-3}


def rel_rms(x, ref):
    # NaN becomes inf: a NaN error would pass every `<` and be dropped by `max`.
    x, ref = x.double(), ref.double()
    err = ((x - ref).norm() / ref.norm()).item()
    return err if err == err else float("inf")


def grads_err(outs, refs, inputs, ref_inputs, g, names):
    """(largest error, its name) over the outputs and the gradients; names: outputs' then
    inputs' names."""
    cot = [torch.randn(o.shape, generator=g, device=o.device).to(o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, inputs, cot)
    ref_grads = torch.autograd.grad(refs, ref_inputs, [c.double() for c in cot])
    errs = [rel_rms(a, b) for a, b in zip(outs, refs)]
    errs += [rel_rms(a, b) for a, b in zip(grads, ref_grads)]
    return max(zip(errs, names))


def softmax_case(dev, dtype, B, T, S, H, Hkv, D, causal, seed, atomic_dq=None):
    if atomic_dq is not None:  # the backward schedule under test, else the library's default
        fused.ATOMIC_DQ, default = atomic_dq, fused.ATOMIC_DQ
        try:
            return softmax_case(dev, dtype, B, T, S, H, Hkv, D, causal, seed)
        finally:
            fused.ATOMIC_DQ = default
    g = torch.Generator(device=dev).manual_seed(seed)
    q = torch.randn(B, T, H, D, device=dev, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, S, Hkv, D, device=dev, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, S, Hkv, D, device=dev, generator=g).to(dtype).requires_grad_()
    for _ in range(REPEAT):
        softmax_attention(q, k, v, causal=causal, backend="triton").float().sum().backward()
    o = softmax_attention(q, k, v, causal=causal, backend="triton")
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    o_ref = softmax_attention_reference(*ref_in, causal=causal)
    return grads_err([o], [o_ref], [q, k, v], ref_in, g, ["o", "dq", "dk", "dv"])


def linear_case(dev, dtype, B, T, H, K, V, decay, state, normalize, cu, seed):
    g = torch.Generator(device=dev).manual_seed(seed)
    q, k = (torch.randn(B, T, H, K, device=dev, generator=g) for _ in range(2))
    if normalize:
        q, k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    else:
        q, k = (torch.nn.functional.normalize(x, dim=-1) for x in (q, k))
    v = torch.randn(B, T, H, V, device=dev, generator=g)
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    cu = None if cu is None else torch.tensor(cu, device=dev)
    N = B if cu is None else len(cu) - 1
    lam = (0.9 + 0.1 * torch.rand(H, device=dev, generator=g)) if decay else None
    s0 = None
    if state:
        s0 = torch.randn(N, H, K, V, device=dev, generator=g).requires_grad_()
        inputs.append(s0)
        if normalize:
            z0 = torch.rand(N, H, K, device=dev, generator=g).requires_grad_()
            inputs.append(z0)
            s0 = (s0, z0)
    kw = dict(decay=lam, output_final_state=state, normalize=normalize, cu_seqlens=cu, scale=0.2)
    for _ in range(REPEAT):
        o, _ = linear_attention(*inputs[:3], initial_state=s0, backend="triton", **kw)
        o.float().sum().backward()
    o, st = linear_attention(*inputs[:3], initial_state=s0, backend="triton", **kw)
    ref_in = [x.detach().double().requires_grad_() for x in inputs]
    ref_s0 = None if s0 is None else (tuple(ref_in[3:]) if normalize else ref_in[3])
    o_ref, st_ref = linear_attention_reference(*ref_in[:3], initial_state=ref_s0, **kw)
    outs, refs = [o], [o_ref]
    names = ["o"]
    if state:
        outs += list(st) if normalize else [st]
        refs += list(st_ref) if normalize else [st_ref]
        names += ["S_T", "z_T"] if normalize else ["S_T"]
    names += ["dq", "dk", "dv", "dS0", "dz0"]  # zip stops at the inputs there are
    return grads_err(outs, refs, inputs, ref_in, g, names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtypes", default="bfloat16,float16,float32")
    ap.add_argument("--ops", default="softmax,linear", help="families to check")
    ap.add_argument("--repeat", type=int, help="steps before the checked one (GPU: 2, CPU: 0)")
    args = ap.parse_args()
    dev = args.device
    global REPEAT
    REPEAT = args.repeat if args.repeat is not None else (0 if dev == "cpu" else 2)
    small = dev == "cpu"  # the interpreter is slow: smaller shapes
    T = 63 if small else 1000
    failed = 0
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        cases = []
        for D in (64, 128) if not small else (32,):
            for causal in (True, False):
                cases.append(
                    (
                        f"softmax D={D} causal={causal} GQA 4/2",
                        softmax_case,
                        (dev, dtype, 2, T, T, 4, 2, D, causal, 1),
                    )
                )
            cases.append(
                (
                    f"softmax D={D} T=200 S=333 non-causal",
                    softmax_case,
                    (
                        dev,
                        dtype,
                        1,
                        200 if not small else 20,
                        333 if not small else 33,
                        2,
                        2,
                        D,
                        False,
                        2,
                    ),
                )
            )
        # T2: a whole number of 128-row blocks, where dK/dV reads 2-d tiles.
        T2 = 128 if small else 1024
        for D, t, causal, atomic in (
            (60 if not small else 20, T, True, None),
            (128 if not small else 32, T, True, True),
            (128 if not small else 32, T, True, False),
            (128 if not small else 32, T2, True, True),
            (128 if not small else 32, T2, True, False),
            (64 if not small else 32, T2, False, False),
        ):
            cases.append(
                (
                    f"softmax D={D} T={t} causal={causal} GQA 4/2 atomic_dq={atomic}",
                    softmax_case,
                    (dev, dtype, 2, t, t, 4, 2, D, causal, 4, atomic),
                )
            )
        # No grouping, whole 128-row blocks, 16-bit: the Hopper (Gluon) dK/dV kernel there.
        for D, t, s_len, causal in ((128, T2, T2, True), (128, T2, T2, False), (64, T2, T2, True),
                                    (64, T2, T2 // 2, False)):  # fmt: skip
            d = D if not small else 32
            cases.append(
                (
                    f"softmax D={d} T={t} S={s_len} causal={causal} heads 4/4",
                    softmax_case,
                    (dev, dtype, 2, t, s_len, 4, 4, d, causal, 5),
                )
            )
        K = 32 if small else 128
        cu = [0, 17, 17, 40, T] if small else [0, 100, 100, 613, T]
        for decay, state, normalize, packed in [
            (False, False, False, False),
            (True, False, False, False),
            (True, True, False, False),
            (False, True, True, False),
            (True, True, False, True),
            (False, False, False, True),
        ]:
            cases.append(
                (
                    f"linear decay={decay} state={state} normalize={normalize} packed={packed}",
                    linear_case,
                    (
                        dev,
                        dtype,
                        1 if packed else 2,
                        T,
                        3,
                        K,
                        K,
                        decay,
                        state,
                        normalize,
                        cu if packed else None,
                        3,
                    ),
                )
            )
        cases = [c for c in cases if c[0].split()[0] in args.ops.split(",")]
        for label, fn, a in cases:
            err, worst = fn(*a)
            ok = err <= BOUND[dtype]
            failed += not ok
            print(
                f"{'ok  ' if ok else 'FAIL'} {name:9s} {label:55s} max rel err {err:.2e} ({worst})",
                flush=True,
            )
    print(f"{failed} case(s) over the bound")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
