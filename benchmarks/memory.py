"""Peak memory of a training step at the paper's base size, with and without activation
checkpointing (`train.activation_checkpointing`).

Each setting runs in a fresh process (a process's peak resident memory only grows), which
builds the model and Adam, takes `--steps` steps (the first allocates Adam's moments) and
reports its peak RSS; the parent prints both and the reduction. The children's allocator
gives every block of 1 MiB or more back to the system when it is freed (glibc's
MALLOC_MMAP_THRESHOLD_), so that the peak RSS is the peak of live memory: by default glibc
raises that threshold after large frees and keeps freed blocks, and the RSS then also counts
memory that no tensor holds any more.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.runtime.attention import use_attention
from aiayn.train.recompute import recompute_layers
from benchmarks.common import report
from benchmarks.train_step import SIZES, VOCAB, step_fn


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(**SIZES["base"], vocab_size=VOCAB, dropout=0.1)).train()
    use_attention(model, "auto")  # as the trainer runs it by default
    if args.checkpointing:
        recompute_layers(model)
    batch = (
        torch.randint(4, VOCAB, (args.batch, args.len)),
        torch.randint(4, VOCAB, (args.batch, args.len + 1)),
    )
    step = step_fn(model, batch, bf16=False)
    before = peak_mb()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"peak_mb": peak_mb(), "before_steps_mb": before, "step_s": seconds}))


def measure(args: argparse.Namespace, checkpointing: bool) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", "--batch", str(args.batch)]
    cmd += ["--len", str(args.len), "--steps", str(args.steps)]
    if checkpointing:
        cmd.append("--checkpointing")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=64)  # 64 x 64: the configs' 4,096 tokens
    p.add_argument("--len", type=int, default=64)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    off, on = measure(args, False), measure(args, True)
    report(
        {
            "bench": "memory",
            "size": "base",
            "precision": "fp32",
            "batch": [args.batch, args.len, args.len],
            "peak_mb": {"plain": round(off["peak_mb"]), "checkpointing": round(on["peak_mb"])},
            "model_and_data_mb": round(off["before_steps_mb"]),
            "reduction": round(1 - on["peak_mb"] / off["peak_mb"], 3),
            "step_s": {"plain": round(off["step_s"], 2), "checkpointing": round(on["step_s"], 2)},
        }
    )


if __name__ == "__main__":
    main()
