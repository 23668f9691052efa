"""The shipped configs' models export to a `transformers` class that computes them, and
translate or continue text there as in aiayn: the paper's post-norm interleaved sines as
MarianMTModel (the model dimension reordered), the demo's pre-norm as Pegasus, the
Shakespeare models' RMSNorm, RoPE and SwiGLU as Llama."""

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
import transformers

from aiayn.cli import main
from aiayn.tasks.language_model import load_language_model
from aiayn.tasks.translation import load_translator
from tests.cli_helpers import write_config
from tests.tasks.test_language_model import lm_config

CONFIGS = Path(__file__).parents[2] / "configs"
SIZES = {"d_model": 32, "n_heads": 2, "d_ff": 64, "n_layers": 2, "n_decoder_layers": 2}
QUIET = {"log": lambda _: None}


def shipped_model(name: str, keep_shape: bool) -> dict:
    """The [model] table of configs/`name`.toml, its sizes cut to a tiny model's unless
    `keep_shape`; max_len 32 and no dropout either way, to be quick."""
    model = tomllib.loads((CONFIGS / f"{name}.toml").read_text())["model"]
    model.pop("vocab_size", None)
    if not keep_shape:
        model |= {k: v for k, v in SIZES.items() if k in model}
    return model | {"max_len": 32, "dropout": 0.0}


def trained(tmp_path: Path, write, model: dict, steps: int = 12) -> Path:
    path = write(tmp_path)
    data = tomllib.loads(path.read_text())
    data["model"] = {k: v for k, v in data["model"].items() if k == "arch"} | model
    data["train"] |= {"max_steps": steps, "eval_every": steps, "average_last": 1}
    path.write_text(tomli_w.dumps(data))
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 0
    return tmp_path / "run"


@pytest.mark.parametrize(
    "name, keep_shape, cls",
    [
        ("wmt14_en_de_base", False, "MarianMTModel"),  # paper_base's settings too
        ("demo", True, "PegasusForConditionalGeneration"),  # multi30k's settings too
    ],
)
def test_shipped_translation_configs_export_and_translate_alike(tmp_path, name, keep_shape, cls):
    run = trained(tmp_path, write_config, shipped_model(name, keep_shape))
    assert main(["export-hf", str(run), "--weights", "model", "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [cls]
    sources = (tmp_path / "valid.src").read_text().splitlines()[:8]
    translator = load_translator(run, "model", **QUIET)
    translator.decode = dataclasses.replace(translator.decode, max_extra=1000)
    ours = translator.translate(sources)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        out = model.generate(**tokenizer(sources, return_tensors="pt", padding=True))
    theirs = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert ours == theirs


@pytest.mark.parametrize("heads", [{}, {"n_heads": 4, "n_kv_heads": 2, "head_dim": 4}])
def test_the_shakespeare_settings_export_as_llama_and_generate_alike(tmp_path, capsys, heads):
    """And with grouped-query attention and a head_dim of its own, as Llama has them."""
    model = shipped_model("shakespeare_char", keep_shape=False) | heads
    run = trained(tmp_path, lambda f: lm_config(f), {"arch": "decoder_only", **model})
    assert main(["export-hf", str(run), "--out", str(tmp_path / "hf")]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    lm, tok = load_language_model(run, **QUIET)
    pipe = transformers.pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")
    prompt = "to be"
    [theirs] = pipe(prompt, do_sample=False)
    room = lm.cfg.max_len - len(tok.encode_prompts([prompt])[0])
    capsys.readouterr()
    args = ["generate", "--model", str(run), "--temperature", "0", f"--prompt={prompt}"]
    assert main([*args, "--max-new-tokens", str(room)]) == 0
    assert theirs["generated_text"] == capsys.readouterr().out.split("\n\n")[0].rstrip("\n")


def test_a_config_no_class_computes_is_refused_naming_what_would_map(tmp_path, capsys):
    """shakespeare_char_cpu's post-norm RMSNorm: Llama computes pre-norm only."""
    model = shipped_model("shakespeare_char_cpu", keep_shape=False)
    run = trained(tmp_path, lambda f: lm_config(f), {"arch": "decoder_only", **model}, steps=2)
    capsys.readouterr()
    assert main(["export-hf", str(run), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "model.norm='rmsnorm': GPT2LMHeadModel needs 'layernorm'" in err
    assert "model.norm_first=False: LlamaForCausalLM needs True" in err
