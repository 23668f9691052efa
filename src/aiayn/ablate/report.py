"""An ablation study's results as a Markdown table and a picture.

Each variant's test BLEU is set against the base's mean over its seeds; the base's spread
(the range of its seeds' scores) is the noise a difference is read against: a change larger
than three times the spread is reported as an effect, one inside the spread as no measurable
difference, and one between the two as a possible effect that the seeds cannot confirm.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from aiayn.ablate.study import Study
from aiayn.machine import machine
from aiayn.run.atomic import atomic_write

NOISE = 3  # a difference counts as an effect past this many times the base's spread


def score(result: dict) -> float | None:
    """The figure a variant is ranked by: test BLEU, else validation BLEU."""
    return result["test_bleu"] if result["test_bleu"] is not None else result["val_bleu"]


def base_stats(base: list[dict]) -> tuple[float, float]:
    """The base's mean score over its seeds, and its spread (max - min)."""
    scores = [score(r) for r in base]
    if any(s is None for s in scores):
        raise ValueError("the base has no BLEU to compare with (set data.test_src or train.bleu)")
    return statistics.fmean(scores), max(scores) - min(scores)


def finding(result: dict, mean: float, spread: float) -> str:
    """One sentence that says no more than the difference and the base's spread support."""
    change = score(result) - mean
    way = "costs" if change < 0 else "gains"
    if abs(change) > NOISE * max(spread, 1e-9):
        return (
            f"{result['name']} {way} {abs(change):.2f} BLEU, more than {NOISE}x the base's "
            f"seed-to-seed spread of {spread:.2f}: an effect."
        )
    if abs(change) > spread:
        return (
            f"{result['name']} {way} {abs(change):.2f} BLEU, outside the base's seeds "
            f"(spread {spread:.2f}) but within {NOISE}x their spread: perhaps an effect, "
            "which more seeds would have to confirm."
        )
    return (
        f"{result['name']}: {change:+.2f} BLEU, inside the base's seed-to-seed spread of "
        f"{spread:.2f}: at this scale it makes no measurable difference."
    )


def table(base: list[dict], variants: list[dict]) -> list[str]:
    mean, _ = base_stats(base)
    fmt = lambda x, p=2: "n/a" if x is None else f"{x:.{p}f}"  # noqa: E731
    rows = [
        "| variant | group | what changed | parameters | val NLL | val BLEU | test BLEU "
        "| train min | Δ test BLEU | the paper |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in base:
        rows.append(
            f"| base (seed {r['seed']}) | | | {r['parameters']:,} | {fmt(r['val_nll'], 3)} "
            f"| {fmt(r['val_bleu'])} | {fmt(r['test_bleu'])} | {fmt(r['train_minutes'], 1)} "
            f"| {score(r) - mean:+.2f} | |"
        )
    for r in variants:
        changed = ", ".join(f"`{s}`" for s in r["set"])
        rows.append(
            f"| {r['name']} | {r['group']} | {changed} | {r['parameters']:,} "
            f"| {fmt(r['val_nll'], 3)} | {fmt(r['val_bleu'])} | {fmt(r['test_bleu'])} "
            f"| {fmt(r['train_minutes'], 1)} | **{score(r) - mean:+.2f}** | {r['paper']} |"
        )
    return rows


def write_report(study: Study, results: list[dict]) -> list[Path]:
    """REPORT.md and REPORT.png beside each other; returns their paths."""
    base, variants = results[: len(study.base)], results[len(study.base) :]
    mean, spread = base_stats(base)
    minutes = sum(r["minutes"] for r in results)
    train_minutes = sum(r["train_minutes"] for r in results)
    steps = sum(r["steps"] for r in results)
    m = machine()
    md, png = study.report.with_suffix(".md"), study.report.with_suffix(".png")
    lines = [
        "# Ablations",
        "",
        f"{len(results)} runs of {base[0]['steps']:,} steps of "
        f"{study.base[0].cfg.train.batch_tokens:,} tokens each (the base with seeds "
        f"{', '.join(str(r['seed']) for r in base)}; each variant with seed {base[0]['seed']}), "
        f"{minutes:.1f} minutes in all, {train_minutes:.1f} of them training at "
        f"{steps / train_minutes:.0f} steps a minute, the rest decoding the validation and test "
        f"sets, on {m['cpu']} ({m['cores']} cores, {m['threads']} torch threads, torch "
        f"{m['torch']}): a slower machine takes longer for the same numbers. Δ is each run's "
        f"test BLEU minus the base's mean ({mean:.2f}); the base's seeds span {spread:.2f}.",
        "",
        *table(base, variants),
        "",
        "## Findings",
        "",
        *[f"- {finding(r, mean, spread)}" for r in variants],
        "",
        f"![validation curves and BLEU differences]({png.name})",
        "",
    ]
    md.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(md, lambda tmp: tmp.write_text("\n".join(lines), encoding="utf-8"))
    figure(base, variants, mean, spread, png)
    return [md, png]


def figure(base: list[dict], variants: list[dict], mean: float, spread: float, out: Path) -> None:
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(14, 0.3 * len(variants) + 4))
    for r in [*base, *variants]:
        steps, losses = zip(*r["curve"], strict=True)
        style = {"color": "black", "linewidth": 2} if r in base else {"alpha": 0.7}
        curves.plot(steps, losses, label=r["name"] if r not in base[1:] else None, **style)
    curves.set(title="validation NLL", xlabel="step")
    curves.legend(fontsize=7, ncol=2)
    changes = [score(r) - mean for r in variants]
    names = [r["name"] for r in variants]
    bars.barh(names, changes, color=["#c44" if c < 0 else "#48c" for c in changes])
    seeds = [score(r) - mean for r in base]
    bars.axvspan(min(seeds), max(seeds), color="grey", alpha=0.3, label="the base's seeds")
    bars.axvline(0, color="black", linewidth=0.8)
    bars.invert_yaxis()
    bars.set(title="test BLEU against the base's mean", xlabel="Δ BLEU")
    bars.legend(fontsize=8)
    for ax in (curves, bars):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
