"""A stream of chunks written as one `.npy` file, atomically, without holding the chunks."""

import numpy as np
import pytest

from aiayn.prepare.arrays import array_streams, save_array


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int64])
def test_a_streamed_array_equals_the_saved_concatenation(tmp_path, dtype):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 60_000, n) for n in (0, 7, 1000, 3)]
    with array_streams({"a": tmp_path / "a.npy"}, np.dtype(dtype)) as streams:
        for chunk in chunks:
            streams["a"].append(chunk)
    save_array(tmp_path / "b.npy", np.concatenate(chunks).astype(dtype))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert mapped.dtype == dtype and len(mapped) == 1010


def test_a_stream_that_fails_leaves_the_previous_file_and_no_temporary_one(tmp_path):
    save_array(tmp_path / "a.npy", np.arange(3))
    paths = {"a": tmp_path / "a.npy", "b": tmp_path / "b.npy"}
    with pytest.raises(KeyboardInterrupt), array_streams(paths, np.int64) as streams:
        streams["a"].append(np.arange(100))
        streams["b"].append(np.arange(5))
        raise KeyboardInterrupt
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
