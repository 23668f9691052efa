"""Training step of a GPT-2-small-sized decoder-only model on a GPU (12 layers, 12 heads, d_model
768, block 1024; bf16 autocast, SDPA with the causal mask left to its flash kernel, fused
AdamW): tokens/s and model FLOP utilisation against the GPU's bf16 peak, both the nominal one
(when the card is known; the issue's target is half of it) and a large matmul's measured in
the same run. `--batch 16 32 64 --modes compiled eager` sweeps batch sizes and both ways of
running, one JSON record each; `compiled` is torch.compile of the whole step's forward, the
model and its loss, as one graph (fullgraph), `--loss-chunk N` the output layer and loss over N
positions at a time (train.loss_chunk). A batch that does not fit is recorded as such and the
sweep goes on. `--size tiny` and `paper_tiny` run anywhere. `--size paper_base`: the
encoder-decoder of configs/wmt14_en_de_base.toml (vocabulary 37,000) on pairs of 32 source and
32 target tokens, its target tokens/s per GPU, from which the hours of that config's 100,000
steps follow.

Not part of `make bench` (it needs a GPU): `python -m benchmarks.gpu_train`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from aiayn.models import ModelConfig, build_model
from aiayn.runtime.attention import use_attention
from aiayn.train.chunked import output_loss
from benchmarks.common import interleaved, matmul_peak, report

SIZES = {
    "gpt2": {"d_model": 768, "n_heads": 12, "d_ff": 3072, "n_layers": 12, "max_len": 1024},
    "paper_base": {},  # from configs/wmt14_en_de_base.toml
    "tiny": {"d_model": 64, "n_heads": 2, "d_ff": 128, "n_layers": 2, "max_len": 64},
    # the paper-base config at toy size, to try `paper_base`'s path on a CPU
    "paper_tiny": {
        "d_model": 64,
        "n_heads": 2,
        "d_ff": 128,
        "n_layers": 1,
        "n_decoder_layers": 1,
        "vocab_size": 1000,
    },
}
VOCAB = 50304  # GPT-2's 50,257 rounded up to a multiple of 64
PAPER = Path(__file__).resolve().parents[1] / "configs" / "wmt14_en_de_base.toml"
PAPER_VOCAB, PAIR_LEN = 37000, 32
# Dense bf16 tensor-core peaks from the vendors' data sheets, FLOP/s (H100 and H200: SXM).
NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
MFU_TARGET = 0.5  # of the nominal peak (issue 45)


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


def model_config(size: str) -> ModelConfig:
    if size.startswith("paper"):
        return replace(ModelConfig.from_toml(PAPER), **{"vocab_size": PAPER_VOCAB, **SIZES[size]})
    return ModelConfig(arch="decoder_only", vocab_size=VOCAB, dropout=0.0, activation="gelu",
                       positional="learned", norm_first=True, **SIZES[size])  # fmt: skip


def make_step(model, opt, compiled: bool, paper: bool, chunk: int) -> Callable[..., None]:
    """One optimizer step over (source, tokens); the forward and loss compiled when asked."""
    head = model.generator if paper else model.lm_head
    smoothing = 0.1 if paper else 0.0

    def loss_of(source: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        run = (lambda: model(source, tokens[:, :-1])) if paper else lambda: model(tokens[:, :-1])
        return output_loss(run, head, tokens[:, 1:], smoothing, -1, chunk)[0]

    # static shapes: each batch size gets kernels of its own, as a fixed-size training run has
    forward = torch.compile(loss_of, fullgraph=True, dynamic=False) if compiled else loss_of

    def step(source: torch.Tensor, tokens: torch.Tensor) -> None:
        with torch.autocast(source.device.type, torch.bfloat16):
            loss = forward(source, tokens)
        (loss / tokens[:, 1:].numel()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", choices=SIZES, default="gpt2")
    p.add_argument("--batch", type=int, nargs="+", default=[8])
    p.add_argument("--modes", nargs="+", choices=("eager", "compiled"), default=["eager"])
    p.add_argument("--compile", action="store_true", help="the same as --modes compiled")
    p.add_argument("--loss-chunk", type=int, default=0)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    modes = ["compiled"] if args.compile else args.modes
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    paper = args.size.startswith("paper")
    cfg = model_config(args.size)
    model = build_model(cfg).to(device).train()
    use_attention(model, "auto")  # as the trainer runs it by default: SDPA on GPUs
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    block = PAIR_LEN if paper else cfg.max_len
    measured = None if paper else matmul_peak(
        torch.bfloat16, n=8192 if device.type == "cuda" else 1024, device=device.type
    )  # fmt: skip
    for mode in modes:
        step = make_step(model, opt, mode == "compiled", paper, args.loss_chunk)
        for batch in args.batch:
            record = {"bench": "gpu_train", "size": args.size, "precision": "bf16",
                      "compile": mode == "compiled", "loss_chunk": args.loss_chunk}  # fmt: skip
            seconds = time_step(step, cfg.vocab_size, batch, block, device, args.rounds)
            if seconds is None:
                opt.zero_grad(set_to_none=True)
                report({**record, "batch": [batch, block], "out_of_memory": True})
                continue
            record.update(peak_memory_gb(device))
            if paper:
                report({**record, **paper_figures(batch, seconds)})
            else:
                report({**record, **gpt_figures(cfg, batch, block, seconds, device, measured)})


def time_step(step, vocab: int, batch: int, block: int, device, rounds: int) -> float | None:
    """Median seconds of a step on random tokens (None: the batch does not fit)."""
    tokens = torch.randint(4, vocab, (batch, block + 1), device=device)
    source = torch.randint(4, vocab, (batch, PAIR_LEN), device=device)
    try:
        return interleaved({"step": lambda: step(source, tokens)}, rounds, warmup=3)["step"]
    except torch.OutOfMemoryError:
        return None


def peak_memory_gb(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return {"peak_memory_gb": round(peak, 1)}


def gpt_figures(cfg, batch: int, block: int, seconds: float, device, measured: float) -> dict:
    flops = step_flops(cfg, batch, block) / seconds
    nominal = nominal_peak(device)
    mfu = flops / nominal if nominal else None
    return {
        "batch": [batch, block],
        "tokens_per_s": round(batch * block / seconds),
        "model_tflops": round(flops / 1e12, 2),
        "mfu_vs_nominal_peak": round(mfu, 3) if mfu else None,
        "mfu_target": MFU_TARGET,
        "meets_target": mfu >= MFU_TARGET if mfu else None,
        "mfu_vs_measured_matmul": round(flops / measured, 3),
        "matmul_peak_tflops": round(measured / 1e12, 1),
    }


def paper_figures(batch: int, seconds: float) -> dict:
    """Target tokens/s, and the hours of the paper's 100,000 steps of 25,000 target tokens
    (wmt14_en_de_base.toml) on 8 GPUs at that rate, padding and validation left out."""
    rate = batch * PAIR_LEN / seconds
    return {
        "batch": [batch, PAIR_LEN, PAIR_LEN],
        "target_tokens_per_s": round(rate),
        "hours_100k_steps_of_25k_tokens_on_8": round(100_000 * 25_000 / (8 * rate) / 3600, 1),
    }


if __name__ == "__main__":
    main()
