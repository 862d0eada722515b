"""The package's layers, as docs/architecture.md draws them, checked against every import.

A module may import from its own layer and the layers below it, never above: music and
data know nothing of training, training and sampling know nothing of each other or of
the API, only the server knows HTTP, and only the command line draws (rich) or parses
options (click). Function-level imports count as much as those at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chargen"

# Each layer may import the layers of a lower rank and its own; layers of one rank are
# siblings and may not import each other.
LAYERS = {
    "core": 0,  # chargen/*.py: errors, arguments, vocab, atomic, device, precision, model
    "music": 1,
    "data": 2,
    "training": 3,
    "sampling": 3,
    "api": 4,  # chargen/api.py
    "serve": 5,
    "cli": 6,
}
# Third-party packages only one layer (or one module) may import.
OWNED = {"rich": {"cli"}, "click": {"cli"}, "starlette": {"serve"}, "uvicorn": {"serve", "cli"},
         "mido": {"music/midifile.py"}}


def layer_of(module: str) -> str:
    """'chargen.training.loop' -> 'training'; 'chargen.api' -> 'api'; 'chargen.model' -> 'core'."""
    parts = module.split(".")
    assert parts[0] == "chargen", module
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "package"
    if parts[1] in LAYERS and parts[1] not in ("core", "api"):
        return parts[1]
    return "api" if parts[1] == "api" else "core"


def modules(package: Path = PACKAGE):
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        name = ".".join(relative.parts)
        yield path, name.removesuffix(".__init__")


def imports_of(path: Path, name: str, package_dir: Path = PACKAGE):
    """(imported module, line) for every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            yield base, node.lineno
            if base.startswith("chargen"):  # from chargen.training import checkpoint: the submodule counts
                for alias in node.names:
                    if (package_dir.parent / (base + "." + alias.name).replace(".", "/")).with_suffix(".py").exists():
                        yield f"{base}.{alias.name}", node.lineno


def violations(package_dir: Path = PACKAGE):
    found = []
    for path, name in modules(package_dir):
        here = layer_of(name)
        if here == "package":  # chargen/__init__.py gathers the public API; __main__ runs the CLI
            continue
        where = path.relative_to(package_dir).as_posix()
        for imported, line in imports_of(path, name, package_dir):
            top = imported.split(".")[0]
            if top in OWNED and here not in OWNED[top] and where not in OWNED[top]:
                found.append(f"{where}:{line} imports {top}, which only {', '.join(sorted(OWNED[top]))} may")
            if top != "chargen" or imported == "chargen":
                if imported == "chargen":  # `from chargen import __version__`: the package's own constant
                    continue
                continue
            there = layer_of(imported)
            if there == "package":
                continue
            if LAYERS[there] > LAYERS[here] or (LAYERS[there] == LAYERS[here] and there != here):
                found.append(f"{where}:{line} ({here}) imports {imported} ({there})")
    return found


def test_no_module_imports_a_layer_above_its_own():
    assert violations() == []


def test_the_checker_sees_a_layer_violation(tmp_path):
    """The check itself can fail: in a copy of the package, a training module that imports
    sampling and rich is caught."""
    import shutil

    copy = tmp_path / "chargen"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "training" / "_layer_probe.py").write_text("from chargen.sampling.draw import choose\nimport rich\n")
    found = violations(copy)
    assert any("_layer_probe.py:1 (training) imports chargen.sampling.draw" in v for v in found)
    assert any("_layer_probe.py:2 imports rich" in v for v in found)


@pytest.mark.parametrize("path", [p for p, _ in modules()], ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_every_module_opens_with_a_docstring_saying_its_job(path):
    text = path.read_text(encoding="utf-8")
    if path.name == "__init__.py" and not text.strip():
        return  # an empty package marker
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(PACKAGE)} has no module docstring"
