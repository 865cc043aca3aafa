"""The house rules of xds/ (README "Architecture"), read from the source with ``ast``:
no import circle between modules; imports point one way down the layers; function-level imports
only for optional dependencies; no file over 400 lines and no function over 80."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parent.parent / "xds"

# Lower index = lower layer. A module may import its own layer's package and any lower layer.
LAYERS = [
    {"errors"},
    {"spec"},
    {"topology", "workload", "experts"},
    {"cost"},
    {"plan"},
    {"engine"},
    {"chaos"},
    {"report"},
    {"parallel"},
    {"pipeline"},
    {"gate", "sweep", "size"},
    {"cli"},
    {"__main__"},                         # `python -m xds`: runs the CLI
]
OPTIONAL = {"matplotlib", "ray"}          # may be imported inside functions
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom | ast.Import, mod: str, is_pkg: bool) -> list[str]:
    """Absolute module names an import statement names (``from . import a, b`` names a and b)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        parts = mod.split(".")
        keep = len(parts) - node.level + (1 if is_pkg else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" for a in node.names] + [base]


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        out[_module_name(path)] = (path, ast.parse(path.read_text(), filename=str(path)))
    return out


SOURCES = _sources()


def _imports(include_functions: bool = True):
    """Yield (importer, imported module, in_function, lineno) for imports of xds modules and of the
    optional dependencies."""
    for mod, (path, tree) in SOURCES.items():
        is_pkg = path.name == "__init__.py"
        func_lines = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(fn):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        func_lines.add(sub.lineno)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            in_fn = node.lineno in func_lines
            for target in _resolve(node, mod, is_pkg):
                yield mod, target, in_fn, node.lineno


def _layer(mod: str) -> int:
    top = mod.split(".")[1] if "." in mod else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module {mod} is in no layer: add its package to LAYERS in this test")


def test_no_import_circle():
    g = nx.DiGraph()
    for mod, target, _, _ in _imports():
        if target in SOURCES and target != mod and not mod.startswith(target + "."):
            g.add_edge(mod, target)       # a package's own submodules importing it are not a circle
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:5])


def test_imports_point_down_the_layers():
    bad = []
    for mod, target, _, line in _imports():
        if target in SOURCES and target != "xds" and mod != "xds":
            if _layer(target) > _layer(mod):
                bad.append(f"{mod}:{line} imports {target}")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(set(bad)))


def test_function_level_imports_only_for_optional_dependencies():
    bad = sorted({f"{mod}:{line} imports {target}" for mod, target, in_fn, line in _imports()
                  if in_fn and target.split(".")[0] not in OPTIONAL})
    assert not bad, "move these imports to module top:\n" + "\n".join(bad)


def test_no_private_names_across_packages():
    """A leading underscore means "this package's own": other packages use the public name."""
    bad = []
    for mod, (path, tree) in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.level > 1:
                bad += [f"{mod}:{node.lineno} imports {a.name}" for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, "private names imported from another package:\n" + "\n".join(bad)


def test_import_xds_has_no_process_wide_side_effects():
    tree = SOURCES["xds"][1]
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not calls, "xds/__init__.py must not run code on import"


@pytest.mark.parametrize("mod", sorted(SOURCES))
def test_rooms_are_small(mod):
    path, tree = SOURCES[mod]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(PKG.parent)} has {lines} lines"
    long = [f"{fn.name} ({fn.end_lineno - fn.lineno + 1} lines)" for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(PKG.parent)}: functions over {MAX_FUNCTION_LINES} lines: {long}"
