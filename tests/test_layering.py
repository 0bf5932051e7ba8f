"""Dependencies point one way: lower layers never import higher ones (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import seppo_video

PACKAGE = Path(seppo_video.__file__).parent

# Each top-level module or package, with the layer it sits in: it may import its own layer's
# other members only where listed in SIDEWAYS, and any lower layer.
LAYERS = {
    "atomic": 0, "config": 0,
    "models": 1, "data": 2,
    "seppo": 2,
    "checkpoint": 3, "export": 3,
    "sample": 4, "train": 5,
    "calibrate": 6, "evaluation": 6, "study": 7, "viewer": 7,
    "cli": 8, "__main__": 9,
}
SIDEWAYS: set[tuple[str, str]] = set()


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seppo_video."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("seppo_video."))
    return found


def test_every_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or
            (p.is_dir() and (p / "__init__.py").exists())}
    assert tops - {"__init__"} == set(LAYERS)


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for target in _imports(path) - {own}:
            if LAYERS[target] > LAYERS[own] or (LAYERS[target] == LAYERS[own] and (own, target) not in SIDEWAYS):
                upward.append(f"{path.relative_to(PACKAGE)} imports seppo_video.{target}")
    assert not upward, "\n".join(sorted(upward))
