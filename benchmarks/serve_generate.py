"""Generation under load on `aiayn serve` over loopback: a mixed workload of 16 clients, each
sending requests one after another, with prompt and output lengths drawn from a fixed seed
(8 to 256 tokens each), against the same requests on today's one-batch-per-request path, in
one run, to the same server: POST /v1/completions (continuous batching) against
POST /v1/generate (each generation its own batch on the batcher's one worker). Both stream,
greedy; the time to first token is that of the first streamed piece.

The model is a random decoder-only Transformer shaped as configs/shakespeare_char_cpu.toml
(d_model 128, 4 layers, characters) with a context of 512, built in a temporary run directory,
unless --model names a run. The clients are threads of this process, on the same cores as
the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import string
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import torch

from aiayn.config import RunConfig
from aiayn.data.tokenizer import train_chars
from aiayn.models import ModelConfig
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.run.config import save_config
from aiayn.run.files import CONFIG, MODEL, TOKENIZER
from aiayn.run.weights import save_weights
from aiayn.serve.client import Server
from benchmarks.common import report, run_clients

ALPHABET = string.ascii_lowercase + " "
LENGTHS = (8, 16, 32, 64, 128, 256)


def random_run(folder: Path) -> Path:
    """A random character-level language model as a run directory."""
    tok = train_chars([ALPHABET])
    cfg = ModelConfig(
        arch="decoder_only", vocab_size=tok.vocab_size, d_model=128, n_heads=4, d_ff=512,
        n_layers=4, dropout=0.0, activation="swiglu", positional="rope", norm="rmsnorm",
        bias=False, max_len=512, pad_id=tok.pad_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = DecoderOnlyLM(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(RunConfig(model=cfg), folder / CONFIG)
    save_weights(model, folder / MODEL)
    tok.save(folder / TOKENIZER)
    return folder


def workload(seed: int, clients: int, per_client: int) -> list[list[tuple[str, int]]]:
    """Each client's requests: (a prompt of 8..256 characters, 8..256 tokens to generate)."""
    rng = random.Random(seed)
    return [
        [
            ("".join(rng.choices(ALPHABET, k=rng.choice(LENGTHS))), rng.choice(LENGTHS))
            for _ in range(per_client)
        ]
        for _ in range(clients)
    ]


def one(url: str, path: str, body: dict) -> tuple[float, float, int]:
    """POST a streamed request: (seconds to the first text, seconds in all, tokens)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {response.read()!r}")
    first, tokens = None, 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line[6:])
        if path == "/v1/generate":
            tokens += data.get("p") is not None
            text = data.get("text")
        else:
            tokens = data["usage"]["completion_tokens"] if data.get("usage") else tokens
            text = data["choices"][0]["text"] if data.get("choices") else None
        if text and first is None:
            first = time.perf_counter() - start
    conn.close()
    total = time.perf_counter() - start
    return total if first is None else first, total, tokens


def body_of(path: str, model: str, prompt: str, n: int) -> dict:
    if path == "/v1/generate":
        return {"prompt": prompt, "max_new_tokens": n, "temperature": 0, "stream": True}
    return {
        "model": model, "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip


def phase(url: str, path: str, model: str, per_client: list[list[tuple[str, int]]]) -> dict:
    results: list[tuple[int, float, float, int]] = []  # (max tokens, ttft, latency, tokens)

    def client(requests: list[tuple[str, int]]) -> None:
        for prompt, n in requests:
            results.append((n, *one(url, path, body_of(path, model, prompt, n))))

    threads = [threading.Thread(target=client, args=(r,)) for r in per_client]
    seconds = run_clients(threads)
    ttft = sorted(r[1] for r in results)
    latency = sorted(r[2] for r in results)
    long = [r[2] for r in results if r[0] == max(LENGTHS)]
    tokens = sum(r[3] for r in results)
    return {
        "requests": len(results),
        "seconds": round(seconds, 2),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / seconds, 1),
        "ttft_p50_ms": round(1000 * statistics.median(ttft), 1),
        "ttft_p99_ms": round(1000 * pct(ttft, 0.99), 1),
        "latency_p50_ms": round(1000 * statistics.median(latency), 1),
        "latency_p99_ms": round(1000 * pct(latency, 0.99), 1),
        "long_requests_latency_p50_ms": round(1000 * statistics.median(long), 1) if long else None,
    }


def pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", help="a decoder-only run (default: a random one, built here)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=4, help="per client")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.model) if args.model else random_run(Path(tmp) / "random_lm")
        per_client = workload(args.seed, args.clients, args.requests)
        with Server(run) as server:
            name = run.resolve().name
            for path in ("/v1/completions", "/v1/generate"):  # warm-up
                one(server.url, path, body_of(path, name, "warm up", 8))
            batched = phase(server.url, "/v1/completions", name, per_client)
            alone = phase(server.url, "/v1/generate", name, per_client)
    report(
        {
            "benchmark": "serve_generate",
            "model": args.model or "random, d_model 128, 4 layers, characters, max_len 512",
            "clients": args.clients,
            "requests_per_client": args.requests,
            "seed": args.seed,
            "continuous_batching": batched,
            "one_batch_per_request": alone,
            "tokens_per_s_ratio": round(
                batched["output_tokens_per_s"] / alone["output_tokens_per_s"], 2
            ),
        }
    )


if __name__ == "__main__":
    main()
