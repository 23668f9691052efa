"""A byte-level BPE tokenizer as GPT-2, Llama 3 and Qwen2 have (every byte a token, merges
over them, one <|endoftext|>), built in the test with `tokenizers`: a character may be split
across tokens, as "é" (two bytes) or "😀" (four) are where no merge joins them."""

import functools
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aiayn.config import RunConfig
from aiayn.data.tokenizer import TextTokenizer
from aiayn.models import ModelConfig
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.run.config import save_config
from aiayn.run.files import CONFIG, MODEL, TOKENIZER
from aiayn.run.weights import save_weights

END = "<|endoftext|>"
SPLIT = "café 😀"  # "é" is two bytes and "😀" four: by `rigged_lm`, each a token of its own
CORPUS = ("the cat sat on the mat", "a dog and a cat", "café au lait")


@functools.cache  # the same for every test (a TextTokenizer is never changed)
def byte_level_tokenizer(corpus: tuple[str, ...] = CORPUS, vocab_size: int = 300) -> TextTokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 10, trainer)
    return TextTokenizer(tok)


def byte_ids(tok: TextTokenizer, text: str) -> list[int]:
    """The ids of `text`'s UTF-8 bytes, one token each (GPT-2's printable stand-in for each
    byte is its token), as a model may choose them: no merge joins a split character."""
    table = bytes_to_unicode()
    return [tok.tok.token_to_id(table[b]) for b in text.encode("utf-8")]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of each byte to the printable character that stands for it."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    kept += range(ord("®"), ord("ÿ") + 1)
    extra = iter(range(256, 512))
    return {b: chr(b if b in kept else next(extra)) for b in range(256)}


def rigged_lm(tok: TextTokenizer, prompt: str, text: str) -> DecoderOnlyLM:
    """A model whose greedy continuation of `prompt` is `text`, a byte per token, then the
    end of sequence: its layers add nothing (no positions either), so its output depends on
    the last token alone, and its output layer maps each token to the next one's row."""
    torch.manual_seed(0)
    cfg = ModelConfig(arch="decoder_only", vocab_size=tok.vocab_size, d_model=64, n_heads=2,
                      d_ff=16, n_layers=1, positional="none", tie_output=False,
                      norm_first=True, dropout=0.0, max_len=64, pad_id=tok.pad_id)  # fmt: skip
    model = DecoderOnlyLM(cfg).eval()
    chain = [tok.encode_prompts([prompt])[0][-1], *byte_ids(tok, text), tok.eos_id]
    assert len(set(chain)) == len(chain), "each token must have one successor"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".out." in name or ".w_out." in name:
                p.zero_()
        state = model.transformer(model.embed(torch.tensor([chain])))[0]  # (len, d_model)
        model.lm_head.weight.zero_()
        for h, successor in zip(state, chain[1:], strict=False):
            model.lm_head.weight[successor] = 10 * h / h.norm()
    return model


def rigged_run(folder: Path, tok: TextTokenizer, prompt: str, text: str) -> Path:
    """A run directory holding `rigged_lm`, for the CLI and the server."""
    model = rigged_lm(tok, prompt, text)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(RunConfig(model=model.cfg), folder / CONFIG)
    save_weights(model, folder / MODEL)
    tok.save(folder / TOKENIZER)
    return folder
