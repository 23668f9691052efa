"""train.loss_chunk: the output layer and loss over slices of the positions equal the loss
over the whole logits (F.cross_entropy's, label smoothing and padding included), in value and
in the gradients of the weights and the hidden states, and compose with activation
checkpointing."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aiayn.config import RunConfig
from aiayn.models import ModelConfig
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.tasks.language_model import LanguageModelTask
from aiayn.tasks.translation import TranslationTask
from aiayn.train.chunked import chunked_loss, output_loss
from aiayn.train.recompute import recompute_layers
from tests.cli_helpers import write_config
from tests.tasks.test_language_model import lm_config

PAD, V, D = 0, 50, 16


def reference(h: torch.Tensor, head: nn.Linear, target: torch.Tensor, eps: float):
    logits = head(h).flatten(0, 1)
    kw = {"ignore_index": PAD, "reduction": "sum"}
    loss = F.cross_entropy(logits, target.flatten(), label_smoothing=eps, **kw)
    return loss, F.cross_entropy(logits, target.flatten(), **kw)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("tied", [False, True])
def test_the_chunked_loss_equals_cross_entropy_in_value_and_gradients(eps, tied):
    embed, mix = nn.Embedding(V, D), nn.Linear(D, D)
    head = nn.Linear(D, V, bias=not tied)
    if tied:
        head.weight = embed.weight
    tokens, target = torch.randint(1, V, (3, 5)), torch.randint(0, V, (3, 5))
    target[0, 3:] = PAD  # padding is neither scored nor given a gradient
    found = {}
    for name, loss_of in (
        ("reference", lambda h: reference(h, head, target, eps)),
        ("chunked", lambda h: chunked_loss(h, head, target, eps, PAD, rows=4)),  # 15 = 4+4+4+3
    ):
        h = torch.tanh(mix(embed(tokens)))
        h.retain_grad()
        loss, nll = loss_of(h)
        (loss + 0.5 * nll).backward()
        params = [embed.weight, mix.weight, head.weight] + ([] if tied else [head.bias])
        found[name] = [loss, nll, h.grad, *(p.grad.clone() for p in params)]
        for p in params:
            p.grad = None
    assert found["reference"][0] > 0
    for got, want in zip(found["chunked"], found["reference"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_chunks_with_activation_checkpointing_give_the_whole_logits_gradients():
    cfg = ModelConfig(arch="decoder_only", vocab_size=V, d_model=D, n_heads=2, d_ff=32,
                      n_layers=2, dropout=0.2, max_len=16, tie_output=False)  # fmt: skip
    plain = DecoderOnlyLM(cfg).train()
    both = copy.deepcopy(plain)
    assert recompute_layers(both) == 2
    blocks = torch.randint(1, V, (4, 9))
    grads = []
    for model, rows in ((plain, 0), (both, 5)):
        torch.manual_seed(3)  # the same dropout masks
        loss, _, logits = output_loss(
            lambda m=model: m(blocks[:, :-1]), model.lm_head, blocks[:, 1:], 0.1, PAD, rows
        )
        assert (logits is None) == bool(rows)
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6)
    assert plain.lm_head(torch.ones(D)).shape == (V,)  # the output layer is itself again


@pytest.mark.parametrize(
    "arch, train, error",
    [
        ("decoder_only", {"loss_chunk": -1}, "expected >= 0"),
        ("decoder_only", {"loss_chunk": 256, "rdrop": 0.5}, "R-Drop"),
        ("encoder_decoder", {"loss_chunk": 256, "fsdp": True}, "sharding"),
        ("encoder_classifier", {"loss_chunk": 256}, "not read by model.arch"),
    ],
)
def test_loss_chunk_is_refused_where_it_cannot_apply(arch, train, error):
    with pytest.raises(ValueError, match=error):
        RunConfig.from_dict({"version": 2, "model": {"arch": arch}, "train": train})


@pytest.mark.slow  # 2.4 s of tracing under load; benchmarks/gpu_train.py --loss-chunk compiles it
def test_the_chunked_loss_traces_into_one_graph_with_the_same_values():
    head, target = nn.Linear(D, V), torch.randint(0, V, (3, 5))
    h = torch.randn(3, 5, D, requires_grad=True)
    graphs = []

    def backend(gm: torch.fx.GraphModule, _) -> object:
        graphs.append(gm)
        return gm.forward

    traced = torch.compile(lambda h: chunked_loss(h, head, target, 0.1, PAD, 4), backend=backend,
                           fullgraph=True)(h)  # fmt: skip
    eager = chunked_loss(h, head, target, 0.1, PAD, 4)
    assert len(graphs) == 1
    torch.testing.assert_close(traced, eager)
    grads = [torch.autograd.grad(loss[0], (h, head.weight)) for loss in (traced, eager)]
    torch.testing.assert_close(*grads)


# translation's task fits a BPE first: 2-3x the language model's 3 s under load
@pytest.mark.parametrize(
    "name", [pytest.param("translation", marks=pytest.mark.slow), "language model"]
)
def test_each_task_trains_on_the_same_loss_and_gradients_with_loss_chunk(tmp_path, name):
    make_task, make_config = {
        "translation": (TranslationTask, write_config),
        "language model": (LanguageModelTask, lm_config),
    }[name]
    task = make_task(RunConfig.load(make_config(tmp_path)), tmp_path, False, log=lambda _: None)
    batch = task.collate(task.epoch_batches(0)[0])
    found = []
    for rows in (0, 7):
        task.cfg = task.cfg.replace("train", loss_chunk=rows)
        torch.manual_seed(0)  # the same dropout masks
        loss, nll, _ = task.train_loss(batch, torch.device("cpu"), task.model)
        loss.backward()
        found.append([loss, nll, *(p.grad.clone() for p in task.model.parameters())])
        task.model.zero_grad()
    for got, want in zip(found[1], found[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
