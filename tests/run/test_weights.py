import pytest
import torch
from safetensors.torch import save_file

from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.run.files import BEST, MODEL, pick_weights
from aiayn.run.weights import load_weights, read_tensors, save_weights, unique_state

TINY = ModelConfig(vocab_size=30, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0)


def test_weights_round_trip_with_tied_embeddings_stored_once(tmp_path):
    model, other = EncoderDecoder(TINY), EncoderDecoder(TINY)
    save_weights(model, tmp_path / "m.safetensors")
    load_weights(other, tmp_path / "m.safetensors")
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert other.generator.weight is other.src_embed.weight


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.pop("transformer.encoder.layers.0.ffn.w_in.weight"),
            "'transformer.encoder.layers.0.ffn.w_in.weight' is missing",
        ),
        (lambda s: s.update(extra=torch.zeros(2)), "unexpected tensor 'extra'"),
        (
            lambda s: s.update({"src_embed.weight": torch.zeros(31, 16)}),
            r"'src_embed.weight' has shape \(31, 16\)",
        ),
    ],
)
def test_mismatched_weights_name_the_file_and_tensor(tmp_path, change, message):
    state = unique_state(EncoderDecoder(TINY))
    change(state)
    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(ValueError, match=message):
        load_weights(EncoderDecoder(TINY), tmp_path / "m.safetensors")


def test_truncated_weights_file_is_refused_clearly(tmp_path):
    save_weights(EncoderDecoder(TINY), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(EncoderDecoder(TINY), tmp_path / "m.safetensors")


def test_pick_weights_prefers_average_then_best_then_latest(tmp_path):
    with pytest.raises(ValueError, match="no weights file"):
        pick_weights(tmp_path)
    for name in (MODEL, BEST):
        (tmp_path / name).write_bytes(b"")
    assert pick_weights(tmp_path).name == BEST
    assert pick_weights(tmp_path, "model").name == MODEL
    with pytest.raises(ValueError, match="no such weights file"):
        pick_weights(tmp_path, "average")


def test_the_weights_reader_gives_what_safetensors_gives_for_every_dtype(tmp_path) -> None:
    from safetensors.torch import load_file

    tensors = [torch.randn(3, 4), torch.randn(5).bfloat16(), torch.randn(2, 2).half()]
    tensors += [torch.arange(7), torch.tensor(True), torch.randn(0, 3), torch.tensor(2.5)]
    tensors += [torch.randn(4).to(torch.float8_e4m3fn), torch.arange(5).to(torch.uint16)]
    path = tmp_path / "w.safetensors"
    save_file({f"t{i}": t for i, t in enumerate(tensors)}, str(path))
    ours, theirs = read_tensors(path), load_file(path)
    assert sorted(ours) == sorted(theirs)
    for name, t in theirs.items():
        assert (ours[name].dtype, ours[name].shape) == (t.dtype, t.shape)
        raw = [x.reshape(-1).view(torch.uint8) for x in (ours[name], t)]
        assert torch.equal(*raw)
