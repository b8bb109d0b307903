"""The Studio's edit -> redraw time, measured in the browser (JupyterLab + Chromium/Playwright).

Opens chains of 50 and 200 boxes (linear, GELU, linear, residual add, repeated: the shape of a
stack of MLP blocks) in one notebook, and for each does what a user does: a palette click
that adds a box after the selected one, Delete of that box, Ctrl+Z, Ctrl+Shift+Z, a collapse
of a block and its expansion. The time of one action is measured by the page itself: from the
moment the intent is sent to the kernel until the new drawing is in the page with its handles
(the canvas's `data-last-ms`; `data-draw-ms` is the page's own part). Targets: 150 ms at 50
boxes, 500 ms at 200 (issue #18).

Two passes, each in a JupyterLab of its own: first with the kept drawings and checks off
(draw.api.LAYOUT_CACHE_ENTRIES = 0, studio.CHECKS_KEPT = 1: every action lays out and
validates what it shows, as an edit to a circuit never seen does), then with them on (as a
user has them: undo, redo and expand show drawings made before).

    .venv/bin/python bench/studio_speed.py [--repeat 5] [-o bench/results/studio_edit.json]

Rows: {"op": "studio_edit", "action": ..., "boxes": N, "ms": the minimum over the repeats,
"median_ms", "runs": [...], "draw_ms": [the page's part of each run], "layouts_kept": bool,
"target_ms": ...}; meta as the other results files (date, commit, cpus, load, device "cpu").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: tests.widgets.lab
from tests.widgets.lab import jupyter_lab  # noqa: E402

TOKEN = "ncd-bench"
SIZES = (50, 200)
TARGET_MS = {50: 150, 200: 500}
CELL = """import ncd
from ncd import Builder
from IPython.display import display
from ncd.circuits.draw import api as draw_api
from ncd.widgets import studio as studio_module

if not KEPT:
    draw_api.LAYOUT_CACHE_ENTRIES, studio_module.CHECKS_KEPT = 0, 1

def chain(n):
    b = Builder(f"chain{n}", sizes={"B": 2, "T": 16, "D": 32, "F": 64})
    x = b.input("x", "B T D")
    k = 0
    while k + 4 <= n:
        with b.group(f"block {k // 4}"):
            h = b.linear(x, over="D", out="F", name=f"up{k}")
            h = b.gelu(h, name=f"act{k}")
            h = b.linear(h, over="F", out="D", name=f"down{k}")
        x = b.add(x, h, name=f"res{k}")
        k += 4
    b.output("y", x)
    return b.build()

studios = [ncd.Studio(chain(n)) for n in SIZES]
display(*studios)
"""


def _timed(page, studio, act) -> tuple[float, float]:
    """Run `act`, wait for the page's next drawing; its intent -> drawn time and the time of
    the page's own drawing (ms)."""
    studio.evaluate("el => { delete el.dataset.lastMs; }")
    act()
    page.wait_for_function("el => el.dataset.lastMs !== undefined", arg=studio.element_handle())
    return float(studio.get_attribute("data-last-ms")), float(studio.get_attribute("data-draw-ms"))


def measure(page, k: int, n: int, repeat: int, kept: bool) -> list[dict]:
    s = page.locator(".ncd-studio").nth(k)
    s.locator("g.node").first.wait_for()
    box = 'g.node[id="box:act0"]'
    actions = {
        "add_box": lambda: s.locator('.ncd-kind[data-kind="dropout"]').click(),
        "delete_box": lambda: (s.focus(), page.keyboard.press("Delete")),
        "undo": lambda: (s.focus(), page.keyboard.press("Control+z")),
        "redo": lambda: (s.focus(), page.keyboard.press("Control+Shift+z")),
        "collapse": lambda: s.locator('.ncd-toggle[data-path$=":block 0"]').dispatch_event("click"),
        "expand": lambda: s.locator('.ncd-toggle[data-path$=":block 0"]').dispatch_event("click"),
    }
    runs: dict[str, list[float]] = {a: [] for a in actions}
    draws: dict[str, list[float]] = {a: [] for a in actions}
    for _ in range(repeat):
        s.locator(box).dispatch_event("click")  # select act0: the new box follows it
        page.wait_for_function(
            "el => el.querySelector('.ncd-sel') !== null", arg=s.element_handle()
        )
        for action in ("add_box", "delete_box", "undo", "redo", "collapse", "expand"):
            if action == "delete_box":  # the added box is selected: Delete removes it
                s.locator('g.node[id="box:dropout"]').wait_for()
            ms, draw_ms = _timed(page, s, actions[action])
            runs[action].append(ms)
            draws[action].append(draw_ms)
    return [
        {
            "op": "studio_edit",
            "action": a,
            "boxes": n,
            "ms": min(r),
            "median_ms": statistics.median(r),
            "runs": r,
            "draw_ms": draws[a],
            "layouts_kept": kept,
            "target_ms": TARGET_MS[n],
        }
        for a, r in runs.items()
    ]


def _pass(chromium: str, kept: bool, repeat: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    cell = CELL.replace("SIZES", repr(SIZES)).replace("KEPT", repr(kept))
    with (
        tempfile.TemporaryDirectory() as tmp,
        jupyter_lab(Path(tmp), "bench.ipynb", [cell], TOKEN) as url,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/lab/tree/bench.ipynb?token={TOKEN}")
        page.wait_for_selector(".jp-StatusBar-Widget :text('Idle')")
        page.click(".jp-Notebook .jp-Cell .cm-content")
        page.keyboard.press("Control+Enter")
        page.locator(".ncd-studio").nth(len(SIZES) - 1).wait_for()
        for k, n in enumerate(SIZES):
            rows += measure(page, k, n, repeat, kept)
            print(*(f"{r['boxes']:>4} {r['action']:<10} kept={kept!s:<5} "
                    f"min {r['ms']:5.0f} ms  median {r['median_ms']:5.0f} ms"
                    for r in rows[-6:]), sep="\n")  # fmt: skip
        browser.close()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("-o", "--out", default="bench/results/studio_edit.json")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium not found: run `make system` first")
    load_before = list(os.getloadavg())
    rows = []
    for kept in (False, True):  # a JupyterLab of its own for each pass
        rows += _pass(chromium, kept, args.repeat)
    data = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "device": "cpu",
        "browser": "Chromium (headless, Playwright), JupyterLab on the same machine",
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "python": platform.python_version(),
        "repeat": args.repeat,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
