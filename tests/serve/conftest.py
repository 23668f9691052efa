"""Tiny trained runs of each family, each served by a real `aiayn serve` on a loopback port."""

import pytest

from aiayn.cli import main
from aiayn.serve.client import Server
from tests.cli_helpers import write_config
from tests.serve.inprocess import engine, serving
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config
from tests.tasks.test_tagging import tagger_config


@pytest.fixture(scope="session")
def translation_run(tmp_path_factory):
    """Trained long enough (400 steps, ~8 s) to give translations of several words."""
    folder = tmp_path_factory.mktemp("translation_run")
    config = write_config(folder, max_steps=400, lr=5e-3, eval_every=200)
    assert main(["train", str(config), "--out", str(folder / "out")]) == 0
    return folder / "out"


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_run")
    assert main(["train", str(lm_config(folder)), "--out", str(folder / "out")]) == 0
    return folder / "out"


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier_run")
    assert main(["train", str(classifier_config(folder)), "--out", str(folder / "out")]) == 0
    return folder / "out"


@pytest.fixture(scope="session")
def translation_server(translation_run):
    with Server(translation_run) as server:
        yield server


@pytest.fixture(scope="session")
def lm_server(lm_run):
    with Server(lm_run) as server:
        yield server


@pytest.fixture(scope="session")
def classifier_server(classifier_run):
    with Server(classifier_run) as server:
        yield server


@pytest.fixture(scope="session")
def tagger_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagger_served")
    assert main(["train", str(tagger_config(folder)), "--out", str(folder / "out")]) == 0
    with Server(folder / "out") as server:
        yield server


@pytest.fixture(scope="module")
def lm_url(lm_run):
    """The language model served in this process, for the OpenAI API's tests."""
    with serving(engine(lm_run)) as url:
        yield url
