"""A word tagger fine-tuned from an imported BERT (`train.init`): its body is the checkpoint's
encoder exactly, its token-classification head is new, and it trains and tags."""

import tomllib
from pathlib import Path

import tomli_w
import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from aiayn.cli import main
from aiayn.config import RunConfig
from aiayn.runtime.attention import use_attention
from aiayn.tasks.tagging import TaggingTask
from aiayn.train.finetune import base_weights, init_from, start_from
from tests.tasks.test_tagging import WORDS, corpus, tagger_config

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def imported_bert(folder: Path) -> Path:
    """A random BertModel with a word-piece tokenizer over the tagging corpus, imported."""
    vocab = [*SPECIALS, *dict.fromkeys(WORDS), "##s"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(SPECIALS)
    torch.manual_seed(3)
    cfg = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        pad_token_id=0,
    )
    hf = folder / "hf"
    transformers.BertModel(cfg).eval().save_pretrained(hf)
    tok.save(str(hf / "tokenizer.json"))
    assert main(["import-hf", str(hf), "--out", str(folder / "base")]) == 0
    return hf


def fine_tuning_config(folder: Path) -> Path:
    """The tagging test's config less what the imported run decides: shape and tokenizer."""
    config = tomllib.loads(tagger_config(folder, lr=1e-3, schedule="cosine").read_text())
    config["model"] = {"arch": "encoder_tagger", "dropout": 0.0}
    del config["data"]["vocab_size"]
    path = folder / "finetune.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def test_a_tagger_fine_tuned_from_an_imported_bert(tmp_path, capsys) -> None:
    hf = imported_bert(tmp_path)
    base = tmp_path / "base"
    config = fine_tuning_config(tmp_path)
    cfg = start_from(RunConfig.load(config, [f"train.init='{base}'"]))
    task = TaggingTask(cfg, tmp_path / "ft", resume=False, log=lambda _: None)
    assert init_from(task.model, task.cfg, base_weights(cfg), lambda _: None) == [
        "classifier.weight",
        "classifier.bias",
    ]
    tokens = torch.tensor([[2, 5, 6, 7, 3]])  # [CLS] the cat sat [SEP]
    use_attention(task.model, "math")
    with torch.no_grad():
        ours, _ = task.model.eval().hidden_states(tokens)
        theirs = transformers.BertModel.from_pretrained(hf).eval()(tokens).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    run = tmp_path / "run"
    assert main(["train", str(config), "--init", str(base), "--out", str(run)]) == 0
    assert "new (initialised here): classifier.weight, classifier.bias" in capsys.readouterr().err
    sentence = " ".join(corpus(1, seed=9)[0])
    (tmp_path / "in.txt").write_text(sentence + "\n", encoding="utf-8")
    assert main(["tag", "--model", str(run), "--input", str(tmp_path / "in.txt")]) == 0
    tagged = capsys.readouterr().out.split()
    assert [t.rsplit("/", 1)[0] for t in tagged] == sentence.split()
