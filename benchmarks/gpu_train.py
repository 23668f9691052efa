"""Training step of a GPT-2-small-sized decoder-only model on a GPU (12 layers, 12 heads,
d_model 768, block 1024; bf16 autocast, SDPA with the causal mask left to its flash kernel):
tokens/s and model FLOP utilisation against the GPU's bf16 peak, both the nominal one (when
the card is known) and a large matmul's measured in the same run. `--size tiny` runs anywhere.

Not part of `make bench` (it needs a GPU): `python -m benchmarks.gpu_train`.
"""

from __future__ import annotations

import argparse

import torch

from aiayn.models import ModelConfig, build_model
from aiayn.train.loss import label_smoothed_loss
from benchmarks.common import interleaved, matmul_peak, report

SIZES = {
    "gpt2": {"d_model": 768, "n_heads": 12, "d_ff": 3072, "n_layers": 12, "max_len": 1024},
    "tiny": {"d_model": 64, "n_heads": 2, "d_ff": 128, "n_layers": 2, "max_len": 64},
}
VOCAB = 50304  # GPT-2's 50,257 rounded up to a multiple of 64
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
    cfg = ModelConfig(arch="decoder_only", vocab_size=VOCAB, dropout=0.0, activation="gelu",
                      positional="learned", norm_first=True, **SIZES[args.size])  # fmt: skip
    model = build_model(cfg).to(device).train()
    forward = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    block = cfg.max_len
    tokens = torch.randint(0, VOCAB, (args.batch, block + 1), device=device)

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16):
            logits = forward(tokens[:, :-1])
        loss, _ = label_smoothed_loss(logits, tokens[:, 1:], 0.0, pad_id=-1)
        (loss / tokens[:, 1:].numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = interleaved({"step": step}, args.rounds, warmup=3)["step"]
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


if __name__ == "__main__":
    main()
