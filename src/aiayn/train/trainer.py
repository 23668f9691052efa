"""The training loop: optimizer and schedule, accumulation, clipping, autocast, validation,
early stopping, checkpoints that resume exactly, and metrics in JSON lines."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from aiayn.config import RunConfig, TrainConfig
from aiayn.train import checkpoint as ckpt
from aiayn.train.allocator import keep_freed_memory
from aiayn.train.distributed import Single, join
from aiayn.train.interrupt import StopRequests
from aiayn.train.recompute import recompute_layers
from aiayn.train.schedule import noam, warmup_cosine

SNAPSHOTS = "checkpoints"


class Task(Protocol):
    cfg: RunConfig
    model: nn.Module
    monitor: str

    def epoch_batches(self, epoch: int) -> list[Any]: ...
    def train_loss(
        self, batch: Any, device: torch.device, model: nn.Module
    ) -> tuple[Tensor, Tensor, int]: ...
    def validate(self, device: torch.device) -> dict[str, float]: ...
    def save_assets(self, run_dir: Path) -> None: ...


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    kw = {"lr": t.lr, "betas": (t.beta1, t.beta2), "eps": t.eps, "weight_decay": t.weight_decay}
    return (torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam)(
        model.parameters(), **kw
    )


def make_schedule(t: TrainConfig, d_model: int) -> Callable[[int], float]:
    if t.schedule == "noam":
        return noam(d_model, t.warmup)
    return warmup_cosine(t.warmup, t.max_steps, t.lr_floor)


def better(monitor: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new > best if monitor.endswith("bleu") or monitor.endswith("acc") else new < best


class Trainer:
    """Trains `task.model`, writing everything into `run_dir`.

    Under torchrun, every rank runs a Trainer: each takes its share of every step's batches,
    and only the main rank writes files and logs.
    """

    def __init__(
        self,
        task: Task,
        run_dir: Path,
        log: Callable[[str], None] = print,
        group: Single | None = None,
    ) -> None:
        self.task, self.cfg, self.run_dir, self.log = task, task.cfg, Path(run_dir), log
        self.t = self.cfg.train
        self.group = group or join(pick_device(self.t.device), self.t.fsdp)
        self.device = self.group.device
        if self.device.type == "cpu":
            keep_freed_memory()
        self.model = task.model.to(self.device)
        if self.t.activation_checkpointing:
            recompute_layers(self.model)
        self.forward = self.group.wrap(self.model)
        if self.group.rank:  # each rank its own dropout; rank 0 keeps the single-process stream
            torch.manual_seed(self.t.seed * 1_000_003 + self.group.rank)
        self.opt = make_optimizer(self.model, self.t)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, make_schedule(self.t, self.cfg.model.d_model)
        )
        self.state = {
            "step": 0,
            "epoch": 0,
            "batch": 0,
            "elapsed": 0.0,
            "best": None,
            "bad_evals": 0,
            "bad_steps": 0,
            "snapshots": [],
        }

    # -- checkpoints -------------------------------------------------------------------------

    def save(self) -> None:
        """The trainer state, then the weights for decoding, each written atomically.

        The state holds the weights too, so that a crash between the two writes cannot leave
        a resumable state that disagrees with its weights. Every rank takes part (FSDP gathers
        the shards); the main one writes.
        """
        weights = self.group.model_state(self.model)
        state = {
            **self.state,
            "model": weights,
            "optimizer": self.group.optimizer_state(self.model, self.opt),
            "scheduler": self.sched.state_dict(),
            "rng_torch": self.group.gather(torch.get_rng_state()),
            "rng_cuda": self.group.gather(torch.cuda.get_rng_state(self.device))
            if self.device.type == "cuda"
            else [],
        }
        if self.group.main:
            ckpt.save_state(state, self.run_dir / ckpt.STATE)
            ckpt.save_tensors(weights, self.run_dir / ckpt.MODEL)

    def resume(self) -> None:
        path = self.run_dir / ckpt.STATE
        state = ckpt.load_state(path)
        self.group.load_model_state(self.model, state.pop("model"), path)
        self.group.load_optimizer_state(self.model, self.opt, state.pop("optimizer"))
        self.sched.load_state_dict(state.pop("scheduler"))
        cpu_rng, cuda_rng = state.pop("rng_torch"), state.pop("rng_cuda")
        if isinstance(cpu_rng, torch.Tensor):  # saved before runs kept one state per process
            cpu_rng, cuda_rng = [cpu_rng], cuda_rng[:1]
        if len(cpu_rng) == self.group.world:
            torch.set_rng_state(cpu_rng[self.group.rank])
            if cuda_rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda_rng[self.group.rank], self.device)
        else:
            self.log(
                f"saved by {len(cpu_rng)} processes, resumed by {self.group.world}: each rank's "
                "dropout starts a new random stream"
            )
        self.state.update(state)
        self.forget_metrics_after(self.state["step"])
        self.log(f"resumed {self.run_dir} at step {self.state['step']}")

    def forget_metrics_after(self, step: int) -> None:
        """Drop metrics of steps that the resumed run will take again."""
        path = self.run_dir / ckpt.METRICS
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if json.loads(line)["step"] <= step]
            ckpt.atomic_write_text(path, "".join(f"{line}\n" for line in kept))

    def snapshot(self) -> None:
        """Keep the last `average_last` weights for checkpoint averaging."""
        if self.t.average_last <= 1:
            return
        folder = self.run_dir / SNAPSHOTS
        name = f"step_{self.state['step']:08d}.safetensors"
        self.write_weights(folder / name)
        kept = [*self.state["snapshots"], name][-self.t.average_last :]
        if self.group.main:
            for old in set(self.state["snapshots"]) - set(kept):
                (folder / old).unlink(missing_ok=True)
        self.state["snapshots"] = kept

    def write_weights(self, path: Path) -> None:
        """Save the model's weights (gathered from every rank) to `path` from the main rank."""
        weights = self.group.model_state(self.model)
        if self.group.main:
            path.parent.mkdir(exist_ok=True)
            ckpt.save_tensors(weights, path)

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        if self.group.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.save_config(self.cfg, self.run_dir / ckpt.CONFIG)
            self.task.save_assets(self.run_dir)
        start = time.monotonic() - self.state["elapsed"]
        bar = tqdm(
            total=self.t.max_steps,
            initial=self.state["step"],
            unit="step",
            dynamic_ncols=True,
            disable=None if self.group.main else True,
        )
        window = {"loss": 0.0, "tokens": 0, "since": time.monotonic()}
        stop = None
        with StopRequests() as signals:
            while stop is None:
                batches = self.task.epoch_batches(self.state["epoch"])
                rank, world = self.group.rank, self.group.world
                # Every rank needs a batch in every step: an epoch's last few batches, too
                # few to go round, are left out.
                while len(batches) - self.state["batch"] >= world and stop is None:
                    first = self.state["batch"]
                    group = batches[first : first + self.t.accumulate * world]
                    loss, tokens = self.step(group[rank::world])
                    self.state["batch"] += len(group)
                    requested, self.state["elapsed"] = self.group.agree(
                        bool(signals.requested), time.monotonic() - start
                    )
                    if tokens:  # a skipped (non-finite) step is no step
                        window["loss"] += loss * tokens
                        window["tokens"] += tokens
                        bar.update(1)
                        stop = self.after_step(window, bar)
                    if stop is None and requested:
                        self.save()
                        stop = f"{signals.requested or 'stopped by another rank'}, checkpoint saved"
                if stop is None:
                    self.state["epoch"] += 1
                    self.state["batch"] = 0
            bar.close()
            self.finish(stop)
        return {"stop": stop, **self.state}

    def step(self, share: list[Any]) -> tuple[float, int]:
        """One optimizer step over this rank's `share` of the step's batches; returns the mean
        loss per token and the tokens, over all ranks."""
        self.forward.train()
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.t.precision == "bf16"
            else nullcontext()
        )
        total_loss, total_tokens = 0.0, 0
        for i, batch in enumerate(share):
            with self.group.sync_gradients(self.forward, sync=i == len(share) - 1):
                with autocast:
                    loss, _, tokens = self.task.train_loss(batch, self.device, self.forward)
                loss.backward()
            total_loss, total_tokens = total_loss + float(loss.detach()), total_tokens + tokens
        total_loss, total_tokens = self.group.sum([total_loss, total_tokens])
        # Gradients of summed losses, divided once by all the tokens: accumulating N batches
        # gives exactly the gradient of the loss per token of their union. DDP and FSDP have
        # already divided by the number of ranks.
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(max(total_tokens, 1) / self.group.world)
        total_tokens = int(total_tokens)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.t.clip or math.inf)
        if not (math.isfinite(total_loss) and math.isfinite(float(norm))):
            self.skip_bad_step(total_loss, float(norm))
            return total_loss, 0
        self.state["bad_steps"] = 0
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.state["step"] += 1
        return total_loss / max(total_tokens, 1), total_tokens

    def skip_bad_step(self, loss: float, norm: float) -> None:
        """Drop a step whose loss or gradient is not finite; too many in a row stop the run."""
        self.opt.zero_grad(set_to_none=True)
        self.state["bad_steps"] += 1
        n, step = self.state["bad_steps"], self.state["step"] + 1
        self.log(f"step {step}: loss {loss:.4g}, gradient norm {norm:.4g}; skipped ({n} in a row)")
        if n >= self.t.max_bad_steps:
            raise ValueError(
                f"stopped at step {step}: {n} steps in a row with a non-finite loss or gradient "
                f"(train.max_bad_steps={self.t.max_bad_steps}); the last good checkpoint in "
                f"{self.run_dir} is kept. Try a lower train.lr or train.clip, or fp32 precision"
            )

    def after_step(self, window: dict[str, float], bar: tqdm) -> str | None:
        step = self.state["step"]
        if step % self.t.log_every == 0 and window["tokens"]:
            now = time.monotonic()
            rate = window["tokens"] / max(now - window["since"], 1e-9)
            record = {
                "step": step,
                "epoch": self.state["epoch"],
                "loss": window["loss"] / window["tokens"],
                "lr": self.sched.get_last_lr()[0],
                "tokens_per_s": rate,
                "elapsed_s": self.state["elapsed"],
            }
            self.write_metrics(record)
            bar.set_postfix(
                loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}", tok_s=f"{rate:,.0f}"
            )
            window.update(loss=0.0, tokens=0, since=now)
        out_of_time = self.t.max_minutes and self.state["elapsed"] >= 60 * self.t.max_minutes
        last = step >= self.t.max_steps or out_of_time
        if (step % self.t.eval_every == 0 or last) and self.evaluate():
            return "patience"
        if last:
            return "max_steps" if step >= self.t.max_steps else "max_minutes"
        return None

    def evaluate(self) -> bool:
        """Validate, keep the best, checkpoint; True when patience has run out."""
        self.model.eval()
        metrics = self.task.validate(self.device)
        self.model.train()
        if metrics:
            self.write_metrics({"step": self.state["step"], **metrics})
            self.log(
                f"step {self.state['step']}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            )
            if better(self.task.monitor, metrics[self.task.monitor], self.state["best"]):
                self.state["best"], self.state["bad_evals"] = metrics[self.task.monitor], 0
                self.write_weights(self.run_dir / ckpt.BEST)
            else:
                self.state["bad_evals"] += 1
        self.snapshot()
        self.save()
        return bool(self.t.patience) and self.state["bad_evals"] >= self.t.patience

    def write_metrics(self, record: dict[str, Any]) -> None:
        if not self.group.main:
            return
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        with open(self.run_dir / ckpt.METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")

    def finish(self, reason: str) -> None:
        if self.group.main:
            self.write_summary(reason)

    def write_summary(self, reason: str) -> None:
        """The averaged checkpoint, the loss plot and how the run stopped."""
        snapshots = [self.run_dir / SNAPSHOTS / n for n in self.state["snapshots"]]
        if len(snapshots) > 1:
            averaged = ckpt.average_weights(snapshots)
            ckpt.atomic_write(
                self.run_dir / ckpt.AVERAGE, lambda tmp: ckpt.save_file(averaged, str(tmp))
            )
        from aiayn.viz import plot_metrics  # matplotlib loads only when a run ends

        plot_metrics(self.run_dir / ckpt.METRICS, self.run_dir / ckpt.LOSS_PNG)
        self.log(
            f"stopped ({reason}) at step {self.state['step']} after "
            f"{self.state['elapsed'] / 60:.1f} min; run directory {self.run_dir}"
        )
        if self.state["step"] < self.t.max_steps and reason not in ("patience", "max_minutes"):
            launch = "aiayn" if self.group.world == 1 else "torchrun [same options] -m aiayn"
            self.log(f"resume with: {launch} train --out {self.run_dir} --resume")
