"""The command line's shape: one module per subcommand in aiayn.commands, assembled by
aiayn.cli, and no argparse or CLI code anywhere else in the package."""

from __future__ import annotations

import ast
import inspect
import pkgutil
from pathlib import Path

import aiayn
from aiayn import cli, commands
from tests.import_graph import imported

PACKAGE = Path(aiayn.__file__).parent
SHARED = {"common"}  # helpers below the commands, no subcommand of their own


def test_every_command_module_is_assembled_and_owns_its_subcommand():
    modules = {m.name for m in pkgutil.iter_modules(commands.__path__)} - SHARED
    assert {c.__name__.rpartition(".")[2] for c in cli.COMMANDS} == modules
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    assert len(sub.choices) == len(cli.COMMANDS)
    for name, parser in sub.choices.items():
        run = parser.get_default("run")
        module = inspect.getmodule(run)
        assert module in cli.COMMANDS and run is module.run, name
        assert module.__name__.rpartition(".")[2] == name.replace("-", "_"), name


def test_cli_only_assembles():
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert functions == {"parser", "main", "quiet_stdout"}


def test_no_module_outside_the_commands_imports_argparse_or_the_cli():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name.startswith("commands/") or name in ("cli.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bad = {
            m
            for m in imported(tree)
            if m == "argparse" or m.startswith(("aiayn.cli", "aiayn.commands"))
        }
        found += [f"{name}: {m}" for m in sorted(bad)]
    assert found == []


def test_the_commands_import_no_cli_and_common_no_command():
    for path in sorted(Path(commands.__file__).parent.glob("*.py")):
        names = imported(ast.parse(path.read_text(encoding="utf-8")))
        assert not any(m.startswith("aiayn.cli") for m in names), path.name
        if path.stem in SHARED:
            assert not any(m.startswith("aiayn.commands") for m in names), path.name
