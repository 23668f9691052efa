"""`aiayn serve`: a run's model over HTTP, with the explorer page (aiayn.serve). The web stack
is imported only when the command runs."""

from __future__ import annotations

import argparse

from aiayn.commands.common import add_cuda_graph, add_device, add_weights, cli_device, log
from aiayn.serve import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, MAX_CONNECTIONS, MAX_ROWS, TIME_LIMIT_S


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("serve", help="serve a run's model over HTTP, with the explorer page")
    cmd.add_argument("--model", required=True, help="run directory")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    cmd.add_argument("--port", type=int, default=8000, help="0: any free port (%(default)s)")
    add_weights(cmd)
    cmd.add_argument("--max-queue", type=int, default=64, help="requests waiting, at most")
    cmd.add_argument(
        "--window-ms", type=float, default=5.0, help="how long a batch waits for more requests"
    )
    cmd.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="connections open at once, at most (%(default)s)",
    )
    cmd.add_argument(
        "--head-timeout",
        type=float,
        default=HEAD_TIMEOUT_S,
        help="seconds to send a request's head (%(default)s)",
    )
    cmd.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT_S,
        help="seconds to send a request's body, else 408 (%(default)s)",
    )
    cmd.add_argument(
        "--max-rows",
        type=int,
        default=MAX_ROWS,
        help="generations decoded at once, at most (continuous batching; %(default)s)",
    )
    cmd.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT_S,
        help="seconds a generation may run before it ends as if at max_tokens (%(default)s)",
    )
    add_device(cmd)
    add_cuda_graph(cmd, "a translation model's decoder step")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.serve.bounds import Bounds
    from aiayn.serve.server import serve

    if args.max_queue < 1:
        raise ValueError(f"--max-queue {args.max_queue} must be >= 1")
    if not 0 <= args.window_ms <= 1000:
        raise ValueError(f"--window-ms {args.window_ms} must be in [0, 1000]")
    if not 1 <= args.max_rows <= 4096:
        raise ValueError(f"--max-rows {args.max_rows} must be in [1, 4096]")
    if not 0 < args.time_limit <= 86_400:  # NaN too
        raise ValueError(f"--time-limit {args.time_limit} must be in (0, 86400] seconds")
    bounds = Bounds(args.max_connections, args.head_timeout, args.body_timeout)
    serve(
        args.model,
        args.host,
        args.port,
        cli_device(args),
        args.weights,
        log,
        args.max_queue,
        args.window_ms,
        bounds,
        args.max_rows,
        args.time_limit,
        args.cuda_graph,
    )
