"""The trainer's batch feed: each rank's share of each step, collated in order, in this
process or by DataLoader workers."""

import pytest
import torch

from aiayn.train.feed import RankShare, feed, loader_workers


@pytest.mark.parametrize("accumulate, world, first", [(1, 1, 0), (2, 1, 4), (3, 2, 6), (1, 4, 3)])
def test_a_rank_share_is_each_step_s_batches_every_world_th_from_its_rank(accumulate, world, first):
    batches = list(range(23))
    per_step = accumulate * world
    for rank in range(world):
        expected, at = [], first
        while len(batches) - at >= per_step:  # the trainer's loop before the feed
            expected += batches[at : at + per_step][rank::world]
            at += per_step
        share = RankShare(batches, first, accumulate, rank, world)
        assert list(share) == expected == share[:]
        assert share.steps * accumulate == len(expected)


def test_workers_collate_the_same_batches_in_the_same_order():
    items = [torch.tensor([i, i + 1]) for i in range(40)]

    def collate(x):
        return (x * 10, x.sum())

    here = list(feed(items, collate, torch.device("cpu"), workers=0))
    there = list(feed(items, collate, torch.device("cpu"), workers=2))
    assert len(there) == 40
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(here, there, strict=True))


def test_workers_are_used_on_cuda_only_unless_asked_for():
    assert loader_workers(-1, torch.device("cpu")) == 0
    assert loader_workers(-1, torch.device("cuda", 0)) == 2
    assert loader_workers(-1, torch.device("mps")) == 0
    assert loader_workers(3, torch.device("cpu")) == 3
    assert loader_workers(0, torch.device("cuda")) == 0


def test_workers_draw_nothing_from_torchs_global_generator():
    # the trainer's dropout masks come from it: workers must leave it as it was
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(feed([torch.zeros(1)] * 4, lambda x: x, torch.device("cpu"), workers=2))
    assert torch.equal(torch.rand(3), expected)
