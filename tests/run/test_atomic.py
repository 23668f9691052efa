import pytest

from aiayn.run.atomic import atomic_write, atomic_write_text


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "state.txt"
    atomic_write_text(path, "version 1")

    def broken(tmp):
        tmp.write_text("half of version 2")
        raise OSError(28, "No space left on device")

    with pytest.raises(ValueError, match=r"state.txt: could not be written \(No space left"):
        atomic_write(path, broken)
    assert path.read_text() == "version 1"
    assert [p.name for p in tmp_path.iterdir()] == ["state.txt"]
