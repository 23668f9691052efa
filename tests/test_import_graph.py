"""The package's shape: no import circle anywhere (imports inside functions counted), and no
source file past 400 lines."""

from __future__ import annotations

from tests.import_graph import graph, reached, sources

MAX_LINES = 400


def test_no_module_imports_itself_through_others():
    edges = graph()
    circles = {}
    for name in sorted(edges):
        if name in reached(edges, name):
            back = sorted(m for m in edges[name] if name in reached(edges, m) or m == name)
            circles[name] = back
    assert not circles, f"import circles (module: the imports that lead back to it): {circles}"


def test_no_source_file_is_longer_than_400_lines():
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in sources().items()
    }
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
