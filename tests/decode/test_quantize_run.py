"""`aiayn quantize`: a run of each family saved with int8 linear layers, without pickle, loads
back to the very model `--int8` makes in memory; a damaged or foreign int8 file is refused in
one line naming what is wrong."""

import tomllib
from pathlib import Path

import pytest
import tomli_w
import torch
from safetensors.torch import save_file

from aiayn.cli import main
from aiayn.decode.quantize import FORMAT, VERSION, int8_state, is_int8, quantize_int8
from aiayn.run.files import INT8, MODEL, pick_weights
from aiayn.run.weights import SafetensorsFile
from aiayn.tasks import load_run, place
from tests.cli_helpers import write_config
from tests.tasks.test_classification import classifier_config
from tests.tasks.test_language_model import lm_config

FAMILIES = {
    "encoder_decoder": write_config,
    "decoder_only": lm_config,
    "encoder_classifier": classifier_config,
}
RUNS: dict[str, tuple[Path, Path]] = {}
QUIET = {"log": lambda _: None}


def quantized(arch: str, tmp_path_factory) -> tuple[Path, Path]:
    """(float run, its `aiayn quantize` folder) of one family, made once."""
    if arch not in RUNS:
        folder = tmp_path_factory.mktemp(arch)
        path = FAMILIES[arch](folder)
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        steps = 150 if arch == "encoder_decoder" else 12  # enough to translate more than </s>
        data["train"] |= {"max_steps": steps, "eval_every": steps}
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        assert main(["train", str(path), "--out", str(folder / "run")]) == 0
        assert main(["quantize", str(folder / "run"), "--out", str(folder / "int8")]) == 0
        RUNS[arch] = folder / "run", folder / "int8"
    return RUNS[arch]


@pytest.fixture(params=list(FAMILIES))
def family(request, tmp_path_factory):
    return request.param, *quantized(request.param, tmp_path_factory)


@pytest.fixture
def translation(tmp_path_factory):
    return quantized("encoder_decoder", tmp_path_factory)


def inputs(arch: str, vocab: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, vocab, (3, 7), generator=g)
    return (
        (src, torch.randint(4, vocab, (3, 5), generator=g)) if arch == "encoder_decoder" else (src,)
    )


def test_a_saved_int8_run_is_the_model_int8_makes_in_memory(family):
    arch, run, folder = family
    _, model = load_run(run, arch, **QUIET)
    _, loaded = load_run(folder, arch, **QUIET)
    assert is_int8(loaded) and not (folder / MODEL).exists()
    batch = inputs(arch, model.cfg.vocab_size)
    with torch.no_grad():
        expected, got, fp32 = quantize_int8(model)(*batch), loaded(*batch), model(*batch)
    assert torch.equal(got, expected) and not torch.equal(got, fp32)
    meta = SafetensorsFile(folder / INT8).metadata
    assert meta["format"] == FORMAT and meta["version"] == VERSION


def test_the_int8_file_holds_int8_weights_smaller_than_the_float_ones(translation):
    run, folder = translation
    tensors = SafetensorsFile(folder / INT8)
    weights = [n for n in tensors if n.endswith(".weight") and f"{n[:-7]}.scale" in tensors]
    assert weights and all(tensors[n].dtype == torch.int8 for n in weights)
    source = run / tensors.metadata["source"]  # the float weights it was made from
    assert source == pick_weights(run)
    assert (folder / INT8).stat().st_size < source.stat().st_size


def test_translate_with_a_saved_int8_run_matches_translate_int8(translation, capsys):
    run, folder = translation
    outputs = []
    for args in (["--model", str(run), "--int8"], ["--model", str(folder)]):
        capsys.readouterr()
        source = str(run.parent / "valid.src")
        assert main(["translate", *args, "--beam", "2", "--input", source]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0].split()) > 20


def test_generate_and_classify_read_saved_int8_runs(tmp_path_factory, capsys):
    _, lm = quantized("decoder_only", tmp_path_factory)
    args = ["generate", "--model", str(lm), "--max-new-tokens", "20", "--seed", "1"]
    assert main(args) == 0 and capsys.readouterr().out.strip()
    run, classifier = quantized("encoder_classifier", tmp_path_factory)
    text = run.parent / "texts.txt"
    text.write_text("a b c\nd e\n", encoding="utf-8")
    assert main(["classify", "--model", str(classifier), "--input", str(text)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize("command", ["export-hf", "export-ct2"])
def test_exports_refuse_int8_weights(translation, tmp_path, capsys, command):
    _, folder = translation
    assert main([command, str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "holds int8 weights (aiayn quantize); export its float run" in capsys.readouterr().err


def test_int8_weights_are_refused_on_another_device(translation):
    _, folder = translation
    _, model = load_run(folder, "encoder_decoder", **QUIET)
    with pytest.raises(ValueError, match="int8 weights decode on a CPU, not cuda"):
        place(model, "cuda")


def test_quantize_refuses_a_full_out_an_int8_run_and_leaves_nothing_when_it_fails(
    translation, tmp_path, capsys, monkeypatch
):
    run, folder = translation
    assert main(["quantize", str(run), "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "choose a new or empty --out" in err
    assert "--resume" not in err  # quantize has none
    assert main(["quantize", str(folder), "--out", str(tmp_path / "again")]) == 2
    assert "int8 already" in capsys.readouterr().err

    def broken(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("aiayn.decode.quantize.save_tensors", broken)
    assert main(["quantize", str(run), "--out", str(tmp_path / "full")]) == 2
    assert not (tmp_path / "full").exists() or not any((tmp_path / "full").iterdir())


def damaged(folder: Path, tmp_path: Path, change, metadata=None) -> Path:
    """A copy of the int8 folder whose tensors `change` edited, with `metadata`."""
    copy = tmp_path / "damaged"
    copy.mkdir()
    for path in folder.iterdir():
        if path.name != INT8 and path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    _, model = load_run(folder, "encoder_decoder", **QUIET)
    state = int8_state(model)
    change(state)
    meta = {"format": FORMAT, "version": VERSION} if metadata is None else metadata
    save_file(state, str(copy / INT8), metadata=meta)
    return copy


def set_tensor(name: str, value):
    return lambda state: state.__setitem__(name, value(state[name]))


def unchanged(state):
    return None


LAYER = "transformer.encoder.layers.0.ffn.w_in"
ROW, NAN = torch.tensor([3]), float("nan")


@pytest.mark.parametrize(
    ("change", "metadata", "message"),
    [
        (unchanged, {}, "format None version None; expected 'aiayn-int8' version '1'"),
        (unchanged, {"format": FORMAT, "version": "2"}, "version '2'; expected"),
        (set_tensor(f"{LAYER}.weight", lambda t: t.float()), None, "is torch.float32"),
        (set_tensor(f"{LAYER}.weight", lambda t: t[:-1].contiguous()), None, "expected torch.int8"),
        (set_tensor(f"{LAYER}.scale", lambda t: t * 0), None, "holds 0; expected scales from"),
        (set_tensor(f"{LAYER}.scale", lambda t: t.index_fill(0, ROW, NAN)), None, "holds nan"),
        (set_tensor(f"{LAYER}.scale", lambda t: t.repeat(2)), None, "a scale per output row"),
        (set_tensor(f"{LAYER}.scale", lambda t: t.double()), None, "is torch.float64"),
        (lambda s: s.pop(f"{LAYER}.scale"), None, "is missing"),
        (lambda s: s.pop(f"{LAYER}.bias"), None, "is missing"),
        (lambda s: s.__setitem__("extra", torch.zeros(2)), None, "unexpected tensor 'extra'"),
        (set_tensor("src_embed.weight", lambda t: t * float("nan")), None, "non-finite"),
        (set_tensor(f"{LAYER}.bias", lambda t: t[:3].contiguous()), None, "has shape (3,)"),
    ],
)
def test_a_damaged_int8_file_is_one_line_naming_the_fault(
    translation, tmp_path, capsys, change, metadata, message
):
    _, folder = translation
    copy = damaged(folder, tmp_path, change, metadata)
    assert main(["translate", "--model", str(copy), "--input", str(copy / "config.toml")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
