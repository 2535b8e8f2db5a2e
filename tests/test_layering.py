"""The package's folders are its layers: every import points down, and none closes a cycle.

Read from the source with ``ast`` (nothing is imported), so a violation is reported with
its file and line before it can become a circular-import error at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spikelib"

#: Rank of each layer: a module may import from layers of a lower rank, and from its own folder.
LAYERS = {
    "checks": 0, "paths": 0, "runtime": 0, "coursework": 0,
    "snn": 1, "data": 1,
    "models": 2,
    "eval": 3,
    "learning": 4,
    "training": 5,
    "viz": 6,
    "widgets": 7,
    "app": 8,
    "__init__": 9, "__main__": 9,
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, int, bool, str]]:
    """``(imported module, line, inside a function, source line)`` for every import in ``path``."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(child) for child in ast.walk(node) if child is not node)
    found = []
    known = _modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # "from spikelib.eval import metrics" imports the module spikelib.eval.metrics
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            found.append((name, node.lineno, id(node) in nested, lines[node.lineno - 1]))
    return found


def _spikelib_edges() -> dict[str, set[str]]:
    known = _modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, *_ in _imports(path):
            if target.startswith("spikelib.") or target == "spikelib":
                # importing a.b.c runs a/__init__, a/b/__init__ and a/b/c: the deepest one is the edge
                while target not in known:
                    target = target.rpartition(".")[0]
                if target != name:
                    edges[name].add(target)
    return edges


def test_every_folder_of_the_package_has_a_layer():
    layers = {_layer(name) for name in _modules()}
    assert layers <= set(LAYERS), f"folders or modules without a layer in LAYERS: {sorted(layers - set(LAYERS))}"


def _upward(edges: dict[str, set[str]]) -> list[str]:
    upward = []
    for module, targets in edges.items():
        for target in targets:
            here, there = _layer(module), _layer(target)
            if target == "spikelib" or (here != there and LAYERS[there] >= LAYERS[here]):
                upward.append(
                    f"{module} ({here}, rank {LAYERS[here]}) imports {target} ({there}, rank {LAYERS[there]})"
                )
    return sorted(upward)


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_import_points_down_a_layer():
    upward = _upward(_spikelib_edges())
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(_spikelib_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_a_planted_upward_import_and_cycle():
    edges = _spikelib_edges()
    edges["spikelib.snn.neurons"] = edges["spikelib.snn.neurons"] | {"spikelib.app.job"}
    assert _upward(edges) == ["spikelib.snn.neurons (snn, rank 1) imports spikelib.app.job (app, rank 8)"]
    edges = _spikelib_edges()
    edges["spikelib.snn.surrogate"] = edges["spikelib.snn.surrogate"] | {"spikelib.snn.layers"}
    assert _find_cycle(edges) is not None


def test_imports_inside_functions_are_only_optional_heavy_dependencies_with_a_reason():
    bad = []
    for path in _modules().values():
        for target, line, inside, text in _imports(path):
            if not inside:
                continue
            if target.startswith("spikelib"):
                bad.append(f"{path.name}:{line}: {text.strip()} (a spikelib import belongs at the top)")
            elif "# lazy:" not in text:
                bad.append(f"{path.name}:{line}: {text.strip()} (say why with '# lazy: <reason>')")
    assert not bad, "\n".join(bad)


def test_importing_spikelib_is_cheap_and_the_public_names_resolve():
    code = (
        "import sys, spikelib\n"
        "assert 'torch' not in sys.modules, 'import spikelib loaded torch'\n"
        "missing = [n for n in spikelib.__all__ if getattr(spikelib, n, None) is None]\n"
        "assert not missing, missing\n"
        "print(len(spikelib.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 30
