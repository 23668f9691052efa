import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aiayn.data.batching import drop_long, token_budget_batches
from aiayn.data.parallel import ParallelData


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=300),
    st.integers(50, 500),
    st.integers(0, 10**6),
)
def test_batches_cover_every_example_once_within_the_budget(lengths, budget, seed):
    batches = token_budget_batches(lengths, budget, seed)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= budget or len(b) == 1


def reference_batches(lengths, batch_tokens, seed, shuffle=True):
    """The bucketing written out sentence by sentence in plain Python, as the spec."""
    rng = random.Random(seed)
    keys = [rng.random() for _ in lengths] if shuffle else range(len(lengths))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], keys[i]))
    batches, batch = [], []
    for i in order:
        if batch and (len(batch) + 1) * lengths[i] > batch_tokens:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


def as_lists(batches):
    return [b.tolist() for b in batches]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(0, 60), max_size=400),
    st.integers(1, 600),
    st.integers(0, 2**40),
    st.booleans(),
)
def test_vectorised_batches_equal_the_sentence_by_sentence_reference(
    lengths, budget, seed, shuffle
):
    # the same batches in the same order: runs made before vectorising train on unchanged
    got = token_budget_batches(lengths, budget, seed, shuffle)
    assert as_lists(got) == reference_batches(lengths, budget, seed, shuffle)


def test_same_seed_same_batches_other_seed_other_order():
    lengths = [random.Random(1).randint(3, 40) for _ in range(500)]
    a, b = token_budget_batches(lengths, 256, seed=7), token_budget_batches(lengths, 256, seed=7)
    assert as_lists(a) == as_lists(b)
    assert as_lists(token_budget_batches(lengths, 256, seed=8)) != as_lists(a)


def test_length_sorted_batches_hold_far_less_padding_than_random_ones():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(2000)]
    bucketed = token_budget_batches(lengths, 1024, seed=0)

    def padding(batches):
        return sum(
            len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches
        )

    order = list(range(len(lengths)))
    rng.shuffle(order)
    fixed = [order[i : i + 32] for i in range(0, len(order), 32)]
    assert padding(bucketed) < padding(fixed) / 5


def test_drop_long_counts_what_it_drops():
    keep, dropped = drop_long([3, 10, 4, 11], max_len=10)
    assert keep.tolist() == [0, 1, 2] and dropped == 1


def test_collate_shifts_targets_and_counts_real_tokens():
    data = ParallelData.from_ids([[5, 6], [7]], [[8, 9, 10], [11]], bos=1, eos=2, pad=0)
    b = data.collate([0, 1])
    assert b.src.tolist() == [[5, 6, 2], [7, 2, 0]]
    assert b.tgt_in.tolist() == [[1, 8, 9, 10], [1, 11, 2, 0]]
    assert b.tgt_out.tolist() == [[8, 9, 10, 2], [11, 2, 0, 0]]
    assert b.n_tokens == 6


def test_without_long_drops_pairs_over_max_len():
    data = ParallelData.from_ids([[5] * 3, [5] * 9], [[6] * 2, [6] * 2], bos=1, eos=2, pad=0)
    kept, dropped = data.without_long(5)
    assert len(kept) == 1 and dropped == 1
