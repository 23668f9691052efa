"""Tasks join data, model and metrics for the trainer: what a batch is, its loss, validation."""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from aiayn.config import RunConfig
from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.quantize import is_int8, load_int8
from aiayn.families import family
from aiayn.models import build_model
from aiayn.models.build import materialise
from aiayn.prepare.dataset import fit_data_tokenizer
from aiayn.run.config import read_run_config
from aiayn.run.files import INT8, STATE, TOKENIZER, pick_weights
from aiayn.run.folder import OutputFolder
from aiayn.run.lock import RunLock
from aiayn.run.paths import inside
from aiayn.run.weights import check_tensors, load_checked, read_tensors
from aiayn.runtime.attention import use_attention
from aiayn.train.finetune import (
    adapt,
    base_weights,
    check_options,
    init_from,
    load_adapter_run,
    start_from,
)


def train(
    cfg: RunConfig,
    run_dir: Path,
    resume: bool = False,
    log: Callable[[str], None] = print,
    folder: OutputFolder | None = None,
) -> None:
    """Train `cfg`'s model for its task into `run_dir`, or continue the run there.

    The main process locks `run_dir` first (the process group actually joined says which is
    main, not an environment variable); a new run goes into `folder` (default: `new_run`),
    which refuses a folder holding anything but a run of its own that never reached a
    checkpoint.
    """
    from aiayn.device import pick_device
    from aiayn.train.allocator import CpuHeap
    from aiayn.train.distributed import join, leave
    from aiayn.train.trainer import Trainer

    group = join(pick_device(cfg.train.device), cfg.train.fsdp, cfg.train.precision == "bf16")
    claim = (folder or new_run(run_dir)) if not resume else RunLock(run_dir)
    with claim if group.main else nullcontext():
        torch.manual_seed(cfg.train.seed)  # the initial weights and dropout follow from the seed
        log = log if group.main else quiet
        if cfg.train.init and not resume:
            cfg = start_from(cfg)
        check_options(cfg)
        task = family(cfg.model.arch).part("task")(cfg, run_dir, resume=resume, log=log)
        if cfg.train.init and not resume:
            init_from(task.model, task.cfg, base_weights(cfg), log)
        adapt(task.model, task.cfg, log)
        # after the data is read: its temporaries go back to the system, not into the heap
        trainer = Trainer(task, run_dir, log, group, CpuHeap.for_device(group.device))
        if resume:
            trainer.resume()
        trainer.fit()
        # DDP's gradient reducer holds the process group, and so do the parameters FSDP
        # sharded in place (the task's model): were they freed after `leave`, at exit, they
        # would end gloo's group holding the GIL that its threads may need (a hang, seen; and
        # once under load an abort at exit, "terminate called without an active exception")
        del trainer, task
        gc.collect()
    leave()  # only on success: after an error, torchrun stops the other ranks


def unstarted(run_dir: Path) -> str | None:
    """None for a run that never reached its first checkpoint (nothing in it is worth keeping:
    a new run takes its place), else why it must be resumed instead."""
    if (run_dir / STATE).exists() or (run_dir / STATE).is_symlink():
        return (
            f"it already holds files of a run that reached a checkpoint ({STATE}); pass --resume "
            "to continue it, or choose a new or empty --out"
        )
    return None


def new_run(run_dir: Path) -> OutputFolder:
    """The folder of a new training run: absent, empty, or a run of `aiayn train` that never
    reached its first checkpoint (a killed or failed start), which the new run replaces."""
    return OutputFolder(
        run_dir,
        "train",
        remedy="pass --resume if it is a run to continue, or choose a new or empty --out",
        again=unstarted,
        keep_owner=True,
    )


def quiet(message: str) -> None:
    """The log of the processes other than the main one when training on several."""


def run_tokenizer(
    cfg: RunConfig, run_dir: Path, resume: bool, texts: list[str], punctuation: bool = True
) -> TextTokenizer:
    """The run's saved tokenizer when resuming, a fine-tuning's base's, else a new one learnt
    from `texts` (`punctuation`: split words at punctuation too)."""
    if resume:
        return TextTokenizer.load(inside(run_dir, TOKENIZER))
    if cfg.train.init:
        return load_tokenizer(Path(cfg.train.init), TOKENIZER, cfg.model.vocab_size)
    return fit_data_tokenizer(cfg.data, texts, punctuation)


def vocabulary(cfg: RunConfig, tok: TextTokenizer) -> int:
    """The model's vocabulary: its tokenizer's, or a fine-tuning's base's (an imported
    checkpoint may hold more embeddings than its tokenizer uses)."""
    return cfg.model.vocab_size if cfg.train.init else tok.vocab_size


def check_vocabulary(tok: TextTokenizer, vocab_size: int, path: Path) -> TextTokenizer:
    """`tok`, refused if it makes ids that the model's embedding has no row for."""
    if tok.vocab_size > vocab_size:
        raise ValueError(
            f"{path}: the tokenizer has {tok.vocab_size:,} tokens; the model's vocabulary "
            f"holds {vocab_size:,}"
        )
    return tok


def load_tokenizer(run_dir: Path, name: str, vocab_size: int) -> TextTokenizer:
    """The tokenizer file `name` of a run whose model has `vocab_size` embeddings."""
    path = inside(run_dir, name)
    return check_vocabulary(TextTokenizer.load(path), vocab_size, path)


def load_run(
    run_dir: str | Path,
    arch: str,
    weights: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[RunConfig, nn.Module]:
    """A run directory's config and model of family `arch`, with its chosen weights."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if cfg.model.arch != arch:
        raise ValueError(
            f"{run_dir} holds a {cfg.model.arch} model; {family(arch).use} needs {arch}"
        )
    path = pick_weights(run_dir, weights)
    if path.name == INT8:
        model = load_int8(build_model(cfg.model), path)
    elif cfg.train.lora_rank:
        model = build_model(cfg.model)
        load_adapter_run(model, cfg, path, log)
    else:
        model = weighed(cfg, path)
    use_attention(model, cfg.train.attn_impl)
    log(f"loaded {path}")
    return cfg, model.eval()


def weighed(cfg: RunConfig, path: Path) -> nn.Module:
    """The model of `cfg` with the weights of `path` in their own dtype: a bf16 file (an
    imported checkpoint) gives a bf16 model, never a float32 copy of it."""
    state = read_tensors(path)
    dtypes = {t.dtype for t in state.values()}
    if len(dtypes) != 1 or dtypes == {torch.float32}:  # a mixed file is computed in float32
        model = build_model(cfg.model)
        load_checked(model, state, path)
        return model
    model = build_model(cfg.model, "meta")
    shapes, seen = {}, set()  # a tied tensor is stored once (run.weights.unique_state)
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            shapes[name] = t.shape
    check_tensors(state, shapes, path)
    materialise(model, state)
    return model


def place(model: nn.Module, device: str | torch.device) -> nn.Module:
    """`model` on `device`; int8 layers (`aiayn quantize`) run only on a CPU."""
    if is_int8(model) and torch.device(device).type != "cpu":
        raise ValueError(f"int8 weights decode on a CPU, not {device}; pass --device cpu")
    return model.to(device)
