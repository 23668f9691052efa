"""The collated batches a training process steps through, in order: made in the process itself
on a CPU, and on CUDA by DataLoader workers into pinned memory, so that reading and padding
the next batches, and their copy to the GPU, overlap the GPU's work on this one.

On a CPU, workers would only take cores from the matrix products (collating a demo batch of
the 4.5M-pair benchmark from the page cache takes about 1 ms, 0.2% of its 0.5 s step on a
2-core AMD EPYC), so there are none unless `train.loader_workers` asks.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

AUTO = -1  # train.loader_workers: CUDA_WORKERS on CUDA, none elsewhere
CUDA_WORKERS = 2
PREFETCH = 4  # batches each worker keeps ready


def loader_workers(setting: int, device: torch.device) -> int:
    """How many worker processes collate batches for `device`."""
    if setting != AUTO:
        return setting
    return CUDA_WORKERS if device.type == "cuda" else 0


class RankShare(Sequence[Any]):
    """What one rank trains on from batch `first` of an epoch, for whole steps only: step s
    takes the epoch's batches first + s * per_step onwards, `per_step` = accumulate * world,
    and this rank every world-th of them from its own."""

    def __init__(self, batches: Sequence[Any], first: int, accumulate: int, rank: int, world: int):
        self.batches, self.first, self.rank, self.world = batches, first, rank, world
        self.accumulate, self.per_step = accumulate, accumulate * world
        self.steps = max(len(batches) - first, 0) // self.per_step

    def __len__(self) -> int:
        return self.steps * self.accumulate

    def __getitem__(self, j):  # type: ignore[override]
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if not 0 <= j < len(self):
            raise IndexError(j)
        step, k = divmod(j, self.accumulate)
        return self.batches[self.first + step * self.per_step + self.rank + k * self.world]


class Collated(Dataset):
    def __init__(self, items: Sequence[Any], collate: Callable[[Any], Any]) -> None:
        self.items, self.collate = items, collate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.collate(self.items[i])


def feed(
    items: Sequence[Any], collate: Callable[[Any], Any], device: torch.device, workers: int
) -> Iterator[Any]:
    """collate(item) for each of `items`, in order."""
    if not workers:
        return map(collate, items)
    # fork: the workers share the task's arrays and open files instead of pickling them
    # (collation touches no GPU state, so forking a process that holds CUDA is safe here)
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    loader = DataLoader(
        Collated(items, collate),
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=PREFETCH,
        multiprocessing_context=context,
        # its own generator for the workers' seeds: drawing them from torch's global one
        # would change every dropout mask after it (collation draws no random numbers)
        generator=torch.Generator(),
    )
    return iter(loader)
