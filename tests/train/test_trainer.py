"""The trainer's own arithmetic, on a linear model where every number can be checked."""

import itertools

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from aiayn.config import RunConfig
from aiayn.train.trainer import Trainer


class LinearTask:
    """Least squares on fixed batches; validation returns scripted values."""

    monitor, higher_is_better = "val_loss", False

    def __init__(self, batches, val_values=(1.0,), **train):
        base = {
            "schedule": "cosine",
            "lr": 0.05,
            "warmup": 0,
            "log_every": 1,
            "eval_every": 1,
            "bleu": False,
            **train,
        }
        self.cfg = RunConfig().replace("train", **base)
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.batches, self.values = batches, itertools.chain(val_values, itertools.repeat(99.0))

    def epoch_batches(self, epoch):
        return list(range(len(self.batches)))

    def collate(self, i):
        return i

    def train_loss(self, i, device, model):
        x, y = (t.to(device) for t in self.batches[i])
        loss = (model(x) - y).pow(2).sum()
        return loss, loss.detach(), len(x)

    def validate(self, device):
        return {"val_loss": next(self.values)}

    def save_assets(self, run_dir):
        pass


def data(sizes):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 4, generator=gen), torch.randn(n, 1, generator=gen)) for n in sizes]


def test_accumulating_batches_equals_training_on_their_union(tmp_path):
    parts = data([3, 5, 2, 6, 4, 4])
    unions = [
        tuple(torch.cat(t) for t in zip(*parts[i : i + 2], strict=True)) for i in range(0, 6, 2)
    ]
    accumulated = LinearTask(parts, accumulate=2, max_steps=3)
    whole = LinearTask(unions, accumulate=1, max_steps=3)
    Trainer(accumulated, tmp_path / "a", log=lambda _: None).fit()
    Trainer(whole, tmp_path / "b", log=lambda _: None).fit()
    for a, b in zip(accumulated.model.parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_patience_stops_training_and_the_best_weights_are_kept(tmp_path):
    task = LinearTask(
        data([4] * 10), val_values=[3.0, 2.0, 2.5, 2.6, 1.0], patience=2, max_steps=100
    )
    result = Trainer(task, tmp_path, log=lambda _: None).fit()
    assert result["stop"] == "patience" and result["step"] == 4
    assert result["best"] == 2.0


def test_the_average_is_the_mean_of_the_last_snapshots(tmp_path):
    task = LinearTask(data([4] * 10), max_steps=5, average_last=3)
    Trainer(task, tmp_path, log=lambda _: None).fit()
    snaps = sorted((tmp_path / "checkpoints").iterdir())
    assert [p.name for p in snaps] == [f"step_{s:08d}.safetensors" for s in (3, 4, 5)]
    avg = load_file(str(tmp_path / "average.safetensors"))
    loaded = [load_file(str(p)) for p in snaps]
    for name, value in avg.items():
        torch.testing.assert_close(value, sum(s[name] for s in loaded) / 3)


def test_clipping_bounds_the_gradient_norm(tmp_path):
    big = [(torch.randn(8, 4) * 100, torch.randn(8, 1) * 100)]
    task = LinearTask(big, max_steps=1, clip=0.5, optimizer="adamw")
    trainer = Trainer(task, tmp_path, log=lambda _: None)
    seen = []
    trainer.opt.register_step_pre_hook(
        lambda *_: seen.append(
            torch.norm(torch.stack([p.grad.norm() for p in task.model.parameters()]))
        )
    )
    trainer.fit()
    assert seen and float(seen[0]) <= 0.5 + 1e-5


class NanTask(LinearTask):
    """LinearTask whose loss is NaN on the batches listed in `bad`."""

    def __init__(self, batches, bad, **train):
        super().__init__(batches, **train)
        self.bad = set(bad)

    def train_loss(self, i, device, model):
        loss, nll, n = super().train_loss(i, device, model)
        return (loss * float("nan"), nll, n) if i in self.bad else (loss, nll, n)


def test_a_non_finite_step_is_skipped_and_logged(tmp_path):
    messages = []
    task = NanTask(data([4] * 5), bad=[2], max_steps=4, eval_every=100)
    Trainer(task, tmp_path / "a", log=messages.append).fit()
    clean = LinearTask([b for i, b in enumerate(data([4] * 5)) if i != 2], max_steps=4)
    clean.cfg = clean.cfg.replace("train", eval_every=100)
    Trainer(clean, tmp_path / "b", log=lambda _: None).fit()
    assert any("step 3: loss nan" in m and "skipped (1 in a row)" in m for m in messages)
    for name in ("weight", "bias"):  # the NaN batch changed nothing: as if it were not there
        torch.testing.assert_close(getattr(task.model, name), getattr(clean.model, name))


def test_too_many_non_finite_steps_stop_and_keep_the_last_good_checkpoint(tmp_path):
    task = NanTask(data([4] * 6), bad=[2, 3, 4, 5], max_steps=6, eval_every=2, max_bad_steps=3)
    trainer = Trainer(task, tmp_path, log=lambda _: None)
    with pytest.raises(ValueError, match=r"3 steps in a row with a non-finite loss"):
        trainer.fit()
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in saved.values())
    assert torch.load(tmp_path / "trainer_state.pt", weights_only=True)["step"] == 2


def test_a_disk_full_during_a_checkpoint_leaves_the_run_resumable(tmp_path, monkeypatch):
    import errno

    from aiayn.run import weights

    task = LinearTask(data([4] * 6), max_steps=6, eval_every=2)
    real_save, calls = weights.save_file, []

    def failing_save(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # the weights written at step 4
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(weights, "save_file", failing_save)
    with pytest.raises(
        ValueError, match=r"model.safetensors: could not be written \(No space left"
    ):
        Trainer(task, tmp_path, log=lambda _: None).fit()
    monkeypatch.setattr(weights, "save_file", real_save)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    load_file(str(tmp_path / "model.safetensors"))  # still whole
    again = LinearTask(data([4] * 6), max_steps=6, eval_every=2)
    trainer = Trainer(again, tmp_path, log=lambda _: None)
    trainer.resume()
    trainer.fit()
    assert trainer.state["step"] == 6


def test_fp16_overflows_lower_the_scale_without_counting_as_bad_and_resume_exactly(
    tmp_path, monkeypatch
):
    scaler = torch.amp.GradScaler
    FP16 = {"precision": "fp16", "max_bad_steps": 1, "schedule": "noam", "warmup": 10}
    # a first scale of 2^100 overflows fp16's gradients: each such step halves it
    monkeypatch.setattr(torch.amp, "GradScaler", lambda d: scaler(d, init_scale=2.0**100))
    straight = LinearTask(data([4, 4]), **FP16, max_steps=100)
    Trainer(straight, tmp_path / "a", log=lambda _: None).fit()
    first = LinearTask(data([4, 4]), **FP16, max_steps=60)
    Trainer(first, tmp_path / "b", log=lambda _: None).fit()
    rest = LinearTask(data([4, 4]), **FP16, max_steps=100)
    trainer = Trainer(rest, tmp_path / "b", log=lambda _: None)
    trainer.resume()
    trainer.fit()
    assert trainer.precision.scaler.get_scale() < 2.0**100
    for a, b in zip(straight.model.parameters(), rest.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_an_fp16_step_with_a_non_finite_loss_is_skipped_and_training_goes_on(tmp_path, monkeypatch):
    scaler = torch.amp.GradScaler  # a scale of 1 overflows nothing else in this task
    monkeypatch.setattr(torch.amp, "GradScaler", lambda d: scaler(d, init_scale=1.0))
    messages = []
    task = NanTask(data([4] * 5), bad=[2], max_steps=4, eval_every=100, precision="fp16")
    trainer = Trainer(task, tmp_path, log=messages.append)
    trainer.fit()
    assert trainer.state["step"] == 4
    assert any("step 3: loss nan" in m and "skipped (1 in a row)" in m for m in messages)
    assert trainer.precision.scaler.get_scale() == 0.5  # the NaN gradients halved it
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


class EmptyTask(LinearTask):
    """LinearTask whose batches listed in `empty` score no token (all padding, say)."""

    def __init__(self, batches, empty, **train):
        super().__init__(batches, **train)
        self.empty = set(empty)

    def train_loss(self, i, device, model):
        loss, nll, n = super().train_loss(i, device, model)
        return (loss * 0, nll * 0, 0) if i in self.empty else (loss, nll, n)


def test_a_step_that_scores_no_token_is_no_step(tmp_path):
    """Nothing to learn from: no optimizer step (whose momentum would still move the weights),
    and the run ends at max_steps, validated there, as if the batch were not there."""
    task = EmptyTask(data([4] * 5), empty=[2], max_steps=4, eval_every=100)
    trainer = Trainer(task, tmp_path / "a", log=lambda _: None)
    result = trainer.fit()
    clean = LinearTask([b for i, b in enumerate(data([4] * 5)) if i != 2], max_steps=4)
    clean.cfg = clean.cfg.replace("train", eval_every=100)
    Trainer(clean, tmp_path / "b", log=lambda _: None).fit()
    assert result["stop"] == "max_steps" and trainer.state["step"] == 4
    for name in ("weight", "bias"):
        torch.testing.assert_close(getattr(task.model, name), getattr(clean.model, name))


@pytest.mark.gpu
def test_an_fp16_step_with_a_non_finite_loss_is_skipped_on_cuda(tmp_path):
    """The same with CUDA's own gradient scaler, which fp16 runs use."""
    task = NanTask(data([4] * 5), bad=[2], max_steps=4, eval_every=100, precision="fp16")
    task.cfg = task.cfg.replace("train", device="cuda")
    trainer = Trainer(task, tmp_path, log=lambda _: None)
    trainer.fit()
    assert trainer.state["step"] == 4
    assert trainer.precision.scaler.get_scale() < 65536.0
