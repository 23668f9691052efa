"""Random bytes and strings into every reader: each ends in a result or a ValueError (which
the CLI prints as one line, exit 2); never another exception, a hang or a traceback."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiayn.cli import main
from aiayn.config import RunConfig
from aiayn.configfile import parse_override
from aiayn.data.text import read_labelled, read_lines, read_parallel, read_text
from aiayn.data.tokenizer import TextTokenizer

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Bytes with the troublesome parts over-represented: NULs, newlines, invalid UTF-8, tabs.
NASTY = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"\x00", b"\n", b"\r\n", b"\t", b"\xff\xfe", b"\xc3", b"=", b"[", b"]"]),
        st.text(max_size=30).map(str.encode),
        st.just(b"x" * 5000),
    ),
    max_size=20,
).map(b"".join)


def written(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    (folder / name).write_bytes(data)
    return folder / name


@FUZZ
@given(NASTY)
def test_text_readers_return_text_or_a_value_error(data: bytes) -> None:
    for name in ("f.txt", "f.gz"):
        path = written(data, name)
        for read in (read_lines, read_text, read_labelled):
            try:
                read(path)
            except ValueError as e:
                assert str(path) in str(e)


@FUZZ
@given(NASTY, NASTY)
def test_parallel_files_of_any_content_or_length(src: bytes, tgt: bytes) -> None:
    try:
        a, b = read_parallel(written(src, "a.txt"), written(tgt, "b.txt"))
        assert len(a) == len(b)
    except ValueError:
        pass


@FUZZ
@given(NASTY)
def test_tokenizer_files_load_or_refuse(data: bytes) -> None:
    path = written(data, "tokenizer.json")
    with pytest.raises(ValueError, match="not a readable tokenizer file"):
        TextTokenizer.load(path)


@FUZZ
@given(NASTY)
def test_config_files_load_or_refuse(data: bytes) -> None:
    try:
        RunConfig.load(written(data, "c.toml"))
    except ValueError as e:
        assert str(e)  # names what is wrong; tested for wording in tests/models/test_config.py


@FUZZ
@given(st.text(max_size=60))
def test_overrides_parse_or_refuse(text: str) -> None:
    try:
        section, key, _ = parse_override(text)
    except ValueError as e:
        assert "section.key=value" in str(e)
        return
    try:
        RunConfig.load(written(b"", "empty.toml"), [text])
    except ValueError as e:
        assert section in str(e) or key in str(e) or "table" in str(e)


@settings(max_examples=25, deadline=None)
@given(NASTY)
def test_the_cli_answers_any_config_file_with_a_count_or_one_line(data: bytes) -> None:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["params", str(written(data, "c.toml"))])
    assert code in (0, 2)
    if code == 2:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aiayn params: error:")


# -- run-directory files and Hugging Face configs -------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(NASTY)
def test_recaser_labels_and_metrics_files_load_or_refuse(data: bytes) -> None:
    from aiayn.data.recase import Recaser
    from aiayn.tasks.classification import load_labels
    from aiayn.train.metrics import read_metrics

    for read in (
        lambda: Recaser.load(written(data, "recaser.json")),
        lambda: load_labels(written(data, "labels.txt").parent, 2),
        lambda: read_metrics(written(data, "metrics.jsonl")),
    ):
        try:
            read()
        except ValueError as e:
            assert str(e)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["words", "pairs", "capital_first", "capital_unseen", "x"]), JSONISH
    )
)
def test_recaser_fields_of_any_type_load_or_refuse(fields: dict) -> None:
    import json

    from aiayn.data.recase import Recaser

    try:
        recaser = Recaser.load(written(json.dumps(fields).encode(), "recaser.json"))
    except ValueError as e:
        assert "recaser.json" in str(e)
        return
    assert isinstance(recaser("a dog runs"), str)


STATE_FIELDS = ["step", "epoch", "batch", "elapsed", "best", "bad_evals", "bad_steps", "snapshots"]


@FUZZ
@given(st.dictionaries(st.sampled_from(STATE_FIELDS), JSONISH))
def test_trainer_states_of_any_content_are_checked(fields: dict) -> None:
    import torch

    from aiayn.train.state import check_state, new_state

    state = {
        **new_state(),
        "model": {},
        "optimizer": {},
        "scheduler": {},
        "rng_torch": [torch.get_rng_state()],
        "rng_cuda": [],
        **fields,
    }
    try:
        check_state(state, "trainer_state.pt")
    except ValueError as e:
        assert "trainer_state.pt" in str(e)
        return
    for name in state["snapshots"]:
        assert "/" not in name and name.startswith("step_")


def hf_keys() -> list[str]:
    from aiayn.interop.hf_config import TRANSLATIONS

    return sorted(
        {k for rules, _ in TRANSLATIONS.values() for k in rules.mapped | set(rules.fixed)}
    )


@FUZZ
@given(
    st.dictionaries(st.sampled_from(hf_keys()) | st.text(max_size=8), JSONISH | st.integers(1, 64)),
    st.sampled_from(["bert", "gpt2", "marian", "llama", "mistral", "qwen2"]),
)
def test_hf_configs_of_any_content_translate_or_refuse(fields: dict, kind: str) -> None:
    import json

    from aiayn.interop.hf_config import model_config, read_config

    path = written(json.dumps({**fields, "model_type": kind}).encode(), "config.json")
    try:
        model_config(read_config(path.parent))
    except ValueError as e:
        assert str(e)


@FUZZ
@given(NASTY)
def test_hf_config_bytes_load_or_refuse(data: bytes) -> None:
    from aiayn.interop.hf_config import read_config

    try:
        read_config(written(data, "config.json").parent)
    except ValueError as e:
        assert "config.json" in str(e)
