"""Tasks join data, model and metrics for the trainer: what a batch is, its loss, validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from aiayn.config import RunConfig
from aiayn.models import build_model
from aiayn.train.checkpoint import CONFIG, load_config, load_weights, pick_weights

USES = {
    "encoder_decoder": "translation",
    "decoder_only": "generation",
    "encoder_classifier": "classification",
}


def load_run(
    run_dir: str | Path,
    arch: str,
    weights: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[RunConfig, nn.Module]:
    """A run directory's config and model of family `arch`, with its chosen weights."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise ValueError(f"{run_dir}: not a run directory (no {CONFIG})")
    cfg = load_config(run_dir / CONFIG)
    if cfg.model.arch != arch:
        raise ValueError(f"{run_dir} holds a {cfg.model.arch} model; {USES[arch]} needs {arch}")
    model = build_model(cfg.model)
    path = pick_weights(run_dir, weights)
    load_weights(model, path)
    log(f"loaded {path}")
    return cfg, model.eval()
