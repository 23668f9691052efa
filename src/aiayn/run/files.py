"""The names of a run directory's files, and the choice of the weights to decode with."""

from __future__ import annotations

from pathlib import Path

from aiayn.run.paths import inside

CONFIG, TOKENIZER, STATE = "config.toml", "tokenizer.json", "trainer_state.pt"
SRC_TOKENIZER = "src_tokenizer.json"  # a translation's source side, unless the vocabulary is joint
CHAT_TEMPLATE = "chat_template.jinja"  # an imported checkpoint's, kept for serving
RECASER = "recaser.json"  # only in runs trained on lowercased text
METRICS, LOSS_PNG = "metrics.jsonl", "loss.png"
SNAPSHOTS = "checkpoints"  # the snapshots that average.safetensors is the mean of
TENSORBOARD = "tensorboard"  # train.tensorboard's event files
MODEL = "model.safetensors"  # the latest weights, which trainer_state.pt continues from
BEST = "best.safetensors"  # the weights of the best validation score
AVERAGE = "average.safetensors"  # the mean of the last train.average_last checkpoints
INT8 = "int8.safetensors"  # `aiayn quantize`'s output: int8 linear layers, the rest fp32
WEIGHTS = {"model": MODEL, "best": BEST, "average": AVERAGE, "int8": INT8}
WEIGHTS_HELP = "average, best, model or int8 (default: the first of these the run has)"


def pick_weights(run_dir: Path, name: str | None = None) -> Path:
    """The weights file to decode with: `name` if given, else average, best, latest, int8."""
    if name is not None:
        if name not in WEIGHTS:
            raise ValueError(f"--weights {name!r} is unknown; expected one of {', '.join(WEIGHTS)}")
        path = inside(run_dir, WEIGHTS[name])
        if not path.exists():
            raise ValueError(f"{path}: no such weights file in the run directory")
        return path
    for file in (AVERAGE, BEST, MODEL, INT8):
        if (path := inside(run_dir, file)).exists():
            return path
    raise ValueError(f"{run_dir}: no weights file ({MODEL}) in this directory")
