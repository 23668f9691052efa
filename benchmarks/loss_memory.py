"""Peak memory of a language model's training step over GPT-2's 50,257-token vocabulary, the
loss over the whole logits against `train.loss_chunk` (the output layer and loss over slices
of positions, aiayn.train.chunked), and checkpointing's time per step.

A small decoder (d_model 256, 2 layers) on 8 blocks of 256 tokens, so that the output layer is
what the step's memory is made of: the whole logits are 2,048 x 50,257 floats (412 MB), and
their gradient as many. Each setting runs in a fresh process, as in benchmarks.memory (whose
peak_mb and allocator settings it shares), with Adam, two steps, and the loss of the first
step, which must agree across settings.

`python -m benchmarks.loss_memory [--chunks 0 1024 256]`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from aiayn.models import ModelConfig
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.train.chunked import output_loss
from benchmarks.common import report
from benchmarks.memory import peak_mb

VOCAB, BLOCK = 50257, 256
SHAPE = {"d_model": 256, "n_heads": 4, "d_ff": 1024, "n_layers": 2, "max_len": BLOCK}


def child(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="decoder_only", vocab_size=VOCAB, dropout=0.0, **SHAPE)
    model = DecoderOnlyLM(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    blocks = torch.randint(4, VOCAB, (args.batch, BLOCK + 1))
    losses, before, start = [], peak_mb(), time.perf_counter()
    for _ in range(args.steps):
        loss, _, _ = output_loss(
            lambda: model(blocks[:, :-1]), model.lm_head, blocks[:, 1:], 0.1, 0, args.chunk
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"peak_mb": peak_mb(), "before_mb": before, "step_s": seconds,
                      "first_loss": losses[0]}))  # fmt: skip


def measure(args: argparse.Namespace, chunk: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.loss_memory", "--child", "--chunk", str(chunk)]
    cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 1024, 256])
    p.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    runs = {chunk: measure(args, chunk) for chunk in args.chunks}
    whole = runs[args.chunks[0]]
    report(
        {
            "bench": "loss_memory",
            "vocab": VOCAB,
            "batch": [args.batch, BLOCK],
            "peak_mb": {str(c): round(r["peak_mb"]) for c, r in runs.items()},
            "model_and_data_mb": round(whole["before_mb"]),
            "step_s": {str(c): round(r["step_s"], 2) for c, r in runs.items()},
            "first_loss": {str(c): round(r["first_loss"], 4) for c, r in runs.items()},
        }
    )


if __name__ == "__main__":
    main()
