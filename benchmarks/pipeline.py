"""Training pipeline against pipeline: real (non-padding) target tokens/s of aiayn's
token-budget batches from length-sorted buckets (paper §5.1) against batches of a fixed
number of randomly drawn sentences padded to their longest, on Multi30k with the demo's model.

Both sides train the same model from the same weights; their batches alternate, after
warm-up, over `--batches` batches of one epoch of each; the random batches hold as many
sentences as the bucketed ones on average, so both see the same data per batch on average.
"""

from __future__ import annotations

import argparse
import random
import time
from contextlib import nullcontext
from dataclasses import replace

import torch

from aiayn.config import RunConfig
from aiayn.data.parallel import ParallelData
from aiayn.data.text import read_parallel
from aiayn.data.tokenizer import fit_tokenizer
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.runtime.attention import use_attention
from aiayn.train.loss import label_smoothed_loss
from benchmarks.common import report

CONFIG = "configs/demo.toml"


def epoch_batches(data: ParallelData, batch_tokens: int) -> dict[str, list[list[int]]]:
    bucketed = data.batches(batch_tokens, seed=1)
    size = round(len(data) / len(bucketed))
    order = list(range(len(data)))
    random.Random(1).shuffle(order)
    padded = [order[i : i + size] for i in range(0, len(order), size)]
    return {"bucketed": bucketed, "random_padded": padded}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    cfg = RunConfig.load(CONFIG)
    src, tgt = read_parallel(cfg.data.train_src, cfg.data.train_tgt)
    tok = fit_tokenizer("bpe", src + tgt, cfg.data.vocab_size)
    data = ParallelData.from_ids(
        tok.encode(src), tok.encode(tgt), tok.bos_id, tok.eos_id, tok.pad_id
    )
    torch.manual_seed(0)
    model = EncoderDecoder(replace(cfg.model, vocab_size=tok.vocab_size, pad_id=tok.pad_id))
    use_attention(model, cfg.train.attn_impl)  # as the trainer runs it
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    bf16 = cfg.train.precision == "bf16"
    pipelines = epoch_batches(data, cfg.train.batch_tokens)
    totals = {name: {"tokens": 0, "seconds": 0.0, "padded": 0} for name in pipelines}
    for i in range(args.warmup + args.batches):
        for name, batches in pipelines.items():
            b = data.collate(batches[i])
            start = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16) if bf16 else nullcontext():
                logits = model(b.src, b.tgt_in)
                loss, _ = label_smoothed_loss(logits.float(), b.tgt_out, 0.1, tok.pad_id)
            (loss / b.n_tokens).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= args.warmup:
                t = totals[name]
                t["seconds"] += time.perf_counter() - start
                t["tokens"] += b.n_tokens
                t["padded"] += b.tgt_out.numel()
    rate = {name: t["tokens"] / t["seconds"] for name, t in totals.items()}
    report(
        {
            "bench": "pipeline",
            "config": CONFIG,
            "batches_each": args.batches,
            "sentences_per_batch": {k: round(len(data) / len(v), 1) for k, v in pipelines.items()},
            "real_target_tokens_per_s": {k: round(v) for k, v in rate.items()},
            "padding_fraction": {
                k: round(1 - t["tokens"] / t["padded"], 3) for k, t in totals.items()
            },
            "ratio": round(rate["bucketed"] / rate["random_padded"], 3),
        }
    )


if __name__ == "__main__":
    main()
