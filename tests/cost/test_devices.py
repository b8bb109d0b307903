"""The roofline's device profiles: the data-sheet figures (written out here again, from the
vendors' sheets) set the ratios between GPUs, compute-bound and memory-bound alike; the CPU
profile takes its peaks as they are; every profile is named in `ncd analyse --help`; an
unknown name is one clear error."""

import subprocess
import sys

import pytest

import ncd
from ncd import Builder
from ncd.compiler.cost import DEVICES, CostError

# dense bf16 tensor TFLOP/s and memory TB/s of each data sheet
SHEETS = {
    "h100": (989, 3.35),
    "b200": (2250, 8.0),
    "a100": (312, 2.039),
    "l4": (121, 0.3),
    "rtx4090": (165.2, 1.008),
    "h200": (989, 4.8),  # measured in its profile; its data sheet gives the common scale
}


def product(n):
    """A square float32 matrix product: compute-bound at large n."""
    b = Builder("mm", sizes={"M": n, "N": n, "K": n})
    x, w = b.input("x", "M K"), b.input("w", "K N")
    b.output("y", b.contract(x, w, over="K"))
    return b.build()


def elementwise(n):
    """exp over a long vector: memory-bound."""
    b = Builder("ew", sizes={"N": n})
    b.output("y", b.unary(b.input("x", "N"), "exp"))
    return b.build()


@pytest.mark.parametrize("name", [n for n in SHEETS if n != "h200"])
def test_devices_compare_as_their_data_sheets(name):
    h200, other = SHEETS["h200"], SHEETS[name]
    t = {d: ncd.analyse(product(16384), device=d, dtype="bfloat16").numbers["time_s"]
         for d in ("h200", name)}  # fmt: skip
    assert t[name] / t["h200"] == pytest.approx(h200[0] / other[0], rel=1e-3)
    t = {d: ncd.analyse(elementwise(1 << 28), device=d).numbers["time_s"] for d in ("h200", name)}
    assert t[name] / t["h200"] == pytest.approx(h200[1] / other[1], rel=1e-3)


# FP32 (non-tensor) TFLOP/s of the data sheets
FP32 = {"h200": 67, "h100": 67, "b200": 80, "a100": 19.5, "l4": 30.3, "rtx4090": 82.6}


# the CPU profile's peaks (a 96-core EPYC 9654: cores x 2.4 GHz x 32 FP32 FLOP a cycle, bf16
# twice that; 12 channels of DDR5-4800), not scaled by what the H200 reaches
CPU = {"fp32": 7.37e12, "bf16": 14.75e12, "memory": 460.8e9}


def test_the_cpu_profile_runs_at_its_peaks():
    n = 16384
    flops = 2 * n**3
    t = {dt: ncd.analyse(product(n), device="cpu", dtype=dt).numbers["time_s"]
         for dt in ("float32", "bfloat16")}  # fmt: skip
    assert t["float32"] == pytest.approx(flops / CPU["fp32"], rel=1e-3)
    assert t["bfloat16"] == pytest.approx(flops / CPU["bf16"], rel=1e-3)
    t = ncd.analyse(elementwise(1 << 28), device="cpu").numbers["time_s"]
    assert t == pytest.approx(2 * 4 * (1 << 28) / CPU["memory"], rel=1e-3)
    assert {d.platform for d in DEVICES.values()} == {"cuda", "cpu"}
    assert [n for n, d in DEVICES.items() if d.platform == "cpu"] == ["cpu"]


@pytest.mark.parametrize("name", list(SHEETS))
def test_float32_products_run_at_the_fp32_rate(name):
    """PyTorch multiplies float32 without TF32 by default: a float32 product takes the data
    sheet's FP32 rate, float64 half of it, 16-bit ones the tensor cores' (scaled) rate."""
    n = 16384
    flops = 2 * n**3
    t = {dt: ncd.analyse(product(n), device=name, dtype=dt).numbers["time_s"]
         for dt in ("float32", "float64", "bfloat16", "float16")}  # fmt: skip
    assert t["float32"] == pytest.approx(flops / (FP32[name] * 1e12), rel=1e-3)
    assert t["float64"] == pytest.approx(2 * t["float32"], rel=1e-3)
    reached = 768 / 989  # the H200's measured share of its bf16 peak, every profile's scale
    assert (
        t["float16"]
        == t["bfloat16"]
        == pytest.approx(flops / (SHEETS[name][0] * 1e12 * reached), rel=1e-3)
    )


def test_every_profile_is_in_the_help():
    run = subprocess.run([sys.executable, "-m", "ncd.cli", "analyse", "--help"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    text = " ".join(run.stdout.split())
    assert all(name in text for name in DEVICES), text
    assert set(DEVICES) == set(SHEETS) | {"cpu"}


def test_an_unknown_device_names_the_known_ones():
    with pytest.raises(CostError, match="unknown device 'v100'; known devices: h200, h100"):
        ncd.analyse(product(64), device="v100")
    run = subprocess.run([sys.executable, "-m", "ncd.cli", "analyse", "mlp", "--device", "v100"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr and "rtx4090" in run.stderr
