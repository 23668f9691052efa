"""Imported decoder-only checkpoints, a random GPT-2 and a random Llama with grouped-query
attention (built with `transformers`), fine-tuned with LoRA on tiny-shakespeare for 50 steps:
the loss falls; the merged run gives the adapter run's logits, and its export loads in
`transformers` with them."""

import json
from pathlib import Path

import pytest
import tomli_w
import torch
import transformers

from aiayn.cli import main
from aiayn.interop.hf_export import export
from aiayn.run.weights import read_tensors, save_tensors
from aiayn.tasks import load_run
from tests.interop.conftest import VOCAB, char_tokenizer_json, save, tiny_gpt2
from tests.interop.test_hf_llama import SMALL

SHAKESPEARE = Path(__file__).resolve().parents[2] / ".." / "shared/data/tinyshakespeare/input.txt"
STEPS = 50
# a smaller Llama than test_hf_llama's, grouped-query attention still (4 heads, 2 of k and v)
LLAMA = {**SMALL, "hidden_size": 32, "intermediate_size": 64}
# weights drawn wider than the checkpoints' 0.02: embeddings that tiny (tied to the output, and
# frozen) give logits too flat for any adapter to learn the characters' frequencies
WIDE = {"initializer_range": 0.2}
CLASSES = {"gpt2": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM}


def checkpoint(kind: str, folder: Path) -> Path:
    torch.manual_seed(5)
    if kind == "gpt2":
        model = tiny_gpt2(**WIDE)
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA, **WIDE))
        assert model.config.num_key_value_heads < model.config.num_attention_heads
    save(model.eval(), folder)
    char_tokenizer_json(folder / "tokenizer.json")
    return folder


def lora_finetune(kind: str, tmp_path: Path) -> Path:
    """The adapter run of `kind`'s imported checkpoint after STEPS steps on Shakespeare."""
    hf = checkpoint(kind, tmp_path / kind)
    assert main(["import-hf", str(hf), "--out", str(tmp_path / "base")]) == 0
    (tmp_path / "train.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8")[:8000])
    config = {
        "version": 2,
        "data": {"train_text": str(tmp_path / "train.txt"), "block_size": 16},
        "model": {"arch": "decoder_only", "dropout": 0.0},
        "train": {
            "lora_rank": 4,
            "lora_targets": "q,k,v,o,ff",
            "max_steps": STEPS,
            "eval_every": STEPS,
            "log_every": 1,
            "batch_tokens": 256,
            "lr": 2e-2,
            "schedule": "cosine",
            "warmup": 2,
            "label_smoothing": 0.0,
        },
    }
    (tmp_path / "ft.toml").write_text(tomli_w.dumps(config))
    run = tmp_path / "lora"
    args = ["train", str(tmp_path / "ft.toml"), "--init", str(tmp_path / "base")]
    assert main([*args, "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_lora_on_an_imported_decoder_learns_merges_and_exports(kind, tmp_path, capsys) -> None:
    run = lora_finetune(kind, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    losses = [r["loss"] for r in map(json.loads, lines) if "loss" in r]
    assert len(losses) == STEPS and sum(losses[-5:]) < sum(losses[:5]) - 2.5
    assert main(["merge", str(run), "--out", str(tmp_path / "merged")]) == 0
    _, adapted = load_run(run, "decoder_only", log=lambda _: None)
    _, merged = load_run(tmp_path / "merged", "decoder_only", log=lambda _: None)
    tokens = torch.randint(1, VOCAB - 1, (2, 20))
    with torch.no_grad():
        ours = adapted(tokens)
        torch.testing.assert_close(merged(tokens), ours, rtol=0, atol=1e-5)
    refuses_a_changed_base(tmp_path, run, kind, capsys)
    export(tmp_path / "merged", tmp_path / "hf", log=lambda _: None)
    theirs = CLASSES[kind].from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(tokens).logits, ours, rtol=0, atol=1e-4)


def refuses_a_changed_base(tmp_path: Path, run: Path, kind: str, capsys) -> None:
    """After the base's weights change, the adapter run is refused by name; the merged run,
    an ordinary one, is not."""
    weights = tmp_path / "base" / "model.safetensors"
    tensors = read_tensors(weights)
    tensors["embed.weight"][0, 0] += 1.0
    save_tensors(tensors, weights)
    commands = [
        ["generate", "--model", str(run), "--prompt", "To be", "--max-new-tokens", "2"],
        ["export-hf", str(run), "--out", str(tmp_path / "refused")],
    ]
    capsys.readouterr()
    for command in commands:
        assert main(command) == 2
        assert f"its base {weights} has changed" in capsys.readouterr().err
