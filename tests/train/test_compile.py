"""Each family's training step traces into one graph: torch.compile(fullgraph=True), which
the trainer uses for train.compile, raises on any graph break. The `eager` backend keeps the
tests fast (dynamo traces, nothing is compiled to machine code); a break fails as it would."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aiayn.config import RunConfig
from aiayn.tasks.classification import ClassificationTask
from aiayn.tasks.language_model import LanguageModelTask
from aiayn.tasks.tagger import IGNORE
from aiayn.tasks.tagging import TaggingTask
from aiayn.tasks.translation import TranslationTask
from aiayn.train.loss import label_smoothed_loss
from tests.cli_helpers import write_config
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config
from tests.tasks.test_tagging import tagger_config

CPU = torch.device("cpu")
TASKS = {
    "encoder_decoder": (TranslationTask, write_config),
    "decoder_only": (LanguageModelTask, lm_config),
    "encoder_classifier": (ClassificationTask, classifier_config),
    "encoder_tagger": (TaggingTask, tagger_config),
}


def family_loss(name: str, task, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss each family's task computes from its model's logits."""
    eps = task.cfg.train.label_smoothing
    if name in ("encoder_decoder", "decoder_only"):
        return label_smoothed_loss(logits, target, eps, task.cfg.model.pad_id)[0]
    flat = logits.flatten(0, -2)
    return F.cross_entropy(flat, target.flatten(), ignore_index=IGNORE, label_smoothing=eps)


def inputs(name: str, batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """(the model's inputs, the targets) of a collated batch."""
    if name == "encoder_decoder":
        return (batch.src, batch.tgt_in), batch.tgt_out
    if name == "decoder_only":
        return (batch[:, :-1],), batch[:, 1:]
    return (batch[0],), batch[1]


# the encoder-decoder's trace, the longest (3.6 s under load against 1.3-2.9 s), runs with -m slow
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "encoder_decoder" else n for n in TASKS],
)
def test_the_training_step_of_each_family_compiles_to_one_graph(tmp_path: Path, name) -> None:
    make_task, make_config = TASKS[name]
    cfg = RunConfig.load(make_config(tmp_path)).replace("model", dropout=0.1)
    if name == "decoder_only":  # GPT-2's choices, as benchmarks/gpu_train.py runs them
        cfg = cfg.replace("model", positional="learned", activation="gelu", norm="layernorm")
    task = make_task(cfg, tmp_path, resume=False, log=lambda _: None)
    batch = task.collate(task.epoch_batches(0)[0])
    graphs = []

    def backend(gm: torch.fx.GraphModule, _) -> object:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    model = task.model.train()
    # the model's forward as the trainer compiles it, called by the task's own train_loss
    loss, _, _ = task.train_loss(batch, CPU, torch.compile(model, backend=backend, fullgraph=True))
    loss.backward()
    assert len(graphs) == 1 and loss.isfinite()
    # the forward and the family's loss traced together as one graph; without dropout (eval)
    # it computes what the eager step does, gradients too
    (x, target), graphs[:] = inputs(name, batch), []
    step = torch.compile(lambda *x: family_loss(name, task, model(*x), target), backend=backend,
                         fullgraph=True)  # fmt: skip
    model.eval()
    traced, eager = step(*x), family_loss(name, task, model(*x), target)
    assert len(graphs) == 1
    weight = next(model.parameters())
    grads = [torch.autograd.grad(loss, weight)[0] for loss in (traced, eager)]
    torch.testing.assert_close(traced, eager)
    torch.testing.assert_close(*grads)
