"""Config format versions: a version-1 file (no `version`) means what it meant, each renamed
field told once; train.lr is the peak rate under every schedule, and version 1's noam
multiplier trains exactly the rates it did."""

import random
from pathlib import Path

import pytest
import tomli_w
import torch
from torch import nn

from aiayn.config import RunConfig, TrainConfig
from aiayn.configversion import VERSION
from aiayn.tasks.classification import ClassificationTask
from aiayn.tasks.language_model import LanguageModelTask
from aiayn.tasks.translation import TranslationTask
from aiayn.train.optim import base_rate, make_optimizer, make_schedule
from aiayn.train.schedule import noam
from aiayn.train.trainer import better
from tests.cli_helpers import write_config
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config

LENGTH_OF = {
    "encoder_decoder": "max_pair_len",
    "decoder_only": "block_size",
    "encoder_classifier": "truncate_len",
}


def write(path: Path, tables: dict) -> Path:
    path.write_text(tomli_w.dumps(tables), encoding="utf-8")
    return path


@pytest.mark.parametrize("arch", LENGTH_OF)
def test_data_max_len_of_version_1_becomes_the_length_its_family_read(tmp_path, capsys, arch):
    path = write(tmp_path / "old.toml", {"model": {"arch": arch}, "data": {"max_len": 37}})
    cfg = RunConfig.load(path)
    assert getattr(cfg.data, LENGTH_OF[arch]) == 37 == cfg.data.length(arch)
    others = set(LENGTH_OF.values()) - {LENGTH_OF[arch]}
    assert all(getattr(cfg.data, name) == 100 for name in others)  # version 1's default
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ")
    assert f"data.max_len=37 read as data.{LENGTH_OF[arch]}=37" in lines[0]
    saved = cfg.to_dict()
    assert saved["version"] == VERSION and set(saved["data"]) & set(LENGTH_OF.values()) == {
        LENGTH_OF[arch]
    }
    assert RunConfig.from_dict(saved) == cfg and not capsys.readouterr().err  # version 2: silent


def test_a_version_2_file_names_its_own_length_and_no_other(tmp_path):
    data = {"version": 2, "model": {"arch": "decoder_only"}, "data": {"block_size": 64}}
    assert RunConfig.from_dict(data).data.block_size == 64
    refused = r"data.max_pair_len=64 is not read by model.arch = 'decoder_only', whose length is"
    with pytest.raises(ValueError, match=refused + " data.block_size"):
        RunConfig.from_dict({**data, "data": {"max_pair_len": 64}})
    with pytest.raises(ValueError, match=r"unknown key data.max_len"):
        RunConfig.from_dict({**data, "data": {"max_len": 64}})


@pytest.mark.parametrize("version", [3, 0, "2", 2.0, True])
def test_an_unknown_version_is_refused(version):
    with pytest.raises(ValueError, match=rf"version={version!r}"):
        RunConfig.from_dict({"version": version})


def noam_rates(cfg: RunConfig, steps: int) -> list[float]:
    """The learning rates the trainer's optimizer and scheduler give `cfg`, step by step."""
    opt = make_optimizer(nn.Linear(2, 2), cfg.train, cfg.model.d_model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_schedule(cfg.train, cfg.model.d_model))
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize(("d_model", "warmup"), [(512, 4000), (128, 200), (64, 10), (768, 7)])
def test_version_1_noam_lr_trains_exactly_the_rates_it_did(d_model, warmup, capsys):
    rng = random.Random(d_model + warmup)
    values = [0.1, 0.2, 0.7, 1.5, 3.0, 1, 2] + [rng.uniform(1e-3, 20) for _ in range(200)]
    old = noam(d_model, warmup)
    for m in values:
        tables = {"model": {"d_model": d_model, "n_heads": 1}, "train": {"lr": m, "warmup": warmup}}
        cfg = RunConfig.from_dict(tables)
        # version 1: the optimizer's rate was m, and each step multiplied it by the paper's rate
        assert base_rate(cfg.train, d_model) == m
        again = RunConfig.from_dict(cfg.to_dict())  # as a run directory keeps it
        assert again == cfg and base_rate(again.train, d_model) == m
    cfg = RunConfig.from_dict(tables)
    assert noam_rates(cfg, 2 * warmup + 3) == [m * old(s) for s in range(2 * warmup + 3)]
    notices = capsys.readouterr().err.splitlines()
    assert len(notices) == len(values) + 1  # one a reading; to_dict's version 2 is silent
    assert f"train.lr={m!r} under noam multiplied the paper's rate" in notices[-1]


def test_unset_lr_under_noam_is_the_papers_rate_and_a_set_one_its_peak():
    unset = RunConfig.from_dict({"version": 2, "train": {"warmup": 50}})
    assert unset.train.lr is None and base_rate(unset.train, 512) == 1.0
    assert noam_rates(unset, 120) == [1.0 * noam(512, 50)(s) for s in range(120)]
    peak = RunConfig.from_dict({"version": 2, "train": {"warmup": 50, "lr": 1e-3}})
    rates = noam_rates(peak, 120)
    assert max(rates) == pytest.approx(1e-3) and rates.index(max(rates)) == 50
    same = RunConfig.from_dict({"train": {"warmup": 50}})  # version 1, lr unset: 1.0 then too
    assert noam_rates(same, 120) == noam_rates(unset, 120)


def test_cosine_lr_keeps_its_meaning_and_must_be_set_in_version_2(capsys):
    old = RunConfig.from_dict({"train": {"schedule": "cosine", "lr": 2e-3}})
    assert old.train.lr == 2e-3 and not capsys.readouterr().err  # read as it is named
    assert RunConfig.from_dict({"train": {"schedule": "cosine"}}).train.lr == 1.0  # v1 default
    with pytest.raises(ValueError, match=r"train.lr is unset; the cosine schedule needs"):
        RunConfig.from_dict({"version": 2, "train": {"schedule": "cosine"}})
    with pytest.raises(ValueError, match=r"train.noam_scale=2.0 scales the noam schedule"):
        TrainConfig(schedule="cosine", noam_scale=2.0)
    with pytest.raises(ValueError, match=r"train.lr=0.001 and train.noam_scale=2.0 both set"):
        TrainConfig(lr=1e-3, noam_scale=2.0)


def test_overrides_apply_to_the_file_as_written(tmp_path, capsys):
    path = write(tmp_path / "old.toml", {"model": {"d_model": 64, "n_heads": 1}})
    cfg = RunConfig.load(path, ["train.lr=2", "data.max_len=12"])
    assert (cfg.train.noam_scale, cfg.train.lr, cfg.data.max_pair_len) == (2.0, None, 12)
    assert len(capsys.readouterr().err.splitlines()) == 2
    new = write(tmp_path / "new.toml", {"version": 2, "model": {"d_model": 64, "n_heads": 1}})
    assert RunConfig.load(new, ["train.lr=2e-3"]).train.lr == 2e-3


def test_a_version_1_run_directory_resumes_with_its_meaning(tmp_path, capsys):
    from aiayn.commands.train import run_config

    run = tmp_path / "run"
    run.mkdir()
    old = {"model": {"d_model": 64, "n_heads": 1}, "data": {"max_len": 20}, "train": {"lr": 2}}
    write(run / "config.toml", old)
    (run / "trainer_state.pt").write_bytes(b"")

    class Args:
        resume, config, set = True, None, ["train.max_steps=9"]

    cfg = run_config(Args, run)
    assert (cfg.train.noam_scale, cfg.data.max_pair_len, cfg.train.max_steps) == (2.0, 20, 9)
    assert len(capsys.readouterr().err.splitlines()) == 2  # once each, not once a reading


TASKS = [
    (TranslationTask, lambda folder: write_config(folder)),
    (TranslationTask, lambda folder: write_config(folder, bleu=False)),
    (ClassificationTask, classifier_config),
    (LanguageModelTask, lm_config),
]


@pytest.mark.parametrize(("task", "config"), TASKS)
def test_each_task_says_in_which_direction_its_metric_improves(tmp_path, task, config):
    cfg = RunConfig.load(config(tmp_path))
    made = task(cfg, tmp_path, resume=False, log=lambda _: None)
    # loss falls as a model improves; accuracy and BLEU rise
    assert (
        made.higher_is_better
        is {"val_loss": False, "val_acc": True, "val_bleu": True}[made.monitor]
    )
    assert better(made.higher_is_better, 2.0, 1.0) is made.higher_is_better


def test_a_version_1_study_tells_its_notices_once_and_its_variants_set_version_1(tmp_path, capsys):
    from aiayn.ablate.study import load_study

    study = {
        "model": {"d_model": 64, "n_heads": 1},
        "data": {"max_len": 30},
        "train": {"lr": 2.0},
        "ablate": {"seeds": [1, 2], "variants": [{"name": "v", "set": ["train.lr=0.5"]}]},
    }
    loaded = load_study(write(tmp_path / "study.toml", study))
    assert [v.cfg.train.noam_scale for v in loaded.base] == [2.0, 2.0]
    assert loaded.variants[0].cfg.train.noam_scale == 0.5  # its --set read as version 1's lr
    assert all(v.cfg.data.max_pair_len == 30 for v in [*loaded.base, *loaded.variants])
    assert len(capsys.readouterr().err.splitlines()) == 2


@pytest.mark.parametrize(
    ("arch", "old", "override", "field"),
    [
        ("encoder_decoder", {"data": {"max_len": 20}}, "data.max_pair_len=30", "max_pair_len"),
        ("decoder_only", {"data": {"max_len": 20}}, "data.block_size=30", "block_size"),
        ("decoder_only", {"data": {"train": "a.txt"}}, "data.train_text=b.txt", "train_text"),
        ("encoder_decoder", {"train": {"lr": 2}}, "train.noam_scale=0.5", "noam_scale"),
    ],
)
def test_a_version_2_name_set_on_a_version_1_file_wins_over_the_old_one(
    tmp_path, capsys, arch, old, override, field
):
    tables = {**old, "model": {"arch": arch, "d_model": 64, "n_heads": 1}}
    cfg = RunConfig.load(write(tmp_path / "old.toml", tables), [override])
    section, value = override.split("=")
    table = getattr(cfg, section.split(".")[0])
    assert str(getattr(table, field)) == str(type(getattr(table, field))(value))
    err = capsys.readouterr().err
    assert f"dropped: {section}={getattr(table, field)!r}, its version-2 name, is set" in err


@pytest.mark.parametrize(
    ("arch", "table", "key", "new"),
    [
        ("encoder_decoder", "data", "max_len", "data.max_pair_len"),
        ("decoder_only", "data", "max_len", "data.block_size"),
        ("encoder_classifier", "data", "train", "data.train_tsv"),
        ("decoder_only", "data", "valid", "data.valid_text"),
        ("encoder_decoder", "model", "attn_impl", "train.attn_impl"),
        ("encoder_decoder", "data", "train", "data.train_src and data.train_tgt"),
    ],
)
def test_a_version_1_name_set_on_a_version_2_file_is_refused_naming_the_new_one(
    tmp_path, arch, table, key, new
):
    path = write(tmp_path / "new.toml", {"version": 2, "model": {"arch": arch}})
    refused = rf"unknown key {table}.{key} in a version-2 config: version 1's name; version 2 "
    with pytest.raises(ValueError, match=refused + f"reads {new} "):
        RunConfig.load(path, [f"{table}.{key}=sdpa"])


def test_a_version_1_file_whose_arch_is_no_name_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"model.arch=\[1\] is not a model family"):
        RunConfig.from_dict({"model": {"arch": [1]}, "data": {"max_len": 3, "train": "x"}})
