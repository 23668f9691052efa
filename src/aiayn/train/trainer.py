"""The training loop: optimizer and schedule, accumulation, clipping, autocast, validation,
early stopping, checkpoints that resume exactly, and metrics in JSON lines."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from aiayn.device import pick_device
from aiayn.run.atomic import first_line
from aiayn.run.config import save_config
from aiayn.run.files import (
    AVERAGE,
    BEST,
    CONFIG,
    LOSS_PNG,
    METRICS,
    MODEL,
    SNAPSHOTS,
    STATE,
    TENSORBOARD,
)
from aiayn.run.paths import inside
from aiayn.run.weights import save_tensors
from aiayn.runtime.attention import use_attention
from aiayn.train.allocator import CpuHeap
from aiayn.train.checkpoint import average_weights, load_state, save_state
from aiayn.train.distributed import Single, join
from aiayn.train.feed import RankShare, feed, loader_workers
from aiayn.train.finetune import AdapterWeights, rate_scales
from aiayn.train.interrupt import StopRequests
from aiayn.train.metrics import TensorBoardLog, append_metric, forget_after, progress_line
from aiayn.train.optim import apply_hyperparameters, make_optimizer, make_schedule
from aiayn.train.recompute import recompute_layers
from aiayn.train.runtime import Precision, allow_tf32, compiled
from aiayn.train.schedule import Horizon
from aiayn.train.state import check_state, check_tables, new_state
from aiayn.train.task import Task


def better(higher_is_better: bool, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new > best if higher_is_better else new < best


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
        heap: CpuHeap | None = None,
    ) -> None:
        """`heap`: the CPU allocator's settings, which the training entry point makes (they
        are the process's, not the trainer's), trimmed here every few steps."""
        self.task, self.cfg, self.run_dir, self.log = task, task.cfg, Path(run_dir), log
        self.t = self.cfg.train
        self.group = group or join(
            pick_device(self.t.device), self.t.fsdp, self.t.precision == "bf16"
        )
        self.device = self.group.device
        self.workers = loader_workers(self.t.loader_workers, self.device)
        self.heap = heap
        self.model = task.model.to(self.device)
        use_attention(self.model, self.t.attn_impl)
        if self.t.activation_checkpointing:
            recompute_layers(self.model)
        self.precision = Precision(self.t.precision, self.device)
        allow_tf32(self.device)
        self.forward = compiled(self.group.wrap(self.model), self.t.compile, self.group.world == 1)
        if self.group.rank:  # each rank its own dropout; rank 0 keeps the single-process stream
            torch.manual_seed(self.t.seed * 1_000_003 + self.group.rank)
        scales = rate_scales(self.model, self.cfg)
        self.opt = make_optimizer(self.model, self.t, self.cfg.model.d_model, self.device, scales)
        self.kept = AdapterWeights(self.model, self.cfg)  # what the weights files hold
        self.horizon = Horizon(self.t.max_steps, self.t.max_minutes)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, make_schedule(self.t, self.cfg.model.d_model, self.horizon)
        )
        self.state = new_state()
        main = self.group.main and self.t.tensorboard
        self.board = TensorBoardLog(inside(self.run_dir, TENSORBOARD)) if main else None

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
            "scaler": self.precision.state_dict(),
            "rng_torch": self.group.gather(torch.get_rng_state()),
            "rng_cuda": self.group.gather(torch.cuda.get_rng_state(self.device))
            if self.device.type == "cuda"
            else [],
        }
        if self.group.main:
            save_state(state, self.run_dir / STATE)
            save_tensors(*self.kept(weights, self.run_dir / MODEL))

    def resume(self) -> None:
        path = inside(self.run_dir, STATE)
        self.kept.resume(inside(self.run_dir, MODEL))
        state = check_state(load_state(path), path)
        check_tables(state, self.model, self.opt, self.sched, path)
        self.group.load_model_state(self.model, state.pop("model"), path)
        try:
            self.group.load_optimizer_state(self.model, self.opt, state.pop("optimizer"))
            self.sched.load_state_dict(state.pop("scheduler"))
            self.precision.load_state_dict(state.pop("scaler", {}))
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            message = first_line(e)
            raise ValueError(
                f"{path}: the optimizer or schedule state does not fit ({message})"
            ) from e
        self.restore_rng(state.pop("rng_torch"), state.pop("rng_cuda"), path)
        self.state.update(state)
        if reason := self.finished():
            raise ValueError(
                f"{self.run_dir} finished at step {self.state['step']}: {reason}. Nothing to "
                f"resume; to train on, raise that limit with --set"
            )
        apply_hyperparameters(self.opt, self.sched, self.t, self.cfg.model.d_model)
        forget_after(inside(self.run_dir, METRICS), self.state["step"], self.log)
        self.log(f"resumed {self.run_dir} at step {self.state['step']}")

    def restore_rng(self, cpu_rng: Any, cuda_rng: list, path: Path) -> None:
        if isinstance(cpu_rng, torch.Tensor):  # saved before runs kept one state per process
            cpu_rng, cuda_rng = [cpu_rng], cuda_rng[:1]
        if len(cpu_rng) != self.group.world:
            self.log(
                f"saved by {len(cpu_rng)} processes, resumed by {self.group.world}: each rank's "
                "dropout starts a new random stream"
            )
            return
        try:
            torch.set_rng_state(cpu_rng[self.group.rank])
            if cuda_rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda_rng[self.group.rank], self.device)
        except RuntimeError as e:
            raise ValueError(f"{path}: a random generator state is invalid ({e})") from None

    def finished(self) -> str | None:
        """Why the run has ended (a limit of its config reached), if it has."""
        s, t = self.state, self.t
        if s["step"] >= t.max_steps:
            return f"it took all train.max_steps={t.max_steps} steps"
        if t.patience and s["bad_evals"] >= t.patience:
            return f"{s['bad_evals']} validations without improvement (train.patience)"
        if t.max_minutes and s["elapsed"] >= 60 * t.max_minutes:
            return f"it trained for train.max_minutes={t.max_minutes:g}"
        return None

    def snapshot(self) -> None:
        """Keep the last `average_last` weights for checkpoint averaging."""
        if self.t.average_last <= 1:
            return
        folder = inside(self.run_dir, SNAPSHOTS)
        name = f"step_{self.state['step']:08d}.safetensors"
        self.write_weights(inside(folder, name))
        kept = [*self.state["snapshots"], name][-self.t.average_last :]
        if self.group.main:
            for old in set(self.state["snapshots"]) - set(kept):
                inside(folder, old).unlink(missing_ok=True)
        self.state["snapshots"] = kept

    def write_weights(self, path: Path) -> None:
        """Save the model's weights (gathered from every rank) to `path` from the main rank."""
        weights = self.group.model_state(self.model)
        if self.group.main:
            path.parent.mkdir(exist_ok=True)
            save_tensors(*self.kept(weights, path))

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        if self.group.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / CONFIG)
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
                per_step = self.check_epoch(len(batches))
                # Every rank runs the same number of batches in every step (FSDP's collectives
                # must pair up), so an epoch's last batches, too few for a whole step, are
                # left out; N processes then take exactly one process's steps over N times
                # the batches.
                rank, world, first = self.group.rank, self.group.world, self.state["batch"]
                share = RankShare(batches, first, self.t.accumulate, rank, world)
                collated = feed(share, self.task.collate, self.device, self.workers)
                for _ in range(share.steps):
                    loss, tokens = self.step([next(collated) for _ in range(self.t.accumulate)])
                    self.state["batch"] += per_step
                    requested, self.state["elapsed"] = self.group.agree(
                        bool(signals.requested), time.monotonic() - start
                    )
                    self.horizon.update(self.state["step"], self.state["elapsed"])
                    if tokens:  # a skipped step (not finite, or nothing scored) is no step
                        window["loss"] += loss * tokens
                        window["tokens"] += tokens
                        bar.update(1)
                        stop = self.after_step(window, bar)
                    if stop is None and requested:
                        self.save()
                        stop = f"{signals.requested or 'stopped by another rank'}, checkpoint saved"
                    if stop is not None:
                        break
                if stop is None:
                    self.state["epoch"] += 1
                    self.state["batch"] = 0
            bar.close()
            self.finish(stop)
        return {"stop": stop, **self.state}

    def check_epoch(self, n_batches: int) -> int:
        """The batches of one step, refused if an epoch has fewer."""
        per_step = self.t.accumulate * self.group.world
        if n_batches < per_step:
            raise ValueError(
                f"an epoch has {n_batches} batches, fewer than one step takes: "
                f"train.accumulate={self.t.accumulate} x {self.group.world} processes; "
                "lower train.batch_tokens or train.accumulate"
            )
        return per_step

    def step(self, share: list[Any]) -> tuple[float, int]:
        """One optimizer step over this rank's `share` of the step's batches; returns the mean
        loss per token and the tokens, over all ranks."""
        self.forward.train()
        losses, total_tokens = [], 0
        for i, batch in enumerate(share):
            with self.group.sync_gradients(self.forward, sync=i == len(share) - 1):
                with self.precision.autocast():
                    loss, _, tokens = self.task.train_loss(batch, self.device, self.forward)
                self.precision.backward(loss)
            losses.append(loss.detach())
            total_tokens += tokens
        # one copy to the host per step, not one wait per micro-batch; summed as Python floats
        total_loss = sum(torch.stack(losses).cpu().double().tolist())
        total_loss, total_tokens = self.group.sum([total_loss, total_tokens])
        if not total_tokens:  # all padding: nothing to learn, and Adam's momentum would move
            self.opt.zero_grad(set_to_none=True)
            return total_loss, 0
        # Gradients of summed losses, divided once by all the tokens: accumulating N batches
        # gives exactly the gradient of the loss per token of their union. DDP and FSDP have
        # already divided by the number of ranks.
        self.precision.unscale(self.opt)
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.div_(max(total_tokens, 1) / self.group.world)
        total_tokens = int(total_tokens)
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.t.clip or math.inf))
        if not (math.isfinite(total_loss) and math.isfinite(norm)):
            self.opt.zero_grad(set_to_none=True)
            # fp16's scale, lowered for the next step whatever went wrong; when only the
            # gradients overflowed, the scale is the likely cause, not a diverging run
            if not (self.precision.skip() and math.isfinite(total_loss)):
                self.skip_bad_step(total_loss, norm)
            return total_loss, 0
        self.state["bad_steps"] = 0
        self.precision.step(self.opt)
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.state["step"] += 1
        return total_loss / max(total_tokens, 1), total_tokens

    def skip_bad_step(self, loss: float, norm: float) -> None:
        """Count a dropped step whose loss or gradient is not finite; too many in a row stop
        the run."""
        self.state["bad_steps"] += 1
        n, step = self.state["bad_steps"], self.state["step"] + 1
        self.log(f"step {step}: loss {loss:.4g}, gradient norm {norm:.4g}; skipped ({n} in a row)")
        if n >= self.t.max_bad_steps:
            kept = (
                f"the last good checkpoint in {self.run_dir} is kept"
                if (self.run_dir / STATE).exists()
                else "no checkpoint had been saved yet"
            )
            raise ValueError(
                f"stopped at step {step}: {n} steps in a row with a non-finite loss or gradient "
                f"(train.max_bad_steps={self.t.max_bad_steps}); {kept}. "
                "Try a lower train.lr or train.clip, or fp32 precision"
            )

    def after_step(self, window: dict[str, float], bar: tqdm) -> str | None:
        step = self.state["step"]
        if self.heap is not None:
            self.heap.after_step(step)
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
            if bar.disable and self.group.main:  # no bar (a log file): a line instead
                self.log(progress_line(record, self.t, now - window["since"]))
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
            if better(self.task.higher_is_better, metrics[self.task.monitor], self.state["best"]):
                self.state["best"], self.state["bad_evals"] = metrics[self.task.monitor], 0
                self.write_weights(self.run_dir / BEST)
            else:
                self.state["bad_evals"] += 1
        self.snapshot()
        self.save()
        return bool(self.t.patience) and self.state["bad_evals"] >= self.t.patience

    def write_metrics(self, record: dict[str, Any]) -> None:
        if self.group.main:
            append_metric(self.run_dir / METRICS, record)
            if self.board:
                self.board.write(record)

    def finish(self, reason: str) -> None:
        if self.group.main:
            self.write_summary(reason)
        if self.board:
            self.board.writer.close()

    def write_summary(self, reason: str) -> None:
        """The averaged checkpoint, the loss plot and how the run stopped."""
        folder = inside(self.run_dir, SNAPSHOTS)
        snapshots = [inside(folder, n) for n in self.state["snapshots"]]
        if len(snapshots) > 1:
            averaged = average_weights(snapshots)
            save_tensors(*self.kept(averaged, self.run_dir / AVERAGE))
        from aiayn.viz import plot_metrics  # matplotlib loads only when a run ends

        plot_metrics(self.run_dir / METRICS, self.run_dir / LOSS_PNG)
        self.log(
            f"stopped ({reason}) at step {self.state['step']} after "
            f"{self.state['elapsed'] / 60:.1f} min; run directory {self.run_dir}"
        )
        if self.state["step"] < self.t.max_steps and reason not in ("patience", "max_minutes"):
            launch = "aiayn" if self.group.world == 1 else "torchrun [same options] -m aiayn"
            self.log(f"resume with: {launch} train --out {self.run_dir} --resume")
