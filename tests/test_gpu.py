"""Checks that need CUDA (`-m gpu`): each is reported as skipped where there is no GPU, never
as passed (tests/conftest.py). `make gpu-checks` runs them with the GPU benchmarks."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from aiayn.cli import main
from aiayn.decode.search import greedy, n_best_search
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.nn.masks import CAUSAL
from aiayn.runtime.attention import attention
from aiayn.tasks.translation import load_translator
from tests.cli_helpers import write_config
from tests.decode.conftest import SPECIAL, reversal_batch, tiny_config
from tests.decode.test_lm_steps import padded_batch
from tests.decode.test_sample import lm, run

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_flash_attention_equals_the_written_out_path_in_bf16():
    torch.manual_seed(0)
    q, k, v = (
        torch.randn(4, 8, 256, 64, device=CUDA, dtype=torch.bfloat16, requires_grad=True)
        for _ in range(3)
    )
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # fails if the flash kernel cannot run
        flash = attention(q, k, v, CAUSAL, impl="sdpa")
    grads = torch.autograd.grad(flash.float().square().sum(), (q, k, v))
    written = attention(q, k, v, CAUSAL, impl="math")
    written_grads = torch.autograd.grad(written.float().square().sum(), (q, k, v))
    torch.testing.assert_close(flash, written, atol=2e-2, rtol=2e-2)
    for a, b in zip(grads, written_grads, strict=True):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize(
    "precision, compile", [("bf16", False), ("bf16", True), ("fp16", False), ("fp32", False)]
)
def test_fifty_training_steps_on_cuda(tmp_path, precision, compile):
    config = write_config(tmp_path, max_steps=50, eval_every=50)
    sets = ["--set", "train.device=cuda", "--set", f"train.precision={precision}"]
    sets += ["--set", f"train.compile={str(compile).lower()}"]
    assert main(["train", str(config), "--out", str(tmp_path / "run"), *sets]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert '"step": 50' in lines[-1] and "val_loss" in lines[-1]


def test_greedy_decoding_on_cuda_gives_the_cpus_tokens_in_fp32(tiny_run, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    sentences = ["a man sees the dog", "the small cat eats a red ball", "a woman sleeps"]
    cpu = load_translator(tiny_run, log=lambda _: None).translate(sentences, beam=1)
    gpu = load_translator(tiny_run, device=CUDA, log=lambda _: None).translate(sentences, beam=1)
    assert gpu == cpu


@pytest.mark.parametrize("beam", [1, 4])
def test_cuda_graph_decoding_replays_a_graph_and_gives_the_eager_tokens(
    tiny_run, monkeypatch, beam
):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda g: replays.append(g) or replay(g))
    sentences = ["a man sees the dog", "the small cat eats a red ball", "a woman sleeps"] * 3
    translator = load_translator(tiny_run, device=CUDA, log=lambda _: None)
    eager = translator.translate(sentences, beam=beam)
    assert not replays
    translator.graph = True
    assert translator.translate(sentences, beam=beam) == eager
    assert len(replays) > 1  # captured once, replayed at every later step


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"positional": "rope", "n_kv_heads": 2},
        {"positional": "alibi"},
        {"positional": "learned"},
    ],
    ids=["sinusoidal", "rope-gqa", "alibi", "learned"],
)
def test_cuda_graph_search_gives_the_eager_tokens_for_each_kind_of_positions(changes, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(3)
    model = EncoderDecoder(tiny_config(**changes)).eval().to(CUDA)
    src = reversal_batch(torch.Generator().manual_seed(1), 20)[0].to(CUDA)
    assert greedy(model, src, SPECIAL, graph=True) == greedy(model, src, SPECIAL)
    eager = n_best_search(model, src, SPECIAL, beam=4, n_best=2)
    graphed = n_best_search(model, src, SPECIAL, beam=4, n_best=2, graph=True)
    assert [[t for t, _ in h] for h in graphed] == [[t for t, _ in h] for h in eager]


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope", "alibi"])
def test_cuda_graph_generation_gives_the_eager_tokens(positional, monkeypatch):
    # a left-padded batch past max_len: the prompt read eagerly, steps replayed, contexts rebuilt
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda g: replays.append(g) or replay(g))
    model = lm(positional, max_len=16).to(CUDA)
    batch = padded_batch([2, 13, 20, 7], seed=5).to(CUDA)
    eager = run(model, batch, 40, temperature=0.0, pad_mask=batch == 0)
    assert not replays
    graphed = run(model, batch, 40, temperature=0.0, pad_mask=batch == 0, graph=True)
    assert graphed.tolist() == eager.tolist() and len(replays) > 20  # 27 replayed steps


def test_translate_with_cuda_graph_prints_what_it_prints_without(tiny_run, tmp_path, capsys):
    text = tmp_path / "in.txt"
    text.write_text("a man sees the dog\nthe small cat eats a red ball\n\na woman sleeps\n")
    outputs = []
    for extra in ([], ["--cuda-graph"]):
        args = ["translate", "--model", str(tiny_run), "--input", str(text), "--device", "cuda"]
        assert main([*args, *extra]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[1] == outputs[0] and outputs[0].count("\n") == 4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs 2 GPUs")
def test_ddp_over_nccl_on_two_gpus(tmp_path):
    config = write_config(tmp_path, max_steps=20, eval_every=20)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"]
    cmd += ["aiayn", "train", str(config), "--out", str(tmp_path / "run")]
    cmd += ["--set", "train.device=cuda"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(tmp_path / "run" / "model.safetensors").exists()
