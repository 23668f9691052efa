"""The benchmarks' shared timing: rounds in turn, and ratios taken round by round."""

import time

from benchmarks.apart import apart_round_times
from benchmarks.common import interleaved, paired_ratio, round_times


def test_round_times_calls_each_function_once_a_round_in_turn_after_warm_up():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = round_times(fns, rounds=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert [len(t) for t in times.values()] == [3, 3] and min(times["a"]) >= 0
    assert set(interleaved(fns, rounds=1, warmup=0)) == {"a", "b"}


def test_a_paired_ratio_follows_each_round_not_the_medians():
    # the machine runs at half speed in one round, at a third in another: both sides alike
    ours, theirs = [1.0, 2.0, 3.0, 1.0], [0.8, 1.6, 2.4, 0.8]
    times = {"ours": ours, "theirs": theirs}
    assert paired_ratio(times, "ours", "theirs") == {"median": 0.8, "min": 0.8, "max": 0.8}
    times["theirs"] = [0.5, 1.6, 2.4, 0.9]
    assert paired_ratio(times, "ours", "theirs") == {"median": 0.8, "min": 0.5, "max": 0.9}


def sleeper_calls(tag: str, seconds: float) -> dict:
    """A group for `apart_round_times`, built in its worker process."""
    return {f"{tag} {i}": (lambda: time.sleep(seconds)) for i in range(2)}


def test_apart_round_times_times_each_group_in_its_own_process_in_turn() -> None:
    groups = {"a": (sleeper_calls, ("a", 0.02)), "b": (sleeper_calls, ("b", 0.0))}
    times = apart_round_times(groups, rounds=3)
    assert list(times) == ["a 0", "a 1", "b 0", "b 1"]
    assert all(len(t) == 3 for t in times.values())
    assert min(times["a 0"] + times["a 1"]) >= 0.02 > max(times["b 0"] + times["b 1"])
