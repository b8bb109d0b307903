"""GPU check of the integer ViT block (gallery `ivit_block`) compiled for CUDA: int8 input,
every integer product through ncd.ops.int8_matmul (fused="auto": compiler/choices.py's
int_matmul row) and, for comparison, through exact float64 products (fused="torch"), and the
generated file run on the GPU; each output compared bit for bit with the block compiled for
the CPU (torch's int32 einsum) and with the hand-written integer reference of
tests/gallery/test_ivit.py (I-ViT's and HAWQ-V3's equations, not the circuit). Two sets of
sizes: the test's (B 2, T 8, H 2, K 16, F 64) and ViT-like ones (DeiT-Tiny's widths: T 197,
H 3, K 64, F 768), each with the test's calibration of a random float block. One line per
case; exit status 1 on any mismatch. Not a test of the suite: run where CUDA is.

    PYTHONPATH=.:/tmp/site python3 bench/ivit_cuda_check.py
    python bench/ivit_cuda_check.py --device cpu   # CPU smoke run: the CUDA rule forced

`--device cpu` lowers with fused="ncd" on the CPU, where ncd.ops.int8_matmul runs its integer
reference, so that every path of the script runs where there is no GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ncd  # noqa: E402
from ncd import gallery, ops  # noqa: E402
from ncd.compiler import runtime, to_source  # noqa: E402
from tests.gallery import test_ivit as ref  # noqa: E402  (the reference and the calibration)

SIZES = {"test": (2, 8, 2, 16, 64), "vit": (8, 197, 3, 64, 768)}  # B, T, H, K, F


def calibrated(b, t, h, k, f):
    """The test's calibration at these sizes (its module-level sizes set for the call): int8
    input, the reference's parameters, the compiled block's state dict."""
    ref.B, ref.T, ref.H, ref.K, ref.F_, ref.D = b, t, h, k, f, h * k
    xi, p, state, _, _ = ref.calibrate()
    return xi, p, state


def loaded(model, state, device):
    full = model.state_dict()
    full.update({n: v.reshape(full[n].shape) for n, v in state.items()})
    model.load_state_dict(full)
    return model.to(device).eval()


def products(model):
    """(calls of ncd.ops.int8_matmul, batched products) in a compiled module."""
    calls = sum(n.target is ops.int8_matmul for n in model.graph.nodes)
    return calls, sum(isinstance(m, runtime.BatchedMatmul) for m in model.modules())


def timed(model, x, device, reps=5):
    """Median seconds of a forward (after one warm-up call)."""
    with torch.no_grad():
        y = model(x)
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return y, sorted(times)[len(times) // 2]


def generated(text: str):
    """The generated file imported as a module (from a temporary directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ivit_generated.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location("ivit_generated", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module


def check(name, b, t, h, k, f, device) -> bool:
    xi, p, state = calibrated(b, t, h, k, f)
    sizes = {"B": b, "T": t, "H": h, "K": k, "F": f}
    circuit = gallery.get("ivit_block")
    try:
        want = ref.int_block(xi, p)
        where = "the integer reference"
    except AssertionError as e:  # a value the reference keeps in int32 left it
        print(f"{name}: the reference refuses these sizes ({e}); against the CPU block only")
        want, where = None, "the CPU block"
    cpu = loaded(ncd.compile(circuit, sizes), state, "cpu")
    x = xi.to(torch.int8)
    with torch.no_grad():
        y_cpu = cpu(x).to(torch.int64)
    if want is None:
        want = y_cpu
    ok = torch.equal(y_cpu, want)
    print(f"{name} cpu (int32 einsum): {'bit-exact' if ok else 'MISMATCH'} against {where}")
    gpu_rule = None if device.type == "cuda" else "ncd"  # on the CPU: the CUDA rule, forced
    for fused in (gpu_rule, "torch"):
        model = ncd.compile(circuit, sizes, device=device, fused=fused)
        model = loaded(model, state, device)
        y, secs = timed(model, x.to(device), device)
        same = torch.equal(y.cpu().to(torch.int64), want)
        calls, batched = products(model)
        print(f"{name} {device.type} fused={fused or 'auto'}: int8_matmul calls {calls}, "
              f"batched {batched}, {secs * 1e3:.2f} ms: "
              f"{'bit-exact' if same else 'MISMATCH'} against {where}")  # fmt: skip
        if fused == gpu_rule and (calls, batched) != (6, 2):
            print(f"{name}: expected 6 int8_matmul calls and 2 batched products")
            same = False
        ok &= same
    model = generated(to_source(circuit, sizes)).IvitBlock().to(device).eval()
    model.load_state_dict(cpu.state_dict())
    with torch.no_grad():
        same = torch.equal(model(x.to(device)).cpu().to(torch.int64), want)
    print(f"{name} generated file on {device.type}: {'bit-exact' if same else 'MISMATCH'}")
    return ok and same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"of {', '.join(SIZES)}")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (use --device cpu for a smoke run)")
        return 1
    ok = True
    for name in args.sizes.split(","):
        ok &= check(name, *SIZES[name], device)
    print("all bit-exact" if ok else "MISMATCH: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
