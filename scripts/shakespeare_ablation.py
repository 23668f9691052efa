"""Train configs/shakespeare_char_cpu.toml with one choice at a time reverted towards nanoGPT's
recipe and print a markdown table of validation loss and time (results/shakespeare.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONFIG = "configs/shakespeare_char_cpu.toml"
PRE = "model.norm_first=true"
VARIANTS = {
    "nanoGPT's choices: pre-norm LayerNorm, learned positions, GELU, lr 1e-3": [
        PRE,
        "model.norm=layernorm",
        "model.positional=learned",
        "model.activation=gelu",
        "train.lr=1e-3",
    ],
    "+ RoPE": [PRE, "model.norm=layernorm", "model.activation=gelu", "train.lr=1e-3"],
    "+ RoPE, SwiGLU": [PRE, "model.norm=layernorm", "train.lr=1e-3"],
    "+ RoPE, SwiGLU, RMSNorm": [PRE, "train.lr=1e-3"],
    "+ RoPE, SwiGLU, RMSNorm, lr 2e-3": [PRE],
    "+ RoPE, SwiGLU, RMSNorm, lr 2e-3, post-norm (the config)": [],
}


def run(name: str, sets: list[str], out: Path) -> tuple[float, float]:
    args = [sys.executable, "-m", "aiayn", "train", CONFIG, "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    subprocess.run(args, check=True, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r][-1]
    elapsed = max(r.get("elapsed_s", 0.0) for r in records)
    print(f"{name}: {val:.3f} in {elapsed / 60:.1f} min", file=sys.stderr, flush=True)
    return val, elapsed


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/shakespeare_ablation")
    if root.exists() and any(root.iterdir()):
        sys.exit(f"{root} already holds runs; remove it or name another folder")
    rows = ["| variant | val loss | time |", "| --- | --- | --- |"]
    for i, (name, sets) in enumerate(VARIANTS.items()):
        val, elapsed = run(name, sets, root / f"v{i}")
        rows.append(f"| {name} | {val:.3f} | {elapsed / 60:.1f} min |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
