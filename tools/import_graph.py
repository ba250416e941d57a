"""The package's import structure, room by room, and the two rules it must keep.

A *room* is a subpackage of ``jaxopt_notes`` (``hessian``, ``models``, ``train``, ``cli``,
``_native``, ``experiments``, ...); the top-level modules are the room ``core``, except the
private ones (``_checks``, ``_stream``, ``_extras``, ...), which are ``shared`` helpers for
every room, and the package's ``__init__``, its public face ``jaxopt_notes``. The rules:

1. no module imports a private name of another room: a ``_module`` inside another subpackage
   (``jaxopt_notes.hessian._core``) or a ``_name`` defined in another room's module;
2. no cycles among rooms.

Every import counts, also one inside a function. The lab's top-level rooms, ``experiments/``
and ``benchmarks/``, are read as ``jaxopt_notes.experiments`` and ``jaxopt_notes.benchmarks``,
as they are installed.

    python tools/import_graph.py --update FILE        # redraws the block between the markers
    python tools/import_graph.py --check              # exit 1 on a broken rule
    python tools/import_graph.py                      # prints the Mermaid drawing

The markers in the file to update are ``<!-- import-graph -->`` and ``<!-- /import-graph -->``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "jaxopt_notes"
BEGIN, END = "<!-- import-graph -->", "<!-- /import-graph -->"
LAB = ("experiments", "benchmarks")  # top-level folders installed as jaxopt_notes.<name>


class Import(NamedTuple):
    path: Path
    line: int
    source: str  # the importing module
    target: str  # the imported module
    name: str | None  # the name taken from it, for ``from target import name``


def modules(roots: dict[str, Path]) -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` under each ``{package name: folder}``."""
    found = {}
    for package, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(found: dict[str, Path]) -> list[Import]:
    """Every import of a module of the package, resolved to the module it names."""
    out = []
    for source, path in found.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [Import(path, node.lineno, source, a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    target, name = (sub, None) if sub in found else (base, alias.name)
                    out.append(Import(path, node.lineno, source, target, name))
    return [i for i in out if i.target == PACKAGE or i.target.startswith(PACKAGE + ".")]


def room(module: str, found: dict[str, Path]) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return PACKAGE
    if f"{PACKAGE}.{parts[1]}" in found and found[f"{PACKAGE}.{parts[1]}"].name == "__init__.py":
        return parts[1]  # a subpackage
    return "shared" if parts[1].startswith("_") else "core"


def _private(text: str | None) -> bool:
    return bool(text) and text.startswith("_") and not text.startswith("__")


def violations(found: dict[str, Path], edges: list[Import]) -> list[str]:
    """Rule 1: the imports of another room's private names, as ``path:line: what``."""
    out = []
    for i in edges:
        home, there = room(i.source, found), room(i.target, found)
        if home == there:
            continue
        depth = 1 if there == PACKAGE else 2  # past the subpackage, or the top-level module
        inner = i.target.split(".")[depth:]
        if any(_private(p) for p in inner) or _private(i.name):
            what = i.target + (f".{i.name}" if i.name else "")
            where = i.path.relative_to(REPO) if i.path.is_relative_to(REPO) else i.path
            out.append(f"{where}:{i.line}: {i.source} ({home}) imports {what}, private to {there}")
    return out


def room_graph(found: dict[str, Path], edges: list[Import]) -> dict[str, dict[str, int]]:
    """``{room: {room it imports: number of import statements}}``."""
    graph: dict[str, dict[str, int]] = {room(m, found): {} for m in found}
    for i in edges:
        a, b = room(i.source, found), room(i.target, found)
        if a != b:
            graph[a][b] = graph[a].get(b, 0) + 1
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Rule 2: the strongly connected groups of more than one room (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def mermaid(graph: dict[str, dict[str, int]], found: dict[str, Path]) -> str:
    """The room graph as a Mermaid flowchart: each room with its module count, each edge
    with its number of import statements."""
    sizes = defaultdict(int)
    for m in found:
        sizes[room(m, found)] += 1
    lines = ["flowchart LR"]
    lines += [f'  {r.strip("_")}["{r} ({sizes[r]})"]' for r in sorted(graph)]
    for a in sorted(graph):
        for b, n in sorted(graph[a].items()):
            lines.append(f"  {a.strip('_')} -->|{n}| {b.strip('_')}")
    return "\n".join(lines) + "\n"


def roots(repo: Path | None = None) -> dict[str, Path]:
    """``{package name: folder}`` of the library and of each room of the lab beside it, in
    ``repo`` (default: this repository)."""
    repo = REPO if repo is None else repo
    return {PACKAGE: repo / PACKAGE, **{f"{PACKAGE}.{name}": repo / name for name in LAB}}


def check(roots: dict[str, Path]) -> tuple[str, list[str]]:
    """The Mermaid drawing and the broken rules (empty when none) for the package at ``roots``."""
    found = modules(roots)
    edges = imports(found)
    graph = room_graph(found, edges)
    problems = violations(found, edges)
    problems += [f"import cycle among rooms: {' <-> '.join(c)}" for c in cycles(graph)]
    return mermaid(graph, found), problems


def update(path: Path, drawing: str) -> None:
    """Replaces what lies between the markers in ``path`` by ``drawing`` in a mermaid block."""
    text = path.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"error: {path} must hold the markers {BEGIN} and {END} once each")
    head, rest = text.split(BEGIN)
    tail = rest.split(END)[1]
    path.write_text(f"{head}{BEGIN}\n```mermaid\n{drawing}```\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", type=Path, help="redraw the marked block of this file")
    parser.add_argument("--check", action="store_true", help="only check the rules (default: no)")
    args = parser.parse_args(argv)
    drawing, problems = check(roots())
    if args.update is not None:
        update(args.update, drawing)
    elif not args.check:
        print(drawing, end="")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
