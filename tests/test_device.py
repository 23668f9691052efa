import pytest
import torch

from aiayn.device import pick_device


def test_auto_is_cuda_where_there_is_one_else_the_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


def test_a_device_this_machine_lacks_is_refused_naming_the_setting():
    index = torch.cuda.device_count()  # one past the last GPU, or cuda:0 without any
    with pytest.raises(ValueError, match=rf"--device='cuda:{index}': this machine has no such"):
        pick_device(f"cuda:{index}", "--device")


def test_an_index_past_what_torch_parses_is_refused_in_one_line():
    name = "cuda:" + "9" * 23  # torch.device raised RuntimeError: Could not parse device index
    with pytest.raises(ValueError, match="this machine has no such device"):
        pick_device(name, "--device")
