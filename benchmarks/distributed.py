"""Training throughput of N processes under torchrun (DDP, gloo on CPU) against one process
taking the same global batches (gradient accumulation over N batches), on the demo's data.

Runs alternate, one process then N, `--rounds` times; the figure of each is the median of its
logged tokens/s windows after the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aiayn.config import RunConfig
from benchmarks.common import report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/demo.toml"


def tokens_per_s(procs: int, group: int, steps: int, out: Path, fsdp: bool) -> float:
    """Median global tokens/s of a short run on `procs` processes, `group` batches a step."""
    sets = {
        "train.max_steps": steps,
        "train.log_every": 10,
        "train.eval_every": 10 * steps,
        "train.accumulate": group // procs,
        "train.fsdp": str(fsdp).lower(),
        "train.average_last": 1,
        "train.max_minutes": 0,
        "data.valid_src": '""',
        "data.valid_tgt": '""',
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    train = ["-m", "aiayn", "train", CONFIG, "--out", str(out), *args]
    if procs > 1:
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(max((os.cpu_count() or 1) // procs, 1))}
    else:
        launch, env = [], dict(os.environ)
    subprocess.run([sys.executable, *launch, *train], cwd=ROOT, env=env, check=True)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--fsdp", action="store_true")
    a = ap.parse_args()
    runs: dict[str, list[float]] = {"one": [], "many": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for name, procs in (("one", 1), ("many", a.procs)):
                out = Path(tmp) / f"{name}{r}"
                runs[name].append(tokens_per_s(procs, a.procs, a.steps, out, a.fsdp))
    one, many = statistics.median(runs["one"]), statistics.median(runs["many"])
    report(
        {
            "bench": "distributed",
            "mode": "fsdp" if a.fsdp else "ddp",
            "config": CONFIG,
            "processes": a.procs,
            "global_batch_tokens": a.procs * RunConfig.load(CONFIG).train.batch_tokens,
            "tokens_per_s_1_process": round(one),
            f"tokens_per_s_{a.procs}_processes": round(many),
            "ratio": round(many / one, 3),
        }
    )


if __name__ == "__main__":
    main()
