"""Written-out attention against torch's fused SDPA, by sequence length: the measurement behind
`attn_impl = "auto"` (aiayn.runtime.attention.AUTO_MATH_UP_TO).

For each key length T, one training call (forward and backward) of scaled dot-product attention
in the demo's shape (4 heads of 64; a batch of about 4,096 tokens), in fp32 or under bf16
autocast as training runs it, under each of the three masks
a model gives it: key padding (encoder and cross-attention), a padded causal mask (decoder
training on padded batches) and CAUSAL alone (language-model blocks); and one decoding step
(one new query over T cached keys, no mask, fp32, inference mode; 8 sentences of 5 beams).
Prints JSON: seconds per call of each path and math / sdpa (below 1: the written-out path is
faster).

`python -m benchmarks.attention_impl [--device cuda]`
"""

from __future__ import annotations

import argparse

import torch

from aiayn.nn.masks import CAUSAL, attention_mask
from aiayn.runtime.attention import attention
from benchmarks.common import interleaved, report

LENGTHS = (16, 32, 64, 128, 256, 512)
HEADS, D_HEAD, BATCH_TOKENS = 4, 64, 4096
DECODE_ROWS = 40  # 8 sentences, 5 beams each


def masks(batch: int, t: int, device: torch.device) -> dict:
    padding = torch.zeros(batch, t, dtype=torch.bool, device=device)
    padding[::2, t * 3 // 4 :] = True  # half the rows padded for their last quarter
    return {
        "padding": attention_mask(t, t, padding, device=device),
        "padded_causal": attention_mask(t, t, padding, causal=True, device=device),
        "causal": CAUSAL,
    }


def train_call(qkv: list, mask, impl: str, bf16: bool) -> None:
    with torch.autocast(qkv[0].device.type, torch.bfloat16, enabled=bf16):
        out = attention(*qkv, mask, 0.0, impl)
    out.float().sum().backward()


def decode_call(qkv: tuple, impl: str) -> None:
    with torch.inference_mode():
        attention(*qkv, None, 0.0, impl)


def compare(kind: str, t: int, call, rounds: int = 20) -> dict:
    rounds = rounds * 10 if kind == "decode_step" else rounds  # a step takes microseconds
    s = interleaved({i: lambda i=i: call(i) for i in ("math", "sdpa")}, rounds)
    row = {"T": t, "mask": kind, **s, "math/sdpa": round(s["math"] / s["sdpa"], 3)}
    print(row, flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = p.parse_args()
    device, bf16 = torch.device(args.device), args.precision == "bf16"
    torch.manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32  # what the projections give under autocast
    rows = []
    for t in LENGTHS:
        batch = max(1, BATCH_TOKENS // t)
        qkv = [torch.randn(batch, HEADS, t, D_HEAD, device=device, dtype=dtype) for _ in range(3)]
        for x in qkv:
            x.requires_grad_()
        for kind, mask in masks(batch, t, device).items():
            rows.append(compare(kind, t, lambda impl, m=mask, x=qkv: train_call(x, m, impl, bf16)))
        q, k, v = (torch.randn(DECODE_ROWS, HEADS, n, D_HEAD, device=device) for n in (1, t, t))
        rows.append(compare("decode_step", t, lambda impl, x=(q, k, v): decode_call(x, impl)))
    report({"benchmark": "attention_impl", "device": args.device, "precision": args.precision,
            "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
