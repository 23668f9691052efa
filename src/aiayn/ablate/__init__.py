"""Ablation studies: `aiayn ablate STUDY.toml` trains a base config and its variants on one
step budget and writes a table and a picture of what each change did (aiayn.ablate.study,
aiayn.ablate.report)."""

from __future__ import annotations


def add_parser(sub) -> None:
    cmd = sub.add_parser("ablate", help="train a base config and its variants; write the table")
    cmd.add_argument("study", help="TOML file: a base config and an [ablate] table of variants")
    cmd.set_defaults(run=run)


def run(args) -> None:
    from aiayn.ablate.report import write_report
    from aiayn.ablate.study import load_study, run_study
    from aiayn.cli import log

    study = load_study(args.study)
    results = run_study(study, log)
    for path in write_report(study, results):
        print(path)
