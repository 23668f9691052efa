"""The family registry: a toy fourth family, registered here only, is reached by `aiayn train`,
`aiayn evaluate`, the server and `aiayn export-hf` without any other module naming it."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import tomli_w
import torch

from aiayn import families
from aiayn.cli import main
from aiayn.families import FAMILIES, Family, family
from aiayn.models import ModelConfig, build_model
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.serve.batcher import Batcher, Job
from aiayn.serve.engines import Engine, load_engine
from aiayn.tasks import load_run
from aiayn.tasks.language_model import LanguageModelTask
from tests.serve.inprocess import call, serving
from tests.tasks.test_language_model import lm_config

TOY = "toy"


class ToyLM(DecoderOnlyLM):
    """The toy family's model: a language model under a class of its own."""


class ToyTask(LanguageModelTask):
    """Trains a language model's way, the model built through the registry."""

    made: ClassVar[list[type]] = []

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.model = build_model(self.cfg.model)
        self.made.append(type(self.model))


def load_toy(run_dir: str | Path, weights: str | None = None, log: Callable = print) -> ToyLM:
    return load_run(run_dir, TOY, weights, log)[1]


class ToyEngine(Engine):
    family = TOY

    def __init__(self, run_dir: Path, model: ToyLM) -> None:
        super().__init__(run_dir)
        self.model = model

    @classmethod
    def load(cls, run_dir: Path, weights, device: torch.device, log: Callable) -> ToyEngine:
        return cls(run_dir, load_toy(run_dir, weights, log).to(device))

    def attention_job(self, text: str, target: str | None) -> Job:
        name = type(self.model).__name__
        return Job(object(), [text], lambda items: [{"text": f"{name}: {items[0]}", "maps": []}])


def evaluate_toy(args) -> None:
    print(f"toy score of {args.model[0]}")


def export_toy(run_dir: str | Path, out: str | Path, log: Callable = print) -> str:
    Path(out).mkdir()
    model = load_toy(run_dir, log=log)
    (Path(out) / "toy.json").write_text(json.dumps({"class": type(model).__name__}))
    return "ToyModel"


@pytest.fixture
def toy() -> Iterator[Family]:
    entry = Family(
        name=TOY,
        description="a test's language model under another name",
        use="toying",
        endpoint="toy",
        prepared_task="language_model",
        data_length="block_size",
        data_files=("train_text", "valid_text"),
        model=ToyLM,
        task=ToyTask,
        loader=load_toy,
        engine=ToyEngine,
        evaluate=evaluate_toy,
        prepare=None,
        export_hf=export_toy,
    )
    families.register(entry)
    try:
        yield entry
    finally:
        families.unregister(TOY)


@pytest.fixture
def toy_run(toy, tmp_path: Path, capsys) -> Path:
    config = lm_config(tmp_path, max_steps=4, eval_every=4, log_every=2)
    table = tomllib.loads(config.read_text(encoding="utf-8"))
    table["model"]["arch"] = TOY
    config.write_text(tomli_w.dumps(table), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_train_builds_and_saves_the_toy_familys_model(toy_run: Path) -> None:
    assert ToyTask.made[-1] is ToyLM
    assert isinstance(load_toy(toy_run, log=lambda _: None), ToyLM)
    assert 'arch = "toy"' in (toy_run / "config.toml").read_text(encoding="utf-8")


def test_evaluate_reaches_the_toy_scorer(toy_run: Path, capsys) -> None:
    assert main(["evaluate", "--model", str(toy_run), "--src", str(toy_run)]) == 0
    assert capsys.readouterr().out == f"toy score of {toy_run}\n"


def test_evaluate_refuses_a_family_without_a_scorer(toy, toy_run: Path, capsys) -> None:
    families.unregister(TOY)
    families.register(dataclasses.replace(toy, evaluate=None))
    assert main(["evaluate", "--model", str(toy_run), "--src", str(toy_run)]) == 2
    assert capsys.readouterr().err == (
        f"aiayn evaluate: error: {toy_run} holds a toy model; evaluate scores "
        "encoder_classifier, encoder_decoder and encoder_tagger models\n"
    )


def test_the_server_answers_through_the_toy_engine(toy_run: Path) -> None:
    engine = load_engine(toy_run, None, torch.device("cpu"), lambda _: None)
    assert isinstance(engine, ToyEngine)
    with serving(engine, Batcher()) as url:
        assert call(url, "/v1/attention", {"text": "to be"}) == (
            200,
            {"text": "ToyLM: to be", "maps": []},
        )
        status, answer = call(url, "/v1/translate", {"text": ["to be"]})
        assert status == 404 and "toy (its endpoint: /v1/toy)" in answer["error"]


def test_export_hf_reaches_the_toy_exporter(toy_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert main(["export-hf", str(toy_run), "--out", str(out)]) == 0
    assert json.loads((out / "toy.json").read_text()) == {"class": "ToyLM"}


def test_a_family_not_registered_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"arch='toy'.*decoder_only, encoder_classifier"):
        family(TOY)
    with pytest.raises(ValueError, match=r"model.arch='toy' is invalid; expected one of dec"):
        ModelConfig(arch=TOY)


def test_a_registered_family_is_a_valid_arch_and_a_name_is_taken_once(toy) -> None:
    assert ModelConfig(arch=TOY).arch == TOY
    with pytest.raises(ValueError, match="'toy' is registered already"):
        families.register(toy)


@pytest.mark.parametrize("name", ["encoder_decoder", "decoder_only", "encoder_classifier"])
def test_every_part_a_built_in_family_names_exists(name: str) -> None:
    entry = FAMILIES[name]
    parts = ("model", "task", "loader", "engine", "evaluate", "prepare", "export_hf")
    for part in parts:
        if getattr(entry, part) is not None:
            assert entry.part(part) is not None, part
    assert entry.part("engine").family == name
    assert build_model(ModelConfig(arch=name, d_model=8, n_heads=2, d_ff=8, n_layers=1))


def test_the_registry_imports_no_part_of_aiayn() -> None:
    """Every layer reads it (ModelConfig checks arch against it), so it sits below them all."""
    tree = ast.parse(Path(families.__file__).read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    imported = [a.name for node in nodes if isinstance(node, ast.Import) for a in node.names]
    imported += [node.module for node in nodes if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.startswith("aiayn")]


@pytest.mark.parametrize("arch", [[1], {"a": 1}, "tagger"])
def test_a_model_arch_of_no_family_is_refused_naming_it(arch):
    from aiayn.config import RunConfig

    with pytest.raises(ValueError, match=rf"model.arch={re.escape(repr(arch))} is not a model"):
        RunConfig.from_dict({"version": 2, "model": {"arch": arch}})
