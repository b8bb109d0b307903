"""Issue #18's acceptance trial as a keystroke-level model (KLM): a model estimate of a
person's time, not a person timed.

(a) The Studio: the user actions of the browser test
`tests/widgets/test_browser.py::test_a_prenorm_block_with_an_attention_subcircuit_from_blank`
(a pre-norm transformer block with its attention a subcircuit, from a blank Studio), read from
the test's source (its `t.click`, `t.add`, `t.select`, `t.drag`, `t.type`, `t.field` calls in
order, with the text typed), so the estimate follows the test when it changes.
(b) Builder code: the text of `ncd show transformer_block --builder`, typed.

Operators (Card, Moran & Newell, The Psychology of Human-Computer Interaction, 1983):
K 0.28 s (a keystroke, average typist), P 1.1 s (point with the mouse), B 0.1 s (press or
release a button), H 0.4 s (move the hand between mouse and keyboard), M 1.35 s (mental
preparation). Per action:

- a click (a palette kind, a box, a button, the breadcrumb): M P B B; a Shift+click (a
  palette kind added beside the selection: `t.add(..., beside=True)`) one K more, the Shift;
- a drag (an output port onto a box): M P B P B;
- a typed field (a toolbar field, or a form field with its Enter): M P B B H, one K per
  character, K for the Enter when there is one, H back to the mouse;
- a line of Builder code: M, one K per character typed (the indentation is the editor's, not
  typed), K for its Enter; a blank line: K.

One M per action and per line: the decision what to do next (which kind, which field, which
method and arguments). Not modelled: reading the README or the Builder's documentation, fixing
mistakes, waiting for the page (the system's response time; the scripted run's wall time below
bounds it), running `ncd render` to see the code's drawing.

Also recorded: the wall time of the scripted browser run (Playwright driving Chromium at
machine speed, kernel and page included), from `build/test-artifacts/trial.json`, which the
test writes; `--run` runs the test first.

    .venv/bin/python bench/studio_trial.py [--run] [-o bench/results/studio_trial.json]

Rows: {"op": "studio_trial", "impl": "studio" | "builder_code", "actions": N (user actions;
lines of code), "klm_s": the model's seconds, "operators": {K, P, B, H, M counts}, ...}.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: results_meta
from results_meta import commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "widgets" / "test_browser.py"
TRIAL = "test_a_prenorm_block_with_an_attention_subcircuit_from_blank"
ARTIFACT = ROOT / "build" / "test-artifacts" / "trial.json"
SECONDS = {"K": 0.28, "P": 1.1, "B": 0.1, "H": 0.4, "M": 1.35}
META_ARGS = ("title=", "paper=", "doc=")  # a line of the Builder call that only documents
# The Trial helper's methods: what kind of user action each one is (as the test counts them).
METHODS = {"click": "clicks", "add": "clicks", "select": "clicks", "drag": "drags",
           "type": "keys", "field": "keys"}  # fmt: skip


def ops(seq: str, keys: int = 0) -> dict[str, int]:
    """Operator counts of a sequence such as "MPBB", plus `keys` K operators."""
    out = dict.fromkeys(SECONDS, 0)
    for op in seq:
        out[op] += 1
    out["K"] += keys
    return out


def add(total: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        total[k] += v


def seconds(counts: dict[str, int]) -> float:
    return round(sum(SECONDS[k] * n for k, n in counts.items()), 2)


def _literal(node: ast.expr | None, default=None):
    if node is None:
        return default
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise SystemExit(
            f"{TEST}: {ast.unparse(node)} is not a literal (the model needs it)"
        ) from None


def trial_actions(source: str) -> list[tuple[str, str, str, bool, bool]]:
    """The trial's user actions in order: (method, what, text typed, Enter pressed, Shift
    held), read from the test function's calls `t.<method>(...)` on its Trial object `t`."""
    tree = ast.parse(source)
    fn = next((f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == TRIAL),
              None)  # fmt: skip
    if fn is None:
        raise SystemExit(f"{TEST}: no function {TRIAL} (expected the acceptance trial)")
    calls = [
        n for n in ast.walk(fn)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name) and n.func.value.id == "t"
    ]  # fmt: skip
    unknown = sorted({c.func.attr for c in calls} - set(METHODS))
    if unknown:
        raise SystemExit(f"{TEST}: {TRIAL} calls t.{unknown[0]} (the model knows {list(METHODS)})")
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    out = []
    for c in calls:
        args = {**dict(zip(["a", "b", "c"], c.args)), **{k.arg: k.value for k in c.keywords}}
        m = c.func.attr
        if m == "type":  # type(selector, text, enter=False)
            enter = bool(_literal(args.get("c", args.get("enter")), False))
            out.append((m, _literal(args["a"]), _literal(args["b"]), enter, False))
        elif m == "field":  # field(label, text): typed, then Enter
            out.append((m, _literal(args["a"]), _literal(args["b"]), True, False))
        else:  # click(selector, redraw, shift), add(kind, name, beside), select, drag
            flag = {"click": ("c", "shift"), "add": ("c", "beside")}.get(m)
            shift = bool(flag) and bool(_literal(args.get(flag[0], args.get(flag[1])), False))
            out.append((m, ast.unparse(c)[2:], "", False, shift))
    return out


def studio_row(source: str) -> dict:
    actions = trial_actions(source)
    total = ops("")
    counts = {"clicks": 0, "drags": 0, "keys": 0}
    for method, _, text, enter, shift in actions:
        counts[METHODS[method]] += 1
        if METHODS[method] == "clicks":
            add(total, ops("MPBB", 1 if shift else 0))
        elif METHODS[method] == "drags":
            add(total, ops("MPBPB"))
        else:
            add(total, ops("MPBBHH", len(text) + enter))
    return {
        "op": "studio_trial",
        "impl": "studio",
        "actions": len(actions),
        "klm_s": seconds(total),
        "operators": total,
        **counts,
        "typed_chars": sum(len(a[2]) for a in actions),
        "source": f"{TEST.relative_to(ROOT)}::{TRIAL}",
    }


def builder_text() -> str:
    ncd = Path(sys.executable).parent / "ncd"
    cmd = [str(ncd)] if ncd.exists() else [sys.executable, "-m", "ncd"]
    run = subprocess.run([*cmd, "show", "transformer_block", "--builder"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)  # fmt: skip
    if run.returncode != 0 or "Builder" not in run.stdout:
        raise SystemExit(f"ncd show transformer_block --builder failed:\n{run.stderr[-2000:]}")
    return run.stdout


def code_ops(text: str) -> tuple[dict[str, int], int, int]:
    """KLM operators of typing `text`; its lines of code and keystrokes."""
    total, lines, keys = ops(""), 0, 0
    for line in text.rstrip("\n").split("\n"):
        typed = line.strip()
        if typed:
            lines += 1
            add(total, ops("M", len(typed) + 1))
            keys += len(typed) + 1
        else:
            add(total, ops("", 1))
            keys += 1
    return total, lines, keys


def builder_row(text: str) -> dict:
    total, lines, keys = code_ops(text)
    # The same code without what the Studio's circuit does not have either (title, paper, doc,
    # labels): a lower bound for the code's side.
    kept = [ln for ln in text.split("\n") if not ln.strip().startswith(META_ARGS)]
    bare = re.sub(r', label="[^"]*"', "", "\n".join(kept))
    bare_total, bare_lines, bare_keys = code_ops(bare)
    return {
        "op": "studio_trial",
        "impl": "builder_code",
        "actions": lines,
        "klm_s": seconds(total),
        "operators": total,
        "keystrokes": keys,
        "lines": lines,
        "klm_s_without_title_paper_doc_labels": seconds(bare_total),
        "keystrokes_without_title_paper_doc_labels": bare_keys,
        "source": "ncd show transformer_block --builder",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="store_true", help="run the browser trial test first")
    ap.add_argument("-o", "--out", default=str(ROOT / "bench" / "results" / "studio_trial.json"))
    args = ap.parse_args(argv)
    if args.run:
        test = f"{TEST.relative_to(ROOT)}::{TRIAL}"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", test], cwd=ROOT, check=True)
    studio = studio_row(TEST.read_text(encoding="utf-8"))
    code = builder_row(builder_text())
    if ARTIFACT.exists():
        run = json.loads(ARTIFACT.read_text())
        same = all(run.get(k) == studio[k] for k in ("clicks", "drags", "keys"))
        studio["scripted_run_s"] = run.get("seconds")
        studio["scripted_run_counts_agree"] = same  # the test's own count, from the same run
    studio["ratio_builder_over_studio"] = round(code["klm_s"] / studio["klm_s"], 2)
    meta = {
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "device": "cpu",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "model": "keystroke-level model (Card, Moran & Newell 1983): an estimate, no person timed",
        "seconds": SECONDS,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**meta, "rows": [studio, code]}, indent=1) + "\n")
    for r in (studio, code):
        print(f"{r['impl']:>12}: {r['actions']} actions, KLM {r['klm_s']:.1f} s  {r['operators']}")
    if "scripted_run_s" in studio:
        print(f"scripted browser run: {studio['scripted_run_s']} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
