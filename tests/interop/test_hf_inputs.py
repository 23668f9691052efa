"""Hugging Face config values that used to crash the import or pass silently (issue 39): each
refused by file and key, with the range expected; float8 weights refused by dtype."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aiayn.cli import main
from aiayn.interop.hf_config import model_config, read_config
from tests.interop.conftest import char_tokenizer_json
from tests.interop.test_hf_trust import copy, import_error

LLAMA = {
    "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "intermediate_size": 128, "max_position_embeddings": 256,
    "vocab_size": 1000, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
}  # fmt: skip


def translated(tmp_path: Path, **change: object):
    config = {k: v for k, v in {**LLAMA, **change}.items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return model_config(read_config(tmp_path))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_attention_heads": 0}, "num_attention_heads=0 is out of range; expected 1 <="),
        ({"num_key_value_heads": 0}, "num_key_value_heads=0 is out of range; expected 1 <="),
        ({"head_dim": 0}, "head_dim=0 is out of range"),
        ({"model_type": ["llama"]}, "model_type ['llama'] is not supported"),
        ({"model_type": {"a": 1}}, "model_type {'a': 1} is not supported"),
        (
            {"hidden_size": 10**400},
            "(401 characters) is out of range",
        ),
        ({"pad_token_id": 10**30}, "pad_token_id=1000000000000000000000000000000 is out of range"),
        ({"pad_token_id": 1000}, "expected 0 <= pad_token_id < 1000"),
        ({"pad_token_id": -1}, "pad_token_id=-1 is out of range"),
        ({"model_type": "mistral", "sliding_window": 0}, "sliding_window=0 is out of range"),
        ({"model_type": "mistral", "sliding_window": -5}, "expected 1 <= sliding_window"),
    ],
)
def test_config_numbers_out_of_range_are_refused_by_key(tmp_path, change, message):
    with pytest.raises(ValueError, match=r"config\.json: ") as e:
        translated(tmp_path, **change)
    assert message in str(e.value)


def test_a_valid_pad_id_and_window_still_import(tmp_path):
    cfg = translated(tmp_path, model_type="mistral", sliding_window=16, pad_token_id=7)
    assert (cfg.pad_id, cfg.attn_window) == (7, 16)


def test_a_400_digit_integer_and_zero_heads_are_one_line_in_the_cli(gpt2, tmp_path, capsys):
    line = import_error(copy(gpt2[1], tmp_path, n_head=0), tmp_path, capsys)
    assert "n_head=0 is out of range; expected 1 <= n_head" in line
    os.rename(tmp_path / "src", tmp_path / "old")
    line = import_error(copy(gpt2[1], tmp_path, n_layer=10**400), tmp_path, capsys)
    assert "n_layer=" in line and "(401 characters)" in line


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.int8])
def test_float8_or_integer_weights_are_refused_by_dtype(gpt2, tmp_path, capsys, dtype):
    src = copy(gpt2[1], tmp_path)
    char_tokenizer_json(src / "tokenizer.json")
    tensors = load_file(str(src / "model.safetensors"))
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"].to(dtype)
    save_file(tensors, str(src / "model.safetensors"))
    assert f"is {dtype}; expected floating point (float32" in import_error(src, tmp_path, capsys)


def test_float8_weights_in_a_run_are_refused_by_dtype(tiny_run, tmp_path, capsys):
    import shutil

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    for path in run.glob("*.safetensors"):
        tensors = load_file(str(path))
        key = next(iter(tensors))
        save_file({**tensors, key: tensors[key].to(torch.float8_e4m3fn)}, str(path))
    assert main(["translate", "--model", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is torch.float8_e4m3fn; expected floating point" in err[0], err
