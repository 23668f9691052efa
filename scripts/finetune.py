"""Fine-tune a run (`make finetune-sst2`, `make ud-upos`) and print a JSON summary: the dev
accuracy of the weights aiayn decodes with by default (the average of the last checkpoints
when train.average_last is set, else the best validation's) and of the best validation's,
steps and minutes, trainable parameters, optimizer state and peak RSS.

usage: python scripts/finetune.py CONFIG INIT_RUN OUT [--set section.key=value ...]
"""

import contextlib
import io
import json
import resource
import sys
from pathlib import Path

import torch

from aiayn.cli import main
from aiayn.run.config import read_run_config


def dev_accuracy(out: Path) -> float:
    """`aiayn evaluate`'s accuracy, on the run's validation file, of the weights it picks."""
    data = read_run_config(out).data
    valid = data.valid_tsv or data.valid_tagged  # a classifier's, or a tagger's
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["evaluate", "--model", str(out), "--src", valid, "--json"])
    if code:
        sys.exit(code)
    return json.loads(printed.getvalue())["accuracy"]


def summary(config: str, out: Path) -> dict:
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    state = torch.load(out / "trainer_state.pt", map_location="cpu", weights_only=True)
    moments = [t for s in state["optimizer"]["state"].values() for t in s.values()]
    tensors = [t for t in moments if isinstance(t, torch.Tensor)]
    return {
        "config": config,
        "dev_accuracy": dev_accuracy(out),
        "best_validation": max(m["val_acc"] for m in metrics if "val_acc" in m),
        "steps": state["step"],
        "minutes": round(state["elapsed"] / 60, 1),
        "trainable_parameters": sum(
            s["exp_avg"].numel() for s in state["optimizer"]["state"].values()
        ),
        "optimizer_state_mb": round(sum(t.numel() * t.element_size() for t in tensors) / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "weights_file_mb": round((out / "model.safetensors").stat().st_size / 1e6, 2),
    }


if __name__ == "__main__":
    config, init, out, *extra = sys.argv[1:]
    code = main(["train", config, "--init", init, "--out", out, *extra])
    if code:
        sys.exit(code)
    print(json.dumps(summary(config, Path(out))))
