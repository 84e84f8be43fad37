"""The room rules of ARCHITECTURE.md, checked on the source (``make lint`` runs this).

Every ``import``/``from … import`` of product code counts, at module level or inside a
function, so a lazy import cannot slip a wrong arrow past the check. Also checked: no
import cycle among a room's modules (module-level imports), and no journal entry kind
spelled as a bare string outside the record's vocabulary (``ebr/record/kinds.py``).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from ebr.record.kinds import Kind

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("cellbatch", "controller", "drivers", "ebr", "recipes", "simulators")

ALLOWED: dict[str, set[str]] = {
    "recipes": set(),
    "drivers": set(),
    "simulators": set(),
    "ebr": {"recipes"},
    "controller": {"recipes", "drivers", "ebr"},
    "cellbatch": {"controller", "drivers", "ebr", "recipes", "simulators"},
}
"""Which other rooms each room may import."""

EBR_LAYERS = ("exports", "review", "people", "record")
"""ebr's sub-rooms, top to bottom: each imports only those below it."""

FORBIDDEN_LIBRARIES = {"controller": {"click", "textual"}}
"""Third-party packages a room must not use (the engine has no user interface)."""


def modules(room: str) -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every Python file of a room."""
    for path in sorted((ROOT / room).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def imports(path: Path, module: str, top_level_only: bool = False) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield name, node.lineno
            for alias in node.names:  # "from ebr.record import kinds" imports a module
                yield f"{name}.{alias.name}", node.lineno


def test_rooms_import_only_what_they_may() -> None:
    """Arrows point one way: cellbatch → controller → (recipes, drivers, ebr)."""
    wrong = []
    for room in ROOMS:
        for module, path in modules(room):
            for name, line in imports(path, module):
                top = name.split(".")[0]
                where = f"{path.relative_to(ROOT)}:{line}"
                if top in ROOMS and top != room and top not in ALLOWED[room]:
                    wrong.append(f"{where}: {room} imports {name}")
                if top in FORBIDDEN_LIBRARIES.get(room, set()):
                    wrong.append(f"{where}: {room} uses {top}")
    assert not wrong, "\n".join(wrong)


def test_ebr_sub_rooms_import_downward_only() -> None:
    """exports → review → people → record, never back up."""
    wrong = []
    for module, path in modules("ebr"):
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in EBR_LAYERS:
            continue
        level = EBR_LAYERS.index(parts[1])
        for name, line in imports(path, module):
            target = name.split(".")
            if target[0] != "ebr" or len(target) < 2:
                if target == ["ebr"]:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: imports the ebr package root")
                continue
            if target[1] in EBR_LAYERS and EBR_LAYERS.index(target[1]) < level:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {parts[1]} imports {name}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("room", ROOMS)
def test_no_import_cycle_inside_a_room(room: str) -> None:
    """Module-level imports among one room's modules form no cycle."""
    known = dict(modules(room))
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for name, _ in imports(path, module, top_level_only=True):
            # the nearest known module a name refers to (a name may end in a symbol)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(sorted(c)) for c in cycles)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components of more than one node (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_entry_kinds_are_spelled_only_in_the_vocabulary() -> None:
    """No product module spells a journal entry kind as a string literal."""
    spelled = {k.value for k in Kind if "." in k.value}
    vocabulary = ROOT / "ebr" / "record" / "kinds.py"
    wrong = []
    for room in ROOMS:
        for _, path in modules(room):
            if path == vocabulary or "migrations" in path.parts:
                continue
            source = path.read_text(encoding="utf-8")
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                if tok.type != tokenize.STRING:
                    continue
                value = tok.string.strip("\"'")
                if value in spelled and tok.string[0] in "\"'":
                    wrong.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
    assert not wrong, "entry kinds spelled outside ebr/record/kinds.py:\n" + "\n".join(wrong)
