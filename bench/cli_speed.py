"""CLI speed: wall time of each `ncd` command, from process start to exit, on the 17-box
transformer_block (issue 17: `--help`, `list`, `validate` under 0.3 s, `render` under 1 s,
`analyse` under 1.5 s).

Each command runs `--repeat` times in a fresh process. The machine is shared with other
engineers' work, which stretches wall times by up to 2-3x: each row keeps the median, the
minimum (the least disturbed run, which the targets are judged on) and the least CPU time
(user + system of the process and its children, such as Graphviz), with the load average
before and after. The floor row is a process that only imports pydantic, which the language
needs (sympy is imported by the cost model and the drawing, not by validation).

    .venv/bin/python bench/cli_speed.py                 # 7 runs each
    .venv/bin/python bench/cli_speed.py --repeat 11 --out bench/results/cli_speed_DATE.json
    .venv/bin/python bench/cli_speed.py --baseline /tmp/old   # a checkout of an older commit

With --baseline, each command also runs from that checkout (PYTHONPATH, `python -m ncd.cli`),
interleaved run by run with this one, so that both see the same load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

CIRCUIT = "transformer_block"  # 17 boxes

# op -> (arguments of `ncd`, target in seconds or None)
COMMANDS = {
    "cli_help": (["--help"], 0.3),
    "cli_list": (["list"], 0.3),
    "cli_validate": (["validate", CIRCUIT], 0.3),
    "cli_show": (["show", CIRCUIT], None),
    "cli_render": (["render", CIRCUIT, "-o", "{tmp}/c.svg"], 1.0),
    "cli_render_overlay": (["render", CIRCUIT, "--overlay", "flops", "-o", "{tmp}/o.svg"], 1.0),
    "cli_analyse": (["analyse", CIRCUIT], 1.5),
}


def ncd_command() -> list[str]:
    """The installed `ncd` script beside this Python, else `python -m ncd.cli`."""
    script = Path(sys.executable).with_name("ncd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ncd.cli"]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Runs(list):
    """Wall seconds of a command's runs, and the least CPU seconds of any of them."""

    cpu = float("inf")


def wall(argv: list[str], env: dict | None = None, cwd: str | None = None, into=None) -> float:
    """Wall seconds of one run; with `into` (Runs), also keeps its CPU time."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(
        argv,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    seconds = time.perf_counter() - t0
    if into is not None:
        cpu = _children_cpu() - c0
        into.cpu = min(into.cpu, cpu)
        into.append(seconds)
    return seconds


def _row(op: str, runs: Runs, target) -> dict:
    return {"op": op, "seconds": round(statistics.median(runs), 3), "min": round(min(runs), 3),
            "cpu_min": round(runs.cpu, 3), "runs": [round(r, 3) for r in runs],
            "target": target}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per command (median kept)")
    ap.add_argument("--out", help="JSON file (default bench/results/cli_speed_<date>.json)")
    ap.add_argument("--baseline", help="a checkout of another commit to time side by side")
    args = ap.parse_args()

    load_before = os.getloadavg()
    rows, baseline = [], []
    with tempfile.TemporaryDirectory() as tmp:
        floor = [sys.executable, "-c", "import pydantic"]
        cases = {"import_pydantic": (floor, None)}
        for op, (cmd, target) in COMMANDS.items():
            cases[op] = (ncd_command() + [a.format(tmp=tmp) for a in cmd], target)
        # the warm-up run writes the bytecode caches, whatever the shell says
        mine = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = None
        if args.baseline:
            env = {**mine, "PYTHONPATH": str(Path(args.baseline).resolve())}
        for op, (argv, target) in cases.items():
            old = [sys.executable, "-m", "ncd.cli", *argv[len(ncd_command()) :]]
            wall(argv, mine)  # warm the file cache and bytecode once
            if env and op.startswith("cli_"):
                wall(old, env, args.baseline)
            runs, before = Runs(), Runs()
            for _ in range(args.repeat):
                wall(argv, mine, into=runs)
                if env and op.startswith("cli_"):
                    wall(old, env, args.baseline, into=before)
            rows.append(_row(op, runs, target))
            med, best = statistics.median(runs), min(runs)
            mark = "" if target is None else (" ok" if best < target else f" > {target}")
            line = (f"{op:24} median {med:6.3f} s  min {best:6.3f} s  "
                    f"cpu {runs.cpu:6.3f} s{mark}")  # fmt: skip
            if before:
                baseline.append(_row(op, before, target))
                line += (f"   baseline median {statistics.median(before):6.3f} s  "
                         f"min {min(before):6.3f} s")  # fmt: skip
            print(line, flush=True)
    data = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "circuit": CIRCUIT,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "rows": rows,
    }
    if args.baseline:
        head = ["git", "-C", args.baseline, "rev-parse", "--short", "HEAD"]
        data["baseline_commit"] = subprocess.run(
            head, capture_output=True, text=True
        ).stdout.strip()
        data["baseline_rows"] = baseline
    out = Path(args.out or f"bench/results/cli_speed_{data['date']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out} (load average {data['load_average_before']} before, "
          f"{data['load_average_after']} after)")  # fmt: skip


if __name__ == "__main__":
    main()
