"""Generation with each step replayed as a CUDA graph (`generate --cuda-graph`) against the same
generation run eagerly, and against `transformers`' GPT-2 `generate` with the very same weights
(imported) where transformers is installed: greedy, GPT-2 small's shape (d_model 768, 12
layers, 12 heads, a vocabulary of 50,257), random weights, a 16-token prompt, fp32.

Every side generates exactly `--new-tokens` tokens (no end token); each record says whether
the graph's tokens equal the eager generation's. `--smoke` runs a toy size on whatever device
there is (a CPU runs the static-buffer step eagerly).
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from aiayn.decode.sample import generate
from aiayn.models import ModelConfig
from aiayn.models.decoder_only import DecoderOnlyLM
from benchmarks.common import report
from benchmarks.graph_decode import against_eager, fp32_device

PROMPT = 16
GPT2 = {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
TOY = {"n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 500, "n_positions": 128}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    device = fp32_device()
    dims = TOY if args.smoke else GPT2
    ours, hf = models(dims)
    ours, hf = ours.to(device).eval(), hf and hf.to(device).eval()
    n = args.new_tokens
    for batch in args.batch:
        prompt = torch.randint(0, dims["vocab_size"], (batch, PROMPT), device=device)
        fns = {
            "eager": lambda p=prompt: tokens(ours, p, n, graph=False),
            "graph": lambda p=prompt: tokens(ours, p, n, graph=True),
        }
        if hf is not None:
            fns["transformers"] = lambda p=prompt: hf_generate(hf, p, n)
        record = {
            "bench": "graph_generate",
            "model": f"gpt2-shaped d{dims['n_embd']} L{dims['n_layer']} vocab {dims['vocab_size']}",
            "device": str(device),
            "batch": batch,
            "prompt": PROMPT,
            "new_tokens": n,
        }
        report(record | against_eager(fns, batch * n, args.rounds))


def models(dims: dict) -> tuple[DecoderOnlyLM, object | None]:
    """aiayn's model and transformers' GPT-2 with the same weights; without transformers,
    aiayn's alone, GPT-2's design."""
    try:
        import transformers
    except ImportError:
        cfg = ModelConfig(
            arch="decoder_only", vocab_size=dims["vocab_size"], d_model=dims["n_embd"],
            n_heads=dims["n_head"], d_ff=4 * dims["n_embd"], n_layers=dims["n_layer"],
            max_len=dims["n_positions"], positional="learned", activation="gelu",
            norm_first=True, dropout=0.0,
        )  # fmt: skip
        return DecoderOnlyLM(cfg), None
    from aiayn.interop.hf import from_pretrained

    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**dims, eos_token_id=None)).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = from_pretrained(folder)
    return ours, hf


def tokens(model: DecoderOnlyLM, prompt: torch.Tensor, n: int, graph: bool) -> list:
    steps = generate(model, prompt, n, temperature=0.0, graph=graph)
    return torch.stack(list(steps), dim=1).tolist()


@torch.inference_mode()
def hf_generate(hf, prompt: torch.Tensor, n: int) -> None:
    hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                min_new_tokens=n, do_sample=False, pad_token_id=0)  # fmt: skip


if __name__ == "__main__":
    main()
