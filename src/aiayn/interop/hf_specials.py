"""What a Hugging Face checkpoint says about its special tokens, read from its own files.

The ids come by number, never guessed from a token's name, where the checkpoint gives them:
`generation_config.json` first (what `generate` uses: often several end ids, Llama 3's
`<|end_of_text|>` and `<|eot_id|>`, Qwen2's `<|endoftext|>` and `<|im_end|>`), then
`config.json`, then the token names of `tokenizer_config.json`; a role none of them fills is
found by aiayn's names (aiayn.data.tokenizer.ALTERNATIVES). A tokenizer without an unknown
word (Llama 3's) has none. The chat template is kept for serving. Every file is untrusted:
size-capped, its values type- and range-checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from aiayn.data.tokenizer import ALTERNATIVES, BOS, EOS, MAX_END_IDS, PAD, UNK, SpecialIds
from aiayn.interop.hf_rules import short
from aiayn.run.files import CHAT_TEMPLATE
from aiayn.safeio import read_input_json, read_input_text

GENERATION, TOKENIZER_CONFIG = "generation_config.json", "tokenizer_config.json"

MAX_SIDE_BYTES = 16 << 20  # tokenizer_config.json lists every added token; tens of kB usually
MAX_TEMPLATE_CHARS = 1 << 20
ID_KEYS = {"pad": "pad_token_id", "bos": "bos_token_id", "eos": "eos_token_id"}
NAME_KEYS = {"pad": "pad_token", "bos": "bos_token", "eos": "eos_token", "unk": "unk_token"}
AIAYN_NAMES = {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK}


def side_file(folder: Path, name: str) -> dict[str, Any]:
    """The JSON object of `folder`'s file `name` ({} when there is none)."""
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return {}
    data = read_input_json(path, MAX_SIDE_BYTES, within=folder)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _ids(value: object, where: str, vocab_size: int) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not 1 <= len(values) <= MAX_END_IDS or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab_size for v in values
    ):
        raise ValueError(
            f"{where}={short(value)} is not a token id in [0, {vocab_size}) or a list of "
            f"1 to {MAX_END_IDS} of them"
        )
    return tuple(dict.fromkeys(values))


def _named(tok: Tokenizer, value: object, where: str) -> int | None:
    """The id of a token named in tokenizer_config.json (a string or {"content": ...})."""
    name = value.get("content") if isinstance(value, dict) else value
    if name is None:
        return None
    if not isinstance(name, str):
        raise ValueError(f"{where}={short(value)} is not a token name")
    if (i := tok.token_to_id(name)) is None:
        raise ValueError(f"{where}={short(name)} is not a token of the tokenizer")
    return i


def special_ids(
    folder: Path, config: dict[str, Any], tok: Tokenizer, vocab_size: int, seq2seq: bool
) -> SpecialIds:
    """The special ids of the checkpoint in `folder` (whose config.json is `config`) for the
    tokenizer `tok`; a sequence-to-sequence decoder starts from decoder_start_token_id."""
    gen, tok_cfg = side_file(folder, GENERATION), side_file(folder, TOKENIZER_CONFIG)
    keys = {**ID_KEYS, **({"bos": "decoder_start_token_id"} if seq2seq else {})}
    found: dict[str, tuple[int, ...]] = {}
    for role in ("pad", "bos", "eos", "unk"):
        for name, data in ((GENERATION, gen), ("config.json", config)):
            if role in keys and data.get(keys[role]) is not None:
                found[role] = _ids(data[keys[role]], f"{folder / name}: {keys[role]}", vocab_size)
                break
        else:
            where = f"{folder / TOKENIZER_CONFIG}: {NAME_KEYS[role]}"
            i = _named(tok, tok_cfg.get(NAME_KEYS[role]), where)
            i = i if i is not None else _by_aiayn_name(tok, AIAYN_NAMES[role])
            if i is not None:
                found[role] = (i,)
    if "eos" not in found:
        raise ValueError(
            f"{folder}: no end-of-sequence id in {GENERATION}, config.json or "
            f"{TOKENIZER_CONFIG}, and the tokenizer has none of the usual names"
        )
    ends = found["eos"]
    pad = found.get("pad", ends)[0]  # padding is never attended to: any id serves
    bos = found.get("bos", (pad,))[0]
    unk = found["unk"][0] if "unk" in found else None
    return SpecialIds(pad, bos, ends, unk).check(vocab_size, folder)


def _by_aiayn_name(tok: Tokenizer, name: str) -> int | None:
    for candidate in (name, *ALTERNATIVES[name]):
        if (i := tok.token_to_id(candidate)) is not None:
            return i
    return None


def chat_template(folder: Path) -> str | None:
    """The checkpoint's chat template: its chat_template.jinja, else tokenizer_config.json's
    chat_template (a string, or a list of named templates of which "default" is taken)."""
    path = folder / CHAT_TEMPLATE
    if path.exists() or path.is_symlink():
        return read_input_text(path, MAX_TEMPLATE_CHARS, within=folder)
    value = side_file(folder, TOKENIZER_CONFIG).get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEMPLATE_CHARS:
        raise ValueError(
            f"{folder / TOKENIZER_CONFIG}: chat_template is not a string of at most "
            f"{MAX_TEMPLATE_CHARS:,} characters"
        )
    return value
