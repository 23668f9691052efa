"""R-Drop in each task: two passes per example, and the KL term weighted by train.rdrop."""

from pathlib import Path

import pytest
import torch

from aiayn.config import RunConfig
from aiayn.tasks.classification import ClassificationTask
from aiayn.tasks.language_model import LanguageModelTask
from aiayn.tasks.translation import TranslationTask
from tests.cli_helpers import write_config
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config

TASKS = {
    "translation": (TranslationTask, write_config),
    "language model": (LanguageModelTask, lm_config),
    "classification": (ClassificationTask, classifier_config),
}


@pytest.mark.parametrize("name", TASKS)
def test_rdrop_runs_each_example_twice_and_adds_the_weighted_kl(tmp_path: Path, name) -> None:
    make_task, make_config = TASKS[name]
    cfg = RunConfig.load(make_config(tmp_path)).replace("model", dropout=0.2)
    task = make_task(cfg, tmp_path, resume=False, log=lambda _: None)
    batch = task.collate(task.epoch_batches(0)[0])

    def loss(rdrop: float) -> tuple[float, int]:
        task.cfg = task.cfg.replace("train", rdrop=rdrop)
        torch.manual_seed(0)  # the same dropout masks for every weight
        summed, _, count = task.train_loss(batch, torch.device("cpu"), task.model)
        return float(summed.detach()), count

    task.model.eval()  # no dropout: both passes agree, so the KL is zero
    (once, n), (twice, n2) = loss(0.0), loss(1.0)
    assert n2 == 2 * n
    assert twice == pytest.approx(2 * once, rel=1e-5)
    task.model.train()
    one, two, three = (loss(r)[0] for r in (1.0, 2.0, 3.0))
    assert two - one > 1e-4  # the two passes' dropout differs, and the KL sees it
    assert three - two == pytest.approx(two - one, rel=1e-3)
