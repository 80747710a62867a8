"""The house reads top-down (issue 26): no import climbs to a room above its own, no two modules
import each other (directly or round a longer circle), and no module is longer than a reader
can hold in one sitting.

The rooms and their order are README "Layout: the rooms, top to bottom"; `LAYERS` below is the
same list. A module may import from its own room (its package) and from any room below it; a
room that sits beside another on one layer imports neither.

Imports are read with `ast` from every module under src/penumbra, wherever they stand: at the
top of a module, inside functions (imported on first use) and under `if TYPE_CHECKING:` alike.
No import is exempt: a type-only import still makes the reader of one module read the other.
`from pkg import name` counts as importing the module `pkg.name` when there is one, else
`pkg` itself (its `__init__`); a relative import is resolved against its package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "penumbra"

# Top to bottom. The name of a room is the first name under `penumbra.`; "__init__" is the
# package itself (`penumbra.synthesize`, `penumbra.__version__`'s re-export).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),  # `python -m penumbra`
    ("cli", "__init__"),  # the front: the command line, and the Python entry point
    ("mpc",),  # pipelines: several holders on top of the single-holder one
    ("spti",),
    ("report",),  # what the pipelines use
    ("evaluate",),
    ("provenance",),  # uses the anonymizer's face detector and C2PA labels
    ("anonymize",),
    ("ledger",),
    ("compute",),
    ("pe",),  # the engine
    ("models",),
    ("config",),
    ("data",),
    ("durable",),
    ("privacy", "errors", "version"),  # the ground
)

MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()
# packages without an __init__.py (namespace packages, such as ledger/): importing one is
# importing that room, not the package's front door
FOLDERS = {
    ".".join(path.relative_to(SRC).parts)
    for path in PACKAGE.rglob("*")
    if path.is_dir() and path.name != "__pycache__"
}


def _target(name: str) -> str | None:
    """The module of ours a dotted name lands in (`penumbra.a.b.C` → `penumbra.a.b`)."""
    while name and name not in MODULES and name not in FOLDERS:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of ours in a module, wherever it stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]  # fmt: skip
        for name in names:
            target = _target(name) if name.split(".")[0] == "penumbra" else None
            if target is not None and target != module:
                yield node.lineno, target


GRAPH: dict[str, list[tuple[int, str]]] = {
    m: sorted(set(_imports(m, p))) for m, p in MODULES.items()
}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(name: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if name in rooms)


def test_every_room_has_its_place() -> None:
    """A new package or top-level module must be placed in LAYERS (and the README)."""
    placed = {name for rooms in LAYERS for name in rooms}
    unplaced = sorted({room(m) for m in MODULES} - placed)
    assert not unplaced, f"rooms missing from LAYERS (and the README's list): {unplaced}"


Graph = dict[str, list[tuple[int, str]]]


def climbs(graph: Graph) -> list[str]:
    """`module:line` of every import of a room above (or beside) the importer's own."""
    found = []
    for module, imports in graph.items():
        for line, target in imports:
            here, there = room(module), room(target)
            if here != there and layer(there) <= layer(here):
                found.append(f"{module}:{line}: {here} imports {target} ({there})")
    return found


def circles(graph: Graph) -> list[list[str]]:
    """Modules that import each other: strongly connected components of more than one module
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> Iterator[str]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return iter(sorted({t for _, t in graph.get(node, [])}))

    for root in graph:
        if root in index:
            continue
        work = [(root, visit(root))]
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    work.append((nxt, visit(nxt)))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_climbs() -> None:
    found = climbs(GRAPH)
    assert not found, "imports that climb to a room above (or beside):\n" + "\n".join(found)


def test_no_import_circles() -> None:
    found = circles(GRAPH)
    lines = []
    for circle in found:
        members = set(circle)
        edges = [f"    {m} -> {t} (line {n})" for m in circle for n, t in GRAPH[m] if t in members]
        lines.append(" <-> ".join(circle) + "\n" + "\n".join(edges))
    assert not found, "modules that import each other:\n" + "\n".join(lines)


def test_the_checks_catch_what_they_are_for() -> None:
    """The reader finds imports inside functions, and the checks flag a planted climb and a
    planted circle of three."""
    # `penumbra.synthesize` imports the pipeline on first use, inside the function
    assert any(t == "penumbra.spti.pipeline" for _, t in GRAPH["penumbra"])
    # a name in a package without an __init__ lands in that room, not in the package's front
    assert _target("penumbra.ledger.VerifyReport") == "penumbra.ledger"
    planted: Graph = {
        "penumbra.pe.a": [(3, "penumbra.spti.b")],  # the engine reaching up into a pipeline
        "penumbra.spti.b": [(4, "penumbra.spti.c")],
        "penumbra.spti.c": [(5, "penumbra.spti.d")],
        "penumbra.spti.d": [(6, "penumbra.spti.b"), (7, "penumbra.errors")],
    }
    assert climbs(planted) == ["penumbra.pe.a:3: pe imports penumbra.spti.b (spti)"]
    assert circles(planted) == [["penumbra.spti.b", "penumbra.spti.c", "penumbra.spti.d"]]


def test_no_module_past_500_lines() -> None:
    long = []
    for path in MODULES.values():
        name = path.relative_to(SRC).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long.append(f"{name}: {lines} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them by job):\n" + "\n".join(long)
