"""`aiayn import-hf`: a Hugging Face model directory made into an aiayn run directory.

Nothing is copied as it is: the weights are checked and saved in aiayn's format, the
tokenizer is parsed, checked against the model's vocabulary and written anew, and no file is
read through a link that leads out of the source directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from aiayn.config import DataConfig, RunConfig
from aiayn.data.tokenizer import TextTokenizer
from aiayn.families import family
from aiayn.interop.hf import load_pretrained
from aiayn.interop.hf_config import read_config
from aiayn.run.config import save_config
from aiayn.run.files import CONFIG, MODEL, TOKENIZER
from aiayn.run.folder import OutputFolder
from aiayn.run.paths import inside
from aiayn.run.weights import save_weights
from aiayn.tasks import check_vocabulary
from aiayn.tasks.classification import save_labels


def source_tokenizer(src: Path, given: Path | None) -> TextTokenizer:
    """The tokenizer to import: `given`, else the directory's tokenizer.json."""
    if given is not None:
        return TextTokenizer.load(given)
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
    return TextTokenizer.load(path)


def import_run(
    src: str | Path, out: str | Path, tokenizer: str | Path | None = None, log: Callable = print
) -> None:
    """Write the run directory `out` (new or empty) of the Hugging Face directory `src`."""
    src, out = Path(src), Path(out)
    with OutputFolder(out, "import-hf"):
        hf = read_config(src)
        model = load_pretrained(src, hf)
        m = model.cfg
        tok = source_tokenizer(src, Path(tokenizer) if tokenizer else None)
        check_vocabulary(tok, m.vocab_size, Path(tokenizer or src / TOKENIZER))
        # BERT reads [CLS] text [SEP] (a tagger frames every sentence so), up to its position
        # table's length
        is_bert = hf.data["model_type"] == "bert"
        data = DataConfig(**{family(m.arch).data_length: m.max_len}) if is_bert else DataConfig()
        if m.arch == "encoder_classifier":
            data = replace(data, end_token=True)
        # Hugging Face's own names for classes that a config leaves unnamed
        labels = (hf.labels() or [f"LABEL_{i}" for i in range(m.n_classes)]) if is_bert else None
        save_weights(model, out / MODEL)
        tok.save(out / TOKENIZER)
        if labels:
            save_labels(out, labels)
        save_config(RunConfig(model=m, data=data), out / CONFIG)
    log(f"imported {src} ({m.arch}) into {out}")
