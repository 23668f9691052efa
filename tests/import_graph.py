"""The import graph of `src/aiayn`, read from the source with `ast`: every `import` statement,
at module level or inside a function, is an edge (importlib strings are not)."""

from __future__ import annotations

import ast
from pathlib import Path

import aiayn

SRC = Path(aiayn.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> set[str]:
    """Every module `tree` imports, wherever the statement stands (`from m import n` counts
    m and m.n, which is a module when n is one)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def sources() -> dict[str, Path]:
    return {module_name(path): path for path in SRC.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    """Each aiayn module and the aiayn modules it imports."""
    modules = sources()
    return {
        name: imported(ast.parse(path.read_text(encoding="utf-8"))) & modules.keys()
        for name, path in modules.items()
    }


def reached(edges: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen
