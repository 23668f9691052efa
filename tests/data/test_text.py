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
