"""Importing a bf16 checkpoint takes about its size in memory: no float32 copy, no second
copy of the file's bytes (measured in a fresh process, beside a smaller warm-up import); so
does generating from the run directory it was imported into."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

MEASURE = """
import sys
from pathlib import Path

from aiayn.interop.hf import from_pretrained


def kib(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))


from_pretrained(Path(sys.argv[1]))  # imports and one-time set-up, not the checkpoint's cost
before = kib("VmRSS:")
model = from_pretrained(Path(sys.argv[2]))
assert {p.dtype for p in model.parameters()} == {__import__("torch").bfloat16}
print((kib("VmHWM:") - before) * 1024)
"""


GENERATE = """
import sys

import torch

import aiayn
from aiayn.tasks.language_model import load_language_model


def kib(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))


def run(folder):
    model, tok = load_language_model(folder, log=lambda _: None)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    return aiayn.generate(model, tok, ["w3 w4"], max_new_tokens=4, temperature=0.0)


run(sys.argv[1])  # imports and one-time set-up
before = kib("VmRSS:")
run(sys.argv[2])
print((kib("VmHWM:") - before) * 1024)
"""


def words_tokenizer(path: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "<s>", "</s>", *(f"w{i}" for i in range(3, vocab))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(words[:3])
    tok.save(str(path))


def llama(folder: Path, vocab: int, d_model: int, layers: int) -> int:
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=d_model,
        intermediate_size=int(d_model * 2.75),
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    words_tokenizer(folder / "tokenizer.json", vocab)
    return (folder / "model.safetensors").stat().st_size


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, int]:
    """A small checkpoint (the warm-up) and a big one of 56M parameters, and its size."""
    tmp_path = tmp_path_factory.mktemp("bf16")
    llama(tmp_path / "small", 256, 64, 1)
    size = llama(tmp_path / "big", 32000, 512, 8)
    assert size >= 100e6
    return tmp_path, size


def assert_peak_within_1_3x(script: str, small: Path, big: Path, size: int) -> None:
    """`script` run in a fresh process on `small` (the warm-up), then `big`: what `big` adds
    to the process's peak memory stays within 1.3x the checkpoint's `size`."""
    argv = [sys.executable, "-c", script, str(small), str(big)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    peak = int(out.stdout.split()[-1])
    print(f"peak {peak / 1e6:.0f} MB above the warmed-up process: {peak / size:.2f}x")  # pytest -s
    assert peak <= 1.3 * size, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB checkpoint"


def test_importing_a_bf16_checkpoint_stays_within_1_3x_its_size(checkpoints) -> None:
    tmp_path, size = checkpoints
    assert_peak_within_1_3x(MEASURE, tmp_path / "small", tmp_path / "big", size)


def test_generating_from_an_imported_bf16_run_stays_within_1_3x_its_size(checkpoints) -> None:
    """The run loads its bf16 weights as bf16 (no float32 model to copy them into) and decodes
    without a second copy of its linear layers."""
    from aiayn.cli import main

    tmp_path, size = checkpoints
    for name in ("small", "big"):
        assert (
            main(["import-hf", str(tmp_path / name), "--out", str(tmp_path / f"{name}-run")]) == 0
        )
    assert_peak_within_1_3x(GENERATE, tmp_path / "small-run", tmp_path / "big-run", size)
