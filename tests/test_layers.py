"""The package's layers (issue #25): no module imports one from a layer above its own.

Array code (``data``, ``acquisition``, ``correction``, ``models``, ``pseudo_labels``)
sits under the workspace, which sits under the workspace-level steps (``steps``),
under the loop (``rounds``), under the faces (``cli``, ``web``, ``interop``,
``report``, ``bench``). Imports inside functions count too, and no two modules
import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import a2lc

PACKAGE = Path(a2lc.__file__).parent

LAYERS: dict[str, int] = {
    # 0: helpers every layer may use
    "a2lc._version": 0,
    "a2lc._atomic": 0,
    "a2lc._json": 0,
    "a2lc._progress": 0,
    "a2lc._timing": 0,
    "a2lc.errors": 0,
    "a2lc.registry": 0,
    "a2lc.runtime": 0,
    "a2lc.distributed": 0,
    # 1: arrays in, arrays out
    "a2lc.metrics": 1,
    "a2lc.data": 1,
    "a2lc.acquisition": 1,
    "a2lc.correction": 1,
    "a2lc.models": 1,
    "a2lc.pseudo_labels": 1,
    "a2lc.strategies": 1,
    "a2lc.label_issues": 1,
    # 2: the single source of truth
    "a2lc.workspace": 2,
    # 3: steps over a workspace
    "a2lc.steps": 3,
    # 4: the loop
    "a2lc.rounds": 4,
    "a2lc.run_config": 4,
    # 5: the faces (the root package is the library's: find_label_issues)
    "a2lc": 5,
    "a2lc.report": 5,
    "a2lc.bench": 5,
    "a2lc.interop": 5,
    "a2lc.web": 5,
    "a2lc.cli": 5,
    "a2lc.__main__": 5,
}


def _module(path: Path) -> str:
    parts = ["a2lc", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    """The layer of ``module``: its own entry, else its package's (the root has only its own)."""
    owners = [
        name
        for name in LAYERS
        if module == name or (name != "a2lc" and module.startswith(name + "."))
    ]
    assert owners, f"{module} has no layer: add it to LAYERS"
    return LAYERS[max(owners, key=len)]


def _imports(path: Path) -> set[str]:
    """Every a2lc module ``path`` imports, at the top or inside a function."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from a2lc.pkg import module` imports that module.
            found.update(
                f"{base}.{alias.name}"
                for alias in node.names
                if (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/"))
                .with_suffix(".py")
                .exists()
                or (
                    PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/") / "__init__.py"
                ).exists()
            )
    return {name for name in found if name == "a2lc" or name.startswith("a2lc.")}


def _graph() -> dict[str, set[str]]:
    return {_module(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        _layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in _graph().items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_two_modules_import_each_other() -> None:
    graph = _graph()
    pairs = sorted(
        f"{a} <-> {b}"
        for a, targets in graph.items()
        for b in targets
        if a < b
        and a in graph.get(b, set())
        and not (a == "a2lc" or b == "a2lc")
        and not (b.startswith(a + ".") or a.startswith(b + "."))  # a package and its modules
    )
    assert pairs == []


def test_every_module_says_what_it_is_for_and_stays_readable() -> None:
    """Issue #25: a docstring on top of each module; none over 600 lines."""
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(text)), f"{_module(path)} has no module docstring"
        assert text.count("\n") <= 600, f"{_module(path)}: {text.count(chr(10))} lines"
