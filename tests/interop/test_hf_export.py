"""`aiayn export-hf`: a tiny run of each family, exported, loads in `transformers` with
aiayn's logits and greedy tokens, and imported back gives the very same tensors."""

import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
import transformers

from aiayn.cli import main
from aiayn.data.parallel import pad_to_tensor
from aiayn.data.tokenizer import TextTokenizer
from aiayn.decode.sample import generate
from aiayn.decode.search import Special, greedy
from aiayn.interop.hf_export import check_exportable
from aiayn.models import ModelConfig
from aiayn.tasks import load_run
from aiayn.tasks.tagging import load_tagger
from tests.cli_helpers import write_config
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config
from tests.tasks.test_tagging import tagger_config

# what each family's transformers class computes, set on the tests' tiny configs
FAMILIES = {
    "encoder_decoder": (
        write_config,
        {"positional": "sinusoidal_halves", "activation": "silu", "norm_first": False},
        transformers.MarianMTModel,
    ),
    "decoder_only": (
        lm_config,
        {"positional": "learned", "scale_embeddings": False, "activation": "gelu_tanh"},
        transformers.GPT2LMHeadModel,
    ),
    "encoder_classifier": (
        classifier_config,
        {
            "positional": "learned",
            "norm_first": False,
            "embed_norm": True,
            "pooling": "cls",
            "scale_embeddings": False,
            "activation": "gelu",
            "n_segments": 2,
        },
        transformers.BertForSequenceClassification,
    ),
    "encoder_tagger": (
        tagger_config,
        {
            "positional": "learned",
            "norm_first": False,
            "embed_norm": True,
            "scale_embeddings": False,
            "activation": "gelu",
        },
        transformers.BertForTokenClassification,
    ),
}


def tiny_run(folder: Path, arch: str) -> Path:
    write, model, _ = FAMILIES[arch]
    path = write(folder)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["model"] |= model
    data["train"] |= {"max_steps": 12, "eval_every": 12}
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    assert main(["train", str(path), "--out", str(folder / "run")]) == 0
    return folder / "run"


EXPORTS: dict[str, tuple] = {}


def export(arch: str, tmp_path_factory) -> tuple:
    """(arch, aiayn model, transformers model, run dir, export dir) of one family, made once."""
    if arch not in EXPORTS:
        folder = tmp_path_factory.mktemp(arch)
        run = tiny_run(folder, arch)
        assert main(["export-hf", str(run), "--out", str(folder / "hf")]) == 0
        _, ours = load_run(run, arch, log=lambda _: None)
        theirs = FAMILIES[arch][2].from_pretrained(folder / "hf").eval()
        EXPORTS[arch] = arch, ours, theirs, run, folder / "hf"
    return EXPORTS[arch]


@pytest.fixture(params=list(FAMILIES))
def exported(request, tmp_path_factory):
    return export(request.param, tmp_path_factory)


@pytest.fixture(params=["encoder_decoder", "decoder_only"])
def generating(request, tmp_path_factory):
    return export(request.param, tmp_path_factory)


def batch(seed: int, lengths: list[int], vocab: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(4, vocab, (n,), generator=g).tolist() for n in lengths]
    ids = pad_to_tensor(rows, pad)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids, mask


def test_exported_logits_match_transformers_on_a_padded_batch(exported):
    arch, ours, theirs, _, _ = exported
    cfg, pad = ours.cfg, ours.cfg.pad_id
    src, src_mask = batch(0, [9, 4, 7], cfg.vocab_size, pad)
    with torch.no_grad():
        if arch == "encoder_decoder":
            tgt, tgt_mask = batch(1, [5, 8, 3], cfg.vocab_size, pad)
            mine = ours(src, tgt)
            hf = theirs(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt).logits
            real = tgt_mask.bool()
        elif arch == "decoder_only":
            mine, real = ours(src), src_mask.bool()
            hf = theirs(input_ids=src, attention_mask=src_mask).logits
        else:
            mine, real = ours(src), torch.ones(3, dtype=torch.bool)
            hf = theirs(input_ids=src, attention_mask=src_mask).logits
    assert mine[real].abs().max() > 0.1  # a trained model's logits, not all zeros
    torch.testing.assert_close(mine[real], hf[real], atol=1e-4, rtol=0)


def test_the_exported_taggers_pipeline_gives_aiayns_tags(tmp_path_factory) -> None:
    _, _, _, run, hf_dir = export("encoder_tagger", tmp_path_factory)
    tagger = load_tagger(run, log=lambda _: None)
    sentences = [["the", "cat", "sat", "on", "a", "mat", "."], ["a", "dog", "saw", "the", "cat"]]
    words = transformers.pipeline(
        "token-classification", model=str(hf_dir), aggregation_strategy="first", ignore_labels=[]
    )
    pieces = transformers.pipeline("token-classification", model=str(hf_dir), ignore_labels=[])
    for sentence, tags in zip(sentences, tagger.tag(sentences), strict=True):
        text = " ".join(sentence)
        starts = [len(" ".join(sentence[:i])) + (i > 0) for i in range(len(sentence))]
        # words: neighbours with the same tag come as one group (BIO-less tags read as I-)
        groups = words(text)
        assert [
            g["entity_group"] for g in groups for s in starts if g["start"] <= s < g["end"]
        ] == (tags)
        # the default: one answer a piece (its offsets take in the space before it); each
        # word's first piece carries the word's tag
        first = [e["entity"] for e in pieces(text) if e["start"] in {0, *(s - 1 for s in starts)}]
        assert first == tags


def until_eos(tokens: list[int], eos: int, pad: int) -> list[int]:
    tokens = [t for t in tokens if t != pad]
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def test_exported_greedy_generation_gives_aiayns_tokens(generating):
    arch, ours, theirs, run, _ = generating
    tok = TextTokenizer.load(run / "tokenizer.json")
    produced = 0
    if arch == "decoder_only":
        for seed, length in enumerate([1, 4, 9]):
            prompt, _ = batch(10 + seed, [length], ours.cfg.vocab_size, tok.pad_id)
            hf = theirs.generate(prompt, max_new_tokens=15, do_sample=False, num_beams=1)
            mine = torch.stack(list(generate(ours, prompt, 15, temperature=0.0)), dim=1)[0]
            expected = until_eos(hf[0, length:].tolist(), tok.eos_id, tok.pad_id)
            assert until_eos(mine.tolist(), tok.eos_id, tok.pad_id) == expected
            produced += len(expected)
    else:
        src, mask = batch(2, [6, 9, 3, 7], ours.cfg.vocab_size, tok.pad_id)
        hf = theirs.generate(src, attention_mask=mask, max_new_tokens=12, num_beams=1)
        special = Special(bos=tok.bos_id, eos=tok.eos_id, pad=tok.pad_id)
        mine = greedy(ours, src, special, max_extra=1000, cap=12)
        for row, tokens in zip(hf.tolist(), mine, strict=True):
            assert row[0] == tok.bos_id
            assert tokens == until_eos(row[1:], tok.eos_id, tok.pad_id)
            produced += len(tokens)
    assert produced > 5


def test_importing_the_export_back_gives_the_same_tensors(exported, tmp_path):
    arch, ours, _, _, hf_dir = exported
    assert main(["import-hf", str(hf_dir), "--out", str(tmp_path / "back")]) == 0
    _, back = load_run(tmp_path / "back", arch, log=lambda _: None)
    mine, theirs = ours.state_dict(), back.state_dict()
    for name, value in mine.items():
        assert torch.equal(theirs[name], value), name
    # what the class always has and the run lacked comes back as zeros
    extra = {n: t for n, t in theirs.items() if n not in mine}
    assert all(not t.any() for t in extra.values()), sorted(extra)


def test_the_exported_tokenizer_knows_its_special_tokens(exported):
    _, _, _, run, hf_dir = exported
    ours = TextTokenizer.load(run / "tokenizer.json")
    theirs = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert (theirs.pad_token_id, theirs.eos_token_id) == (ours.pad_id, ours.eos_id)
    assert (theirs.bos_token_id, theirs.unk_token_id) == (ours.bos_id, ours.unk_id)
    text = "a man sees the big dog"
    assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode([text])[0]
    literal = "a <pad> dog </s>"  # special tokens' names in a text are text on both sides
    assert theirs(literal, add_special_tokens=False)["input_ids"] == ours.encode([literal])[0]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"arch": "decoder_only", "positional": "rope", "norm_first": True}, "positional='rope'"),
        (
            {
                "arch": "decoder_only",
                "positional": "learned",
                "scale_embeddings": False,
                "norm_first": True,
                "activation": "swiglu",
            },
            "activation='swiglu'",
        ),
        (
            {
                "arch": "decoder_only",
                "positional": "learned",
                "scale_embeddings": False,
                "norm_first": False,
            },
            "norm_first=False",
        ),
        (
            {
                "arch": "encoder_classifier",
                "positional": "learned",
                "embed_norm": True,
                "scale_embeddings": False,
                "norm_first": True,
            },
            "norm_first=True",
        ),
        (
            {
                "arch": "encoder_classifier",
                "positional": "learned",
                "embed_norm": False,
                "scale_embeddings": False,
            },
            "embed_norm=False",
        ),
        ({"arch": "encoder_decoder", "positional": "learned"}, "positional='learned'"),
        (
            {"arch": "encoder_decoder", "positional": "sinusoidal_halves", "norm": "rmsnorm"},
            "norm='rmsnorm'",
        ),
        (
            {"arch": "encoder_decoder", "positional": "sinusoidal_halves", "n_kv_heads": 2},
            "n_kv_heads=2",
        ),
        (
            {"arch": "encoder_decoder", "positional": "sinusoidal_halves", "residual": False},
            "residual=False",
        ),
    ],
)
def test_what_a_class_cannot_compute_is_refused_by_name(fields, named):
    with pytest.raises(ValueError, match="model." + named.replace("(", r"\(")):
        check_exportable(ModelConfig(**fields))


def test_the_cli_refuses_an_unexportable_run_in_one_line(tmp_path, capsys):
    config = write_config(tmp_path, max_steps=2, eval_every=2)
    text = config.read_text().replace("[model]\n", '[model]\npositional = "learned"\n')
    config.write_text(text)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["export-hf", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.positional='learned'" in err and "MarianMTModel" in err
    assert "PegasusForConditionalGeneration needs" in err  # each class that was tried
    assert not (tmp_path / "hf" / "model.safetensors").exists()
