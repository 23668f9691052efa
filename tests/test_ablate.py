import json
import tomllib
from pathlib import Path

import pytest
import tomli_w

from aiayn.ablate.study import load_study
from aiayn.cli import main
from aiayn.run.lock import OWNER, RunLock
from tests.cli_helpers import write_config


def write_study(folder: Path, variants: list[dict], **ablate) -> Path:
    config = write_config(folder, max_steps=20, eval_every=10)
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["data"]["test_src"] = data["data"]["valid_src"]
    data["data"]["test_tgt"] = data["data"]["valid_tgt"]
    data["ablate"] = {
        "seeds": [1, 2],
        "out": str(folder / "runs"),
        "report": str(folder / "report" / "ablations"),
        "beam": 1,
        "variants": variants,
        **ablate,
    }
    path = folder / "study.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


VARIANTS = [
    {"name": "no positions", "group": "E", "set": ["model.positional=none"], "paper": ""},
    {"name": "1 head", "group": "A", "set": ["model.n_heads=1"], "paper": "24.9 BLEU"},
]


def test_a_study_trains_every_variant_and_writes_the_table_and_picture(tmp_path, capsys):
    study = write_study(tmp_path, VARIANTS)
    assert main(["ablate", str(study)]) == 0
    md = (tmp_path / "report" / "ablations.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "ablations.png").stat().st_size > 10_000
    rows = [line for line in md.splitlines() if line.startswith("| ")][2:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| base (seed 1)", "| base (seed 2)", "| no positions", "| 1 head"
    ]  # fmt: skip
    assert "`model.positional=none`" in md and "24.9 BLEU" in md
    results = [json.loads((tmp_path / "runs" / d / "result.json").read_text())
               for d in ("base-seed1", "base-seed2", "no-positions", "1-head")]  # fmt: skip
    assert [r["seed"] for r in results] == [1, 2, 1, 1]
    assert all(r["steps"] == 20 and r["test_bleu"] is not None for r in results)
    assert all(r["val_bleu"] is not None and r["minutes"] >= r["train_minutes"] for r in results)
    assert results[0]["parameters"] == results[2]["parameters"]  # sinusoids have no weights
    assert md.count("\n- ") == 2  # a finding per variant
    # a second call trains nothing: every result is there
    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("result.json")}
    capsys.readouterr()
    assert main(["ablate", str(study)]) == 0
    assert before == {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("result.json")}


@pytest.mark.parametrize(
    ("bleu", "says"),
    [
        (10.0, "costs 10.00 BLEU, more than 3x"),  # 10 > 3 x 2
        (15.0, "costs 5.00 BLEU, outside the base's seeds"),  # 2 < 5 <= 6
        (21.5, "+1.50 BLEU, inside the base's seed-to-seed spread"),
    ],
)
def test_a_finding_claims_no_more_than_the_spread_allows(bleu, says):
    from aiayn.ablate.report import base_stats, finding

    mean, spread = base_stats([{"test_bleu": 19.0}, {"test_bleu": 21.0}])
    assert (mean, spread) == (20.0, 2.0)
    assert says in finding({"name": "v", "test_bleu": bleu}, mean, spread)


@pytest.mark.parametrize(
    ("variants", "ablate", "message"),
    [
        ([{"name": "x", "set": ["model.norm=none"]}], {}, "variants[0] (x): model.norm='none'"),
        ([{"name": "x", "set": ["model.n_heads=3"]}], {}, "variants[0] (x): model.d_model=32"),
        ([{"name": "x"}, {"name": "X"}], {}, "two variants (or one and the base) are named 'x'"),
        ([{"name": "base"}], {}, "named 'base'"),
        ([{"name": "???"}], {}, "variants[0] is named '???', which makes no folder name"),
        ([{"name": "Base seed1"}], {}, "named 'base-seed1' as folders"),
        ([{"name": "x" * 101}], {}, "too long a name for a folder"),
        ([], {"seeds": [1, 1]}, "repeats a seed"),
        ([{"name": "x", "sett": []}], {}, "unknown key 'sett'"),
        ([], {"seeds": []}, "ablate.seeds=[] must be a non-empty list"),
        ([], {"beam": 0}, "ablate.beam=0 must be an integer in [1, 64]"),
        # 10**30 was accepted, trained the base run, then failed with a traceback scoring it
        ([], {"beam": 10**30}, f"ablate.beam={10**30} must be an integer in [1, 64]"),
        ([], {"steps": 3}, "[ablate] has unknown key 'steps'"),
    ],
)
def test_a_bad_study_is_refused_before_anything_trains(tmp_path, variants, ablate, message):
    study = write_study(tmp_path, variants, **ablate)
    with pytest.raises(ValueError) as e:
        load_study(study)
    assert message in str(e.value)
    assert not (tmp_path / "runs").exists()


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("aiayn ablate: error:"), err
    return err[-1]


def test_a_study_never_touches_a_folder_it_did_not_make(tmp_path, capsys):
    study = write_study(tmp_path, [{"name": "Documents"}])
    documents = tmp_path / "runs" / "documents"
    documents.mkdir(parents=True)
    (documents / "thesis.txt").write_text("years of work")
    assert main(["ablate", str(study)]) == 2
    line = error_line(capsys)
    assert f"{documents} already holds files (thesis.txt)" in line and "rename the variant" in line
    assert (documents / "thesis.txt").read_text() == "years of work"
    assert list((tmp_path / "runs").iterdir()) == [documents]  # refused before any training


def test_a_study_leaves_a_run_in_use_alone(tmp_path, capsys):
    import os

    study = write_study(tmp_path, [], seeds=[1])
    run = tmp_path / "runs" / "base-seed1"
    run.mkdir(parents=True)
    (run / OWNER).write_text("ablate\n")  # the study's own, cut short: yet in use
    (run / "metrics.jsonl").write_text("")
    with RunLock(run):
        assert main(["ablate", str(study)]) == 2
        assert f"in use by another aiayn process (pid {os.getpid()})" in error_line(capsys)
    assert sorted(p.name for p in run.iterdir()) == [OWNER, "metrics.jsonl"]


def test_an_interrupted_study_trains_its_unfinished_run_again(tmp_path):
    study = write_study(tmp_path, [], seeds=[1])
    run = tmp_path / "runs" / "base-seed1"
    run.mkdir(parents=True)
    (run / OWNER).write_text("ablate\n")  # a study made it, then was killed
    (run / "trainer_state.pt").write_bytes(b"cut short")
    assert main(["ablate", str(study)]) == 0
    assert json.loads((run / "result.json").read_text())["steps"] == 20
    assert (run / "trainer_state.pt").read_bytes() != b"cut short"
