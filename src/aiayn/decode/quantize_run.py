"""`aiayn quantize`: a run written again with int8 weights (aiayn.decode.quantize), beside the
files its family's loader reads, and loaded back by that loader before the command returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiayn.decode.quantize import is_int8, quantize_int8, save_int8
from aiayn.families import family
from aiayn.run.atomic import atomic_write
from aiayn.run.config import read_run_config, save_config
from aiayn.run.files import CONFIG, INT8, RECASER, SRC_TOKENIZER, TOKENIZER, pick_weights
from aiayn.run.folder import OutputFolder
from aiayn.run.paths import inside
from aiayn.safeio import read_input
from aiayn.tasks import load_run
from aiayn.tasks.classification import LABELS
from aiayn.train.finetune import folded

MAX_COPY_BYTES = 256 << 20  # the loaders' own cap on a tokenizer or recaser file


# what a run's loaders read beside its config and weights
ASSETS = (TOKENIZER, SRC_TOKENIZER, RECASER, LABELS)


def copy_assets(run_dir: Path, out: Path, names: tuple[str, ...]) -> None:
    """Copy the files `names` that `run_dir` has into `out`."""
    for name in names:
        if (path := inside(run_dir, name)).exists():
            data = read_input(path, MAX_COPY_BYTES, within=run_dir)
            atomic_write(out / name, lambda tmp, data=data: tmp.write_bytes(data))


def quantize_run(
    run_dir: str | Path,
    out: str | Path,
    weights: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Write `out` (new or empty): the run `run_dir` with int8 weights, loaded back by its
    family's loader before this returns. Returns the weights file."""
    run_dir, out = Path(run_dir), Path(out)
    cfg = read_run_config(run_dir)
    arch = cfg.model.arch
    _, model = load_run(run_dir, arch, weights, log)
    if is_int8(model):
        raise ValueError(f"{run_dir}: its weights are int8 already; quantize the float run")
    source = pick_weights(run_dir, weights)
    load = family(arch).part("loader")
    with OutputFolder(out, "quantize"):
        copy_assets(run_dir, out, (CONFIG, *ASSETS))
        if cfg.train.lora_rank:  # its int8 weights hold the adapters folded in
            save_config(folded(cfg), out / CONFIG)
        save_int8(quantize_int8(model), out / INT8, source.name)
        load(out, log=lambda _: None)  # the folder as translate etc. will read it
    size, was = (out / INT8).stat().st_size, source.stat().st_size
    log(f"{out / INT8}: {size / 1e6:.1f} MB, {size / was:.2f}x {source.name}'s {was / 1e6:.1f} MB")
    return out / INT8
