"""Load on `aiayn serve` over loopback: 16 clients x 50 translation requests at once against the
same requests sent one at a time, in one run, to the same server (the demo's model by default:
`make demo` trains it into runs/demo). Each request is one sentence of test_2016_flickr, beam
search as the run's config sets it. Prints throughput, p50/p99 latency, errors, the ratio, and
the batches the server formed (from /v1/stats).

The clients are threads of this process: on a 2-core machine they share the cores with the
server, as a real client on the same machine would.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

from aiayn.data.text import read_lines
from aiayn.serve.client import Client, Server
from aiayn.tasks import read_run_config
from benchmarks.common import report, run_clients


def send_all(url: str, sentences: list[str], latencies: list[float], errors: list[str]) -> None:
    """Send each sentence as its own request, one after another, on one connection."""
    client = Client(url)
    for sentence in sentences:
        start = time.perf_counter()
        try:
            status, answer = client.call("/v1/translate", {"text": [sentence]})
        except OSError as e:
            status, answer = 0, {"error": str(e)}
        latencies.append(time.perf_counter() - start)
        if status != 200:
            errors.append(f"{status}: {answer}")
    client.close()


def phase(url: str, per_client: list[list[str]]) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=send_all, args=(url, chunk, latencies, errors))
        for chunk in per_client
    ]
    seconds = run_clients(threads)
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="runs/demo", help="run directory (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="per client")
    args = p.parse_args()
    if not Path(args.model, "config.toml").exists():
        raise SystemExit(f"{args.model}: no run there; `make demo` trains the demo's model")
    cfg = read_run_config(args.model)
    sentences = read_lines(cfg.data.test_src)[: args.clients * args.requests]
    per_client = [sentences[i :: args.clients] for i in range(args.clients)]
    with Server(args.model) as server:
        phase(server.url, [sentences[:20]])  # warm-up: first calls, allocator
        one_at_a_time = phase(server.url, [sentences])
        before = server.call("/v1/stats")[1]
        concurrent = phase(server.url, per_client)
        after = server.call("/v1/stats")[1]
    batches = after["batches"] - before["batches"]
    report(
        {
            "benchmark": "serve_load",
            "model": args.model,
            "beam": cfg.decode.beam,
            "clients": args.clients,
            "requests_per_client": args.requests,
            "one_at_a_time": one_at_a_time,
            "concurrent": concurrent,
            "mean_batch": round((after["items"] - before["items"]) / max(batches, 1), 2),
            "throughput_ratio": round(
                concurrent["requests_per_s"] / one_at_a_time["requests_per_s"], 2
            ),
        }
    )


if __name__ == "__main__":
    main()
