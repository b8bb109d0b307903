"""Triton's saved autotuning results, carried between GPU machines so that an anchor that
autotunes for minutes on a fresh machine (fla-core's kernels cache their results) compiles only
its chosen configurations there.

Triton keeps a kernel's tuning result as ``<cache dir>/<hash>/<kernel>.autotune.json``, the hash
over Triton's version, the compiler backend, the kernel's source, the tuning key and the
configurations: a result is found again only by the same Triton and kernel source, so a stale
file is never read, only ignored. The results depend on the GPU, so each kind has its own file
(``bench/autotune/<gpu>.json``, named by `slug`):

    python3 bench/autotune_cache.py load bench/autotune/nvidia_h200.json   # before the run
    python3 bench/autotune_cache.py save $OUT/autotune_nvidia_h200.json    # after it

``save`` adds the cache's results to those already in the file (a later result of the same
path replaces the earlier); ``load`` writes the file's results into the cache, leaving the
files already there. The cache is ``$TRITON_CACHE_DIR``, else ``~/.triton/cache`` (Triton's).
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

SUFFIX = ".autotune.json"
# a result's path inside the cache: one folder (the hash), then the kernel's file
_PATH = re.compile(r"^[0-9A-Za-z_-]+/[0-9A-Za-z_.-]+\.autotune\.json$")


def cache_dir(env=None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TRITON_CACHE_DIR") or Path.home() / ".triton" / "cache")


def slug(name: str) -> str:
    """A GPU's name as a file name: "NVIDIA H200" -> "nvidia_h200"."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "unknown"


def read(path: Path) -> dict:
    """The results held in a saved file ({relative path: the result's text}); {} for none."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(isinstance(t, str) for t in files.values()):
        raise ValueError(f'{path}: expected {{"files": {{path: text}}}}, found {str(data)[:80]!r}')
    bad = [p for p in files if not _PATH.match(p)]
    if bad:
        raise ValueError(f"{path}: not a path inside the cache: {bad[0]!r}")
    return files


def save(cache: Path, path: Path, meta: dict | None = None) -> int:
    """Adds the cache's results to the file at `path`; returns how many the file holds."""
    files = read(path)
    if cache.is_dir():
        for f in sorted(cache.glob(f"*/*{SUFFIX}")):
            files[f"{f.parent.name}/{f.name}"] = f.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta or {}, "files": files}, indent=1, sort_keys=True))
    return len(files)


def load(cache: Path, path: Path) -> int:
    """Writes the file's results into the cache where absent; returns how many it wrote."""
    wrote = 0
    for rel, text in read(path).items():
        target = cache / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            wrote += 1
    return wrote


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["load", "save", "slug"])
    p.add_argument("file", help="the saved results (JSON); for slug, a GPU's name")
    p.add_argument("--meta", default="{}", help="JSON object recorded with save (device, ...)")
    args = p.parse_args(argv)
    if args.action == "slug":
        print(slug(args.file))
        return 0
    cache, path = cache_dir(), Path(args.file)
    try:
        if args.action == "load":
            n = load(cache, path)
            print(f"autotune_cache: {n} result(s) from {path} into {cache}")
        else:
            n = save(cache, path, json.loads(args.meta))
            print(f"autotune_cache: {path} holds {n} result(s)")
    except (ValueError, OSError) as e:
        print(f"autotune_cache: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
