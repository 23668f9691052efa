"""Training step, model against model: aiayn's EncoderDecoder against the same architecture on
`torch.nn.Transformer` (same embeddings, positions, tied output layer, optimizer and batch).

Prints tokens/s for each, their ratio, and model FLOP utilisation against a matmul peak
measured in the same run. `--fast` adds aiayn's fastest CPU setting (written-out attention).
"""

from __future__ import annotations

import argparse
import math
from contextlib import nullcontext

import torch
from torch import nn

from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.nn.positional import sinusoid_table
from aiayn.runtime.attention import use_attention
from aiayn.train.loss import label_smoothed_loss
from benchmarks.common import interleaved, matmul_peak, report

SIZES = {
    "small": {"d_model": 256, "n_heads": 4, "d_ff": 1024, "n_layers": 3},
    "base": {"d_model": 512, "n_heads": 8, "d_ff": 2048, "n_layers": 6},
}
VOCAB = 8000


class TorchTransformer(nn.Module):
    """The reference: nn.Transformer between the same embeddings and tied output layer."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.core = nn.Transformer(
            d, cfg.n_heads, cfg.n_layers, cfg.n_layers, cfg.d_ff, cfg.dropout,
            batch_first=True, norm_first=cfg.norm_first,
        )  # fmt: skip
        self.out = nn.Linear(d, cfg.vocab_size, bias=False)
        self.out.weight = self.embed.weight
        self.d, self.scale = d, math.sqrt(d)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        def emb(x):
            pos = sinusoid_table(torch.arange(x.size(1), device=x.device), self.d)
            return self.embed(x) * self.scale + pos

        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        return self.out(self.core(emb(src), emb(tgt), tgt_mask=mask, tgt_is_causal=True))


def matmul_flops(cfg: ModelConfig, src_len: int, tgt_len: int, batch: int) -> float:
    """Forward + backward FLOPs of one step: 6 per weight per token, plus attention scores."""
    d, f, n = cfg.d_model, cfg.d_ff, cfg.n_layers
    enc = n * (4 * d * d + 2 * d * f) * src_len
    dec = n * (8 * d * d + 2 * d * f) * tgt_len + VOCAB * d * tgt_len
    attn = n * 2 * d * (src_len**2 + tgt_len**2 + tgt_len * src_len)
    return 6 * batch * (enc + dec) + 3 * batch * attn


def step_fn(model, batch, bf16: bool):
    src, tgt = batch
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)

    def step():
        with torch.autocast("cpu", torch.bfloat16) if bf16 else nullcontext():
            logits = model(src, tgt[:, :-1])
            loss, _ = label_smoothed_loss(logits.float(), tgt[:, 1:], 0.1, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", choices=SIZES, default="small")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--src-len", type=int, default=24)
    p.add_argument("--tgt-len", type=int, default=26)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    base = {**SIZES[args.size], "vocab_size": VOCAB, "dropout": 0.1, "norm_first": True}
    cfg = ModelConfig(**base)
    batch = (
        torch.randint(4, VOCAB, (args.batch, args.src_len)),
        torch.randint(4, VOCAB, (args.batch, args.tgt_len + 1)),
    )
    bf16 = args.precision == "bf16"
    models = {"aiayn": EncoderDecoder(cfg), "aiayn_fast": EncoderDecoder(cfg)}
    use_attention(models["aiayn"], "sdpa")
    use_attention(models["aiayn_fast"], "math")
    models["torch_nn"] = TorchTransformer(cfg)
    for m in models.values():
        m.train()
    seconds = interleaved({k: step_fn(m, batch, bf16) for k, m in models.items()}, args.rounds)
    tokens = args.batch * args.tgt_len
    flops = matmul_flops(cfg, args.src_len, args.tgt_len, args.batch)
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
    report(
        {
            "bench": "train_step",
            "size": args.size,
            "precision": args.precision,
            "batch": [args.batch, args.src_len, args.tgt_len],
            "tokens_per_s": {k: round(tokens / s) for k, s in seconds.items()},
            "ratio_vs_torch_nn": {
                k: round(seconds["torch_nn"] / s, 3) for k, s in seconds.items() if k != "torch_nn"
            },
            "mfu": {k: round(flops / s / peak, 3) for k, s in seconds.items()},
            "matmul_peak_gflops": round(peak / 1e9, 1),
        }
    )


if __name__ == "__main__":
    main()
