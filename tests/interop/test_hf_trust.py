"""Hugging Face directories as untrusted input: links, files that are not what they say, and
config values that aiayn cannot represent, each refused by name in one line."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from aiayn.cli import main
from aiayn.interop.hf import from_pretrained
from aiayn.tasks.classification import load_classifier
from tests.interop.conftest import PAD, VOCAB, char_tokenizer_json, save, word_tokenizer_json


def copy(folder: Path, tmp_path: Path, **config) -> Path:
    """A copy of a model directory, with `config` keys changed (None: removed)."""
    out = Path(shutil.copytree(folder, tmp_path / "src"))
    data = json.loads((out / "config.json").read_text())
    for key, value in config.items():
        data.pop(key) if value is None else data.__setitem__(key, value)
    (out / "config.json").write_text(json.dumps(data))
    return out


def import_error(src: Path, tmp_path: Path, capsys, *extra: str) -> str:
    out = tmp_path / "run"
    assert main(["import-hf", str(src), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aiayn import-hf: error:"), err
    assert not out.exists()  # nothing half-written
    return err[0]


def test_a_tokenizer_linked_out_of_the_directory_is_not_copied(gpt2, tmp_path, capsys):
    src = copy(gpt2[1], tmp_path)
    private = tmp_path / "private.json"
    char_tokenizer_json(private)
    (src / "tokenizer.json").unlink(missing_ok=True)
    (src / "tokenizer.json").symlink_to(private)
    assert "a link out of its directory" in import_error(src, tmp_path, capsys)


def test_a_tokenizer_file_that_is_no_tokenizer_is_refused(gpt2, tmp_path, capsys):
    src = copy(gpt2[1], tmp_path)
    (src / "tokenizer.json").write_text('{"ssh_key": "..."}')
    assert "not a readable tokenizer file" in import_error(src, tmp_path, capsys)


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(gpt2, tmp_path, capsys):
    src = copy(gpt2[1], tmp_path, vocab_size=50)
    save_file(
        {
            k: v[:50] if v.shape[0] == VOCAB else v
            for k, v in load_file(str(src / "model.safetensors")).items()
        },
        str(src / "model.safetensors"),
    )
    char_tokenizer_json(src / "tokenizer.json")
    assert "the tokenizer has 96 tokens; the model's vocabulary holds 50" in import_error(
        src, tmp_path, capsys
    )


def test_a_sentencepiece_marian_directory_needs_a_tokenizer(marian, tmp_path, capsys):
    src = copy(marian[1], tmp_path)
    (src / "tokenizer.json").unlink(missing_ok=True)
    (src / "source.spm").write_bytes(b"\x00spm")
    line = import_error(src, tmp_path, capsys)
    assert "no tokenizer.json" in line and "source.spm" in line and "--tokenizer" in line
    given = tmp_path / "tok.json"
    word_tokenizer_json(given, pad=PAD, eos=0)
    assert (
        main(["import-hf", str(src), "--out", str(tmp_path / "run"), "--tokenizer", str(given)])
        == 0
    )


@pytest.mark.parametrize(
    "family, change, message",
    [
        (
            "bert",
            {"position_embedding_type": "relative_key"},
            "position_embedding_type='relative_key' is not supported",
        ),
        (
            "gpt2",
            {"scale_attn_by_inverse_layer_idx": True},
            "scale_attn_by_inverse_layer_idx=True is not supported",
        ),
        ("gpt2", {"scale_attn_weights": False}, "scale_attn_weights=False is not supported"),
        ("marian", {"bad_words_ids": [[5]]}, "bad_words_ids other than [[95]]"),
        ("marian", {"normalize_before": True}, "normalize_before=True is not supported"),
        ("gpt2", {"rotary_dim": 8}, "key 'rotary_dim' is unknown to aiayn's gpt2 importer"),
        ("gpt2", {"n_embd": None}, "key 'n_embd' is missing"),
        ("gpt2", {"n_layer": "2"}, "n_layer='2' is not int"),
        ("bert", {"layer_norm_eps": float("inf")}, "layer_norm_eps=inf is not float"),
    ],
)
def test_config_values_aiayn_cannot_represent_are_refused_by_name(
    request, tmp_path, capsys, family, change, message
):
    hf, folder = request.getfixturevalue(family)
    if family == "bert":
        save(hf, folder)
        capsys.readouterr()  # transformers' progress bars
    assert message in import_error(copy(folder, tmp_path, **change), tmp_path, capsys)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "not a JSON object"),
        ('{"model_type": "gpt2", ' * 1, "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
)
def test_a_config_json_that_is_no_config_is_one_line(gpt2, tmp_path, capsys, content, message):
    src = copy(gpt2[1], tmp_path)
    (src / "config.json").write_text(content)
    assert message in import_error(src, tmp_path, capsys)


def test_truncated_or_non_float_or_nan_weights_are_refused(gpt2, tmp_path, capsys):
    src = copy(gpt2[1], tmp_path)
    char_tokenizer_json(src / "tokenizer.json")
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "not a readable safetensors file" in import_error(src, tmp_path, capsys)
    tensors = load_file(str(gpt2[1] / "model.safetensors"))
    for bad, message in (
        (tensors["transformer.wte.weight"].long(), "is torch.int64"),
        (torch.full_like(tensors["transformer.wte.weight"], float("nan")), "non-finite values"),
    ):
        save_file({**tensors, "transformer.wte.weight": bad}, str(src / "model.safetensors"))
        assert message in import_error(src, tmp_path, capsys)


def test_an_imported_bert_classifier_reads_cls_text_sep_up_to_its_positions(bert, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    _, folder = bert
    torch.manual_seed(5)
    hf = transformers.BertForSequenceClassification(bert[0].config).eval()
    hf.config.pad_token_id = 0
    save(hf, folder)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *(f"w{i}" for i in range(4, VOCAB))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(words[:4])
    tok.save(str(folder / "tokenizer.json"))
    out = tmp_path / "run"
    assert main(["import-hf", str(folder), "--out", str(out)]) == 0
    classifier = load_classifier(out, log=lambda _: None)
    long_text = " ".join(f"w{4 + i % 80}" for i in range(100))  # longer than 40 positions
    ours = classifier.probabilities(["w5 w9 w17", long_text])
    rows = [[2, 5, 9, 17, 3], [2, *(4 + i % 80 for i in range(38)), 3]]
    with torch.no_grad():
        theirs = [hf(torch.tensor([r])).logits.softmax(-1)[0] for r in rows]
    torch.testing.assert_close(ours, torch.stack(theirs), atol=1e-5, rtol=0)


def test_the_hf_loader_refuses_what_the_cli_refuses(gpt2, tmp_path):
    with pytest.raises(ValueError, match="scale_attn_weights=False"):
        from_pretrained(copy(gpt2[1], tmp_path, scale_attn_weights=False))
