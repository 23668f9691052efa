"""Decoding, greedy: the KV cache against full recomputation (decoder-only, d_model 384,
6 layers, 256 new tokens, batch 1 and 8), and aiayn against `transformers`' GPT-2 `generate`
with the very same weights (imported). Needs `transformers` (a test dependency)."""

from __future__ import annotations

import argparse
import tempfile

import torch
import transformers

from aiayn.decode.sample import generate
from aiayn.interop.hf import from_pretrained
from benchmarks.common import interleaved, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--compile", action="store_true", help="also the model under torch.compile(dynamic=True)"
    )
    args = p.parse_args()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=8000, n_embd=384, n_layer=6, n_head=6, n_positions=512, eos_token_id=None
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = from_pretrained(folder)
    n = args.new_tokens

    # the cache grows a position per step: dynamic shapes, or a recompilation each step
    compiled = torch.compile(ours, dynamic=True) if args.compile else None

    def run_ours(prompt, use_cache=True, model=ours):
        def fn():
            for _ in generate(model, prompt, n, temperature=0.0, use_cache=use_cache):
                pass

        return fn

    def run_hf(prompt):
        def fn():
            with torch.no_grad():
                hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                            use_cache=True, pad_token_id=0)  # fmt: skip

        return fn

    for batch in (1, 8):
        prompt = torch.randint(1, 8000, (batch, args.prompt_len))
        fns = {"cache": run_ours(prompt), "recompute": run_ours(prompt, use_cache=False)}
        if batch == 1:
            fns["transformers"] = run_hf(prompt)
        if batch == 1 and compiled is not None:
            fns["compiled"] = run_ours(prompt, model=compiled)
        s = interleaved(fns, args.rounds, warmup=1)
        record = {
            "bench": "decode_greedy",
            "model": "gpt2-shaped d384 L6 H6 vocab 8000",
            "batch": batch,
            "new_tokens": n,
            "tokens_per_s": {k: round(batch * n / v, 1) for k, v in s.items()},
            "cache_vs_recompute": round(s["recompute"] / s["cache"], 2),
        }
        if "transformers" in s:
            record["aiayn_vs_transformers"] = round(s["transformers"] / s["cache"], 2)
        if "compiled" in s:
            record["compiled_vs_eager"] = round(s["cache"] / s["compiled"], 2)
        report(record)


if __name__ == "__main__":
    main()
