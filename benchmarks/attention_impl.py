"""Written-out attention against torch's fused SDPA, by sequence length: the measurement behind
`attn_impl = "auto"` (aiayn.runtime.attention.AUTO_MATH_UP_TO).

For each key length T, one training call (forward and backward) of scaled dot-product attention
in the demo's shape (4 heads of 64; a batch of about 4,096 tokens), in fp32 or under bf16
autocast as training runs it, under each of the three masks
a model gives it: key padding (encoder and cross-attention), a padded causal mask (decoder
training on padded batches) and CAUSAL alone (language-model blocks); and one decoding step
(one new query over T cached keys, no mask, fp32, inference mode; 8 sentences of 5 beams),
a beam's cross-attention (`beam_cross`: each sentence's 5 queries together over T keys of its
memory, a padding mask) and, at a few keys, the one-query kernel against the written-out path
(`one_query`: 4 heads of 32, 330 sentences of 5 beams, where `bmm` runs its scalar loop).
Prints JSON: seconds per call of each path and math / sdpa (below 1: the written-out path is
faster), or one_query / math.

`python -m benchmarks.attention_impl [--device cuda] [--threads N]`
"""

from __future__ import annotations

import argparse

import torch

from aiayn.nn.masks import CAUSAL, attention_mask
from aiayn.runtime.attention import attention, one_query
from benchmarks.common import interleaved, report

LENGTHS = (16, 32, 64, 128, 256, 512)
HEADS, D_HEAD, BATCH_TOKENS = 4, 64, 4096
DECODE_ROWS = 40  # 8 sentences, 5 beams each
BEAM, FEW_KEYS = 5, (2, 4, 8, 12)
STEP_ROUNDS = 200  # a decoding step's call takes microseconds


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


def decode_call(qkv: tuple, impl: str, mask=None) -> None:
    with torch.inference_mode():
        if impl == "one_query":
            one_query(*qkv)
        else:
            attention(*qkv, mask, 0.0, impl)


def compare(kind: str, t: int, call, rounds: int = 20, impls=("math", "sdpa")) -> dict:
    s = interleaved({i: lambda i=i: call(i) for i in impls}, rounds)
    row = {"T": t, "mask": kind, **s, "/".join(impls): round(s[impls[0]] / s[impls[1]], 3)}
    print(row, flush=True)
    return row


def decode_rows(t: int, device: torch.device) -> list[dict]:
    """One new query a beam over T cached keys, and a sentence's beams over T memory keys."""
    q, k, v = (torch.randn(DECODE_ROWS, HEADS, n, D_HEAD, device=device) for n in (1, t, t))
    rows = [compare("decode_step", t, lambda impl, x=(q, k, v): decode_call(x, impl), STEP_ROUNDS)]
    n = DECODE_ROWS // BEAM
    q, k, v = (torch.randn(n, HEADS, m, D_HEAD, device=device) for m in (BEAM, t, t))
    pad = torch.zeros(n, t, dtype=torch.bool, device=device)
    pad[::2, t * 3 // 4 :] = True
    mask = attention_mask(1, t, pad, device=device)
    call = lambda impl: decode_call((q, k, v), impl, mask)  # noqa: E731
    rows.append(compare("beam_cross", t, call, STEP_ROUNDS))
    return rows


def one_query_rows(device: torch.device) -> list[dict]:
    rows = []
    for t in FEW_KEYS:
        q, k, v = (torch.randn(330 * BEAM, 4, n, 32, device=device) for n in (1, t, t))
        call = lambda impl, x=(q, k, v): decode_call(x, impl)  # noqa: E731
        rows.append(compare("one_query", t, call, 20, ("one_query", "math")))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, help="torch.set_num_threads first (MKL's too)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
        rows += decode_rows(t, device)
    rows += one_query_rows(device) if device.type == "cpu" else []
    report({"benchmark": "attention_impl", "device": args.device, "precision": args.precision,
            "set_threads": args.threads, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
