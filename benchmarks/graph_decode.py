"""Decoding with the decoder's step replayed as a CUDA graph (`translate --cuda-graph`) against
the same search run eagerly, and against `transformers`' `MarianMTModel.generate` with the very
same weights (imported) where transformers is installed: greedy and beam 5 at the paper-base
shape (d_model 512, 6+6 layers, 8 heads, d_ff 2048), a vocabulary of 8,000, fp32.

Random weights rarely choose </s>, and two searches may stop at different times; so </s> is
barred (output bias -1e4) and every search decodes exactly `--new-tokens` tokens a sentence: the
same work on each side. Each record says whether the graph's tokens equal the eager search's.
`--smoke` runs a toy size on whatever device there is (a CPU runs the static step eagerly).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable

import torch

from aiayn.decode.search import Special, beam_search, greedy
from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from benchmarks.common import interleaved, report

VOCAB, PAD, EOS, SRC_LEN = 8000, 0, 2, 24
BASE = {"d_model": 512, "n_heads": 8, "d_ff": 2048, "n_layers": 6}
TOY = {"d_model": 32, "n_heads": 4, "d_ff": 64, "n_layers": 2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--beam", type=int, nargs="+", default=[1, 5])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    device = fp32_device()
    dims = TOY if args.smoke else BASE
    ours, hf = models(dims)
    ours, hf = ours.to(device).eval(), hf and hf.to(device).eval()
    special = Special(bos=PAD, eos=EOS, pad=PAD)  # Marian's decoder starts from <pad>
    n = args.new_tokens
    for batch in args.batch:
        src = torch.randint(3, VOCAB, (batch, SRC_LEN), device=device)
        src[:, -1] = EOS
        for beam in args.beam:
            fns = {
                "eager": lambda b=beam, s=src: search(ours, s, special, b, n, graph=False),
                "graph": lambda b=beam, s=src: search(ours, s, special, b, n, graph=True),
            }
            if hf is not None:
                fns["transformers"] = lambda b=beam, s=src: generate(hf, s, b, n)
            record = {
                "bench": "graph_decode",
                "model": f"d{dims['d_model']} {dims['n_layers']}+{dims['n_layers']} vocab {VOCAB}",
                "device": str(device),
                "batch": batch,
                "beam": beam,
                "new_tokens": n,
            }
            report(record | against_eager(fns, batch * n, args.rounds))


def fp32_device() -> torch.device:
    """The GPU if there is one, else the CPU; fp32 without TF32, as a CPU computes it; seeded."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def against_eager(fns: dict[str, Callable[[], object]], tokens: int, rounds: int) -> dict:
    """Whether fns["graph"] returns fns["eager"]'s tokens, and each one's tokens/s (`tokens` a
    call, interleaved after warm-up) with the graph's speed-ups."""
    same = fns["graph"]() == fns["eager"]()
    seconds = interleaved(fns, rounds, warmup=1)
    figures = {
        "tokens_per_s": {k: round(tokens / v, 1) for k, v in seconds.items()},
        "graph_vs_eager": round(seconds["eager"] / seconds["graph"], 2),
        "graph_tokens_equal_eager": same,
    }
    if "transformers" in seconds:
        figures["graph_vs_transformers"] = round(seconds["transformers"] / seconds["graph"], 2)
    return figures


def models(dims: dict) -> tuple[EncoderDecoder, object | None]:
    """aiayn's model and transformers' Marian with the same weights, </s> barred; without
    transformers, aiayn's alone."""
    try:
        import transformers
    except ImportError:
        cfg = ModelConfig(vocab_size=VOCAB, dropout=0.0, **dims)
        ours = EncoderDecoder(cfg)
        bar = torch.zeros(VOCAB)
        bar[EOS] = -1e4
        ours.generator.register_forward_hook(lambda _m, _i, out: out + bar.to(out.device))
        return ours, None
    from aiayn.interop.hf import from_pretrained

    d, layers, heads, ff = dims["d_model"], dims["n_layers"], dims["n_heads"], dims["d_ff"]
    cfg = transformers.MarianConfig(
        vocab_size=VOCAB, d_model=d, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ff,
        decoder_ffn_dim=ff, max_position_embeddings=512, scale_embedding=True,
        pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=EOS, forced_eos_token_id=None,
    )  # fmt: skip
    hf = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():
        hf.final_logits_bias[0, EOS] = -1e4
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = from_pretrained(folder)
    return ours, hf


def search(model, src, special, beam: int, n: int, graph: bool) -> list[list[int]]:
    if beam == 1:
        return greedy(model, src, special, max_extra=10**6, cap=n, graph=graph)
    found = beam_search(model, src, special, beam, 0.6, max_extra=10**6, cap=n, graph=graph)
    return [tokens for tokens, _ in found]


@torch.inference_mode()
def generate(hf, src: torch.Tensor, beam: int, n: int) -> None:
    stop = {"early_stopping": True} if beam > 1 else {}  # stop as aiayn's beam search does
    hf.generate(src, attention_mask=src != PAD, num_beams=beam, max_new_tokens=n,
                do_sample=False, **stop)  # fmt: skip


if __name__ == "__main__":
    main()
