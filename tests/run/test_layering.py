"""The run directory's format stands apart: decoding, serving, export and the trainer read it,
and it reads none of them, at module level or inside a function."""

from tests.import_graph import graph, reached

# the packages that use run directories; aiayn.run may import none of them, even indirectly
USERS = ("train", "decode", "interop", "serve", "tasks", "prepare", "ablate", "commands", "cli")


def test_the_run_package_reaches_no_module_that_uses_run_directories():
    edges = graph()
    ours = [name for name in edges if name.startswith("aiayn.run.")]
    for start in ours:
        bad = sorted(m for m in reached(edges, start) if m.split(".")[1] in USERS)
        assert not bad, f"{start} imports (directly or not) {bad}"
    assert len(ours) >= 7
