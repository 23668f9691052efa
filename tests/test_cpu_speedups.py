"""Each CPU-only speed-up is chosen on a CPU and not on CUDA: the choice is inspected for
each device type, so no GPU is needed (a model on the meta device stands for one elsewhere)."""

import pytest
import torch
from torch import nn

from aiayn.decode.weights import InputMajor, input_major_pays
from aiayn.nn.dropout import dropout, written_out
from aiayn.runtime.attention import AUTO_MATH_UP_TO, auto_impl
from aiayn.train.allocator import CpuHeap
from aiayn.train.feed import loader_workers


@pytest.mark.parametrize("kind, on_cpu", [("cpu", True), ("cuda", False), ("mps", False)])
def test_each_speedup_is_for_cpus_only(kind, on_cpu, monkeypatch):
    device = torch.device(kind)
    assert written_out(device) is on_cpu
    assert input_major_pays(device) is on_cpu
    monkeypatch.setattr("aiayn.train.allocator.keep_freed_memory", lambda: False)
    assert (CpuHeap.for_device(device) is not None) is on_cpu
    assert (loader_workers(-1, device) > 0) is (kind == "cuda")  # workers for CUDA only


def test_decoding_lends_input_major_weights_only_to_cpu_layers():
    assert len(InputMajor(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))).copies) == 2
    assert InputMajor(nn.Linear(4, 4, device="meta")).copies == []


def test_dropout_off_the_cpu_is_torchs_own(monkeypatch):
    calls = []
    monkeypatch.setattr("aiayn.nn.dropout.F.dropout", lambda x, p, training: calls.append(p) or x)
    x = torch.ones(8)
    dropout(x, 0.25)  # on the CPU: the written-out mask
    assert calls == []
    dropout(torch.ones(8, device="meta"), 0.25)
    assert calls == [0.25]


@pytest.mark.parametrize(
    "kind, dtype, t_q, t_k, expected",
    [
        ("cpu", torch.bfloat16, 40, 40, "math"),  # bf16 training at short lengths
        ("cpu", torch.bfloat16, 40, AUTO_MATH_UP_TO + 1, "sdpa"),  # longer than measured
        ("cpu", torch.float32, 40, 40, "sdpa"),  # fp32 training: the fused kernel was faster
        ("cpu", torch.float32, 1, 60, "math"),  # a decoding step
        ("cpu", torch.float32, 1, 49, "one_query"),  # 49 keys of 8: bmm's scalar loop
        ("cpu", torch.float32, 1, 50, "math"),  # 400 multiply-adds: bmm's own kernels
        ("cpu", torch.float32, 5, 40, "math"),  # a sentence's 5 beams over its memory
        ("cpu", torch.float32, 17, 40, "sdpa"),
        ("meta", torch.bfloat16, 40, 40, "sdpa"),  # off the CPU: SDPA's (flash) kernels
        ("meta", torch.float32, 1, 40, "sdpa"),
    ],
)
def test_auto_attention_takes_the_written_out_path_only_where_it_measured_faster(
    kind, dtype, t_q, t_k, expected
):
    q = torch.empty(2, 4, t_q, 8, dtype=dtype, device=kind)
    k = torch.empty(2, 4, t_k, 8, dtype=dtype, device=kind)
    assert auto_impl(q, k) == expected
