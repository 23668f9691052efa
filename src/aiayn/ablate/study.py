"""An ablation study: one base config, variants of it, each trained on the same step budget
and seed, then scored on the validation and test sets.

A study is one TOML file: the base run's tables ([data], [model], [train], [decode]) and an
[ablate] table:

    [ablate]
    seeds = [1, 2, 3]             # the base trains once per seed: its spread is the noise
    out = "runs/ablations"        # one run directory per variant (and per base seed)
    report = "results/ablations"  # REPORT.md and REPORT.png
    beam = 1                      # the beam of validation and test BLEU (unset: decode.beam)

    [[ablate.variants]]
    name = "1 head"               # a row of the table
    group = "A"                   # rows of a group sit together
    set = ["model.n_heads=1"]     # --set overrides of the base
    paper = "Table 3 (A): 24.9 BLEU, 5.29 PPL"   # optional: the paper's figure beside it

Every variant is validated before anything trains, and each must name a folder of its own
(letters or digits; no two alike). A study writes only folders it made (aiayn.run.folder notes
it in each): a finished run (its result.json) is not trained again, and a run it made but did not
finish is trained again from the start, so an interrupted study goes on where it stopped. A
folder of the same name that the study did not make, a link, or a run in use is refused.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiayn.ablate.result import RESULT, read_result
from aiayn.config import RunConfig, stderr_line
from aiayn.configfile import apply_overrides, load_toml
from aiayn.decodeconfig import MAX_BEAM
from aiayn.run.atomic import atomic_write
from aiayn.run.folder import OutputFolder

BASE = "base"
STUDY = "ablate"  # the command named in the note of each run folder a study makes
MAX_SLUG = 100  # letters, digits and dashes in a variant's folder name


@dataclass(frozen=True)
class Variant:
    name: str
    group: str
    overrides: tuple[str, ...]
    paper: str
    cfg: RunConfig

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


@dataclass(frozen=True)
class Study:
    base: list[Variant]  # one per seed
    variants: list[Variant]
    out: Path
    report: Path
    beam: int | None


def load_study(path: str | Path) -> Study:
    """The study of a TOML file, every variant's config checked."""
    data = load_toml(path)
    table = data.pop("ablate", None)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: no [ablate] table (a study needs seeds and variants)")
    known = {"seeds", "out", "report", "beam", "variants"}
    if unknown := sorted(set(table) - known):
        raise ValueError(f"{path}: [ablate] has unknown key {unknown[0]!r}; known: {sorted(known)}")
    seeds = table.get("seeds", [1])
    if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)):
        raise ValueError(f"{path}: ablate.seeds={seeds!r} must be a non-empty list of integers")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"{path}: ablate.seeds={seeds!r} repeats a seed (one run each)")
    beam = table.get("beam")
    if beam is not None and not (type(beam) is int and 1 <= beam <= MAX_BEAM):
        raise ValueError(f"{path}: ablate.beam={beam!r} must be an integer in [1, {MAX_BEAM}]")

    def tell(line: str) -> None:  # a version-1 file's notices, once: with the first base
        stderr_line(f"{path}: {line}")

    base = [
        Variant(BASE, "", (), "", config(data, [f"train.seed={s}"], f"{path} (base, seed {s})",
                                         None if i else tell))
        for i, s in enumerate(seeds)
    ]  # fmt: skip
    if not isinstance(table.get("variants", []), list):
        raise ValueError(f"{path}: ablate.variants must be a list of tables ([[ablate.variants]])")
    variants = [variant(data, v, seeds[0], f"{path}: ablate.variants[{i}]")
                for i, v in enumerate(table.get("variants", []))]  # fmt: skip
    check_folders(path, base, variants)
    for key in ("out", "report"):
        if not isinstance(table.get(key, ""), str):
            raise ValueError(f"{path}: ablate.{key} must be a path")
    out = Path(table.get("out", "runs/ablations"))
    return Study(base, variants, out, Path(table.get("report", "results/ablations")), beam)


def check_folders(path: str | Path, base: list[Variant], variants: list[Variant]) -> None:
    """Refuse names that give no folder name, or the folder of another run: each run of the
    study has a folder of its own."""
    taken = {base_folder(v) for v in base}
    for i, v in enumerate(variants):
        slug = v.slug
        if not slug:
            raise ValueError(
                f"{path}: ablate.variants[{i}] is named {v.name!r}, which makes no folder name "
                "(name it with letters or digits)"
            )
        if len(slug) > MAX_SLUG:
            raise ValueError(
                f"{path}: ablate.variants[{i}] ({v.name!r}) is too long a name for a folder "
                f"(over {MAX_SLUG} letters and digits)"
            )
        if slug in taken or slug == BASE:
            raise ValueError(
                f"{path}: two variants (or one and the base) are named {slug!r} as folders"
            )
        taken.add(slug)


def base_folder(v: Variant) -> str:
    """The name of a base run's folder in the study's out: one per seed."""
    return f"{BASE}-seed{v.cfg.train.seed}"


def config(
    data: dict[str, Any],
    overrides: list[str],
    where: str,
    notice: Callable[[str], None] | None = None,
) -> RunConfig:
    """The run config of the study's file with `overrides`; a version-1 file's notices go to
    `notice` (given once per study, not once per run)."""
    try:
        return RunConfig.from_dict(apply_overrides(data, overrides), notice)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def variant(data: dict[str, Any], v: object, seed: int, where: str) -> Variant:
    if not isinstance(v, dict) or not isinstance(v.get("name"), str) or not v["name"].strip():
        raise ValueError(f"{where}: a variant is a table with a name")
    overrides = v.get("set", [])
    if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        raise ValueError(f"{where} ({v['name']}): set must be a list of 'section.key=value'")
    if unknown := sorted(set(v) - {"name", "group", "set", "paper"}):
        raise ValueError(f"{where} ({v['name']}): unknown key {unknown[0]!r}")
    cfg = config(data, [f"train.seed={seed}", *overrides], f"{where} ({v['name']})")
    group, paper = str(v.get("group", "")), str(v.get("paper", ""))
    return Variant(v["name"], group, tuple(overrides), paper, cfg)


def run_folder(out: Path, name: str) -> OutputFolder:
    """The folder of one run of the study: new, empty, or one the study made and did not
    finish (trained again from the start); never a link, another's folder or one in use."""
    remedy = "rename the variant, or move that folder out of ablate.out"
    return OutputFolder(out / name, STUDY, "ablate.out", out, remedy, keep_owner=True)


def run_variant(v: Variant, out: Path, name: str, beam: int | None, log: Callable) -> dict:
    """Train `v` into its folder `out/name` (unless its result is there), score it, and return
    its result."""
    from aiayn.models import build_model, count_parameters
    from aiayn.run.config import read_run_config
    from aiayn.run.lock import RunLock
    from aiayn.run.paths import refuse_link
    from aiayn.tasks import train

    run_dir = out / name
    refuse_link(run_dir, "ablate.out")
    done = run_dir / RESULT
    if (saved := read_result(run_dir, v.name)) is not None:
        return saved
    start = time.perf_counter()
    train(v.cfg, run_dir, log=log, folder=run_folder(out, name))
    train_minutes = (time.perf_counter() - start) / 60
    with RunLock(run_dir, "ablate.out"):  # no other process changes the run while it is scored
        result = {
            "name": v.name,
            "group": v.group,
            "set": list(v.overrides),
            "paper": v.paper,
            "seed": v.cfg.train.seed,
            "train_minutes": round(train_minutes, 2),
            **validation(run_dir),
            **bleu(v.cfg, run_dir, beam),
        }
        result["minutes"] = round((time.perf_counter() - start) / 60, 2)  # trained and scored
        model = build_model(read_run_config(run_dir).model, "meta")
        result["parameters"] = count_parameters(model)
        atomic_write(done, lambda tmp: tmp.write_text(json.dumps(result), encoding="utf-8"))
    return result


def validation(run_dir: Path) -> dict[str, Any]:
    """The last validation's loss, the steps trained, and the validation curve."""
    from aiayn.train.metrics import read_metrics

    records, _ = read_metrics(run_dir / "metrics.jsonl")
    evals = [r for r in records if r.get("val_loss") is not None]
    if not evals:
        raise ValueError(f"{run_dir}: the run logged no validation; set train.eval_every")
    steps = max(r["step"] for r in records)
    curve = [[r["step"], r["val_loss"]] for r in evals]
    return {
        "val_nll": evals[-1]["val_loss"],
        "steps": steps,
        "curve": curve,
    }


def bleu(cfg: RunConfig, run_dir: Path, beam: int | None) -> dict[str, float | None]:
    """Validation and test BLEU of the trained run, decoded here with one beam for both (so the
    trainer need not decode the validation set at each evaluation: train.bleu can stay off)."""
    from aiayn.data.text import read_parallel
    from aiayn.evaluate import score_translations
    from aiayn.tasks.translation import load_translator

    translator = load_translator(run_dir, log=lambda _: None)
    scores: dict[str, float | None] = {}
    for split, src_path, tgt_path in (
        ("val_bleu", cfg.data.valid_src, cfg.data.valid_tgt),
        ("test_bleu", cfg.data.test_src, cfg.data.test_tgt),
    ):
        if not (src_path and tgt_path):
            scores[split] = None
            continue
        src, ref = read_parallel(src_path, tgt_path)
        scores[split] = score_translations(translator.translate(src, beam), ref)["bleu"]
    return scores


def run_study(study: Study, log: Callable[[str], None]) -> list[dict]:
    """Every run of the study (the base per seed, then each variant), in order."""
    runs = [(base_folder(v), v) for v in study.base]
    runs += [(v.slug, v) for v in study.variants]
    for slug, _ in runs:  # every folder checked before anything trains
        if not (study.out / slug / RESULT).exists():
            run_folder(study.out, slug).check()
    results = []
    for i, (slug, v) in enumerate(runs, start=1):
        log(f"[{i}/{len(runs)}] {v.name} ({', '.join(v.overrides) or 'the base config'})")
        results.append(run_variant(v, study.out, slug, study.beam, quiet_log(log)))
    return results


def quiet_log(log: Callable[[str], None]) -> Callable[[str], None]:
    """A trainer's log that passes on only its validation and end lines."""

    def passed(line: str) -> None:
        if "val_" in line or line.startswith("stopped"):
            log(f"    {line}")

    return passed
