import gzip

import pytest

from aiayn.data.text import read_lines, read_parallel


def test_reads_plain_and_gzipped_files_alike(tmp_path):
    text = "Ein Mann.\nZwei Frauen.\n\nÄpfel\r\n"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode()))
    expected = ["Ein Mann.", "Zwei Frauen.", "", "Äpfel"]
    assert read_lines(tmp_path / "a.txt") == expected
    assert read_lines(tmp_path / "a.txt.gz") == expected


def test_invalid_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    with pytest.raises(ValueError, match=r"bad\.txt: line 3 is not valid UTF-8"):
        read_lines(path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "file is empty"),
        ("fake.gz", b"not gzip at all", "not a valid gzip file"),
    ],
)
def test_unreadable_files_are_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_lines(tmp_path / name)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.txt: no such file"):
        read_lines(tmp_path / "nope.txt")


def test_parallel_files_must_have_equal_line_counts(tmp_path):
    (tmp_path / "s.en").write_text("a\nb\nc\n")
    (tmp_path / "t.de").write_text("x\ny\n")
    with pytest.raises(ValueError) as e:
        read_parallel(tmp_path / "s.en", tmp_path / "t.de")
    assert "s.en has 3 lines" in str(e.value) and "t.de has 2" in str(e.value)


def test_read_text_keeps_the_whole_text_and_names_a_bad_line(tmp_path) -> None:
    from aiayn.data.text import read_text

    (tmp_path / "a.txt").write_bytes(b"one\ntwo\r\n\nthree")
    assert read_text(tmp_path / "a.txt") == "one\ntwo\r\n\nthree"
    (tmp_path / "b.txt").write_bytes(b"ok\nok\nbad \xff here\n")
    with pytest.raises(ValueError, match=r"b.txt: line 3 is not valid UTF-8"):
        read_text(tmp_path / "b.txt")


def test_read_labelled_splits_at_the_last_tab_and_skips_the_header(tmp_path) -> None:
    from aiayn.data.text import read_labelled

    (tmp_path / "a.tsv").write_text("sentence\tlabel\na\tb tab\t1\nfine \t0\n", encoding="utf-8")
    assert read_labelled(tmp_path / "a.tsv") == (["a\tb tab", "fine "], ["1", "0"])
    (tmp_path / "b.tsv").write_text("sentence\tlabel\nno label here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b.tsv: line 2 is not text<TAB>label"):
        read_labelled(tmp_path / "b.tsv")
    (tmp_path / "c.tsv").write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no examples after the header"):
        read_labelled(tmp_path / "c.tsv")


def test_chunked_text_bounds_characters_and_keeps_every_line_in_order():
    from aiayn.data.text import chunked_text

    lines = ["x" * n for n in (3, 9, 1, 1, 20, 2, 2, 2)]
    chunks = list(chunked_text(iter(lines), 5))
    assert [line for c in chunks for line in c] == lines
    assert all(sum(map(len, c[:-1])) < 5 for c in chunks)  # cut at the line that reaches it
    assert [len(c) for c in chunks] == [2, 3, 3]
