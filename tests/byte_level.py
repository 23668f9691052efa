"""A byte-level BPE tokenizer as GPT-2, Llama 3 and Qwen2 have (every byte a token, merges
over them, one <|endoftext|>), built in the test with `tokenizers`: a character may be split
across tokens, as "é" (two bytes) or "😀" (four) are where no merge joins them."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aiayn.data.tokenizer import TextTokenizer

END = "<|endoftext|>"
CORPUS = ["the cat sat on the mat", "a dog and a cat", "café au lait"] * 10


def byte_level_tokenizer(corpus: list[str] = CORPUS, vocab_size: int = 300) -> TextTokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    return TextTokenizer(tok)
