"""`aiayn demo`: train English -> German on the shipped Multi30k for a few minutes, then show
what the model learned: sample translations, the test BLEU, loss curves and attention maps."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiayn.config import RunConfig
from aiayn.data.text import read_parallel
from aiayn.device import pick_device
from aiayn.evaluate import score_translations
from aiayn.run.files import LOSS_PNG
from aiayn.run.lock import contents
from aiayn.tasks import train
from aiayn.tasks.translation import load_translator
from aiayn.viz import save_attention_maps

ATTENTION_SENTENCE = "A man in a blue shirt is riding a bike down the street."
N_SAMPLES = 5


@dataclass
class DemoResult:
    run_dir: Path
    scores: dict[str, float | str]
    samples: list[tuple[str, str, str]]  # (source, translation, reference)
    pictures: list[Path]


def fresh_dir(base: Path) -> Path:
    """`base`, or the first of base-2, base-3, ... that holds no files: a demo never
    overwrites an earlier run."""
    candidate, n = base, 1
    while contents(candidate):  # a lock left by a killed run is no file of the run
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def run_demo(
    cfg: RunConfig, out: Path, log: Callable[[str], None] = print, samples: int = N_SAMPLES
) -> DemoResult:
    """Train with `cfg` into `out`, translate the test set, draw the pictures."""
    if not cfg.data.test_src or not cfg.data.test_tgt:
        raise ValueError("the demo config needs data.test_src and data.test_tgt")
    if cfg.model.arch != "encoder_decoder":
        raise ValueError(f"model.arch={cfg.model.arch!r}: the demo translates (encoder_decoder)")
    train(cfg, out, log=log)
    translator = load_translator(out, device=pick_device(cfg.train.device), log=log)
    src, ref = read_parallel(cfg.data.test_src, cfg.data.test_tgt)
    log(f"translating {len(src):,} test sentences (beam {cfg.decode.beam})")
    hyps = translator.translate(src)
    picks = range(0, len(src), max(len(src) // samples, 1))[:samples]
    maps = translator.attention(ATTENTION_SENTENCE)
    pictures = save_attention_maps(maps.layers, "all", out / "attention")
    return DemoResult(
        out,
        score_translations(hyps, ref),
        [(src[i], hyps[i], ref[i]) for i in picks],
        [out / LOSS_PNG, *pictures],
    )


def report(result: DemoResult, test_name: str, width: int = 96) -> str:
    """The samples as a three-row table per sentence, then the score and the pictures."""
    lines = []
    for n, row in enumerate(result.samples, 1):
        for label, text in zip(("source", "aiayn", "reference"), row, strict=True):
            head = f"{n:>2}  {label:<10}" if label == "source" else f"    {label:<10}"
            wrapped = textwrap.wrap(text, width - len(head)) or [""]
            lines.append(head + wrapped[0])
            lines.extend(" " * len(head) + more for more in wrapped[1:])
        lines.append("")
    s = result.scores
    lines.append(f"{test_name}: sacreBLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}")
    lines.append(f"  {s['signature']}")
    lines.append("pictures:")
    lines.extend(f"  {p}" for p in result.pictures)
    lines.append(f'try: echo "A dog runs in the park." | aiayn translate --model {result.run_dir}')
    return "\n".join(lines)
