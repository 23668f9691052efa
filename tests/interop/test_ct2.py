"""`aiayn export-ct2` and `translate --engine ct2`: CTranslate2 decodes a tiny trained run
to aiayn's own greedy output, pre- and post-norm, shared and separate vocabularies."""

import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w

from aiayn.cli import main
from aiayn.interop.ct2 import check_convertible
from aiayn.models import ModelConfig
from tests.cli_helpers import copy_decoding_otherwise, write_config

VARIANTS = {
    "pre-norm, shared": {"model": {"norm_first": True}},
    "post-norm, learned positions, unscaled embeddings, separate vocabularies": {
        "model": {
            "positional": "learned",
            "scale_embeddings": False,
            "share_embeddings": False,
            "activation": "gelu",
        },
        "data": {"joint_vocab": False},
    },
    "Marian's positions, RMSNorm, output bias": {
        "model": {
            "positional": "sinusoidal_halves",
            "output_bias": True,
            "activation": "silu",
            "norm": "rmsnorm",
            "norm_first": True,
        },
    },
}


RUNS: dict[str, Path] = {}


def trained(variant: str, tmp_path_factory) -> Path:
    """The run of `variant`, trained once for the module."""
    if variant not in RUNS:
        RUNS[variant] = tiny_run(tmp_path_factory.mktemp("ct2"), VARIANTS[variant])
    return RUNS[variant]


def tiny_run(folder: Path, change: dict, steps: int = 150) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder, max_steps=steps, eval_every=steps)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for table, values in change.items():
        data[table] |= values
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    assert main(["train", str(path), "--out", str(folder / "run")]) == 0
    return folder / "run"


def translate(run: Path, inputs: Path, capsys, *engine: str, beam: int = 1) -> list[str]:
    capsys.readouterr()
    args = ["translate", "--model", str(run), "--beam", str(beam), "--input", str(inputs), *engine]
    assert main(args) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ct2_translates_exactly_as_aiayns_greedy_search(variant, tmp_path_factory, capsys):
    run = trained(variant, tmp_path_factory)
    if not (run / "ct2").exists():
        assert main(["export-ct2", str(run)]) == 0  # into RUN/ct2, which --engine ct2 reads
    inputs = run.parent / "valid.src"
    ours = translate(run, inputs, capsys)
    theirs = translate(run, inputs, capsys, "--engine", "ct2")
    assert len(ours) == 20 and sum(len(t.split()) for t in ours) > 40
    assert theirs == ours


def test_ct2_beam_search_is_aiayns_with_length_normalisation(tmp_path, tmp_path_factory, capsys):
    """Beam 4 at alpha 1: CTranslate2 ranks by score / length ** alpha, as aiayn's
    `decode.length_norm = "length"` does; every sentence under its own length limit."""
    source = trained("pre-norm, shared", tmp_path_factory)
    run = copy_decoding_otherwise(source, tmp_path / "run", length_norm="length", alpha=1.0)
    shutil.rmtree(run / "ct2", ignore_errors=True)
    assert main(["export-ct2", str(run)]) == 0
    inputs = source.parent / "valid.src"
    ours = translate(run, inputs, capsys, beam=4)
    assert ours != translate(run, inputs, capsys, beam=1)  # the beam searched
    assert translate(run, inputs, capsys, "--engine", "ct2", beam=4) == ours
    # and a CTranslate2 user's own calls, its length_penalty the run's alpha
    assert ctranslate2_alone(run / "ct2", inputs, beam_size=4, length_penalty=1.0) == ours


def test_int8_exports_and_translates(tmp_path, tmp_path_factory, capsys):
    run = trained("pre-norm, shared", tmp_path_factory)
    out = tmp_path / "int8"
    assert main(["export-ct2", str(run), "--out", str(out), "--quantization", "int8"]) == 0
    lines = translate(run, run.parent / "valid.src", capsys, "--engine", "ct2", "--ct2", str(out))
    assert len(lines) == 20 and any(lines)


def test_a_ct2_model_of_another_run_is_refused(tmp_path, capsys):
    one = tiny_run(tmp_path / "one", {}, steps=2)
    two = tiny_run(tmp_path / "two", {"data": {"vocab_size": 60}}, steps=2)
    assert main(["export-ct2", str(one)]) == 0
    capsys.readouterr()
    args = ["translate", "--model", str(two), "--engine", "ct2", "--ct2", str(one / "ct2")]
    assert main([*args, "--input", str(tmp_path / "one" / "valid.src")]) == 2
    err = capsys.readouterr().err
    assert "vocabulary.json: not the source vocabulary" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"positional": "rope"}, "model.positional='rope'"),
        ({"positional": "alibi"}, "model.positional='alibi'"),
        ({"n_kv_heads": 2}, "model.n_kv_heads=2"),
        ({"activation": "swiglu"}, "model.activation='swiglu'"),
        ({"scale_scores": False}, "model.scale_scores=False"),
        ({"arch": "decoder_only"}, "model.arch='decoder_only'"),
    ],
)
def test_what_ctranslate2_cannot_hold_is_refused_by_name(fields, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        check_convertible(ModelConfig(**fields))


def test_quantizing_the_spec_leaves_the_model_as_it_was(tmp_path_factory):
    import torch

    from aiayn.interop.ct2 import build_spec
    from aiayn.tasks.translation import load_translator

    translator = load_translator(trained("pre-norm, shared", tmp_path_factory), log=print)
    before = {k: v.clone() for k, v in translator.model.state_dict().items()}
    build_spec(translator).optimize(quantization="int8")  # in place, on the spec's arrays
    after = translator.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_vocabulary_linked_out_of_the_ct2_folder_is_refused(tmp_path, capsys):
    run = tiny_run(tmp_path / "run", {}, steps=2)
    assert main(["export-ct2", str(run)]) == 0
    vocab = next((run / "ct2").glob("*_vocabulary.json"))
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(vocab.read_bytes())
    vocab.unlink()
    vocab.symlink_to(outside)
    capsys.readouterr()
    args = ["translate", "--model", str(run), "--engine", "ct2"]
    assert main([*args, "--input", str(tmp_path / "run" / "valid.src")]) == 2
    assert "a link out of its directory" in capsys.readouterr().err


def test_a_ct2_folder_that_links_out_of_the_run_is_not_written_through(tiny_run, tmp_path, capsys):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (run / "ct2").symlink_to(outside)
    assert main(["export-ct2", str(run)]) == 2
    assert f"{run / 'ct2'} is a link" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("variant", list(VARIANTS)[:2])
def test_the_folders_tokenizer_and_ctranslate2_alone_translate_as_aiayn(
    variant, tmp_path_factory, capsys
):
    """A CTranslate2 user's greedy calls give aiayn's greedy translations."""
    run = trained(variant, tmp_path_factory)
    if not (run / "ct2").exists():
        assert main(["export-ct2", str(run)]) == 0
    inputs = run.parent / "valid.src"
    ours = translate(run, inputs, capsys)
    target_file = run / "ct2" / "target_tokenizer.json"
    assert target_file.exists() == (variant != "pre-norm, shared")
    assert ctranslate2_alone(run / "ct2", inputs, beam_size=1) == ours


def ctranslate2_alone(folder: Path, inputs: Path, **options: object) -> list[str]:
    """`inputs` translated by a CTranslate2 user's calls on export-ct2's `folder`, with no
    aiayn: the folder's tokenizer.json gives the tokens (CTranslate2 appends </s>,
    add_source_eos), translate_batch with `options`, the target tokenizer
    (target_tokenizer.json where the vocabularies are separate) decodes."""
    import ctranslate2
    from tokenizers import Tokenizer

    src = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tgt_file = folder / "target_tokenizer.json"
    tgt = Tokenizer.from_file(str(tgt_file if tgt_file.exists() else folder / "tokenizer.json"))
    engine = ctranslate2.Translator(str(folder), device="cpu")
    tokens = [e.tokens for e in src.encode_batch(inputs.read_text().splitlines())]
    # the folder holds no decoding options: aiayn's limit, the source's tokens and </s> plus
    # decode.max_extra (5) within max_len (24), is one sentence's, so one call a sentence
    results = [
        engine.translate_batch(
            [t],
            max_decoding_length=min(len(t) + 1 + 5, 24),
            min_decoding_length=0,  # aiayn may end at once (CTranslate2's default: 1 token)
            suppress_sequences=[["<s>"], ["<pad>"]],
            **options,
        )[0]
        for t in tokens
    ]
    return tgt.decode_batch([[tgt.token_to_id(t) for t in r.hypotheses[0]] for r in results])


def test_ct2_transformers_converter_on_an_hf_export_translates_as_aiayn(
    tmp_path, tmp_path_factory, capsys
):
    """CTranslate2's own converter (what `ct2-transformers-converter --model HF --output_dir
    OUT` runs) on `export-hf`'s Pegasus folder of a pre-norm run, fed the exported tokenizer's
    own tokens (its </s> included): aiayn's greedy translations."""
    import ctranslate2
    import transformers
    from ctranslate2.converters import TransformersConverter

    from aiayn.run.config import read_run_config

    run = trained("pre-norm, shared", tmp_path_factory)
    hf, out = tmp_path / "hf", tmp_path / "ct2"
    assert main(["export-hf", str(run), "--out", str(hf)]) == 0
    TransformersConverter(str(hf)).convert(str(out))
    inputs = run.parent / "valid.src"
    ours = translate(run, inputs, capsys)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
    engine = ctranslate2.Translator(str(out), device="cpu")
    cfg = read_run_config(run)
    tokens = [tokenizer(s).tokens() for s in inputs.read_text().splitlines()]
    assert all(t[-1] == "</s>" for t in tokens)
    # aiayn's limit is each sentence's (its tokens plus decode.max_extra, within max_len), and
    # its searches never choose <s> or <pad>
    results = [
        engine.translate_batch(
            [t],
            beam_size=1,
            max_decoding_length=min(len(t) + cfg.decode.max_extra, cfg.model.max_len),
            min_decoding_length=0,  # aiayn may end at once (CTranslate2's default: 1 token)
            suppress_sequences=[["<s>"], ["<pad>"]],
        )[0]
        for t in tokens
    ]
    ids = [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]
    assert tokenizer.batch_decode(ids, skip_special_tokens=True) == ours
