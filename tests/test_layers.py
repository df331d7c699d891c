"""The layer rule over the whole package, read from the source (ast), lazy imports included:
no import circle between any two modules, and no module importing a later stage.

STAGES is the order documented in docs/ARCHITECTURE.md: a unit (a top-level module or a
subpackage of rimscope) may import its own modules and units of earlier stages only; two units
of one stage never import each other. The package root (rimscope/__init__.py: the version and
the lazy per-command functions) may be imported by anyone and is checked as the top floor.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "rimscope"

STAGES = [
    {"errors"},  # ground floor: the one user-error type...
    {"runtime", "metrics", "commands", "weights", "flags"},  # ...logging, atomic writes, metrics, shipped weights
    {"grids", "dipole"},  # voxel grids, orientation, resampling; the dipole kernel and TKD (array physics)
    {"lesions", "lesion_maps"},  # label images as arrays: components, geometry, rim regions (io numbers
    # masks with it); which label maps are one id per lesion (io reads lesion maps with it)
    {"io", "rim_measures", "phase_sign"},  # load, validate, canonicalise, write back; rim quantities
    # per lesion; the sign convention of a local field map (array code)
    {"cohort_bids"},  # BIDS/QSMxT file names: entities, the main-map rule, filters
    {"cohort", "phase"},  # where the inputs are: manifests, BIDS, single subjects, labels,
    # fingerprints; the local field from a phase image (a Subject through io)
    {"patches"},  # lesion-centred patches, the patch cache
    {"simulate", "rim_segment"},  # simulated cohorts and their truth; rim voxels back from patches
    {"models"},  # networks, baselines, registry, cards
    {"train"},  # fine-tuning, pre-training
    {"evaluate", "inference"},  # cross-validation and statistics; prediction
    {"validate", "review"},  # checking a cohort; the browser rating app (reads predictions)
    {"demo", "bench"},  # whole user paths and benchmarks, over every stage
    {"cli"},  # the command line
    {"__main__", "__init__"},  # `python -m rimscope`, the package facade
]
LEVEL = {unit: i for i, stage in enumerate(STAGES) for unit in stage}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports(name: str, path: Path, known: dict) -> set[str]:
    """rimscope modules imported anywhere in the file (function bodies too)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "rimscope"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "rimscope":
                continue
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known}
            out |= subs or {mod}
            if subs and len(subs) < len(node.names):
                out.add(mod)
    return {m for m in out if m in known and m != name}


def unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_unit_has_a_stage(graph):
    missing = sorted({unit(m) for m in graph} - set(LEVEL))
    assert not missing, f"give these a stage in STAGES and docs/ARCHITECTURE.md: {missing}"


def test_no_module_imports_a_later_or_sibling_stage(graph):
    bad = []
    for mod, deps in graph.items():
        u = unit(mod)
        for dep in deps:
            d = unit(dep)
            if d == u or d == "__init__" and dep == "rimscope":
                continue
            if LEVEL[d] >= LEVEL[u]:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports against the layer order:\n" + "\n".join(sorted(bad))


def test_no_import_circle(graph):
    """Tarjan's strongly connected components over module -> module edges."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v] - ({"rimscope"} if v != "rimscope" else set()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_the_checker_sees_lazy_relative_imports(tmp_path):
    """The parser itself: a lazy `from ..x import y` inside a function counts as an import."""
    known = {"rimscope.a.b": None, "rimscope.c": None, "rimscope.c.d": None}
    f = tmp_path / "b.py"
    f.write_text("def f():\n    from ..c import d\n    from ..c import nothing_here\n")
    assert imports("rimscope.a.b", f, known) == {"rimscope.c.d", "rimscope.c"}


LONG_FOR_NOW: set = set()  # modules allowed over the limit for now (none)


def test_no_module_over_300_lines():
    long = {module_name(p): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 310}
    assert not set(long) - LONG_FOR_NOW, f"split these by job: {long}"
