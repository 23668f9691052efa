"""The run's settings apart from the model's: where attention's path is set, and older files."""

import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w

from aiayn.config import RunConfig, TrainConfig
from aiayn.nn.attention import MultiHeadAttention
from aiayn.runtime.attention import KERNELS
from aiayn.tasks import load_run


def test_model_attn_impl_of_older_files_becomes_the_runs():
    cfg = RunConfig.from_dict({"model": {"attn_impl": "math", "d_model": 64, "n_heads": 2}})
    assert cfg.train.attn_impl == "math" and cfg.model.d_model == 64
    both = {"model": {"attn_impl": "math"}, "train": {"attn_impl": "sdpa"}}
    assert RunConfig.from_dict(both).train.attn_impl == "sdpa"  # the run's own value wins
    assert RunConfig().train.attn_impl == "auto"


def test_a_bad_attention_path_names_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"train.attn_impl='flash9'.*auto, sdpa, math"):
        TrainConfig(attn_impl="flash9")
    with pytest.raises(ValueError, match=r"train.attn_impl='flash9'"):
        RunConfig.from_dict({"model": {"attn_impl": "flash9"}})


def impls(model) -> set[str]:
    names = {kernel: name for name, kernel in KERNELS.items()}
    return {names[m.kernel] for m in model.modules() if isinstance(m, MultiHeadAttention)}


def test_a_run_directory_written_before_the_move_keeps_its_attention_path(tiny_run, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    saved = tomllib.loads((run / "config.toml").read_text())
    del saved["train"]["attn_impl"], saved["version"]
    saved["data"]["max_len"] = saved["data"].pop("max_pair_len")
    saved["model"]["attn_impl"] = "math"  # as version 1 wrote it
    (run / "config.toml").write_text(tomli_w.dumps(saved))
    cfg, model = load_run(run, "encoder_decoder", log=lambda _: None)
    assert cfg.train.attn_impl == "math" and impls(model) == {"math"}
    _, model = load_run(tiny_run, "encoder_decoder", log=lambda _: None)
    assert impls(model) == {"auto"}
