"""An export's tokenizer frames a text as the family registry declares: a family that closes
its texts (the tagger) ends each with </s>, another (the classifier) only with data.end_token."""

import dataclasses

import pytest

from aiayn import families
from aiayn.config import DataConfig, RunConfig
from aiayn.data.tokenizer import fit_tokenizer
from aiayn.interop.hf_framing import framed_tokenizer
from aiayn.models import ModelConfig

TOY = "toy_framing"


@pytest.mark.parametrize(
    ("closes_text", "end_token", "framed"),
    [(False, False, "<s> ▁a ▁b"), (False, True, "<s> ▁a ▁b </s>"), (True, False, "<s> ▁a ▁b </s>")],
)
def test_a_bert_exports_framing_follows_its_family_entry(closes_text, end_token, framed):
    # a classifier under another name, with no class of its own: only the field differs
    entry = families.family("encoder_classifier")
    families.register(dataclasses.replace(entry, name=TOY, closes_text=closes_text))
    try:
        tok = fit_tokenizer("word", ["a b", "a b"], vocab_size=10)  # words seen twice
        model = ModelConfig(arch=TOY, vocab_size=tok.vocab_size, n_classes=2)
        cfg = RunConfig(model=model, data=DataConfig(end_token=end_token))
        tokens = framed_tokenizer(tok, cfg, "bert").encode("a b").tokens
    finally:
        families.unregister(TOY)
    assert " ".join(tokens) == framed
