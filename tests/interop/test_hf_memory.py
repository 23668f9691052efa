"""Importing a bf16 checkpoint takes about its size in memory: no float32 copy, no second
copy of the file's bytes (measured in a fresh process, beside a smaller warm-up import)."""

import subprocess
import sys
from pathlib import Path

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
    return (folder / "model.safetensors").stat().st_size


def test_importing_a_bf16_checkpoint_stays_within_1_3x_its_size(tmp_path) -> None:
    llama(tmp_path / "small", 256, 64, 1)
    size = llama(tmp_path / "big", 32000, 512, 8)  # 56M parameters
    assert size >= 100e6
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "small"), str(tmp_path / "big")],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = int(out.stdout.split()[-1])
    print(f"peak {peak / 1e6:.0f} MB above the warmed-up process: {peak / size:.2f}x")  # pytest -s
    assert peak <= 1.3 * size, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB checkpoint"
