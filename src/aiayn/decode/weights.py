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

On AMD CPUs MKL runs its AVX2 kernels (`mkl_blas_def_sgemm_kernel_0_zen`), where oneDNN, also
inside torch, runs AVX-512: at inner sizes of 512 and 2,048 its products took 0.39-0.88x
MKL's time at 32 and 160 rows, at 128 0.93-1.03x (2-core AMD EPYC, `python -m
benchmarks.onednn_linear`). There, layers of at least ONEDNN_FROM inputs borrow oneDNN's
blocked copy of their weights instead (`onednn_linear`), as CTranslate2 takes oneDNN on CPUs
other than Intel's.

Where a feed-forward net's first layer runs on a kernel that can apply a ReLU to what it writes
(oneDNN's here, fbgemm's int8 product of `aiayn.decode.quantize`), decoding has it do so
(`relu_feed_forward`): the (rows, d_ff) hidden is not read and written a second time. The same
numbers: the ReLU of each entry, however computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.nn.intrinsic.quantized.dynamic import LinearReLU as Int8LinearReLU
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from aiayn.nn.feedforward import FeedForward
from aiayn.safeio import read_input_text


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


# oneDNN compiles a kernel for each row count (about 1 ms each, 2-core AMD EPYC) and keeps 1,024:
# rows are padded to a multiple of this, so a batch that shrinks step by step reuses a few
ROW_BUCKET = 16
ONEDNN_FROM = 512  # inputs; at 128 oneDNN and MKL took the same time


def onednn_linear(x: Tensor, packed: Tensor, bias: Tensor | None, post: str = "none") -> Tensor:
    """x W^T + b, as nn.Linear computes it to rounding, by oneDNN from W in its blocked layout
    (`packed`), then `post` ("none" or "relu") of each entry as it is written. With the rows
    padded, a row's result is the same alone as among others."""
    # x: (..., in) -> (..., out)
    rows = x.reshape(-1, x.size(-1))
    n = rows.size(0)
    if n % ROW_BUCKET:
        rows = torch.cat([rows, rows.new_zeros(ROW_BUCKET - n % ROW_BUCKET, rows.size(1))])
    out = torch.ops.mkldnn._linear_pointwise(rows, packed, bias, post, [], "")
    return out[:n].view(*x.shape[:-1], out.size(-1))


@cache
def on_amd() -> bool:
    """Whether this is an AMD CPU (Linux's /proc/cpuinfo says so), where MKL runs AVX2 only."""
    try:
        info = read_input_text("/proc/cpuinfo", 1 << 22)
    except (OSError, ValueError):  # not Linux, or unreadable: MKL, as before
        return False
    return any(
        line.split(":")[-1].strip() == "AuthenticAMD"
        for line in info.splitlines()
        if line.startswith("vendor_id")
    )


def onednn_pays(layer: nn.Linear) -> bool:
    """Whether decoding borrows oneDNN's layout for `layer` (on an AMD CPU, wide enough)."""
    return layer.in_features >= ONEDNN_FROM and torch.backends.mkldnn.is_available() and on_amd()


class Reused:
    """One block of memory that a layer's every output is written into, grown when short."""

    def __init__(self) -> None:
        self.memory: Tensor | None = None

    def block(self, rows: int, width: int, like: Tensor) -> Tensor:
        """(rows, width) of the block, of `like`'s dtype and device."""
        m = self.memory
        if m is None or m.size(0) < rows or m.size(1) != width or not alike(m, like):
            self.memory = m = like.new_empty(rows, width)
        return m[:rows]


def alike(a: Tensor, b: Tensor) -> bool:
    """Whether `a` and `b` have the same dtype and device."""
    return a.dtype == b.dtype and a.device == b.device


class InputMajor:
    """(in, out) copies of a model's nn.Linear weights (or oneDNN's, where `onednn_pays`), used
    by those layers within `active()`, and there ReLU feed-forward nets whose first layer's
    kernel can apply the ReLU (`relu_feed_forward`).

    Layers whose weights are not plain tensors (sharded by FSDP, say), or not on a CPU, are
    left as they are.
    """

    def __init__(self, model: nn.Module, overwrite: tuple[nn.Module, ...] = ()) -> None:
        """`overwrite`: layers whose every output is read before their next call, which then
        write it into one block of memory, reused (a search's output layer)."""
        self.overwrite = overwrite
        self.copies = [
            (m, _layout(m), None if m.bias is None else m.bias.detach())
            for m in model.modules()
            if isinstance(m, nn.Linear)
            and type(m.weight.data) is torch.Tensor
            and input_major_pays(m.weight.device)
            and m.weight.dtype == torch.float32  # measured in float32; a bf16 model stays one copy
        ]
        blocked = {id(m): (w, b) for m, w, b in self.copies if w.is_mkldnn}
        fused = [
            (ff, _fused_relu(ff.w_in, blocked.get(id(ff.w_in))))
            for ff in model.modules()
            if isinstance(ff, FeedForward) and ff.act is F.relu
        ]
        self.relu_ffs = [(ff, first) for ff, first in fused if first is not None]

    @contextmanager
    def active(self) -> Iterator[None]:
        for layer, weight, bias in self.copies:
            if weight.is_mkldnn:  # `_layout` chose oneDNN's
                layer.forward = partial(onednn_linear, packed=weight, bias=bias)
                continue
            into = Reused() if any(layer is m for m in self.overwrite) else None
            layer.forward = partial(input_major_linear, weight_t=weight, bias=bias, into=into)
        for ff, first in self.relu_ffs:
            ff.forward = partial(relu_feed_forward, ff=ff, first=first)
        try:
            yield
        finally:
            for layer, _, _ in self.copies:
                del layer.forward
            for ff, _ in self.relu_ffs:
                del ff.forward


def _fused_relu(
    layer: nn.Module, onednn: tuple[Tensor, Tensor | None] | None
) -> Callable[[Tensor], Tensor] | None:
    """ReLU(layer(x)) in one kernel where `layer` runs on one that can (None elsewhere):
    `onednn` is its weight and bias where it borrows oneDNN's layout."""
    if isinstance(layer, Int8Linear) and not isinstance(layer, Int8LinearReLU):
        return partial(Int8LinearReLU.forward, layer)  # the same int8 product, the ReLU inside
    if onednn is not None:
        return partial(onednn_linear, packed=onednn[0], bias=onednn[1], post="relu")
    return None


def relu_feed_forward(x: Tensor, ff: FeedForward, first: Callable[[Tensor], Tensor]) -> Tensor:
    """`ff(x)` for a ReLU net, the ReLU applied by its first layer's kernel (`first`)."""
    # x: (..., d_model) -> (..., d_model)
    return ff.w_out(first(x))


def _layout(layer: nn.Linear) -> Tensor:
    """The copy of `layer`'s weight that decoding borrows: oneDNN's or (in, out)."""
    weight = layer.weight.detach()
    if onednn_pays(layer):
        return torch.ops.mkldnn._reorder_linear_weight(weight, 160)  # a layout for ~160 rows
    return weight.t().contiguous()


def search_weights(model: nn.Module) -> InputMajor:
    """The weights a greedy or beam search decodes with, whose output layer (`generator`)
    writes each step's logits over the last step's: the search reads them within the step."""
    generator = getattr(model, "generator", None)
    return InputMajor(model, () if generator is None else (generator,))


def input_major_pays(device: torch.device) -> bool:
    """Whether decoding on `device` borrows (in, out) weights: on CPUs only."""
    return device.type == "cpu"
