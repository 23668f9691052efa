"""Random bytes and strings into every reader: each ends in a result or a ValueError (which
the CLI prints as one line, exit 2); never another exception, a hang or a traceback."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiayn.cli import main
from aiayn.config import RunConfig
from aiayn.configfile import parse_override
from aiayn.data.text import read_labelled, read_lines, read_parallel, read_text
from aiayn.data.tokenizer import TextTokenizer

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Bytes with the troublesome parts over-represented: NULs, newlines, invalid UTF-8, tabs.
NASTY = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\x00", b"\n", b"\r\n", b"\t", b"\xff\xfe", b"\xc3", b"=", b"[", b"]"]),
        st.text(max_size=30).map(str.encode),
        st.just(b"x" * 5000),
    ),
    max_size=20,
).map(b"".join)


def written(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    (folder / name).write_bytes(data)
    return folder / name


@FUZZ
@given(NASTY)
def test_text_readers_return_text_or_a_value_error(data: bytes) -> None:
    for name in ("f.txt", "f.gz"):
        path = written(data, name)
        for read in (read_lines, read_text, read_labelled):
            try:
                read(path)
            except ValueError as e:
                assert str(path) in str(e)


@FUZZ
@given(NASTY, NASTY)
def test_parallel_files_of_any_content_or_length(src: bytes, tgt: bytes) -> None:
    try:
        a, b = read_parallel(written(src, "a.txt"), written(tgt, "b.txt"))
        assert len(a) == len(b)
    except ValueError:
        pass


@FUZZ
@given(NASTY)
def test_tokenizer_files_load_or_refuse(data: bytes) -> None:
    path = written(data, "tokenizer.json")
    with pytest.raises(ValueError, match="not a readable tokenizer file"):
        TextTokenizer.load(path)


@FUZZ
@given(NASTY)
def test_config_files_load_or_refuse(data: bytes) -> None:
    try:
        RunConfig.load(written(data, "c.toml"))
    except ValueError as e:
        assert str(e)  # names what is wrong; tested for wording in tests/models/test_config.py


@FUZZ
@given(st.text(max_size=60))
def test_overrides_parse_or_refuse(text: str) -> None:
    try:
        section, key, _ = parse_override(text)
    except ValueError as e:
        assert "section.key=value" in str(e)
        return
    try:
        RunConfig.load(written(b"", "empty.toml"), [text])
    except ValueError as e:
        assert section in str(e) or key in str(e) or "table" in str(e)


@settings(max_examples=25, deadline=None)
@given(NASTY)
def test_the_cli_answers_any_config_file_with_a_count_or_one_line(data: bytes) -> None:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["params", str(written(data, "c.toml"))])
    assert code in (0, 2)
    if code == 2:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aiayn params: error:")
