"""`aiayn import-hf`: a Hugging Face model directory made into an aiayn run directory.

Nothing is copied as it is: the weights are checked and saved in aiayn's format, the
tokenizer is parsed, checked against the model's vocabulary and written anew, and no file is
read through a link that leads out of the source directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tokenizers import Tokenizer

from aiayn.config import DataConfig, RunConfig
from aiayn.data.tokenizer import TextTokenizer, read_tokenizer
from aiayn.families import family
from aiayn.interop.hf import load_pretrained
from aiayn.interop.hf_config import read_config
from aiayn.interop.hf_specials import chat_template, special_ids
from aiayn.run.atomic import atomic_write_text
from aiayn.run.config import save_config
from aiayn.run.files import CHAT_TEMPLATE, CONFIG, MODEL, TOKENIZER
from aiayn.run.folder import OutputFolder
from aiayn.run.paths import inside
from aiayn.run.weights import save_weights
from aiayn.tasks import check_vocabulary
from aiayn.tasks.classification import save_labels


def source_tokenizer(src: Path, given: Path | None) -> Tokenizer:
    """The tokenizer to import: `given`, else the directory's tokenizer.json."""
    if given is not None:
        return read_tokenizer(given)
    path = inside(src, TOKENIZER)
    if not path.exists():
        shipped = sorted(p.name for p in src.glob("*.spm")) or sorted(
            p.name for p in src.glob("*.model")
        )
        raise ValueError(
            f"{src}: no tokenizer.json, so the run could neither read nor write text"
            + (f" ({', '.join(shipped)} are SentencePiece files, which aiayn does not read)")
            * bool(shipped)
            + "; pass --tokenizer FILE, a tokenizer.json of the `tokenizers` library"
        )
    return read_tokenizer(path)


def import_run(
    src: str | Path, out: str | Path, tokenizer: str | Path | None = None, log: Callable = print
) -> None:
    """Write the run directory `out` (new or empty) of the Hugging Face directory `src`."""
    src, out = Path(src), Path(out)
    with OutputFolder(out, "import-hf"):
        hf = read_config(src)
        model = load_pretrained(src, hf)
        m = model.cfg
        tok_path = Path(tokenizer or src / TOKENIZER)
        raw = source_tokenizer(src, Path(tokenizer) if tokenizer else None)
        seq2seq = m.arch == "encoder_decoder"
        ids = special_ids(src, hf.data, raw, m.vocab_size, seq2seq)
        try:
            tok = check_vocabulary(TextTokenizer(raw, ids), m.vocab_size, tok_path)
        except ValueError as e:
            raise ValueError(f"{tok_path}: {e}") from None
        template = chat_template(src)
        # BERT reads [CLS] text [SEP], up to its position table's length: a family that does
        # not close its texts itself (a classifier; not a tagger) is told to by data.end_token
        is_bert, own = hf.data["model_type"] == "bert", family(m.arch)
        data = DataConfig(**{own.data_length: m.max_len}) if is_bert else DataConfig()
        if is_bert and not own.closes_text:
            data = replace(data, end_token=True)
        # Hugging Face's own names for classes that a config leaves unnamed
        labels = (hf.labels() or [f"LABEL_{i}" for i in range(m.n_classes)]) if is_bert else None
        save_weights(model, out / MODEL)
        tok.save(out / TOKENIZER)
        if template is not None:  # for serving to frame a conversation as the model learnt
            atomic_write_text(out / CHAT_TEMPLATE, template)
        if labels:
            save_labels(out, labels)
        save_config(RunConfig(model=m, data=data), out / CONFIG)
    log(f"imported {src} ({m.arch}) into {out}")
