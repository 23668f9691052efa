"""Training step of a GPT-2-small-sized decoder-only model on a GPU (12 layers, 12 heads, d_model
768, block 1024; bf16 autocast, SDPA with the causal mask left to its flash kernel): tokens/s
and model FLOP utilisation against the GPU's bf16 peak, both the nominal one (when the card is
known) and a large matmul's measured in the same run. `--size tiny` runs anywhere. `--size
paper_base`: the encoder-decoder of configs/wmt14_en_de_base.toml (vocabulary 37,000) on pairs
of 32 source and 32 target tokens, its target tokens/s per GPU, from which the hours of that
config's 100,000 steps follow.

Not part of `make bench` (it needs a GPU): `python -m benchmarks.gpu_train`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from aiayn.models import ModelConfig, build_model
from aiayn.runtime.attention import use_attention
from aiayn.train.loss import label_smoothed_loss
from benchmarks.common import interleaved, matmul_peak, report

SIZES = {
    "gpt2": {"d_model": 768, "n_heads": 12, "d_ff": 3072, "n_layers": 12, "max_len": 1024},
    "paper_base": {},  # from configs/wmt14_en_de_base.toml
    "tiny": {"d_model": 64, "n_heads": 2, "d_ff": 128, "n_layers": 2, "max_len": 64},
}
VOCAB = 50304  # GPT-2's 50,257 rounded up to a multiple of 64
PAPER = Path(__file__).resolve().parents[1] / "configs" / "wmt14_en_de_base.toml"
PAPER_VOCAB, PAIR_LEN = 37000, 32
# Dense bf16 tensor-core peaks from the vendors' data sheets, FLOP/s.
NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def nominal_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in NOMINAL_BF16.items() if key in name), None)


def step_flops(cfg: ModelConfig, batch: int, block: int) -> float:
    """Forward + backward: 6 per weight per token (embedding used as the output layer too),
    plus 12 * layers * d_model * block per token for the attention scores (as nanoGPT counts)."""
    d, f, n = cfg.d_model, cfg.d_ff, cfg.n_layers
    weights = n * (4 * d * d + 2 * d * f) + VOCAB * d
    return batch * block * (6 * weights + 12 * n * d * block)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", choices=SIZES, default="gpt2")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    paper = args.size == "paper_base"
    if paper:
        cfg = replace(ModelConfig.from_toml(PAPER), vocab_size=PAPER_VOCAB)
    else:
        cfg = ModelConfig(arch="decoder_only", vocab_size=VOCAB, dropout=0.0, activation="gelu",
                          positional="learned", norm_first=True, **SIZES[args.size])  # fmt: skip
    model = build_model(cfg).to(device).train()
    use_attention(model, "auto")  # as the trainer runs it by default
    forward = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    block = PAIR_LEN if paper else cfg.max_len
    tokens = torch.randint(4, cfg.vocab_size, (args.batch, block + 1), device=device)
    source = torch.randint(4, cfg.vocab_size, (args.batch, PAIR_LEN), device=device)

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16):
            logits = forward(source, tokens[:, :-1]) if paper else forward(tokens[:, :-1])
        smoothing = 0.1 if paper else 0.0
        loss, _ = label_smoothed_loss(logits, tokens[:, 1:], smoothing, pad_id=-1)
        (loss / tokens[:, 1:].numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = interleaved({"step": step}, args.rounds, warmup=3)["step"]
    if paper:
        report_paper(args, seconds)
        return
    flops = step_flops(cfg, args.batch, block) / seconds
    measured = matmul_peak(torch.bfloat16, n=8192 if device.type == "cuda" else 1024,
                           device=device.type)  # fmt: skip
    nominal = nominal_peak(device)
    report(
        {
            "bench": "gpu_train",
            "size": args.size,
            "precision": "bf16",
            "compile": args.compile,
            "batch": [args.batch, block],
            "tokens_per_s": round(args.batch * block / seconds),
            "model_tflops": round(flops / 1e12, 2),
            "mfu_vs_nominal_peak": round(flops / nominal, 3) if nominal else None,
            "mfu_vs_measured_matmul": round(flops / measured, 3),
            "matmul_peak_tflops": round(measured / 1e12, 1),
        }
    )


def report_paper(args: argparse.Namespace, seconds: float) -> None:
    """Target tokens/s, and the hours of the paper's 100,000 steps of 25,000 target tokens
    (wmt14_en_de_base.toml) on 8 GPUs at that rate, padding and validation left out."""
    rate = args.batch * PAIR_LEN / seconds
    report(
        {
            "bench": "gpu_train",
            "size": "paper_base",
            "precision": "bf16",
            "compile": args.compile,
            "batch": [args.batch, PAIR_LEN, PAIR_LEN],
            "target_tokens_per_s": round(rate),
            "hours_100k_steps_of_25k_tokens_on_8": round(100_000 * 25_000 / (8 * rate) / 3600, 1),
        }
    )


if __name__ == "__main__":
    main()
