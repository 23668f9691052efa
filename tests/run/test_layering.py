"""The run directory's format stands apart: decoding, serving, export and the trainer read it,
and it reads none of them, at module level or inside a function."""

import ast
from pathlib import Path

import aiayn

SRC = Path(aiayn.__file__).parent
# the packages that use run directories; aiayn.run may import none of them, even indirectly
USERS = ("train", "decode", "interop", "serve", "tasks", "prepare", "ablate", "commands", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def aiayn_imports(path: Path) -> set[str]:
    """Every aiayn module that `path` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "aiayn"}


def test_the_run_package_reaches_no_module_that_uses_run_directories():
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: aiayn_imports(path) & modules.keys() for name, path in modules.items()}
    for start in (name for name in graph if name.startswith("aiayn.run")):
        reached, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - reached:
                reached.add(nxt)
                todo.append(nxt)
        bad = sorted(m for m in reached if m.split(".")[1] in USERS)
        assert not bad, f"{start} imports (directly or not) {bad}"
    assert len([name for name in graph if name.startswith("aiayn.run.")]) >= 7
