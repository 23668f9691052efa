"""Small random-initialised Hugging Face models and tokenizers, saved as model directories."""

from pathlib import Path

import pytest
import torch
import transformers

VOCAB, PAD = 96, 95


def save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=40,
    )
    return transformers.BertModel(cfg).eval(), tmp_path_factory.mktemp("bert")


def tiny_gpt2(**changes: float) -> transformers.GPT2LMHeadModel:
    """A random 2-layer GPT-2 over VOCAB ids (seed as the caller set it), its config's
    defaults changed by `changes`."""
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=48,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=None,  # the default, 50256, is outside this tiny vocabulary
        eos_token_id=None,
        **changes,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    torch.manual_seed(1)
    model = tiny_gpt2()
    return model, save(model, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    torch.manual_seed(2)
    cfg = transformers.MarianConfig(
        vocab_size=VOCAB,
        d_model=48,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=96,
        decoder_ffn_dim=96,
        activation_function="swish",
        scale_embedding=True,
        max_position_embeddings=64,
        pad_token_id=PAD,
        decoder_start_token_id=PAD,
        eos_token_id=0,
        forced_eos_token_id=None,
    )
    model = transformers.MarianMTModel(cfg).eval()
    with torch.no_grad():  # a real checkpoint's bias is not zero; make the test see it
        model.final_logits_bias.normal_(std=0.5)
    return model, save(model, tmp_path_factory.mktemp("marian"))


def char_tokenizer_json(path: Path) -> None:
    """GPT-2-style specials (one <|endoftext|>) and the 95 printable ASCII characters."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, **{chr(c): c - 31 for c in range(32, 127)}}
    tok = Tokenizer(models.WordLevel(vocab, "<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))


def word_tokenizer_json(path: Path, pad: int, eos: int) -> list[str]:
    """A word-level Marian-style tokenizer: </s> and <pad> where the config puts them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = [f"w{i}" for i in range(VOCAB)]
    words[pad], words[eos], words[1] = "<pad>", "</s>", "<unk>"
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    tok.save(str(path))
    return words
