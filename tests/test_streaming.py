"""`aiayn translate` over a long stdin: bounded memory, every line out, in order."""

import subprocess
import sys
import threading

import pytest

from tests.cli_helpers import WORDS

LINES = 100_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_translate_streams_100k_lines_in_bounded_memory(tiny_run) -> None:
    words = list(WORDS)
    lines = [
        "" if i % 97 == 0 else " ".join(words[(i + k) % len(words)] for k in range(1 + i % 6))
        for i in range(LINES)
    ]
    cmd = [sys.executable, "-m", "aiayn", "translate", "--model", str(tiny_run), "--beam", "1"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )

    def feed() -> None:
        for line in lines:
            proc.stdin.write(line + "\n")
        proc.stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    out, early, peak = [], None, 0.0
    for text in proc.stdout:
        out.append(text.rstrip("\n"))
        if len(out) % 1000 == 0:
            rss = rss_mb(proc.pid)
            early = rss if early is None else early
            peak = max(peak, rss)
    assert proc.wait(timeout=60) == 0
    assert len(out) == LINES
    assert all(out[i] == "" for i in range(0, LINES, 97))  # empty in, empty out, in place
    print(f"RSS after 1,000 lines {early:.0f} MB, peak {peak:.0f} MB")
    assert peak - early < 200, f"RSS grew from {early:.0f} MB to {peak:.0f} MB"
