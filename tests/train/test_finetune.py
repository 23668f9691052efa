"""Fine-tuning from a run (train.init): the body starts from the run's exact weights, frozen
tensors stay bit-identical without optimizer state, adapter and frozen runs resume exactly,
adapter runs merge, and what cannot fit is refused by name."""

import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch

from aiayn.cli import main
from aiayn.config import RunConfig
from aiayn.run.weights import SafetensorsFile, read_tensors, save_tensors
from aiayn.runtime.attention import use_attention
from aiayn.tasks import load_run
from aiayn.tasks.classification import ClassificationTask
from aiayn.train.checkpoint import load_state
from aiayn.train.finetune import (
    base_weights,
    check_options,
    init_from,
    rate_scales,
    start_from,
)
from tests.cli_helpers import write_config, write_corpus
from tests.tasks.test_classification import classifier_config, write_tsv

QUICK = ["--set", "train.max_steps=2", "--set", "train.eval_every=2", "--set", "train.warmup=1"]
LORA = ["--set", "train.lora_rank=2", "--set", "train.new_head=true"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """(the classifier config, a run of it trained for 4 steps)."""
    folder = tmp_path_factory.mktemp("finetune")
    config = classifier_config(folder)
    out = folder / "base"
    args = ["train", str(config), "--out", str(out), "--set", "train.max_steps=4"]
    assert main([*args, "--set", "train.eval_every=4"]) == 0
    return config, out


def finetune(base, out: Path, *options: str) -> int:
    config, run = base
    return main(["train", str(config), "--out", str(out), "--init", str(run), *QUICK, *options])


def test_the_body_starts_from_the_runs_exact_weights(base, tmp_path) -> None:
    config, run = base
    cfg = start_from(RunConfig.load(config, [f"train.init='{run}'", "train.new_head=true"]))
    task = ClassificationTask(cfg, tmp_path / "ft", resume=False, log=lambda _: None)
    lines = []
    assert init_from(task.model, task.cfg, base_weights(cfg), lines.append) == [
        "classifier.weight",
        "classifier.bias",
    ]
    assert "new (initialised here): classifier.weight, classifier.bias" in lines[0]
    _, trained = load_run(run, "encoder_classifier", log=lambda _: None)
    use_attention(trained, "math")  # the kernel a new model has
    tokens = torch.randint(4, 40, (3, 9))
    with torch.no_grad():
        ours, theirs = task.model.eval().hidden_states(tokens), trained.hidden_states(tokens)
    assert torch.equal(ours[0], theirs[0])
    assert not torch.equal(task.model.classifier.weight, trained.classifier.weight)


def test_frozen_tensors_stay_bit_identical_without_optimizer_state(base, tmp_path) -> None:
    out = tmp_path / "ft"
    assert finetune(base, out, "--set", "train.freeze='embeddings,layers:1'") == 0
    before, after = (
        read_tensors(base[1] / "best.safetensors"),
        read_tensors(out / "model.safetensors"),
    )
    frozen = [n for n in before if n.startswith(("embed.", "transformer.layers.0."))]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    state = load_state(out / "trainer_state.pt")["optimizer"]
    trainable = len(before) - len(frozen)
    assert len(state["state"]) == trainable  # one Adam entry per trainable tensor only
    assert sum(len(g["params"]) for g in state["param_groups"]) == trainable


@pytest.mark.parametrize(
    "options", [LORA, ["--set", "train.freeze=embeddings"]], ids=["lora", "frozen"]
)
def test_a_fine_tuning_resumes_exactly(base, tmp_path, options) -> None:
    four = ["--set", "train.max_steps=4"]
    assert finetune(base, tmp_path / "straight", *options, *four) == 0
    assert finetune(base, tmp_path / "halves", *options) == 0
    resume = ["train", "--out", str(tmp_path / "halves"), "--resume", *four]
    assert main(resume) == 0
    ours = load_state(tmp_path / "halves" / "trainer_state.pt")["model"]
    theirs = load_state(tmp_path / "straight" / "trainer_state.pt")["model"]
    assert all(torch.equal(ours[n], theirs[n]) for n in theirs)


FROZEN = ["--set", "train.freeze=embeddings"]


def test_the_config_that_started_a_fine_tuning_resumes_it(base, tmp_path) -> None:
    config = tomllib.loads(base[0].read_text())
    config["model"] = {"arch": "encoder_classifier", "dropout": 0.0}  # the rest: the base's
    config["data"].pop("vocab_size")
    config["train"] |= {"init": str(base[1]), "max_steps": 2, "eval_every": 2, "warmup": 1}
    (tmp_path / "ft.toml").write_text(tomli_w.dumps(config))
    args = ["train", str(tmp_path / "ft.toml"), "--out", str(tmp_path / "ft")]
    assert main(args) == 0
    assert main([*args, "--resume", "--set", "train.max_steps=3"]) == 0


def test_a_resume_keeps_what_its_weights_are(base, tmp_path, capsys) -> None:
    changes = {
        "lora": ["lora_alpha=64.0", "lora_rank=0", "lora_targets='q'", "new_head=false"],
        "frozen": ["freeze='layers:1'"],
    }
    for options, kind in ((LORA, "lora"), (FROZEN, "frozen")):
        out = tmp_path / kind
        assert finetune(base, out, *options) == 0
        resume = ["train", "--out", str(out), "--resume", "--set", "train.max_steps=3"]
        for change in changes[kind]:
            capsys.readouterr()
            assert main([*resume, "--set", f"train.{change}"]) == 2
            name = change.partition("=")[0]
            assert f"a resumed run keeps the train.{name}=" in capsys.readouterr().err


def private_base(base, tmp_path: Path) -> tuple[Path, Path]:
    """(the config, a copy of the base run) for a test that changes the base."""
    shutil.copytree(base[1], tmp_path / "base")
    return base[0], tmp_path / "base"


def test_an_adapter_run_saves_its_adapters_and_merges(base, tmp_path, capsys) -> None:
    assert main(["merge", str(base[1]), "--out", str(tmp_path / "m")]) == 2  # not an adapter run
    assert "not an adapter run" in capsys.readouterr().err
    out = tmp_path / "lora"
    assert finetune(base, out, *LORA) == 0
    saved = read_tensors(out / "model.safetensors")
    assert all(".lora." in n or n.startswith("classifier.") for n in saved)
    optimizer = load_state(out / "trainer_state.pt")["optimizer"]
    assert len(optimizer["state"]) == len(saved)  # the adapters and the new head alone
    assert main(["merge", str(out), "--out", str(tmp_path / "merged")]) == 0
    written = read_tensors(tmp_path / "merged" / "model.safetensors")
    capsys.readouterr()
    assert main(["merge", str(out), "--out", str(tmp_path / "merged")]) == 2  # not empty now
    assert "already holds files" in capsys.readouterr().err
    again = read_tensors(tmp_path / "merged" / "model.safetensors")
    assert all(torch.equal(again[n], written[n]) for n in written)
    _, adapted = load_run(out, "encoder_classifier", log=lambda _: None)
    _, merged = load_run(tmp_path / "merged", "encoder_classifier", log=lambda _: None)
    tokens = torch.randint(4, 40, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(merged(tokens), adapted(tokens), rtol=0, atol=1e-5)
    assert main(["quantize", str(out), "--out", str(tmp_path / "int8")]) == 0  # as any run
    assert finetune(base, tmp_path / "on_adapters", "--init", str(out)) == 2
    assert f"train.init={out} is an adapter run (LoRA)" in capsys.readouterr().err
    assert finetune(base, tmp_path / "on_int8", "--init", str(tmp_path / "int8")) == 2
    assert "holds int8 weights (aiayn quantize)" in capsys.readouterr().err
    # the int8 run holds the adapters folded in: an ordinary run, nothing left to merge
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "int8"), "--out", str(tmp_path / "m8")]) == 2
    assert "not an adapter run" in capsys.readouterr().err


def test_an_adapter_whose_base_changed_is_refused_by_every_command_and_on_resume(
    base, tmp_path, capsys
) -> None:
    own = private_base(base, tmp_path)
    out = tmp_path / "lora"
    assert finetune(own, out, *LORA) == 0
    weights = base_weights(RunConfig.load(out / "config.toml"))
    tensors = read_tensors(weights)
    tensors["embed.weight"][0, 0] += 1.0
    save_tensors(tensors, weights)
    (tmp_path / "in.txt").write_text("a great film\n")
    elsewhere = ["--out", str(tmp_path / "elsewhere")]
    commands = [
        ["classify", "--model", str(out), "--input", str(tmp_path / "in.txt")],
        ["evaluate", "--model", str(out), "--src", str(base[0].parent / "dev.tsv")],
        ["merge", str(out), *elsewhere],
        ["quantize", str(out), *elsewhere],
        ["serve", "--model", str(out), "--port", "0"],
        ["train", "--out", str(out), "--resume", "--set", "train.max_steps=4"],
    ]
    capsys.readouterr()
    for command in commands:
        assert main(command) == 2, command
        assert f"its base {weights} has changed" in capsys.readouterr().err, command
    assert not (tmp_path / "elsewhere").exists()


def test_an_adapter_naming_a_base_outside_its_init_run_is_refused(base, tmp_path) -> None:
    own = private_base(base, tmp_path)
    out = tmp_path / "lora"
    assert finetune(own, out, *LORA) == 0
    adapters = out / "model.safetensors"
    metadata = SafetensorsFile(adapters).metadata
    other = tmp_path / "other.safetensors"
    shutil.copy(metadata["base"], other)  # the same bytes, the same SHA-256, another place
    save_tensors(read_tensors(adapters), adapters, {**metadata, "base": str(other)})
    with pytest.raises(ValueError, match=f"{adapters}: its base {other} is not a weights file of"):
        load_run(out, "encoder_classifier", weights="model", log=lambda _: None)
    save_tensors(read_tensors(adapters), adapters, metadata)
    Path(metadata["base"]).unlink()
    Path(metadata["base"]).symlink_to(other)  # the right name, a link out of the base run
    with pytest.raises(ValueError, match="a link out of its directory"):
        load_run(out, "encoder_classifier", weights="model", log=lambda _: None)


def test_what_does_not_fit_is_refused_by_name(base, tmp_path, capsys) -> None:
    config, run = base
    three = tmp_path / "three.tsv"
    write_tsv(three, 30, 5)
    three.write_text(three.read_text() + "a plot\t2\n")
    data = ["--set", f"data.train_tsv='{three}'"]
    assert finetune(base, tmp_path / "a", *data) == 2
    err = capsys.readouterr().err
    assert "tensor 'classifier.weight' has shape (2, 32); this model's is (3, 32)" in err
    assert finetune(base, tmp_path / "b", "--set", "data.tokenizer='word'") == 2
    assert "data.tokenizer='word': train.init=" in capsys.readouterr().err
    assert finetune(base, tmp_path / "c", "--set", "model.d_model=64") == 2
    assert "model.d_model=64" in capsys.readouterr().err
    assert finetune(base, tmp_path / "d", *LORA, "--set", "train.lora_targets='q,x'") == 2
    assert "'x' is no projection" in capsys.readouterr().err
    assert finetune(base, tmp_path / "e", "--set", "train.freeze=decoder") == 2
    assert "no module 'decoder'" in capsys.readouterr().err
    assert finetune(base, tmp_path / "g", *LORA, "--set", "train.lora_rank=1000000000000") == 2
    assert "LoRA rank 1000000000000 exceeds" in capsys.readouterr().err
    assert finetune(base, tmp_path / "h", *LORA, "--set", "train.lora_targets=','") == 2
    assert "train.lora_targets=',' names no projection" in capsys.readouterr().err
    assert finetune(base, tmp_path / "j", *LORA, *FROZEN) == 2
    assert "with train.lora_rank every tensor of the base is frozen" in capsys.readouterr().err
    everything = "train.freeze='embed,transformer,pooler,classifier'"
    assert finetune(base, tmp_path / "i", "--set", everything) == 2
    assert "leaves no parameter to train" in capsys.readouterr().err
    assert (
        main(["train", str(config), "--out", str(tmp_path / "f"), "--init", str(run), "--resume"])
        == 2
    )
    assert "--init" in capsys.readouterr().err


def test_a_fine_tuning_may_pool_otherwise_than_its_base(base, tmp_path) -> None:
    # pooling changes no weight's shape: e.g. the mean of a sentence embedder's tokens, as its
    # training pooled, rather than its untrained <s>
    pooled = RunConfig.load(base[1] / "config.toml").model.pooling
    other = {"cls": "mean", "mean": "cls"}[pooled]
    assert finetune(base, tmp_path / "ft", "--set", f"model.pooling='{other}'") == 0
    assert RunConfig.load(tmp_path / "ft" / "config.toml").model.pooling == other


@pytest.mark.parametrize("option", [{"head_lr": 0.01}, {"new_head": True}])
def test_head_options_need_a_family_with_a_head(option) -> None:
    train = {"init": "base", "lr": 1e-3, **option}
    cfg = RunConfig.from_dict({"version": 2, "model": {"arch": "decoder_only"}, "train": train})
    name, value = next(iter(option.items()))
    with pytest.raises(ValueError, match=f"train.{name}={value!r}: a decoder_only model has no "):
        check_options(cfg)


def test_head_and_layer_rates(base) -> None:
    config, run = base
    overrides = [f"train.init='{run}'", "train.head_lr=0.03", "train.layer_decay=0.5"]
    cfg = start_from(RunConfig.load(config, overrides))
    task = ClassificationTask(cfg, run, resume=False, log=lambda _: None)
    scales = {
        n: rate_scales(task.model, task.cfg).get(id(p)) for n, p in task.model.named_parameters()
    }
    assert scales["classifier.weight"] == pytest.approx(0.03 / 3e-3)
    assert scales["transformer.layers.0.ffn.w_in.weight"] == 0.5  # the top layer of one
    assert scales["embed.weight"] == 0.25
    assert scales["pooler.weight"] is None  # above the layers: train.lr


def test_a_translator_fine_tunes_from_another_run_on_new_pairs(tmp_path, capsys) -> None:
    base = tmp_path / "base"
    config = write_config(tmp_path, max_steps=2, eval_every=2, average_last=1, bleu=False)
    assert main(["train", str(config), "--out", str(base)]) == 0
    (tmp_path / "new").mkdir()
    new = write_corpus(tmp_path / "new", n=60, seed=9)  # other sentences, the same words
    data = [f"--set=data.{k}='{v}'" for k, v in new.items()]
    args = ["train", str(config), "--init", str(base), *data]
    assert main([*args, "--out", str(tmp_path / "ft")]) == 0
    before = read_tensors(base / "model.safetensors")
    after = read_tensors(tmp_path / "ft" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[n], after[n]) for n in before)
    saved = RunConfig.load(tmp_path / "ft" / "config.toml")
    assert saved.train.init == str(base.resolve()) and saved.data.train_src == str(new["train_src"])
    # with LoRA on every projection, cross-attention's fused k and v included
    lora = ["--set", "train.lora_rank=2", "--set", "train.lora_targets='q,k,v,o,ff'"]
    lora += ["--set", "train.lora_dropout=0.1"]  # a translator has no head to start afresh
    assert main([*args, "--out", str(tmp_path / "lora"), *lora]) == 0
    assert main(["merge", str(tmp_path / "lora"), "--out", str(tmp_path / "merged")]) == 0
    _, adapted = load_run(tmp_path / "lora", "encoder_decoder", log=lambda _: None)
    _, merged = load_run(tmp_path / "merged", "encoder_decoder", log=lambda _: None)
    src, tgt = torch.randint(4, 40, (3, 9)), torch.randint(4, 40, (3, 6))
    with torch.no_grad():
        torch.testing.assert_close(merged(src, tgt), adapted(src, tgt), rtol=0, atol=1e-5)
    weights = base_weights(RunConfig.load(tmp_path / "lora" / "config.toml"))
    save_tensors({n: t + 1 for n, t in read_tensors(weights).items()}, weights)
    capsys.readouterr()
    (tmp_path / "in.txt").write_text("a b c\n")
    run, text = str(tmp_path / "lora"), str(tmp_path / "in.txt")
    for command in (["translate", "--model", run, "--input", text], ["export-ct2", run]):
        assert main(command) == 2
        assert f"its base {weights} has changed" in capsys.readouterr().err
