"""Tokenizers built with `tokenizers`: byte-pair encoding (Sennrich et al. 2016), words, characters.

BPE and words split text on whitespace (kept as a leading "▁", so decoding restores the text)
and punctuation. Ids 0-3 are always the special tokens <pad>, <s>, </s>, <unk>.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from aiayn.run.atomic import atomic_write_text, first_line
from aiayn.safeio import read_input_json, read_input_text

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]
# Where a tokenizer made elsewhere (BERT's, GPT-2's, Marian's, the Llama family's) names its
# special tokens otherwise. Marian has no <s>: its decoder starts from <pad>. Llama 2 and
# Mistral have no <pad> (their padding is never attended to, so <unk> stands in), Llama 3
# neither <pad> nor <unk>, Qwen2 only <|endoftext|>.
ALTERNATIVES = {
    PAD: ("[PAD]", "<|endoftext|>", UNK, "<|end_of_text|>"),
    BOS: ("[CLS]", "<|endoftext|>", "<|begin_of_text|>", PAD),
    EOS: ("[SEP]", "<|endoftext|>", "<|end_of_text|>"),
    UNK: ("[UNK]", "<|endoftext|>", "<|end_of_text|>"),
}
TOKENIZER_KINDS = ("bpe", "word", "char")
MAX_FILE_BYTES = 256 << 20  # the largest tokenizers published are tens of MB
MAX_END_IDS = 64  # a checkpoint's end ids: a handful (Llama 3 has 3)
IDS_SUFFIX = ".ids.json"  # beside tokenizer.json: the special ids a checkpoint gave by number


@dataclass(frozen=True)
class SpecialIds:
    """The special ids given by number (an imported checkpoint's): padding, the start of a
    sequence (a decoder's first input), every id that ends one (the first is written after a
    source), and the unknown word, which a tokenizer may lack."""

    pad: int
    bos: int
    ends: tuple[int, ...]
    unk: int | None = None

    def check(self, vocab_size: int, where: object) -> SpecialIds:
        ids = [self.pad, self.bos, *self.ends, *([] if self.unk is None else [self.unk])]
        if not 1 <= len(self.ends) <= MAX_END_IDS or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids
        ):
            raise ValueError(
                f"{where}: special ids {ids} are not 1 to {MAX_END_IDS} end ids and ids "
                f"in [0, {vocab_size})"
            )
        return self


class TextTokenizer:
    """Text <-> token ids, with the special ids the models and decoders need: found by name
    (aiayn's own tokenizers), or given by number (`ids`, an imported checkpoint's)."""

    def __init__(self, tokenizer: Tokenizer, ids: SpecialIds | None = None) -> None:
        self.tok = _literal_specials(tokenizer)
        # aiayn pads batches and cuts texts itself; an imported tokenizer.json may pad every
        # text to a fixed length (sentence-transformers' MiniLM: 128), a model's work 5x over
        self.tok.no_padding()
        self.tok.no_truncation()
        self.ids = None if ids is None else ids.check(tokenizer.get_vocab_size(), "tokenizer")
        if ids is None:
            named = [_special_id(tokenizer, t) for t in SPECIALS]
            if None in named:
                missing = [t for t, i in zip(SPECIALS, named, strict=True) if i is None]
                raise ValueError(f"tokenizer lacks the special tokens {missing}")
            ids = SpecialIds(named[0], named[1], (named[2],), named[3])
        self.pad_id, self.bos_id, self.unk_id = ids.pad, ids.bos, ids.unk
        # every id that ends a sequence; the first is the one aiayn writes (after a source)
        self.end_ids = ids.ends
        self.eos_id = ids.ends[0]

    @property
    def never_chosen(self) -> list[int]:
        """Specials a model never learnt to produce; an end id ends a row instead."""
        return sorted({self.pad_id, self.bos_id, self.unk_id} - {None, *self.end_ids})

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        # the fast variant computes no character offsets: the same ids in less time and memory
        return [e.ids for e in self.tok.encode_batch_fast(texts, add_special_tokens=False)]

    def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        """Ids of prompts for a language model, with the special tokens that the tokenizer's
        own template puts before the text (Llama's <s>, Llama 3's <|begin_of_text|>: such
        models are trained to see them first), never those it puts after (an end of text)."""
        plain = self.encode(texts)
        framed = [e.ids for e in self.tok.encode_batch_fast(texts, add_special_tokens=True)]
        return [_before(f, p) + p for p, f in zip(plain, framed, strict=True)]

    def tokens(self, ids: list[int]) -> list[str]:
        """The subword strings of ids, for labelling plots (an id the tokenizer lacks, which a
        model with a larger vocabulary may choose, as <id N>)."""
        return [t if (t := self.tok.id_to_token(i)) is not None else f"<id {i}>" for i in ids]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.tok.decode_batch(ids, skip_special_tokens=True)

    def save(self, path: str | Path) -> None:
        """The tokenizer file, and beside it the special ids when they were given by number
        (`tokenizers`' file has no place for them)."""
        atomic_write_text(path, self.tok.to_str())
        if self.ids is not None:
            ids = self.ids
            table = {"pad": ids.pad, "bos": ids.bos, "ends": list(ids.ends), "unk": ids.unk}
            atomic_write_text(ids_path(path), json.dumps(table) + "\n")

    @classmethod
    def load(cls, path: str | Path, within: str | Path | None = None) -> TextTokenizer:
        """The tokenizer file `path`: a regular file (inside `within` when given) of at most
        MAX_FILE_BYTES, with the special ids of the file beside it if there is one; anything
        else is a ValueError naming it."""
        try:
            text = read_input_text(path, MAX_FILE_BYTES, within)
        except ValueError as e:
            raise ValueError(f"not a readable tokenizer file: {e}") from None
        side = ids_path(path)
        ids = read_ids(side, within) if side.exists() or side.is_symlink() else None
        return cls.from_json(text, path, ids)

    @classmethod
    def from_json(cls, text: str, path: str | Path, ids: SpecialIds | None = None) -> TextTokenizer:
        """The tokenizer serialised in `text` (read from `path`, which errors name)."""
        tok = parse_tokenizer(text, path)
        try:
            return cls(tok, ids)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def read_tokenizer(path: str | Path, within: str | Path | None = None) -> Tokenizer:
    """The `tokenizers` tokenizer of the file `path`, checked as `TextTokenizer.load` does but
    with its special ids yet to be given."""
    try:
        text = read_input_text(path, MAX_FILE_BYTES, within)
    except ValueError as e:
        raise ValueError(f"not a readable tokenizer file: {e}") from None
    return parse_tokenizer(text, path)


def parse_tokenizer(text: str, path: str | Path) -> Tokenizer:
    try:
        return Tokenizer.from_str(text)
    except Exception as e:  # tokenizers raises a bare Exception for bad files
        raise ValueError(f"{path}: not a readable tokenizer file ({first_line(e)})") from None


def ids_path(tokenizer_path: str | Path) -> Path:
    """Where the special ids of the tokenizer file `tokenizer_path` are kept."""
    path = Path(tokenizer_path)
    return path.with_name(path.stem + IDS_SUFFIX)


def read_ids(path: Path, within: str | Path | None = None) -> SpecialIds:
    """The special ids file `path` (`TextTokenizer.save`), its types checked."""
    data = read_input_json(path, 1 << 16, within)
    ok = isinstance(data, dict) and set(data) == {"pad", "bos", "ends", "unk"}
    if not ok or not isinstance(data["ends"], list):
        raise ValueError(f"{path}: not a table of pad, bos, ends (a list) and unk ids")
    return SpecialIds(data["pad"], data["bos"], tuple(data["ends"]), data["unk"])


def _literal_specials(tok: Tokenizer) -> Tokenizer:
    """`tok`, encoding the names of its special tokens in a text ("<pad>", "</s>",
    "<|endoftext|>") as the ordinary text they are: a special id comes only from aiayn (a
    padding, a frame, a template's <s>), never from the data or a user, where it would end a
    prompt, hide a target from the loss or frame a sentence. Not saved in the file: set on
    every tokenizer aiayn makes or loads."""
    tok.encode_special_tokens = True
    return tok


def _before(framed: list[int], plain: list[int]) -> list[int]:
    """What a template put before the text: `framed` up to where `plain` first starts."""
    for k in range(len(framed) - len(plain) + 1):
        if framed[k : k + len(plain)] == plain:
            return framed[:k]
    return []


def _special_id(tokenizer: Tokenizer, name: str) -> int | None:
    for candidate in (name, *ALTERNATIVES[name]):
        if (i := tokenizer.token_to_id(candidate)) is not None:
            return i
    return None


def _split_words(tok: Tokenizer, lowercase: bool, punctuation: bool = True) -> Tokenizer:
    """Normalise, split on whitespace (kept as "▁") and, with `punctuation`, at punctuation;
    undo that on decoding."""
    _literal_specials(tok)  # learnt from the data's "<pad>" as from any text
    steps = [normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])]
    tok.normalizer = normalizers.Sequence(steps)
    split = [pre_tokenizers.Punctuation()] if punctuation else []
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), *split])
    tok.decoder = decoders.Metaspace()
    return tok


def train_bpe(
    texts: Iterable[str], vocab_size: int, lowercase: bool = False, punctuation: bool = True
) -> TextTokenizer:
    """Learn BPE merges from `texts` until the vocabulary has `vocab_size` tokens; without
    `punctuation`, words are split at whitespace only (words a tagger's data split already:
    a piece never starts inside a word at a punctuation mark, and "▁(" is one piece)."""
    tok = _split_words(Tokenizer(models.BPE(unk_token=UNK)), lowercase, punctuation)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2)
    tok.train_from_iterator(texts, trainer)
    return TextTokenizer(tok)


def train_words(
    texts: Iterable[str], vocab_size: int, lowercase: bool = False, punctuation: bool = True
) -> TextTokenizer:
    """The `vocab_size` most frequent words (seen twice or more) of `texts`; others are <unk>."""
    tok = _split_words(Tokenizer(models.WordLevel(unk_token=UNK)), lowercase, punctuation)
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2
    )
    tok.train_from_iterator(texts, trainer)
    return TextTokenizer(tok)


def train_chars(texts: Iterable[str], lowercase: bool = False) -> TextTokenizer:
    """One token per character seen in `texts` (newlines and spaces included)."""
    normalize = str.lower if lowercase else str
    seen: set[str] = set()
    for t in texts:  # a stream: one text's characters at a time, not every text's at once
        seen.update(normalize(t))
    chars = sorted(seen)
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + chars)}, UNK))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    return TextTokenizer(tok)


def fit_tokenizer(
    kind: str, texts: list[str], vocab_size: int, lowercase: bool = False, punctuation: bool = True
) -> TextTokenizer:
    """A new tokenizer of `kind` ("bpe", "word" or "char") learnt from `texts`; `punctuation`:
    words are split at punctuation too (bpe and word)."""
    if kind == "bpe":
        return train_bpe(texts, vocab_size, lowercase, punctuation)
    if kind == "word":
        return train_words(texts, vocab_size, lowercase, punctuation)
    if kind == "char":
        return train_chars(texts, lowercase)
    raise ValueError(f"data.tokenizer={kind!r} is unknown; expected one of {TOKENIZER_KINDS}")
