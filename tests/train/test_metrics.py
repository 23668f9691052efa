"""metrics.jsonl under failure: a write cut short leaves the file as it was."""

import json

import pytest

from aiayn.train import metrics
from aiayn.train.metrics import append_metric, read_metrics


def test_a_failed_append_is_cut_back_off(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_metric(path, {"step": 1, "loss": 2.0})
    real_open = open

    class HalfThenFull:
        """A file whose disk fills up halfway through the line."""

        def __init__(self, f):
            self.f, self.calls = f, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def tell(self):
            return self.f.tell()

        def truncate(self, size):
            return self.f.truncate(size)

        def write(self, data):
            self.calls += 1
            if self.calls > 1:
                raise OSError(28, "No space left on device")
            return self.f.write(data[: len(data) // 2])

    monkeypatch.setattr(
        metrics, "open", lambda *a, **k: HalfThenFull(real_open(*a, **k)), raising=False
    )
    with pytest.raises(ValueError, match=r"metrics.jsonl: could not be written \(No space left"):
        append_metric(path, {"step": 2, "loss": 1.5})
    assert path.read_text() == json.dumps({"step": 1, "loss": 2.0}) + "\n"
    assert read_metrics(path) == ([{"step": 1, "loss": 2.0}], False)


def test_non_finite_values_are_written_as_null(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_metric(path, {"step": 3, "loss": float("nan")})
    assert read_metrics(path)[0] == [{"step": 3, "loss": None}]


def test_a_log_that_is_no_terminal_gets_a_progress_line_every_log_every_steps(tmp_path, capsys):
    from aiayn.cli import main
    from tests.cli_helpers import write_config

    assert main(["train", str(write_config(tmp_path)), "--out", str(tmp_path / "run")]) == 0
    lines = [
        x for x in capsys.readouterr().err.splitlines() if x.startswith("step ") and "/30" in x
    ]
    assert [x.split()[1] for x in lines] == [f"{s}/30" for s in range(5, 31, 5)]
    assert all(" tok/s  ETA " in x and " loss " in x for x in lines)
    assert lines[-1].endswith("ETA 0:00:00")


def test_the_eta_follows_the_time_budget_when_it_binds():
    from aiayn.config import TrainConfig
    from aiayn.train.metrics import progress_line

    t = TrainConfig(max_steps=1000, log_every=10, max_minutes=2.0)
    record = {"step": 10, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 100.0, "elapsed_s": 60.0}
    assert progress_line(record, t, seconds=10.0).endswith("ETA 0:01:00")  # not 0:16:30
    assert progress_line(record, TrainConfig(max_steps=1000, log_every=10), 10.0).endswith(
        "ETA 0:16:30"
    )


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from aiayn.cli import main
    from tests.cli_helpers import write_config

    config, run = write_config(tmp_path), tmp_path / "run"
    sets = ["--set", "train.tensorboard=true", "--set", "train.max_steps=10"]
    assert main(["train", str(config), "--out", str(run), *sets]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    records, _ = read_metrics(run / "metrics.jsonl")
    for name in ("loss", "lr", "tokens_per_s", "val_loss"):
        logged = [r for r in records if name in r]
        scalars = events.Scalars(name)
        assert logged and [e.step for e in scalars] == [r["step"] for r in logged]
        assert [e.value for e in scalars] == pytest.approx([r[name] for r in logged], rel=1e-6)
