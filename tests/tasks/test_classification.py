import json
import random
from pathlib import Path

import tomli_w
import torch

from aiayn.cli import main

GOOD = ["great", "lovely", "fine", "superb", "wonderful"]
BAD = ["awful", "boring", "dull", "terrible", "bad"]
FILLER = ["the", "film", "was", "a", "plot", "actors", "really", "quite"]


def write_tsv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [*rng.sample(FILLER, rng.randint(1, 5)), rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        rows.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def classifier_config(folder: Path) -> Path:
    write_tsv(folder / "train.tsv", 400, 0)
    write_tsv(folder / "dev.tsv", 60, 1)
    config = {
        "version": 2,
        "data": {
            "train_tsv": str(folder / "train.tsv"),
            "valid_tsv": str(folder / "dev.tsv"),
            "vocab_size": 60,
            "truncate_len": 16,
        },
        "model": {
            "arch": "encoder_classifier",
            "d_model": 32,
            "n_heads": 2,
            "d_ff": 64,
            "n_layers": 1,
            "dropout": 0.0,
            "norm_first": True,
            "pooling": "mean",
            "max_len": 16,
        },
        "train": {
            "max_steps": 60,
            "eval_every": 30,
            "batch_tokens": 256,
            "lr": 3e-3,
            "schedule": "cosine",
            "warmup": 5,
        },
    }
    path = folder / "cls.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def test_train_classify_and_evaluate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", str(classifier_config(tmp_path)), "--out", str(out)]) == 0
    assert (out / "labels.txt").read_text() == "0\n1\n"
    capsys.readouterr()
    assert (
        main(["evaluate", "--model", str(out), "--src", str(tmp_path / "dev.tsv"), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 60 and report["accuracy"] >= 0.9
    (tmp_path / "in.txt").write_text("the film was superb\nawful plot\n\n", encoding="utf-8")
    classify = ["classify", "--model", str(out), "--input", str(tmp_path / "in.txt")]
    assert main([*classify, "--device", "auto"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert main([*classify, "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert len(lines) == 3
    (first, p1), (second, p2) = (line.split("\t") for line in lines[:2])
    assert (first, second) == ("1", "0") and float(p1) > 0.5 and float(p2) > 0.5
    evaluate = ["evaluate", "--model", str(out), "--src", str(tmp_path / "dev.tsv")]
    for flag in ("--int8", "--cuda-graph"):  # a translation model's decoding
        assert main([*evaluate, flag]) == 2
        err = capsys.readouterr().err
        assert f"{flag} decodes translation models; this run is a classifier" in err


def test_an_unseen_validation_label_is_named(tmp_path: Path, capsys) -> None:
    config = classifier_config(tmp_path)
    with open(tmp_path / "dev.tsv", "a", encoding="utf-8") as f:
        f.write("so so\tneutral\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "label 'neutral' is not among ['0', '1']" in capsys.readouterr().err


def test_several_models_vote_with_their_mean_probabilities(tmp_path: Path, capsys) -> None:
    from aiayn.tasks.classification import Ensemble, load_classifier, load_classifiers

    config, runs = classifier_config(tmp_path), [tmp_path / "run1", tmp_path / "run2"]
    for seed, run in enumerate(runs, 1):
        sets = ["--set", f"train.seed={seed}", "--set", "train.max_steps=20"]
        assert main(["train", str(config), "--out", str(run), *sets]) == 0
    texts = ["the film was superb", "awful plot", "quite dull actors"]
    one, two = (load_classifier(r, log=lambda _: None).probabilities(texts) for r in runs)
    assert not torch.allclose(one, two)  # two seeds, two different models
    both = load_classifiers([str(r) for r in runs], log=lambda _: None)
    assert isinstance(both, Ensemble)
    assert torch.allclose(both.probabilities(texts), (one + two) / 2)
    capsys.readouterr()
    dev = str(tmp_path / "dev.tsv")
    args = ["evaluate", "--model", str(runs[0]), "--model", str(runs[1]), "--src", dev, "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 60
    (runs[1] / "labels.txt").write_text("0\nx\n", encoding="utf-8")
    assert main(args) == 2
    assert "must share their labels: ['0', '1'] and ['0', 'x'] differ" in capsys.readouterr().err
