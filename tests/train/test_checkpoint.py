import pickle

import pytest
import torch
from safetensors.torch import save_file

from aiayn.train.checkpoint import average_weights, load_state, save_state


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
        load_state(tmp_path / "trainer_state.pt")
    assert not marker.exists()


def test_trainer_state_round_trips_tensors_and_plain_values(tmp_path):
    state = {"step": 3, "rng": torch.get_rng_state(), "best": None, "names": ["a"]}
    save_state(state, tmp_path / "s.pt")
    loaded = load_state(tmp_path / "s.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["rng"], state["rng"])


def test_average_is_the_elementwise_mean(tmp_path):
    for i, value in enumerate([1.0, 2.0, 6.0]):
        save_file({"w": torch.full((2,), value)}, str(tmp_path / f"{i}.safetensors"))
    avg = average_weights([tmp_path / f"{i}.safetensors" for i in range(3)])
    assert avg["w"].tolist() == [3.0, 3.0]
