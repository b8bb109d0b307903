"""The `ncd` command. Errors are printed as one clear message on stderr, exit status 1, and no
traceback (set NCD_DEBUG=1 to see one)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from ncd.circuits.errors import NcdError
from ncd.commands import MODULES


def _modules():
    return [importlib.import_module(f"ncd.commands.{m}") for m in MODULES]


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors read as every ncd error: one line on stderr, exit status 1
    (its subcommands' parsers are of this class too)."""

    def error(self, message: str):
        self.exit(1, f"ncd: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ncd",
        description="Neural circuit diagrams: draw an "
        "architecture, read its cost, compile it to PyTorch.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for m in _modules():
        m.register(sub)
    d = sub.add_parser("demo", help="run every view on the built-in gallery")
    d.add_argument(
        "-o", "--out", default="build", help="where figures and code go (default: build)"
    )
    d.set_defaults(run=cmd_demo)
    return p


def cmd_demo(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for m in _modules():
        if hasattr(m, "demo"):
            m.demo(out)
    print(f"demo done; outputs under {out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "run", None):
        p.print_help()
        return 1
    try:
        return int(args.run(args) or 0)
    except NcdError as e:
        print(f"ncd: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ncd: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except OSError as e:  # the file system said no: the user's to fix, not a bug of ours
        where = f" {e.filename!r}" if e.filename else ""
        print(f"ncd: error: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI promises no traceback
        if os.environ.get("NCD_DEBUG"):
            raise
        print(
            f"ncd: internal error: {type(e).__name__}: {e} (NCD_DEBUG=1 shows the traceback;"
            " please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
