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
