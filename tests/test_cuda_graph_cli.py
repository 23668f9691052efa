"""`--cuda-graph`: refused in one line on stderr, exit 2, before the model loads, without CUDA;
with a CUDA device (faked, the decoding run on the CPU) the flag reaches the decoding."""

from pathlib import Path

import pytest
import torch

import aiayn.decode.text as text_mod
import aiayn.tasks as tasks_mod
import aiayn.tasks.language_model as lm_mod
from aiayn.cli import main
from tests.tasks.test_language_model import lm_config


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    out = folder / "lm"
    assert (
        main(["train", str(lm_config(folder, max_steps=2, eval_every=2)), "--out", str(out)]) == 0
    )
    return out


def only_error_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert captured.out == "" and len(err) == 1 and "Traceback" not in err[0], captured
    return err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusals of a machine without CUDA")
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--cuda-graph needs a CUDA device; --device gave cpu"),  # --device auto
        (["--device", "cpu"], "--cuda-graph needs a CUDA device; --device gave cpu"),
        (["--device", "cuda"], "--device='cuda': this machine has no such device"),
        (["--device", "cuda:3"], "--device='cuda:3': this machine has no such device"),
    ],
)
def test_refused_in_one_line_before_loading(lm, capsys, monkeypatch, flags, message):
    capsys.readouterr()

    def never(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(lm_mod, "load_language_model", never)
    for prompts in ([], ["--prompt", "hi"], ["--prompt", "a", "--prompt", "bc"]):
        assert main(["generate", "--model", str(lm), "--cuda-graph", *prompts, *flags]) == 2
        assert message in only_error_line(capsys)


def test_the_flag_reaches_generation(lm, capsys, monkeypatch):
    """With a CUDA device (faked), stream gets graph=True; without the flag, graph=False."""
    import aiayn.commands.generate as gen

    seen = []
    monkeypatch.setattr(gen, "cli_device", lambda args: torch.device("cuda"))
    monkeypatch.setattr(tasks_mod, "place", lambda model, device: model)
    real = text_mod.stream

    def spy(*args, **kw):
        seen.append(args[-1])
        return real(*args[:-1], **kw)  # run it on the CPU, eagerly

    monkeypatch.setattr(text_mod, "stream", spy)
    for flags in (["--cuda-graph"], []):
        assert main(["generate", "--model", str(lm), "--prompt", "ab", "--max-new-tokens", "3",
                     "--seed", "1", *flags]) == 0  # fmt: skip
    assert seen == [True, False]


def test_the_translate_flag_reaches_the_search(tiny_run, tmp_path, capsys, monkeypatch):
    import aiayn.commands.translate as translate
    import aiayn.decode.search as search
    import aiayn.tasks.translation as translation

    seen = []
    monkeypatch.setattr(translate, "cli_device", lambda args: torch.device("cuda"))
    load = translation.load_translator
    monkeypatch.setattr(
        translation, "load_translator", lambda d, w, device, log: load(d, w, "cpu", log=log)
    )
    real = search.n_best_search
    monkeypatch.setattr(
        search, "n_best_search", lambda *a, **kw: seen.append(kw["graph"]) or real(*a, **kw)
    )
    text = tmp_path / "in.txt"
    text.write_text("a man sees the dog\n")
    outputs = []
    for flags in (["--cuda-graph"], []):
        assert main(["translate", "--model", str(tiny_run), "--input", str(text), *flags]) == 0
        outputs.append(capsys.readouterr().out)
    assert seen == [True, False] and outputs[0] == outputs[1]
