"""Weights laid out for decoding, beside the model.

A decoding step multiplies one row per sequence by each weight matrix. MKL computes such
products about 1.3x faster from a matrix stored (in, out), as GPT-2's Conv1D keeps it, than
from nn.Linear's (out, in) (measured on a 2-core AMD EPYC: greedy decoding of a d_model 384,
6-layer model at batch 1 went from 214 to 255 tokens/s). `InputMajor` holds such copies for
the time of a decoding call (a second copy of those weights in memory meanwhile) and lends
them to the model's nn.Linear layers; the model is unchanged, its outputs equal to rounding.
The gain was measured on a CPU only: on CUDA, whose cuBLAS reads a transposed operand as it
is, plain nn.Linear decodes and no copy is made (`input_major_pays`).

A search's output layer also writes each step's logits over the last step's, which the search
has read by then (`search_weights`): a fresh block each step (53 MB for a beam of 1,650 rows
over 8,000 tokens) is new pages that the kernel faults in one by one. On `runs/m30k-short`
this made `Translator.translate` of 1,000 sentences at beam 5 1.15x faster (2-core Intel Xeon,
the same translations).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn


def input_major_linear(
    x: Tensor, weight_t: Tensor, bias: Tensor | None, into: Reused | None = None
) -> Tensor:
    """x W^T + b, as nn.Linear computes it, from W^T stored contiguously (into `into`'s block
    when given)."""
    # x: (..., in) -> (..., out)
    rows = x.reshape(-1, x.size(-1))
    out = None if into is None else into.block(rows.size(0), weight_t.size(1), rows)
    if bias is None:
        out = torch.mm(rows, weight_t, out=out)
    else:
        out = torch.addmm(bias, rows, weight_t, out=out)
    return out.view(*x.shape[:-1], weight_t.size(1))


class Reused:
    """One block of memory that a layer's every output is written into, grown when short."""

    def __init__(self) -> None:
        self.memory: Tensor | None = None

    def block(self, rows: int, width: int, like: Tensor) -> Tensor:
        """(rows, width) of the block, of `like`'s dtype and device."""
        m = self.memory
        if m is None or m.size(0) < rows or m.size(1) != width or not _alike(m, like):
            self.memory = m = like.new_empty(rows, width)
        return m[:rows]


def _alike(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.device == b.device


class InputMajor:
    """(in, out) copies of a model's nn.Linear weights, used by those layers within `active()`.

    Layers whose weights are not plain tensors (sharded by FSDP, say), or not on a CPU, are
    left as they are.
    """

    def __init__(self, model: nn.Module, overwrite: tuple[nn.Module, ...] = ()) -> None:
        """`overwrite`: layers whose every output is read before their next call, which then
        write it into one block of memory, reused (a search's output layer)."""
        self.overwrite = overwrite
        self.copies = [
            (m, m.weight.detach().t().contiguous(), None if m.bias is None else m.bias.detach())
            for m in model.modules()
            if isinstance(m, nn.Linear)
            and type(m.weight.data) is torch.Tensor
            and input_major_pays(m.weight.device)
            and m.weight.dtype == torch.float32  # measured in float32; a bf16 model stays one copy
        ]

    @contextmanager
    def active(self) -> Iterator[None]:
        for layer, weight_t, bias in self.copies:
            into = Reused() if any(layer is m for m in self.overwrite) else None
            layer.forward = partial(input_major_linear, weight_t=weight_t, bias=bias, into=into)
        try:
            yield
        finally:
            for layer, _, _ in self.copies:
                del layer.forward


def search_weights(model: nn.Module) -> InputMajor:
    """The weights a greedy or beam search decodes with, whose output layer (`generator`)
    writes each step's logits over the last step's: the search reads them within the step."""
    generator = getattr(model, "generator", None)
    return InputMajor(model, () if generator is None else (generator,))


def input_major_pays(device: torch.device) -> bool:
    """Whether decoding on `device` borrows (in, out) weights: on CPUs only."""
    return device.type == "cpu"
