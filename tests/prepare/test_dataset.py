"""The prepared dataset's readers: ids read run by run, pair costs a chunk at a time."""

import pickle

import numpy as np
import pytest

from aiayn.prepare.dataset import IdArray, Side, StoredArray, cut_into_sentences, pair_costs


def write_side(folder, name, rows):
    np.save(folder / f"{name}.npy", np.concatenate(rows).astype(np.uint16))
    np.save(folder / f"{name}.idx.npy", np.cumsum([0, *map(len, rows)]).astype(np.int64))


def test_an_id_array_reopens_its_file_when_unpickled(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(50, dtype=np.uint16))
    ids = IdArray(tmp_path, "a.npy", vocab_size=50)
    copy = pickle.loads(pickle.dumps(ids))  # as a DataLoader worker that is not forked gets it
    starts, lengths = np.array([3, 40]), np.array([4, 10])
    assert np.array_equal(copy.runs(starts, lengths), ids.runs(starts, lengths))
    assert copy.file.fileno() != ids.file.fileno()


def test_pair_costs_are_the_longer_side_plus_one_across_chunks(tmp_path):
    rng = np.random.default_rng(0)
    src = [rng.integers(0, 9, rng.integers(0, 7)) for _ in range(37)]
    tgt = [rng.integers(0, 9, rng.integers(0, 7)) for _ in range(37)]
    write_side(tmp_path, "train.src", src)
    write_side(tmp_path, "train.tgt", tgt)
    sides = [Side(tmp_path, "train", s, 9) for s in ("src", "tgt")]
    costs = pair_costs(*sides, chunk=5)
    assert costs.dtype == np.int32
    assert costs.tolist() == [max(len(s), len(t)) + 1 for s, t in zip(src, tgt, strict=True)]


@pytest.mark.parametrize(
    "offsets, fits",
    [
        ([0, 2, 2, 5, 7, 9], True),
        ([1, 2, 2, 5, 7, 9], False),  # not from 0
        ([0, 2, 3, 1, 7, 9], False),  # decreasing across the chunks [0 2 3] [1 7 9]
        ([0, 3, 2, 5, 7, 9], False),  # decreasing within a chunk
        ([0, 2, 2, 5, 7, 8], False),  # ends before the ids do
        ([], False),
    ],
)
def test_offsets_must_cut_the_ids_into_sentences(tmp_path, offsets, fits):
    np.save(tmp_path / "ids.npy", np.zeros(9, dtype=np.uint16))
    np.save(tmp_path / "idx.npy", np.array(offsets, dtype=np.int64))
    stored = StoredArray(tmp_path, "idx.npy", ("int64",))
    assert cut_into_sentences(stored, 9, chunk_size=3) == fits
