"""Beam-5 translation of test_2016_flickr: aiayn's beam search against `transformers`'
`MarianMTModel.generate(num_beams=5)`, the very same random-initialised weights (imported), at
the Multi30k model's size (d_model 256, 3+3 layers, 4 heads, d_ff 1024, 8,000 BPE tokens).

Random weights rarely choose </s>, and two beam searches may stop at different times; so
</s> is barred (final logits bias -1e4) and both decode exactly `--new-tokens` tokens for every
sentence: the same work on both sides. Needs `transformers` (a test dependency).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import transformers

from aiayn.config import RunConfig
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.text import read_lines
from aiayn.data.tokenizer import fit_tokenizer
from aiayn.decode.search import Special, beam_search
from aiayn.interop.hf import from_pretrained
from benchmarks.common import interleaved, report

CONFIG = "configs/demo.toml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--new-tokens", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    d = RunConfig.load(CONFIG).data
    tok = fit_tokenizer("bpe", read_lines(d.train_src) + read_lines(d.train_tgt), d.vocab_size)
    test = read_lines(d.test_src)[: args.sentences]
    rows = sorted(([*ids, tok.eos_id] for ids in tok.encode(test)), key=len)
    batches = [
        pad_to_tensor(rows[i : i + args.batch], tok.pad_id) for i in range(0, len(rows), args.batch)
    ]
    torch.manual_seed(0)
    cfg = transformers.MarianConfig(
        vocab_size=tok.vocab_size, d_model=256, encoder_layers=3, decoder_layers=3,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=1024,
        decoder_ffn_dim=1024, max_position_embeddings=256, scale_embedding=True,
        pad_token_id=tok.pad_id, decoder_start_token_id=tok.pad_id, eos_token_id=tok.eos_id,
        forced_eos_token_id=None,
    )  # fmt: skip
    hf = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():
        hf.final_logits_bias[0, tok.eos_id] = -1e4
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = from_pretrained(folder).eval()
    special = Special(bos=tok.pad_id, eos=tok.eos_id, pad=tok.pad_id)
    n = args.new_tokens

    @torch.no_grad()
    def run_ours() -> None:
        for src in batches:
            beam_search(ours, src, special, beam=5, alpha=0.6, max_extra=10**6, cap=n)

    @torch.no_grad()
    def run_hf() -> None:
        for src in batches:
            hf.generate(src, attention_mask=src != tok.pad_id, num_beams=5, max_new_tokens=n,
                        do_sample=False, early_stopping=True)  # fmt: skip

    seconds = interleaved({"aiayn": run_ours, "transformers": run_hf}, args.rounds, warmup=0)
    report(
        {
            "bench": "decode_beam",
            "model": "marian-shaped d256 3+3 H4 ff1024, vocab 8000 (BPE of Multi30k)",
            "sentences": len(rows),
            "batch": args.batch,
            "beam": 5,
            "new_tokens": n,
            "sentences_per_s": {k: round(len(rows) / v, 1) for k, v in seconds.items()},
            "aiayn_vs_transformers": round(seconds["transformers"] / seconds["aiayn"], 2),
        }
    )


if __name__ == "__main__":
    main()
