"""`aiayn generate`: continue a prompt with a language model, streamed."""

from __future__ import annotations

import argparse

from aiayn.commands.common import add_cuda_graph, add_device, add_weights, cli_device, log


def add_parser(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="continue a prompt with a language model (streamed)")
    gen.add_argument("--model", required=True, help="run directory")
    gen.add_argument(
        "--prompt",
        action="append",
        help="text to continue (default: a newline); repeat it for a batch of prompts",
    )
    gen.add_argument(
        "--stop", action="append", default=[], help="end the text before this string (repeatable)"
    )
    gen.add_argument("--max-new-tokens", type=int, default=500, help="(default: %(default)s)")
    gen.add_argument("--temperature", type=float, default=0.8, help="0: greedy (default: 0.8)")
    gen.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest; 0: all")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    gen.add_argument("--seed", type=int, help="the same seed gives the same text")
    add_weights(gen)
    add_device(gen)
    add_cuda_graph(gen, "each step")
    gen.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.decode.text import check_options, stream
    from aiayn.tasks import place
    from aiayn.tasks.language_model import load_language_model

    options = (args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    check_options(
        *options, label=lambda name, value: f"--{name.replace('_', '-')} {value}", stop=args.stop
    )
    device = cli_device(args)
    model, tok = load_language_model(args.model, args.weights, log=log)
    model = place(model, device)
    prompts = args.prompt or ["\n"]
    settings = (*options[:4], args.stop, args.seed, None, args.cuda_graph)
    if len(prompts) == 1:  # one prompt: its text as it comes
        print(tok.decode(tok.encode_prompts(prompts))[0], end="", flush=True)
        for pieces in stream(model, tok, prompts, *settings):
            print(pieces[0], end="", flush=True)
        print()
        return
    texts = [""] * len(prompts)  # several: decoded as one batch, each printed at the end
    for pieces in stream(model, tok, prompts, *settings):
        texts = [t + p for t, p in zip(texts, pieces, strict=True)]
    for prompt, text in zip(tok.decode(tok.encode_prompts(prompts)), texts, strict=True):
        print(f"{prompt}{text}\n", flush=True)
