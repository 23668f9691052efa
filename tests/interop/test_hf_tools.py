"""Exports used as a `transformers` user uses them, with the tools' high-level calls and
defaults and no framing by hand: the answers are aiayn's."""

import dataclasses
import json

import torch
import transformers

from aiayn.cli import main
from aiayn.tasks.classification import load_classifier
from aiayn.tasks.language_model import load_language_model
from aiayn.tasks.translation import load_translator
from tests.cli_helpers import copy_decoding_otherwise
from tests.interop.test_hf_export import export

QUIET = {"log": lambda _: None}


def test_text_classification_pipeline_labels_as_aiayn_classify(tmp_path_factory, capsys):
    _, _, _, run, hf = export("encoder_classifier", tmp_path_factory)
    texts = [line.split("\t")[0] for line in (run.parent / "dev.tsv").read_text().splitlines()]
    texts.append(" ".join(texts[:6]))  # longer than the run's 16 tokens: cut as aiayn cuts
    classifier = load_classifier(run, **QUIET)
    assert len(classifier.tok.encode([texts[-1]])[0]) > 16
    ours = [label for label, _ in classifier.predict(texts)]
    pipe = transformers.pipeline("text-classification", model=str(hf), device="cpu")
    # truncation=True: transformers' tokenizers never cut unless asked, whatever the model
    theirs = [r["label"] for r in pipe(texts, truncation=True)]
    assert theirs == ours
    config = json.loads((hf / "config.json").read_text())
    assert config["type_vocab_size"] >= 2  # optimum's ONNX export needs two segments


def test_text_generation_pipeline_continues_as_aiayn_generate(tmp_path_factory, capsys):
    _, _, _, run, hf = export("decoder_only", tmp_path_factory)
    model, tok = load_language_model(run, **QUIET)
    pipe = transformers.pipeline("text-generation", model=str(hf), device="cpu")
    max_len = model.cfg.max_len
    for prompt in ("to be", "that is question 3.\nto"):
        room = max_len - len(tok.encode_prompts([prompt])[0])
        # the pipeline's defaults stop at the model's context (generation_config max_length)
        # rather than fail past it; aiayn slides its context on, so compare up to there
        [theirs] = pipe(prompt, do_sample=False)
        capsys.readouterr()
        args = ["generate", "--model", str(run), "--temperature", "0", f"--prompt={prompt}"]
        assert main([*args, "--max-new-tokens", str(room)]) == 0
        ours = capsys.readouterr().out.split("\n\n")[0].rstrip("\n")
        assert theirs["generated_text"] == ours
        assert len(ours) > len(prompt)


def test_generate_on_the_tokenizers_output_translates_as_aiayn(tmp_path_factory):
    _, _, _, run, hf = export("encoder_decoder", tmp_path_factory)
    sources = (run.parent / "valid.src").read_text().splitlines()
    translator = load_translator(run, **QUIET)
    # aiayn's other limit, source length + max_extra, has no transformers equivalent
    translator.decode = dataclasses.replace(translator.decode, max_extra=1000)
    ours = translator.translate(sources)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
    model = transformers.MarianMTModel.from_pretrained(hf).eval()
    with torch.no_grad():
        out = model.generate(**tokenizer(sources, return_tensors="pt", padding=True))
    theirs = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert sum(a == b for a, b in zip(ours, theirs, strict=True)) == len(sources), [
        (a, b) for a, b in zip(ours, theirs, strict=True) if a != b
    ]


def test_generate_ranks_hypotheses_as_aiayn_with_the_tools_length_normalisation(
    tmp_path_factory,
):
    _, _, _, run, _ = export("encoder_decoder", tmp_path_factory)
    sources = (run.parent / "valid.src").read_text().splitlines()
    # a strong penalty, so that hypotheses of other lengths compete
    folder = tmp_path_factory.mktemp("length_norm") / "run"
    copy = copy_decoding_otherwise(run, folder, alpha=2.0, length_norm="length")
    assert main(["export-hf", str(copy), "--out", str(copy.parent / "hf")]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(copy.parent / "hf")
    model = transformers.MarianMTModel.from_pretrained(copy.parent / "hf").eval()
    with torch.no_grad():
        out = model.generate(**tokenizer(sources, return_tensors="pt", padding=True))
    theirs = tokenizer.batch_decode(out, skip_special_tokens=True)
    translator = load_translator(copy, **QUIET)
    translations = {}
    for norm in ("length", "gnmt"):
        translator.decode = dataclasses.replace(translator.decode, max_extra=1000, length_norm=norm)
        translations[norm] = translator.translate(sources)
    assert translations["length"] == theirs
    # GNMT's penalty ranks some of these otherwise: the case is one where the choice matters
    assert translations["gnmt"] != theirs
