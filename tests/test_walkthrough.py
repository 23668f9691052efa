"""docs/walkthrough.md names a file, a function and a test at every step; each must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
NAMED = re.compile(r"^- (code|test): `([^`:]+)::(\w+)`$", re.MULTILINE)


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def test_every_step_names_code_and_a_test() -> None:
    steps = re.split(r"^## ", WALKTHROUGH.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    assert len(steps) >= 12
    for step in steps:
        kinds = {kind for kind, _, _ in NAMED.findall(step)}
        assert kinds == {"code", "test"}, step.splitlines()[0]


def test_every_named_function_and_test_exists() -> None:
    named = NAMED.findall(WALKTHROUGH.read_text(encoding="utf-8"))
    assert len(named) >= 40
    for kind, file, name in named:
        path = ROOT / file
        assert path.is_file(), f"{file} (named for {name}) does not exist"
        assert file.startswith("tests/" if kind == "test" else "src/aiayn/"), file
        assert name in top_level_names(path), f"{file} has no top-level {name}"
        if kind == "test":
            assert name.startswith("test_"), name
