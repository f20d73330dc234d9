"""Imports only go down: no module cycles, no package cycles, and the feature packages import
nothing from the layers above them. Read from the source with ``ast``, nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robustbench_gcp"

# Lower layers first; a module may import its own unit and any unit of a lower layer.
LAYERS = [
    {"errors", "version", "choices"},
    {"fileio", "rng", "devices", "distributed", "progress", "stability"},
    {"models", "corruptions", "attacks"},
    {"perturbations"},
    {"data"},
    {"metrics", "results", "statistics"},
    {"summaries"},
    {"comparison", "effective_robustness"},
    {"evaluate", "export"},
    {"export_videos"},
    {"report", "train", "sweep"},
    {"demo"},
    {"cli", "__init__", "__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The top-level part a module belongs to: 'models' for robustbench_gcp.models.zoo."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """Module → the package modules it imports (at any depth of the file, lazy imports included)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name if is_package else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    target = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from pkg import mod` depends on pkg.mod; `from pkg import name` on pkg itself
                candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found |= {c for c in candidates if c in modules and c != name}
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_part_of_the_package_has_a_layer():
    units = {_unit(m) for m in _imports()}
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS"


def test_no_module_imports_itself_back():
    assert _cycle(_imports()) is None


def test_no_package_cycles():
    packages: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        packages.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    assert _cycle(packages) is None


@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_imports_only_go_down(layer):
    upward = [
        f"{module} imports {target}"
        for module, targets in _imports().items() if RANK[_unit(module)] == layer
        for target in targets
        if _unit(target) != _unit(module) and RANK[_unit(target)] >= RANK[_unit(module)]
    ]
    assert not upward, upward


def test_the_checker_sees_an_upward_import():
    """The check itself can fail: a leaf that imports an evaluation loop is caught."""
    graph = _imports()
    graph["robustbench_gcp.models.zoo"] = graph["robustbench_gcp.models.zoo"] | {"robustbench_gcp.evaluate.common"}
    assert any(RANK[_unit(t)] > RANK["models"] for t in graph["robustbench_gcp.models.zoo"])
    graph["robustbench_gcp.evaluate.common"] |= {"robustbench_gcp.models.zoo"}
    assert _cycle(graph) is not None
