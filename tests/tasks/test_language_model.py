import json
import math
from pathlib import Path

import pytest
import tomli_w
import torch

from aiayn.cli import main
from aiayn.config import RunConfig
from aiayn.tasks.language_model import LanguageModelTask

TEXT = "".join(f"to be or not to be, that is question {i % 7}.\n" for i in range(400))


def lm_config(folder: Path, tokenizer: str = "char", **train: object) -> Path:
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    config = {
        "version": 2,
        "data": {"train_text": str(folder / "text.txt"), "tokenizer": tokenizer, "block_size": 16},
        "model": {
            "arch": "decoder_only",
            "d_model": 32,
            "n_heads": 2,
            "d_ff": 64,
            "n_layers": 2,
            "dropout": 0.0,
            "positional": "rope",
            "norm_first": True,
            "max_len": 32,
        },
        "train": {
            "max_steps": 60,
            "eval_every": 30,
            "log_every": 10,
            "batch_tokens": 128,
            "lr": 3e-3,
            "schedule": "cosine",
            "warmup": 5,
            "label_smoothing": 0.0,
            **train,
        },
    }
    path = folder / "lm.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def test_blocks_come_from_the_training_text_and_validation_is_its_tail(tmp_path: Path) -> None:
    cfg = RunConfig.load(lm_config(tmp_path))
    task = LanguageModelTask(cfg, tmp_path, resume=False, log=lambda _: None)
    assert len(task.valid) == pytest.approx(len(TEXT) * 0.1, abs=2)
    assert len(task.train) + len(task.valid) == len(TEXT)
    batches = task.epoch_batches(0)
    assert batches[0].shape == (128 // 16,)  # rows of one 16-token block each
    assert len(batches) == len(task.train) // 128
    assert all(torch.equal(a, b) for a, b in zip(batches, task.epoch_batches(0), strict=True))
    assert not torch.equal(batches[0], task.epoch_batches(1)[0])


def test_train_then_generate_is_reproducible_and_learns(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(lm_config(tmp_path)), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 2 and val[1] < val[0] < math.log(22)  # below uniform over the characters
    capsys.readouterr()
    args = ["generate", "--model", str(out), "--prompt", "to be", "--max-new-tokens", "40"]
    texts = []
    for seed, device in (("3", "auto"), ("3", "cpu"), ("4", "auto")):
        assert main([*args, "--seed", seed, "--temperature", "1.0", "--device", device]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0] != texts[2]
    assert texts[0].startswith("to be") and len(texts[0]) == len("to be") + 40 + 1


def test_bpe_language_model_trains_and_streams(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = lm_config(tmp_path, tokenizer="bpe", max_steps=10, eval_every=10)
    assert main(["train", str(config), "--out", str(out), "--set", "data.vocab_size=60"]) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "not", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("not")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--top-p", "0", "--top-p 0.0 must be in (0, 1]"),
        ("--temperature", "-1", "--temperature -1.0 must be 0 (greedy) or in [0.001, 100]"),
        ("--top-k", "-2", "--top-k -2 must be >= 0"),
    ],
)
def test_bad_sampling_settings_are_one_line_errors(tmp_path, capsys, flag, value, message) -> None:
    assert main(["generate", "--model", str(tmp_path), flag, value]) == 2
    assert message in capsys.readouterr().err


def test_a_run_of_another_family_is_refused_by_name(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = lm_config(tmp_path, max_steps=2, eval_every=2)
    assert main(["train", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["translate", "--model", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"aiayn translate: error: {out} holds a decoder_only model; "
        "translation needs encoder_decoder"
    )


def test_random_blocks_are_made_lazily_with_the_starts_of_one_randint(monkeypatch):
    from aiayn.tasks.language_model import RandomBlocks

    monkeypatch.setattr(RandomBlocks, "CHUNK", 7)
    whole = torch.randint(0, 10_000, (30, 4), generator=torch.Generator().manual_seed(3))
    blocks = RandomBlocks(30, 4, 10_000, seed=3)
    assert len(blocks) == 30
    assert torch.equal(torch.stack(blocks[12:20]), whole[12:20])  # a resume mid-epoch
    assert torch.equal(torch.stack(blocks[0:30]), whole)  # back to the start, then on
    assert torch.equal(blocks[29], whole[29]) and blocks[30:] == []


def brute_force_val_loss(task: LanguageModelTask) -> float:
    """The mean NLL over every target that is not padding, block by block."""
    block, pad = task.block, task.tok.pad_id
    total, n = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(task.valid) - block, block):
            ids = task.valid[start : start + block + 1]
            logits = task.model(ids[None, :-1])[0]
            for logit, target in zip(logits, ids[1:].tolist(), strict=True):
                if target != pad:
                    total -= float(logit.log_softmax(-1)[target])
                    n += 1
    return total / n


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_special_token_names_in_the_text_are_text_and_scored(tmp_path: Path, tokenizer) -> None:
    cfg = RunConfig.load(lm_config(tmp_path, tokenizer))
    cfg = cfg.replace("data", vocab_size=80)
    text = TEXT.replace("question", "question <pad> </s>")
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    task = LanguageModelTask(cfg, tmp_path, resume=False, log=lambda _: None)
    specials = torch.tensor([task.tok.pad_id, task.tok.bos_id, task.tok.eos_id])
    for ids in (task.train, task.valid):
        assert not torch.isin(ids, specials).any()
    assert "question <pad> </s>" in task.tok.decode([task.valid.tolist()])[0]
    assert task.validate(torch.device("cpu"))["val_loss"] == pytest.approx(
        brute_force_val_loss(task), rel=1e-5
    )


def test_padding_targets_are_neither_scored_nor_counted(tmp_path: Path) -> None:
    """A prepared text may hold the padding id: the loss is the mean over the other targets."""
    task = LanguageModelTask(RunConfig.load(lm_config(tmp_path)), tmp_path, False, print)
    task.valid[::3] = task.tok.pad_id
    assert task.validate(torch.device("cpu"))["val_loss"] == pytest.approx(
        brute_force_val_loss(task), rel=1e-5
    )
    blocks = task.collate(task.epoch_batches(0)[0])
    blocks[:, ::2] = task.tok.pad_id
    for rdrop in (0.0, 0.5):
        _, _, tokens = task.loss(task.model, blocks, torch.device("cpu"), rdrop)
        assert tokens == (blocks[:, 1:] != task.tok.pad_id).sum() * (2 if rdrop else 1)
