"""The paper's scale on one machine: a WMT-sized synthetic corpus (4.5M pairs, as WMT 2014
En-De) and a 3 GB text, each prepared once (`aiayn prepare`) and trained from its arrays on disk,
beside the in-memory path on the same files.

Measured, each in a fresh process: prepare's time and peak RSS; training the demo's model for
`--steps` steps from the prepared pairs (time to its first step, peak RSS, steps/s); the same
from the text files, stopped if it passes `--limit-gb` (the in-memory path holds every
sentence as Python lists); the peak PSS of two DDP processes (gloo) on the prepared pairs
against one process's, and against two on Multi30k's 29,000 pairs prepared (the difference is
what the corpus costs them), and two processes that only import torch against one (the floor
of that ratio for any trainer started as torchrun starts them); and a character-level language
model trained from the 3 GB text's token stream (peak RSS). Peak RSS is the kernel's
high-water mark (wait4); PSS, which shares the page cache and libraries among the processes
that map them, is sampled every 0.2 s.

The corpora are made here from Multi30k's and tiny-shakespeare's files with a fixed seed: a
pair is one or two random Multi30k pairs, joined (about 19 words a side, WMT's order of
magnitude); the text is random runs of 32 Shakespeare lines, each run one line.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import report

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
M30K = DATA / "multi30k"
FIRST_STEP = re.compile(r"^step 1/")


def synthetic_pairs(folder: Path, pairs: int, seed: int) -> tuple[Path, Path]:
    """`pairs` line-aligned pairs, each one or two random Multi30k pairs joined; made once
    (renamed into place when whole)."""
    paths = (folder / f"train{pairs}.en", folder / f"train{pairs}.de")
    if all(p.exists() for p in paths):
        return paths
    sides = []
    for lang in ("en", "de"):
        with gzip.open(M30K / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            sides.append(f.read().splitlines())
    rng = np.random.default_rng(seed)
    tmp = [p.with_suffix(p.suffix + ".tmp") for p in paths]
    with open(tmp[0], "w") as en, open(tmp[1], "w") as de:
        for start in range(0, pairs, 100_000):
            n = min(100_000, pairs - start)
            first, second = rng.integers(0, len(sides[0]), (2, n)).tolist()
            two = (rng.random(n) < 0.5).tolist()
            for f, side in ((en, sides[0]), (de, sides[1])):
                f.writelines(
                    f"{side[a]} {side[b]}\n" if t else f"{side[a]}\n"
                    for a, b, t in zip(first, second, two, strict=True)
                )
    for t, p in zip(tmp, paths, strict=True):
        t.replace(p)
    return paths


def synthetic_text(path: Path, size: float, seed: int) -> Path:
    """About `size` bytes of random runs of 32 tiny-shakespeare lines, a run to a line."""
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    lines = (DATA / "tinyshakespeare" / "input.txt").read_text().split("\n")
    runs = [" ".join(lines[i : i + 32]).encode() + b"\n" for i in range(0, len(lines), 32)]
    rng, written = np.random.default_rng(seed), 0
    with open(tmp, "wb") as f:
        while written < size:
            block = b"".join(runs[i] for i in rng.integers(0, len(runs), 10_000))
            f.write(block)
            written += len(block)
    return tmp.replace(path)


def proc_kb(pid: int, file: str, field: str) -> int:
    """A /proc/PID/FILE figure in KiB (VmRSS of status, Pss of smaps_rollup); 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def measure(cmd: list[str], limit_gb: float | None = None, launcher: bool = False) -> dict:
    """Run `cmd`: its seconds, peak RSS (GB), seconds to its first training step, and the
    peak of its training processes' summed PSS (under torchrun, `launcher`: the launcher's
    children); stopped if its RSS passes `limit_gb`."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict = {"first_step_s": None, "tail": []}

    def read() -> None:
        for line in proc.stdout:
            if seen["first_step_s"] is None and FIRST_STEP.match(line):
                seen["first_step_s"] = round(time.monotonic() - start, 1)
            seen["tail"] = [*seen["tail"][-5:], line.rstrip()]

    reader = threading.Thread(target=read)
    reader.start()
    peak_pss, stopped = 0, False
    while True:  # wait4, not Popen.poll: it gives this child's own peak RSS
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        workers = children(proc.pid) if launcher else [proc.pid]
        peak_pss = max(peak_pss, sum(proc_kb(w, "smaps_rollup", "Pss:") for w in workers))
        if limit_gb and proc_kb(proc.pid, "status", "VmRSS:") > limit_gb * 2**20:
            proc.kill()
            stopped = True
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    record = {
        "seconds": round(time.monotonic() - start, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 3),
        "peak_pss_gb": round(peak_pss / 2**20, 3),
        "first_step_s": seen["first_step_s"],
    }
    if stopped:
        record["stopped_at_rss_gb"] = limit_gb
        record["last_output"] = seen["tail"][-1:] or None
    elif proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(seen["tail"]))
    return record


def fresh(work: Path, name: str) -> Path:
    """A run directory of this benchmark, emptied of an earlier run's files."""
    shutil.rmtree(work / name, ignore_errors=True)
    return work / name


def aiayn(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiayn", *args]


def sets(**values: object) -> list[str]:
    return [a for k, v in values.items() for a in ("--set", f"{k.replace('__', '.')}={v}")]


def train_sets(steps: int) -> list[str]:
    # every step logged, so the first is seen; no BLEU or average at the end: the figures
    # are the data path's
    return sets(
        train__max_steps=steps,
        train__max_minutes=0,
        train__log_every=1,
        train__eval_every=10 * steps,
        train__bleu="false",
        train__average_last=1,
    )


def data_sets(src: Path, tgt: Path) -> list[str]:
    """The demo config's data, trained on `src` and `tgt`."""
    return sets(
        data__train_src=src,
        data__train_tgt=tgt,
        data__valid_src=M30K / "val.en.gz",
        data__valid_tgt=M30K / "val.de.gz",
        data__test_src='""',
        data__test_tgt='""',
    )


def translation(work: Path, a: argparse.Namespace) -> dict:
    src, tgt = synthetic_pairs(work, a.pairs, a.seed)
    data = data_sets(src, tgt)
    config, prepared = "configs/demo.toml", work / "prepared"
    out: dict = {
        "pairs": a.pairs,
        "steps": a.steps,
        "ddp_steps": a.ddp_steps,
        "text_gb": round((src.stat().st_size + tgt.stat().st_size) / 1e9, 2),
    }
    if "prepare" not in a.skip:
        out["prepare"] = measure(aiayn("prepare", config, "--out", str(prepared), *data))
    mapped = [*data, *sets(data__prepared=prepared), *train_sets(a.steps)]
    out["train_prepared"] = measure(
        aiayn("train", config, "--out", str(fresh(work, "r1")), *mapped)
    )
    if "in_memory" not in a.skip:
        text = [*data, *train_sets(a.steps)]
        out["train_in_memory"] = measure(
            aiayn("train", config, "--out", str(fresh(work, "r2")), *text), limit_gb=a.limit_gb
        )
    few = [*data, *sets(data__prepared=prepared), *train_sets(a.ddp_steps)]
    out["one_process"] = measure(aiayn("train", config, "--out", str(fresh(work, "r3")), *few))
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*ddp, "-m", "aiayn", "train", config, "--out", str(fresh(work, "r4")), *few]
    out["two_ddp_processes"] = measure(cmd, launcher=True)
    out["pss_ratio_2_to_1"] = round(
        out["two_ddp_processes"]["peak_pss_gb"] / out["one_process"]["peak_pss_gb"], 3
    )
    # what the corpus itself costs the two processes: the same run on Multi30k's 29,000 pairs
    small, m30k = work / "prepared_multi30k", data_sets(M30K / "train.en.gz", M30K / "train.de.gz")
    if "prepare" not in a.skip or not small.exists():
        shutil.rmtree(small, ignore_errors=True)
        measure(aiayn("prepare", config, "--out", str(small), *m30k))
    few = [*m30k, *sets(data__prepared=small), *train_sets(a.ddp_steps)]
    cmd = [*ddp, "-m", "aiayn", "train", config, "--out", str(fresh(work, "r6")), *few]
    out["two_ddp_processes_multi30k"] = measure(cmd, launcher=True)
    out["corpus_pss_gb"] = round(
        out["two_ddp_processes"]["peak_pss_gb"] - out["two_ddp_processes_multi30k"]["peak_pss_gb"],
        3,
    )
    return out


def language_model(work: Path, a: argparse.Namespace) -> dict:
    text = synthetic_text(work / f"text{a.text_gb:g}.txt", a.text_gb * 1e9, a.seed)
    config, prepared = "configs/shakespeare_char_cpu.toml", work / "prepared_text"
    data = sets(data__train_text=text)
    out: dict = {"text_gb": round(text.stat().st_size / 1e9, 2)}
    if "prepare" not in a.skip:
        out["prepare"] = measure(aiayn("prepare", config, "--out", str(prepared), *data))
    mapped = [*data, *sets(data__prepared=prepared), *train_sets(a.steps)]
    out["train_prepared"] = measure(
        aiayn("train", config, "--out", str(fresh(work, "r5")), *mapped)
    )
    return out


def pss_floor(work: Path, a: argparse.Namespace) -> dict:
    """The PSS of processes that only import torch, one against two: what any two training
    processes started apart (as torchrun starts them) hold beyond one, before a model or data."""
    idle = f"{sys.executable} -c 'import torch, time; time.sleep(4)'"
    one = measure(["sh", "-c", f"{idle} & wait"], launcher=True)
    two = measure(["sh", "-c", f"{idle} & {idle} & wait"], launcher=True)
    return {
        "one_process": one,
        "two_processes": two,
        "pss_ratio_2_to_1": round(two["peak_pss_gb"] / one["peak_pss_gb"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True, help="a folder with room for the corpora")
    ap.add_argument("--pairs", type=int, default=4_500_000)
    ap.add_argument("--text-gb", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--ddp-steps", type=int, default=30)
    ap.add_argument("--limit-gb", type=float, default=16.0, help="stop the in-memory run here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("translation", "language_model", "pss_floor"))
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated: prepare (reuse the prepared data in --work), in_memory",
    )
    a = ap.parse_args()
    a.skip = set(filter(None, a.skip.split(",")))
    a.work.mkdir(parents=True, exist_ok=True)
    benches = {"translation": translation, "language_model": language_model, "pss_floor": pss_floor}
    for name, bench in benches.items():
        if a.only in (None, name):
            report({"bench": f"scale_data.{name}", **bench(a.work, a)})


if __name__ == "__main__":
    main()
