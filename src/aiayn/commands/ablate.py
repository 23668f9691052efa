"""`aiayn ablate STUDY.toml`: train a base config and its variants on one step budget, then
write the table and picture of what each change did."""

from __future__ import annotations

import argparse

from aiayn.commands.common import log


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("ablate", help="train a base config and its variants; write the table")
    cmd.add_argument("study", help="TOML file: a base config and an [ablate] table of variants")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from aiayn.ablate.report import write_report
    from aiayn.ablate.study import load_study, run_study

    study = load_study(args.study)
    results = run_study(study, log)
    for path in write_report(study, results):
        print(path)
