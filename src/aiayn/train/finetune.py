"""Fine-tuning: a run that starts from another run's weights (train.init), some of them frozen
(train.freeze) or adapted by LoRA (train.lora_*), its head and layers at their own rates.

The family registry says which tensors are a task's head (`Family.head`): everything else is
the body, which must come from the init run whole, name for name and shape for shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from aiayn.config import DERIVED, RunConfig
from aiayn.families import family
from aiayn.models.build import TokenEmbedding
from aiayn.models.config import ModelConfig
from aiayn.nn.lora import TARGETS, attach_lora
from aiayn.run.config import read_run_config
from aiayn.run.files import AVERAGE, BEST, INT8, MODEL, pick_weights
from aiayn.run.weights import SafetensorsFile, check_tensors, unique_state
from aiayn.safeio import open_input

# what a fine-tuning config's [model] sets itself: the rest is the init run's
OWN_MODEL = ("arch", "dropout", "attn_dropout", "n_classes", "pooling")
# the [data] fields that say what the tokenizer is: the init run's
TOKENIZER_FIELDS = ("tokenizer", "vocab_size", "joint_vocab", "lowercase", "end_token")
LAYER = re.compile(r"(.*\blayers)\.(\d+)(\.|$)")


def start_from(cfg: RunConfig) -> RunConfig:
    """`cfg` with the shape of train.init's model and its tokenizer's settings; a [model] or
    tokenizer value that `cfg` sets otherwise (not left at its default) is refused, naming both
    values, since the weights could not fit."""
    run = Path(cfg.train.init)
    base = read_run_config(run)
    if base.train.lora_rank:
        raise ValueError(
            f"train.init={run} is an adapter run (LoRA), its weights the adapters alone: "
            "start from the run `aiayn merge` writes of it"
        )
    if base_weights(cfg).name == INT8:
        raise ValueError(
            f"train.init={run} holds int8 weights (aiayn quantize): start from its float run"
        )
    changes = {}
    for section, names in (
        ("model", [f.name for f in dataclasses.fields(ModelConfig) if f.name not in OWN_MODEL]),
        ("data", TOKENIZER_FIELDS),
    ):
        mine, theirs = getattr(cfg, section), getattr(base, section)
        defaults = {f.name: f.default for f in dataclasses.fields(mine)}
        for name in names:
            new, old = getattr(mine, name), getattr(theirs, name)
            if new != old and new != defaults[name] and name not in DERIVED:
                raise ValueError(
                    f"{section}.{name}={new!r}: train.init={run} holds a model with "
                    f"{section}.{name}={old!r}; a fine-tuned model keeps its base's shape and "
                    "tokenizer (its [model] may set dropout, attn_dropout and pooling)"
                )
        changes[section] = {name: getattr(theirs, name) for name in names}
    cfg = cfg.replace("model", **changes["model"]).replace("data", **changes["data"])
    return cfg.replace("train", init=str(run.resolve()))


def check_options(cfg: RunConfig) -> None:
    """Refuse fine-tuning options that cannot work together."""
    t = cfg.train
    if t.lora_rank and not t.init:
        raise ValueError(f"train.lora_rank={t.lora_rank} adapts a base: set train.init too")
    for name, value in (("head_lr", t.head_lr), ("new_head", t.new_head)):
        if value not in (None, False) and not family(cfg.model.arch).head:
            raise ValueError(
                f"train.{name}={value!r}: a {cfg.model.arch} model has no head apart from "
                "its body (Family.head); leave it unset"
            )
    if t.head_lr is not None and t.lr is None:
        raise ValueError(f"train.head_lr={t.head_lr!r} is a rate beside train.lr; set train.lr")
    if t.lora_rank and not lora_targets(t.lora_targets):
        raise ValueError(
            f"train.lora_targets={t.lora_targets!r} names no projection; expected some of "
            + ", ".join(TARGETS)
        )
    if t.lora_rank and t.freeze:
        raise ValueError(
            f"train.freeze={t.freeze!r}: with train.lora_rank every tensor of the base is "
            "frozen already; leave train.freeze empty"
        )
    for target in lora_targets(t.lora_targets):
        if target not in TARGETS:
            raise ValueError(
                f"train.lora_targets: {target!r} is no projection; expected among "
                + ", ".join(TARGETS)
            )


def lora_targets(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def is_head(name: str, arch: str) -> bool:
    head = family(arch).head
    return bool(head) and name.startswith(head)


def init_from(
    model: nn.Module, cfg: RunConfig, path: Path, log: Callable[[str], None]
) -> list[str]:
    """Load the weights file `path` of the init run into `model`'s body (and its head, where
    the run has one of that shape and train.new_head is off); the names of the tensors left
    as initialised (the new head), which the log names too."""
    weights, own = SafetensorsFile(path), unique_state(model)
    arch, new, taken = cfg.model.arch, fresh(own, cfg, weights), {}
    for name, tensor in own.items():
        head = is_head(name, arch)
        if name in new:
            continue
        if name not in weights:
            raise ValueError(
                f"{path}: tensor {name!r} of this {arch} model's body is missing; the init "
                f"run's model is not a body for it"
            )
        shape = tuple(weights.entries[name]["shape"])
        if shape != tuple(tensor.shape):
            hint = "; set train.new_head = true for a new head" if head else ""
            raise ValueError(
                f"{path}: tensor {name!r} has shape {shape}; this model's is "
                f"{tuple(tensor.shape)}{hint}"
            )
        taken[name] = weights[name]
    check_tensors(taken, {n: own[n].shape for n in taken}, path)
    model.load_state_dict(taken, strict=False)
    unused = sorted(set(weights) - set(own))
    log(
        f"train.init: {len(taken)} tensors from {path}; new (initialised here): "
        f"{', '.join(new) or 'none'}" + (f"; not used: {', '.join(unused)}" if unused else "")
    )
    return new


def fresh(own: dict[str, torch.Tensor], cfg: RunConfig, base: SafetensorsFile) -> list[str]:
    """The names of the head tensors a fine-tuning starts afresh: all of them with
    train.new_head or when the base is of another family (a classifier's head is no tagger's,
    whatever its shape), else those the base does not have."""
    heads = [name for name in own if is_head(name, cfg.model.arch)]
    other = read_run_config(Path(cfg.train.init)).model.arch != cfg.model.arch
    return [name for name in heads if cfg.train.new_head or other or name not in base]


def base_weights(cfg: RunConfig) -> Path:
    """The init run's weights file a fine-tuning starts from."""
    return pick_weights(Path(cfg.train.init))


def file_sha256(path: Path, within: Path | None = None) -> str:
    digest = hashlib.sha256()
    with open_input(path, within) as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def adapt(model: nn.Module, cfg: RunConfig, log: Callable[[str], None]) -> None:
    """Freeze what train.freeze names and, with LoRA, everything but the new head, then
    attach the adapters (trainable)."""
    t = cfg.train
    new = fresh(unique_state(model), cfg, SafetensorsFile(base_weights(cfg))) if t.lora_rank else []
    for p in frozen(model, t.freeze, t.lora_rank > 0, set(new)):
        p.requires_grad_(False)
    if t.lora_rank:
        targets = lora_targets(t.lora_targets)
        adapted = attach_lora(model, targets, t.lora_rank, t.lora_alpha, t.lora_dropout)
        log(f"LoRA rank {t.lora_rank} on {', '.join(targets)}: {len(adapted)} linear maps")
    if t.freeze or t.lora_rank:
        params = list(model.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        if not trainable:
            raise ValueError(f"train.freeze={t.freeze!r} leaves no parameter to train")
        log(f"trainable parameters: {trainable:,} of {sum(p.numel() for p in params):,}")


def frozen(model: nn.Module, spec: str, all_but_new: bool, new: set[str]) -> list[nn.Parameter]:
    """The parameters train.freeze names (with LoRA: all but the `new` ones)."""
    if all_but_new:
        return [p for n, p in model.named_parameters() if n not in new]
    modules = dict(model.named_modules())
    chosen: list[nn.Module] = []
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        if entry == "embeddings":
            kinds = nn.Embedding | TokenEmbedding
            chosen += [m for m in modules.values() if isinstance(m, kinds)]
        elif entry.startswith("layers:"):
            chosen += lowest_layers(modules, entry)
        elif entry in modules:
            chosen.append(modules[entry])
        else:
            top = ", ".join(n for n in modules if n and "." not in n)
            raise ValueError(
                f"train.freeze: no module {entry!r} in this model (its modules: {top})"
            )
    return [p for m in chosen for p in m.parameters()]


def lowest_layers(modules: dict[str, nn.Module], entry: str) -> list[nn.Module]:
    count = entry.partition(":")[2]
    if not count.isdigit():
        raise ValueError(f"train.freeze: {entry!r} is invalid; expected layers:N, N a count")
    out = []
    for name, module in modules.items():
        match = LAYER.fullmatch(name)
        if match and int(match.group(2)) < int(count):
            out.append(module)
    return out


def rate_scales(model: nn.Module, cfg: RunConfig) -> dict[int, float]:
    """Each trainable parameter's rate as a multiple of train.lr (by id), where one differs:
    the head's train.head_lr, a layer's train.layer_decay ** (L + 1 - l), embeddings' ** (L + 1)."""
    t, arch = cfg.train, cfg.model.arch
    if t.head_lr is None and t.layer_decay == 1.0:
        return {}
    depth = {m.group(1): 0 for n, _ in model.named_parameters() if (m := LAYER.match(n))}
    for name, _ in model.named_parameters():
        if match := LAYER.match(name):
            depth[match.group(1)] = max(depth[match.group(1)], int(match.group(2)) + 1)
    deepest = max(depth.values(), default=0)
    embeddings = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding | TokenEmbedding)
        for p in m.parameters(recurse=False)
    }
    scales = {}
    for name, p in model.named_parameters():
        if is_head(name, arch) and t.head_lr is not None:
            scales[id(p)] = t.head_lr / t.lr
        elif match := LAYER.match(name):
            layers = depth[match.group(1)]
            scales[id(p)] = t.layer_decay ** (layers - int(match.group(2)))
        elif id(p) in embeddings:
            scales[id(p)] = t.layer_decay ** (deepest + 1)
    return scales


class AdapterWeights:
    """What an adapter run (LoRA) writes as its weights: its trainable tensors alone, with the
    path and SHA-256 of the base weights they adapt; other runs write all their tensors."""

    def __init__(self, model: nn.Module, cfg: RunConfig) -> None:
        self.names, self.cfg = None, cfg
        if cfg.train.lora_rank:
            self.names = {n for n, p in model.named_parameters() if p.requires_grad}
            base, init = base_weights(cfg), Path(cfg.train.init)  # init resolved by start_from
            self.metadata = {"base": str(base), "base_sha256": file_sha256(base, within=init)}

    def resume(self, adapters: Path) -> None:
        """Go on naming the base that the run's adapters file `adapters` names, refused (by
        `checked_base`) if it has changed since: the resumed weights were trained on it."""
        if self.names is not None:
            checked_base(adapters, self.cfg)
            self.metadata = SafetensorsFile(adapters).metadata

    def __call__(
        self, state: dict[str, torch.Tensor], path: Path
    ) -> tuple[dict[str, torch.Tensor], Path, dict[str, str] | None]:
        """save_tensors' arguments for writing `state` to `path`."""
        if self.names is None:
            return state, path, None
        return {n: t for n, t in state.items() if n in self.names}, path, self.metadata


def folded(cfg: RunConfig) -> RunConfig:
    """The config of an adapter run's model with its adapters folded in (merge, quantize):
    an ordinary run, which needs no base."""
    return cfg.replace("train", lora_rank=0, init="")


def checked_base(path: Path, cfg: RunConfig) -> Path:
    """The base weights file that the adapters file `path` names in its metadata: refused
    unless it is a float weights file of the run that train.init names (no link out of it)
    with the SHA-256 that the adapters were trained on."""
    adapters = SafetensorsFile(path)
    base, digest = adapters.metadata.get("base"), adapters.metadata.get("base_sha256")
    if not base or not digest:
        raise ValueError(f"{path}: an adapter run's weights name no base (metadata base)")
    base, init = Path(base), Path(cfg.train.init)
    if base.name not in (MODEL, BEST, AVERAGE) or base.parent.resolve() != init.resolve():
        raise ValueError(
            f"{path}: its base {base} is not a weights file of its train.init run {init} "
            f"(expected {MODEL}, {BEST} or {AVERAGE} there)"
        )
    if (now := file_sha256(base, within=init)) != digest:
        raise ValueError(
            f"{path}: its base {base} has changed since the adapters were trained "
            f"(SHA-256 {now[:16]}..., trained on {digest[:16]}...)"
        )
    return base


def load_adapter_run(
    model: nn.Module, cfg: RunConfig, path: Path, log: Callable[[str], None]
) -> None:
    """Give `model` an adapter run's function: its base's weights, then the adapters and new
    tensors of `path`, folded in (the model is then an ordinary one). A base whose weights
    have changed since the adapters were trained is refused, naming it."""
    from aiayn.nn.lora import merge_lora

    base = checked_base(path, cfg)
    init_from(model, cfg, base, lambda line: None)
    adapt(model, cfg, lambda line: None)
    shapes = {n: p.shape for n, p in model.named_parameters() if p.requires_grad}
    adapters = SafetensorsFile(path)
    state = {name: adapters[name] for name in adapters}
    check_tensors(state, shapes, path)
    model.load_state_dict(state, strict=False)
    merge_lora(model)
    log(f"adapters {path} on base {base}, folded in")
