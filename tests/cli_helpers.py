"""Tiny parallel data and configs for tests that run the real CLI."""

from __future__ import annotations

import random
import shutil
import tomllib
from pathlib import Path

import tomli_w

WORDS = {
    "a": "ein",
    "man": "mann",
    "dog": "hund",
    "runs": "läuft",
    "sees": "sieht",
    "the": "der",
    "big": "große",
    "small": "kleine",
    "cat": "katze",
    "eats": "isst",
    "red": "rote",
    "ball": "ball",
    "and": "und",
    "woman": "frau",
    "sleeps": "schläft",
}


def write_corpus(folder: Path, n: int = 240, seed: int = 0) -> dict[str, Path]:
    """Word-for-word 'translations' of random short sentences, as line-aligned files."""
    rng = random.Random(seed)
    english = list(WORDS)
    files = {}
    for split, count in (("train", n), ("valid", 20)):
        src = [
            " ".join(rng.choice(english) for _ in range(rng.randint(2, 7))) for _ in range(count)
        ]
        tgt = [" ".join(WORDS[w] for w in s.split()) for s in src]
        for side, lines in (("src", src), ("tgt", tgt)):
            path = folder / f"{split}.{side}"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files[f"{split}_{side}"] = path
    return files


def write_config(folder: Path, **train: object) -> Path:
    files = write_corpus(folder)
    config = {
        "version": 2,
        "data": {**{k: str(v) for k, v in files.items()}, "vocab_size": 80, "max_pair_len": 32},
        "model": {
            "d_model": 32,
            "n_heads": 2,
            "d_ff": 64,
            "n_layers": 1,
            "dropout": 0.1,
            "max_len": 24,
        },
        "train": {
            "max_steps": 30,
            "eval_every": 10,
            "log_every": 5,
            "batch_tokens": 256,
            "lr": 3e-3,
            "schedule": "cosine",
            "warmup": 5,
            "average_last": 2,
            **train,
        },
        "decode": {"beam": 2, "max_extra": 5},
    }
    path = folder / "tiny.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def copy_decoding_otherwise(run: Path, copy: Path, **decode: object) -> Path:
    """A copy of `run` at `copy` whose config's [decode] table has `decode` set."""
    shutil.copytree(run, copy)
    config = tomllib.loads((copy / "config.toml").read_text(encoding="utf-8"))
    config.setdefault("decode", {}).update(decode)
    (copy / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    return copy
