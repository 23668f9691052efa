"""The `aiayn` command line. Errors in what the user gave become one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from aiayn.commands import (
    ablate,
    classify,
    demo,
    evaluate,
    explain,
    export_ct2,
    export_hf,
    generate,
    import_hf,
    merge,
    params,
    plot_attention,
    plot_metrics,
    prepare,
    quantize,
    serve,
    tag,
    train,
    translate,
)
from aiayn.commands.common import check_args

# in the order `aiayn --help` lists them
COMMANDS = (
    demo,
    params,
    train,
    prepare,
    translate,
    evaluate,
    generate,
    classify,
    tag,
    import_hf,
    plot_metrics,
    plot_attention,
    ablate,
    explain,
    export_hf,
    export_ct2,
    quantize,
    merge,
    serve,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiayn", description=__doc__)
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error too (or set AIAYN_DEBUG=1)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    debug = args.debug or os.environ.get("AIAYN_DEBUG", "") not in ("", "0")
    try:
        check_args(p, args)  # every text a command takes from its user, at once
        args.run(args)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        quiet_stdout()
        return 141
    except (ValueError, OSError, RecursionError) as e:
        if debug:
            traceback.print_exc()
        message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else e
        if isinstance(e, RecursionError):
            message = "input nested too deeply"
        print(f"aiayn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aiayn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail again."""
    # stdout may be no file at all (tests capture it)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
