"""What bench/gluon_check.py and bench/gluon_fwd_check.py share: importing ncd on the lent
GPU machine, the error measure, and running each case in a child process with a timeout (a
Gluon kernel that waits on an mbarrier with the wrong phase hangs; the others still run)."""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_ncd():
    """ncd.ops importable: installed, or through a shim package over this checkout's ops/."""
    try:
        import ncd.ops.attention.fused  # noqa: F401

        return
    except ImportError:
        pass
    shim = os.path.join("/tmp", f"gluon_check_shim_{os.getuid()}")
    os.makedirs(os.path.join(shim, "ncd"), exist_ok=True)
    open(os.path.join(shim, "ncd", "__init__.py"), "a").close()
    link = os.path.join(shim, "ncd", "ops")
    if not os.path.islink(link):
        os.symlink(os.path.join(ROOT, "ops"), link)
    sys.path.insert(0, shim)
    for name in [m for m in sys.modules if m == "ncd" or m.startswith("ncd.")]:
        del sys.modules[name]
    import ncd.ops.attention.fused  # noqa: F401


def rel_rms(x, ref):
    """Relative RMS error; NaN counts as infinity (a NaN passes every `<`)."""
    x, ref = x.double(), ref.double()
    err = ((x - ref).norm() / ref.norm()).item()
    return err if err == err else float("inf")


def main(cases, run_case, script):
    """Command line of a check script: `cases` maps a name to a tuple whose last item is the
    case's timeout in seconds; `run_case(name)` returns True when the case passes."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--case", help="run one case in this process")
    ap.add_argument("--only", help="comma-separated cases to run (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument(
        "--stop-on-hang",
        action="store_true",
        help="skip the remaining cases after one hangs (they would likely hang too)",
    )
    args = ap.parse_args()
    if args.list:
        for n, c in cases.items():
            print(n, c)
        return 0
    if args.case:
        return 0 if run_case(args.case) else 1
    names = args.only.split(",") if args.only else list(cases)
    status = {}
    for n in names:
        if args.stop_on_hang and any(s.startswith("HUNG") for s in status.values()):
            status[n] = "not run (an earlier case hung)"
            continue
        timeout = cases[n][-1]
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, os.path.abspath(script), "--case", n], cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)  # fmt: skip
            out = r.stdout + r.stderr
            status[n] = "ok" if r.returncode == 0 else f"FAIL (exit {r.returncode})"
        except subprocess.TimeoutExpired as e:
            out = e.stdout or ""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            status[n] = f"HUNG (killed after {timeout} s)"
        tail = out if len(out) < 6000 else "...\n" + out[-6000:]
        print(tail.rstrip(), flush=True)
        print(f"=== {n}: {status[n]} ({time.time() - t0:.0f} s)", flush=True)
    print("\nSUMMARY")
    for n, s in status.items():
        print(f"  {n:18s} {s}")
    return 0 if all(s == "ok" for s in status.values()) else 1
