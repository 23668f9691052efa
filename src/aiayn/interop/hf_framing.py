"""What an export tells the other tools beside its weights, so that their high-level calls with
their defaults answer as aiayn does: the tokenizer frames a text as aiayn frames it (its
post-processor), its config gives the length and the inputs the model takes, and
generation_config.json holds the run's decoding.

- A translator's source is its tokens then </s> (aiayn.decode.translate), cut to max_len with
  the </s> kept: `tokenizer(texts, truncation=True)` gives the same ids.
- A classifier's text is <s> then its tokens (then </s> with `data.end_token`), cut to the
  run's length (aiayn.tasks.classification.Classifier.frame); a family whose registry entry
  says `closes_text` (the tagger) always ends it with </s>.
- A language model's prompt is framed by nothing aiayn does not already take from the
  tokenizer itself (`encode_prompts`).

Decoding: aiayn's searches never choose <s>, <pad> (nor, for a language model, <unk>): the
generation config bans them. Beam search ends a sentence once it has `beam` finished
hypotheses (`early_stopping`). `length_penalty = alpha` is written: with
`decode.length_norm = "length"` aiayn ranks finished hypotheses by log-probability over
|y|^alpha (</s> counted) as transformers does, and the searches are the same; with GNMT's
((5 + |y|) / 6)^alpha, which no transformers setting equals for alpha > 0, they rank the same
whenever a sentence's finished hypotheses are of equal length (alpha = 0 always). aiayn stops
an output at source length + `decode.max_extra` tokens or max_len; transformers has one limit
for all sentences, max_len.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, processors

from aiayn.config import RunConfig
from aiayn.data.tokenizer import TextTokenizer
from aiayn.families import family

SEQ2SEQ, LMS = ("marian", "pegasus"), ("gpt2", "llama")


def framed_tokenizer(tok: TextTokenizer, cfg: RunConfig, kind: str) -> Tokenizer:
    """A copy of the run's tokenizer whose post-processor adds what aiayn adds to a text."""
    out = Tokenizer.from_str(tok.tok.to_str())
    name = out.id_to_token
    bos, eos = (name(tok.bos_id), tok.bos_id), (name(tok.eos_id), tok.eos_id)
    if kind in SEQ2SEQ:
        out.post_processor = processors.TemplateProcessing(
            single=f"$A {eos[0]}", pair=f"$A $B {eos[0]}", special_tokens=[eos]
        )
    elif kind == "bert":
        closed = cfg.data.end_token or family(cfg.model.arch).closes_text
        end, pair_end = (f" {eos[0]}", f" {eos[0]}:1") if closed else ("", "")
        out.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A{end}",
            pair=f"{bos[0]} $A{end} $B:1{pair_end}",
            special_tokens=[bos, eos] if end else [bos],
        )
    return out


def model_max_length(cfg: RunConfig, kind: str) -> int:
    """The most tokens the model reads at once, as aiayn cuts its inputs."""
    if kind == "bert":  # a classifier's truncate_len, a tagger's tag_len
        return min(cfg.data.length(cfg.model.arch), cfg.model.max_len)
    return cfg.model.max_len


def input_names(kind: str) -> list[str]:
    # Marian's and GPT-2's forward refuse token_type_ids; BERT's are zeros, segment 0
    return (
        ["input_ids", "token_type_ids", "attention_mask"]
        if kind == "bert"
        else [
            "input_ids",
            "attention_mask",
        ]
    )


def generation_config(cfg: RunConfig, tok: TextTokenizer, kind: str) -> dict[str, Any] | None:
    """generation_config.json of the run's decoding (None for a classifier)."""
    if kind == "bert":
        return None
    never = tok.never_chosen if kind in LMS else sorted({tok.bos_id, tok.pad_id})
    ends = list(tok.end_ids)
    common = {
        "eos_token_id": ends[0] if len(ends) == 1 else ends,
        "pad_token_id": tok.pad_id,
        "bad_words_ids": [[i] for i in never if i not in ends] or None,
    }
    if kind in LMS:  # greedy (aiayn generate --temperature 0) up to the context
        return common | {
            "bos_token_id": tok.bos_id,
            "max_length": cfg.model.max_len,
            "do_sample": False,
        }
    d = cfg.decode
    return common | {
        "decoder_start_token_id": tok.bos_id,
        "bos_token_id": tok.bos_id,
        "forced_eos_token_id": None,
        "num_beams": d.beam,
        "early_stopping": True,
        "length_penalty": d.alpha,
        # <s> then at most max_len tokens, as aiayn's cap (decode.max_extra has no equivalent)
        "max_length": cfg.model.max_len + 1,
        "do_sample": False,
    }
