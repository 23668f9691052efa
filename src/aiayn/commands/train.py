"""`aiayn train`: train a model from a TOML config, or continue a run with --resume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aiayn.commands.common import add_set, log
from aiayn.config import RunConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model from a TOML config")
    train.add_argument("config", nargs="?", help="TOML config (not needed with --resume)")
    add_set(train, help="override a config value; repeatable")
    train.add_argument("--out", help="run directory (default: runs/CONFIG_NAME)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument(
        "--init", metavar="RUN", help="fine-tune: start from the weights of run directory RUN"
    )
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.tasks import train

    out = Path(args.out or Path("runs") / Path(args.config or "run").stem)
    train(run_config(args, out), out, resume=args.resume, log=log)


def run_config(args: argparse.Namespace, out: Path) -> RunConfig:
    """The config of a new run (CONFIG plus --set), or of the run being resumed (its own
    config.toml plus --set, which may change how it trains but not what its model is)."""
    init = getattr(args, "init", None)  # a Namespace made by code may lack it
    if init is not None:
        if args.resume:
            raise ValueError(
                f"--init {init} starts a new run from another's weights; --resume "
                "continues a run from its own: pass one of them"
            )
        args.set = [*args.set, f"train.init={json.dumps(init)}"]  # a TOML string
    if not args.resume:
        if args.config is None:
            raise ValueError("a CONFIG file is needed unless --resume continues a run")
        return RunConfig.load(args.config, args.set)
    from aiayn.run.files import CONFIG, STATE
    from aiayn.run.lock import in_use, lock_holder
    from aiayn.run.paths import inside

    if holder := lock_holder(out):  # a run in progress, checkpointed yet or not
        raise in_use(out, holder, "--out")
    if not inside(out, CONFIG).exists() or not inside(out, STATE).exists():
        raise ValueError(
            f"--resume: {out} holds no run to resume ({CONFIG}, {STATE}){restart(out)}"
        )
    cfg = RunConfig.load(out / CONFIG, args.set)
    cfg.check_resume(RunConfig.load(out / CONFIG, notice=None))  # its notices said once
    if args.config is not None:  # the command that started the run, --resume added: fine
        given = RunConfig.load(args.config, args.set)
        if given.train.init:  # as it started: the base's shape and tokenizer, its path resolved
            from aiayn.train.finetune import start_from

            given = start_from(given)
        difference = cfg.difference(given)
        if difference:
            raise ValueError(
                f"{args.config} sets {difference}, unlike the run in {out}: --resume "
                "continues a run with its own config; drop CONFIG, and change values with --set"
            )
    return cfg


def restart(out: Path) -> str:
    """How to start again a run that never reached its first checkpoint, if `out` is one."""
    from aiayn.run.files import CONFIG
    from aiayn.run.folder import owner

    if owner(out) != "train" or not (out / CONFIG).is_file():
        return ""
    return (
        f"; it never reached its first checkpoint: start it again with "
        f"`aiayn train {out / CONFIG} --out {out}` (a new run takes its place)"
    )
