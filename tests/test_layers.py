"""The layers of docs/design.md hold on the import graph, lazy imports included, and at run time.

Every import statement of the package's folders (at module level or inside a function) is
resolved to the ncd layer it reaches and checked against RULES; the op library is also imported
in a fresh process to see what it really loads. The checker is run on a copy of the tree with a
forbidden import planted, so the rules are seen to bite.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Where each layer's source lies (the folders install as ncd.<layer>, setup.py), and the top
# (ncd/: the root API, the CLI and its commands).
FOLDERS = {
    "circuits": "circuits",
    "ops": "ops",
    "compiler": "compiler",
    "widgets": "widgets",
    "gallery": "gallery",
    "top": "ncd",
}

# Layer -> the ncd layers it may import. Dependencies run one way: the language and the op
# library import nothing else of ncd; nothing but the top imports widgets or gallery.
RULES = {
    "circuits": {"circuits"},
    "ops": {"ops"},
    "compiler": {"compiler", "circuits", "ops"},
    "widgets": {"widgets", "circuits", "compiler"},
    "gallery": {"gallery", "circuits"},
    "top": {"top", "circuits", "ops", "compiler", "widgets", "gallery"},
}

# Layer -> outside packages it must never import: the language runs without torch; the op
# library without the language's stack.
FORBIDDEN = {
    "circuits": {"torch", "triton"},
    "ops": {"pydantic", "sympy", "networkx", "graphviz", "ipywidgets", "matplotlib"},
}


def layer_of_module(name: str) -> str | None:
    """'ncd.compiler.cost' -> 'compiler'; 'ncd' and 'ncd.cli' -> 'top'; others -> None."""
    parts = name.split(".")
    if parts[0] != "ncd":
        return None
    if len(parts) > 1 and parts[1] in FOLDERS and parts[1] != "top":
        return parts[1]
    return "top"


def module_name(layer: str, path: Path, folder: Path) -> str:
    rel = path.relative_to(folder).with_suffix("").parts
    if rel[-1] == "__init__":
        rel = rel[:-1]
    base = ["ncd"] if layer == "top" else ["ncd", layer]
    return ".".join(base + list(rel))


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from ncd import gallery` reaches ncd.gallery, not the top.
            if target == "ncd":
                found += [(node.lineno, f"ncd.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def violations(root: Path) -> list[str]:
    problems = []
    for layer, folder_name in FOLDERS.items():
        folder = root / folder_name
        for path in sorted(folder.rglob("*.py")):
            module = module_name(layer, path, folder)
            for line, target in imports_of(path, module):
                where = f"{path.relative_to(root)}:{line}"
                reached = layer_of_module(target)
                if reached is not None and reached not in RULES[layer]:
                    problems.append(f"{where}: {layer} imports {target} ({reached})")
                if target.split(".")[0] in FORBIDDEN.get(layer, ()):
                    problems.append(f"{where}: {layer} imports {target}")
    return problems


def test_the_import_graph_follows_the_layers():
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    "folder, planted",
    [
        ("ops", "from ncd.circuits import io\n"),
        ("ops", "def f():\n    import sympy\n"),  # lazy imports count too
        ("circuits", "from ..compiler import compile\n"),  # relative, reaching outside
        ("circuits", "import torch\n"),
        ("compiler", "def f():\n    from ncd import gallery\n"),
        ("widgets", "from ncd.gallery import get\n"),
        ("gallery", "from ncd.compiler import compile\n"),
    ],
)
def test_a_planted_forbidden_import_is_found(tmp_path, folder, planted):
    for name in FOLDERS.values():
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / folder / "planted.py").write_text(planted)
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{folder}/planted.py:"), found


def loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def test_the_op_library_loads_alone():
    modules = loaded_by("import ncd.ops")
    ours = {m for m in modules if m.split(".")[0] == "ncd"}
    assert ours and all(m == "ncd" or m.startswith("ncd.ops") for m in ours), sorted(ours)
    assert not modules & {"pydantic", "sympy", "networkx", "graphviz", "ipywidgets"}


def test_the_root_package_is_light():
    modules = loaded_by("import ncd")
    assert {m for m in modules if m.startswith("ncd")} == {"ncd"}
    assert not modules & {"torch", "pydantic", "sympy", "graphviz"}


def test_subpackages_are_attributes_imported_on_first_use():
    """`import ncd` then `ncd.gallery.get(...)` (as docstrings write it) imports the gallery
    then and not before; an unknown name is still an AttributeError."""
    modules = loaded_by("import ncd; ncd.gallery.get('attention')")
    assert "ncd.gallery" in modules and "ncd.widgets" not in modules
    r = subprocess.run(
        [sys.executable, "-c", "import ncd; ncd.nothing"], capture_output=True, text=True
    )
    assert "AttributeError: module 'ncd' has no attribute 'nothing'" in r.stderr


def test_the_language_runs_without_torch():
    modules = loaded_by("import ncd.circuits.builder, ncd.circuits.draw, ncd.circuits.validate")
    assert not modules & {"torch", "triton"}
    assert not {m for m in modules if m.startswith(("ncd.compiler", "ncd.ops", "ncd.widgets"))}
