import pickle

import pytest
import torch
from safetensors.torch import save_file

from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.train import checkpoint as ckpt

TINY = ModelConfig(vocab_size=30, d_model=16, n_heads=2, d_ff=32, n_layers=1, dropout=0.0)


def test_weights_round_trip_with_tied_embeddings_stored_once(tmp_path):
    model, other = EncoderDecoder(TINY), EncoderDecoder(TINY)
    ckpt.save_weights(model, tmp_path / "m.safetensors")
    ckpt.load_weights(other, tmp_path / "m.safetensors")
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert other.generator.weight is other.src_embed.weight


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "state.txt"
    ckpt.atomic_write_text(path, "version 1")

    def broken(tmp):
        tmp.write_text("half of version 2")
        raise OSError(28, "No space left on device")

    with pytest.raises(ValueError, match=r"state.txt: could not be written \(No space left"):
        ckpt.atomic_write(path, broken)
    assert path.read_text() == "version 1"
    assert [p.name for p in tmp_path.iterdir()] == ["state.txt"]


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
    state = ckpt.unique_state(EncoderDecoder(TINY))
    change(state)
    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(ValueError, match=message):
        ckpt.load_weights(EncoderDecoder(TINY), tmp_path / "m.safetensors")


def test_truncated_weights_file_is_refused_clearly(tmp_path):
    ckpt.save_weights(EncoderDecoder(TINY), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ckpt.load_weights(EncoderDecoder(TINY), tmp_path / "m.safetensors")


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_trainer_state_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    Exploit.marker = marker
    with open(tmp_path / "trainer_state.pt", "wb") as f:
        pickle.dump({"step": 1, "payload": Exploit()}, f)
    with pytest.raises(ValueError, match="refused or unreadable trainer state"):
        ckpt.load_state(tmp_path / "trainer_state.pt")
    assert not marker.exists()


def test_trainer_state_round_trips_tensors_and_plain_values(tmp_path):
    state = {"step": 3, "rng": torch.get_rng_state(), "best": None, "names": ["a"]}
    ckpt.save_state(state, tmp_path / "s.pt")
    loaded = ckpt.load_state(tmp_path / "s.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["rng"], state["rng"])


def test_average_is_the_elementwise_mean(tmp_path):
    for i, value in enumerate([1.0, 2.0, 6.0]):
        save_file({"w": torch.full((2,), value)}, str(tmp_path / f"{i}.safetensors"))
    avg = ckpt.average_weights([tmp_path / f"{i}.safetensors" for i in range(3)])
    assert avg["w"].tolist() == [3.0, 3.0]


def test_pick_weights_prefers_average_then_best_then_latest(tmp_path):
    with pytest.raises(ValueError, match="no weights file"):
        ckpt.pick_weights(tmp_path)
    for name in (ckpt.MODEL, ckpt.BEST):
        (tmp_path / name).write_bytes(b"")
    assert ckpt.pick_weights(tmp_path).name == ckpt.BEST
    assert ckpt.pick_weights(tmp_path, "model").name == ckpt.MODEL
    with pytest.raises(ValueError, match="no such weights file"):
        ckpt.pick_weights(tmp_path, "average")


def test_the_weights_reader_gives_what_safetensors_gives_for_every_dtype(tmp_path) -> None:
    from safetensors.torch import load_file

    tensors = [torch.randn(3, 4), torch.randn(5).bfloat16(), torch.randn(2, 2).half()]
    tensors += [torch.arange(7), torch.tensor(True), torch.randn(0, 3), torch.tensor(2.5)]
    tensors += [torch.randn(4).to(torch.float8_e4m3fn), torch.arange(5).to(torch.uint16)]
    path = tmp_path / "w.safetensors"
    save_file({f"t{i}": t for i, t in enumerate(tensors)}, str(path))
    ours, theirs = ckpt.read_tensors(path), load_file(path)
    assert sorted(ours) == sorted(theirs)
    for name, t in theirs.items():
        assert (ours[name].dtype, ours[name].shape) == (t.dtype, t.shape)
        raw = [x.reshape(-1).view(torch.uint8) for x in (ours[name], t)]
        assert torch.equal(*raw)
