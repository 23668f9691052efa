"""Random and damaged CTranslate2 folders, ablation results and study files (issue 39): each
ends in a result or a ValueError (one line, exit 2, in the CLI); never another exception."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_fuzz import JSONISH, NASTY, written

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


# -- CTranslate2 folders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2(tiny_run, tmp_path_factory):
    """An exported run and its translator, which each damaged folder is loaded against."""
    pytest.importorskip("ctranslate2")
    from aiayn.cli import main
    from aiayn.tasks.translation import load_translator

    run = Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("ct2") / "run"))
    assert main(["export-ct2", str(run)]) == 0
    return run, load_translator(run, log=lambda _: None)


def damaged(ct2, change) -> Path:
    folder = Path(tempfile.mkdtemp()) / "ct2"
    shutil.copytree(ct2[0] / "ct2", folder)
    change(folder)
    return folder


def load_or_refuse(ct2, folder: Path) -> None:
    from aiayn.interop.ct2 import ct2_translator

    try:
        translator = ct2_translator(ct2[1], ct2[0], folder)
    except ValueError as e:
        assert str(e)
        return
    assert len(translator.translate(["a dog runs"], 1)) == 1
    shutil.rmtree(folder.parent)


CT2_KEYS = [
    "add_source_bos", "add_source_eos", "bos_token", "decoder_start_token", "eos_token",
    "layer_norm_epsilon", "multi_query_attention", "unk_token",
]  # fmt: skip


@FUZZ
@given(st.dictionaries(st.sampled_from(CT2_KEYS) | st.text(max_size=6), JSONISH, max_size=6))
def test_ct2_configs_of_any_content_load_or_refuse(ct2, changes: dict) -> None:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **changes}))

    load_or_refuse(ct2, damaged(ct2, change))


@FUZZ
@given(NASTY, st.sampled_from(["config.json", "shared_vocabulary.json"]))
def test_ct2_json_files_of_any_bytes_load_or_refuse(ct2, data: bytes, name: str) -> None:
    load_or_refuse(ct2, damaged(ct2, lambda folder: (folder / name).write_bytes(data)))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), max_size=12), st.data())
def test_damaged_ct2_model_files_load_or_refuse(ct2, flips: list, data) -> None:
    def change(folder: Path) -> None:
        model = bytearray((folder / "model.bin").read_bytes())
        for where, value in flips:
            model[where % len(model)] = value
        cut = data.draw(st.none() | st.integers(0, len(model)))
        (folder / "model.bin").write_bytes(bytes(model[:cut]))

    load_or_refuse(ct2, damaged(ct2, change))


def test_a_damaged_activation_is_refused_at_load(ct2) -> None:
    """Found by the test above: CTranslate2 reads a spec's activation only when it first
    decodes, so a damaged one loaded and failed the first translation instead."""

    def change(folder: Path) -> None:
        model = bytearray((folder / "model.bin").read_bytes())
        name = model.index(b"activation\x00") + len(b"activation\x00")
        assert model[name] == 0  # a scalar: rank 0, then its dtype, byte count and value
        model[name + 6] = 7  # no activation's number
        (folder / "model.bin").write_bytes(bytes(model))

    from aiayn.interop.ct2 import ct2_translator

    with pytest.raises(ValueError, match=r"could not load the model \(invalid activation type"):
        ct2_translator(ct2[1], ct2[0], damaged(ct2, change))


# -- ablation results and studies ------------------------------------------------------------


def result_fields() -> list[str]:
    from aiayn.ablate.result import FIELDS

    return sorted(FIELDS)


@FUZZ
@given(st.dictionaries(st.sampled_from(result_fields()) | st.text(max_size=6), JSONISH))
def test_ablation_results_of_any_content_are_checked(fields: dict) -> None:
    from aiayn.ablate.result import read_result

    path = written(json.dumps({"name": "base", **fields}).encode(), "result.json")
    try:
        result = read_result(path.parent, "base")
    except ValueError as e:
        assert "result.json" in str(e)
        return
    from aiayn.ablate.report import finding

    assert isinstance(finding(result, 20.0, 1.0), str)


@FUZZ
@given(NASTY)
def test_ablation_result_bytes_load_or_refuse(data: bytes) -> None:
    from aiayn.ablate.result import read_result

    path = written(data, "result.json")
    with pytest.raises(ValueError, match=r"result\.json"):
        read_result(path.parent, "base")


ABLATE_KEYS = ["seeds", "out", "report", "beam", "variants"]
VARIANT = st.dictionaries(
    st.sampled_from(["name", "group", "set", "paper", "x"]),
    JSONISH | st.lists(st.sampled_from(["model.n_heads=1", "train.lr=x", "a"]), max_size=2),
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(ABLATE_KEYS),
        JSONISH | st.lists(VARIANT, max_size=3) | st.lists(st.integers(), max_size=3),
    )
)
def test_study_tables_of_any_content_load_or_refuse(tiny_run, table: dict) -> None:
    import tomllib

    from aiayn.ablate.study import load_study

    config = tomllib.loads((tiny_run / "config.toml").read_text())
    try:
        text = tomli_w.dumps({**config, "ablate": table})
    except (TypeError, ValueError):
        return  # no TOML holds it (a null, say)
    try:
        study = load_study(written(text.encode(), "study.toml"))
    except ValueError as e:
        assert "study.toml" in str(e)
        return
    assert study.base and all(v.slug for v in study.variants)


@FUZZ
@given(NASTY)
def test_study_file_bytes_load_or_refuse(data: bytes) -> None:
    from aiayn.ablate.study import load_study

    try:
        load_study(written(data, "study.toml"))
    except ValueError as e:
        assert str(e)
