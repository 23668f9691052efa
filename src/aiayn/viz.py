"""Pictures of a run: training curves from metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or used
import matplotlib.pyplot as plt

from aiayn.run.atomic import atomic_write
from aiayn.run.paths import refuse_link
from aiayn.train.metrics import read_metrics


def plot_metrics(metrics_path: str | Path, out: str | Path) -> None:
    """Loss (train and validation), learning rate and validation score against steps."""
    records, _ = read_metrics(metrics_path)  # a torn last line (a write cut short) is left out

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    scores = [k for k in ("val_bleu", "val_acc") if series(k)[0]]
    fig, axes = plt.subplots(1, 2 + len(scores), figsize=(5 * (2 + len(scores)), 3.8))
    axes[0].plot(*series("loss"), label="train (label-smoothed)")
    axes[0].plot(*series("val_loss"), marker="o", label="validation (NLL)")
    axes[0].set(title="loss per token", xlabel="step")
    axes[0].legend()
    axes[1].plot(*series("lr"))
    axes[1].set(title="learning rate", xlabel="step")
    for ax, key in zip(axes[2:], scores, strict=True):
        ax.plot(*series(key), marker="o")
        ax.set(title=key.replace("val_", "validation ").replace("bleu", "BLEU"), xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def attention_figure(weights, rows: list[str], cols: list[str], title: str) -> plt.Figure:
    """One heatmap panel per head: queries down, keys across, tokens on both axes."""
    # weights: (H, T_q, T_k)
    heads = weights.shape[0]
    ncols = min(heads, 4)
    nrows = -(-heads // ncols)
    size = 0.28 * max(len(rows), len(cols)) + 1.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(weights[h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"head {h + 1}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, out: str | Path) -> None:
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "encoder-decoder attention",
}


def save_attention_maps(layers: dict, layer: str, out: str | Path) -> list[Path]:
    """One PNG per kind of attention and chosen layer ("all" or a number); returns the paths."""
    # layers: kind -> layer -> (weights (H, T_q, T_k), query labels, key labels)
    if layer != "all" and not layer.isdigit():
        raise ValueError(f"--layer {layer!r} is neither a layer number nor all")
    for by_layer in layers.values():  # before any folder is made for the pictures
        if layer != "all" and int(layer) not in by_layer:
            raise ValueError(
                f"--layer {layer} does not exist; the model has layers 0 to {max(by_layer)}"
            )
    out = Path(out)
    refuse_link(out, "--out")  # MODEL/attention as a link would put the pictures elsewhere
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, by_layer in layers.items():
        for n in sorted(by_layer) if layer == "all" else [int(layer)]:
            weights, rows, cols = by_layer[n]
            path = out / f"{kind}_layer{n}.png"
            save_figure(attention_figure(weights, rows, cols, f"{TITLES[kind]}, layer {n}"), path)
            paths.append(path)
    return paths
