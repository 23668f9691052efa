"""Beam search's per-beam selection: `row_topk` (chunk maxima, then `topk` within the k best
chunks) against torch's `topk` over whole rows, in the same run, for each chunk size that
divides the vocabulary. Rows as a beam step has them: log-probabilities over `--vocab` tokens
of a trained-looking spread (a few likely tokens, a long tail), 2K = 10 taken from each.
Prints one JSON object and appends it to results/bench.jsonl.
"""

from __future__ import annotations

import argparse

import torch

from aiayn.decode import topk
from benchmarks.common import interleaved, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, nargs="+", default=[160, 1650])
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [s for s in topk.CHUNKS if args.vocab % s == 0 and args.vocab // s >= 4 * args.k]
    for rows in args.rows:
        g = torch.Generator().manual_seed(rows)
        x = (torch.randn(rows, args.vocab, generator=g) * 3).log_softmax(-1)
        fns = {"topk": lambda x=x: x.topk(args.k, dim=1)}
        for size in sizes:
            fns[f"chunks of {size}"] = lambda x=x, size=size: topk.chunked_topk(x, args.k, size)
        seconds = interleaved(fns, args.rounds)
        base = seconds["topk"]
        report({
            "bench": "topk",
            "rows": rows,
            "vocab": args.vocab,
            "k": args.k,
            "threads": args.threads,
            "ms": {name: round(s * 1e3, 3) for name, s in seconds.items()},
            "speedup_vs_topk": {name: round(base / s, 2) for name, s in seconds.items()},
            "chosen_chunk": topk.chunk_size(args.vocab, args.k),
        })  # fmt: skip


if __name__ == "__main__":
    main()
