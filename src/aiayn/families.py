"""The model families, each named once: what model it builds, how it trains, loads, serves,
evaluates, prepares its data and exports. Every command that behaves by family reads this table.

An entry names its parts by import path ("module:attribute") and imports them only when one is
asked for, as `transformers`' auto classes do: so this module imports nothing of aiayn, every
layer may read it (`ModelConfig` checks `arch` against it) without an import circle, and
`aiayn --help` loads no family's code. A part may also be the object itself (a family defined
outside aiayn, as the tests' toy family is).

Adding a family is one `register` call with an entry, and the family's own modules.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

Part = Any  # "module:attribute", or the object itself


@dataclass(frozen=True)
class Family:
    name: str  # model.arch
    description: str
    use: str  # what its runs are for, as errors name it: "translation needs encoder_decoder"
    endpoint: str  # the server's route for it: /v1/<endpoint>
    prepared_task: str  # the "task" of its prepared datasets' manifests
    data_length: str  # the [data] field its sequence length is read from
    data_files: tuple[str, ...]  # the [data] fields naming the files it reads
    model: Part  # the nn.Module class, built from a ModelConfig
    task: Part  # the training task class: (cfg, run_dir, resume=, log=)
    loader: Part  # the run loader of translate/generate/classify: (run_dir, weights, log=)
    engine: Part  # the server's Engine class; its `load(run_dir, weights, device, log)`
    evaluate: Part | None  # `aiayn evaluate`'s scorer: (args) -> None; None: not scored
    prepare: Part | None  # `aiayn prepare`'s writer (aiayn.prepare.build.Writer)
    export_hf: Part | None  # (run_dir, out, log) -> class name written; None: not exported
    hf_format: str | None = None  # the Hugging Face model_type export_hf writes
    # the transformers class export_hf writes and import-hf reads as this family (None: the
    # format's usual one)
    hf_class: str | None = None
    # its texts end with </s> whatever data.end_token says (the tagger frames each sentence
    # <s> ... </s>, as BERT its [CLS] ... [SEP]); else they end so only with data.end_token.
    # The framing its export's tokenizer writes, and an imported BERT's data.end_token
    closes_text: bool = False
    ct2: bool = False  # CTranslate2's Transformer can hold it (aiayn export-ct2)
    # the names' prefixes of the task's own tensors, which a fine-tuning from another task's
    # run initialises anew (train.init); the rest is the body, taken from that run
    head: tuple[str, ...] = ()
    train_fields: tuple[str, ...] = ()  # the [train] fields only such families read

    def part(self, name: str) -> Any:
        """The part `name` of this family, imported now."""
        ref = getattr(self, name)
        if ref is None:
            raise ValueError(f"{self.name} models have no {name.replace('_', '-')}")
        if not isinstance(ref, str):
            return ref
        module, _, attribute = ref.partition(":")
        return getattr(importlib.import_module(module), attribute)


HF_EXPORT = "aiayn.interop.hf_export:export_run"

FAMILIES: dict[str, Family] = {}


def register(entry: Family) -> None:
    """Add a family; a name already taken is an error (unregister it first)."""
    if entry.name in FAMILIES:
        raise ValueError(f"model family {entry.name!r} is registered already")
    FAMILIES[entry.name] = entry


def unregister(name: str) -> None:
    del FAMILIES[name]


def names() -> tuple[str, ...]:
    """The registered families' names (model.arch's choices)."""
    return tuple(FAMILIES)


def family(arch: str) -> Family:
    """The family named `arch`; a ValueError naming it and the known ones if there is none."""
    if not isinstance(arch, str) or arch not in FAMILIES:  # a TOML list or table too
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"model.arch={arch!r} is not a model family; expected one of {known}")
    return FAMILIES[arch]


register(
    Family(
        name="encoder_decoder",
        description="translation: the paper's encoder-decoder (§3)",
        use="translation",
        endpoint="translate",
        prepared_task="translation",
        data_length="max_pair_len",
        data_files=("train_src", "train_tgt", "valid_src", "valid_tgt", "test_src", "test_tgt"),
        model="aiayn.models.encoder_decoder:EncoderDecoder",
        task="aiayn.tasks.translation:TranslationTask",
        loader="aiayn.tasks.translation:load_translator",
        engine="aiayn.serve.engines:TranslationEngine",
        evaluate="aiayn.commands.evaluate:evaluate_translation",
        prepare="aiayn.prepare.build:TRANSLATION",
        export_hf=HF_EXPORT,
        hf_format="marian",
        ct2=True,
        train_fields=("loss_chunk",),
    )
)
register(
    Family(
        name="decoder_only",
        description="a language model: the decoder alone, predicting the next token",
        use="generation",
        endpoint="generate",
        prepared_task="language_model",
        data_length="block_size",
        data_files=("train_text", "valid_text"),
        model="aiayn.models.decoder_only:DecoderOnlyLM",
        task="aiayn.tasks.language_model:LanguageModelTask",
        loader="aiayn.tasks.language_model:load_language_model",
        engine="aiayn.serve.engines:LanguageEngine",
        evaluate=None,
        prepare="aiayn.prepare.build:LANGUAGE_MODEL",
        export_hf=HF_EXPORT,
        hf_format="gpt2",
        train_fields=("loss_chunk",),
    )
)
register(
    Family(
        name="encoder_classifier",
        description="a text classifier: the encoder, pooled, and a linear layer over classes",
        use="classification",
        endpoint="classify",
        prepared_task="classification",
        data_length="truncate_len",
        data_files=("train_tsv", "valid_tsv"),
        model="aiayn.models.encoder_only:EncoderClassifier",
        task="aiayn.tasks.classification:ClassificationTask",
        loader="aiayn.tasks.classification:load_classifier",
        engine="aiayn.serve.engines:ClassifierEngine",
        evaluate="aiayn.commands.evaluate:evaluate_classifier",
        prepare="aiayn.prepare.build:CLASSIFICATION",
        export_hf=HF_EXPORT,
        hf_format="bert",
        head=("classifier.",),
    )
)
register(
    Family(
        name="encoder_tagger",
        description="a word tagger: the encoder and a linear layer over tags at every word",
        use="tagging",
        endpoint="tag",
        prepared_task="tagging",
        data_length="tag_len",
        data_files=("train_tagged", "valid_tagged"),
        model="aiayn.models.encoder_only:EncoderTagger",
        task="aiayn.tasks.tagging:TaggingTask",
        loader="aiayn.tasks.tagging:load_tagger",
        engine="aiayn.serve.tagging:TaggerEngine",
        evaluate="aiayn.commands.tag:evaluate_tagger",
        prepare=None,
        export_hf=HF_EXPORT,
        hf_format="bert",
        hf_class="BertForTokenClassification",
        closes_text=True,
        head=("classifier.",),
        train_fields=("subword_dropout",),
    )
)
