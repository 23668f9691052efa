import os

# Under pytest-xdist each worker is one process of a 2-core machine: torch's default of one
# thread a core would put four busy threads on two cores, and OpenMP's spinning makes that
# several times slower than running serially. Set before torch is imported, so that the CLI
# subprocesses the tests start inherit it too.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked gpu are reported as skipped without CUDA, never as passed."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory of a tiny translation model trained for 30 steps on toy data."""
    from aiayn.cli import main
    from tests.cli_helpers import write_config

    folder = tmp_path_factory.mktemp("tiny_run")
    assert main(["train", str(write_config(folder)), "--out", str(folder / "out")]) == 0
    return folder / "out"
