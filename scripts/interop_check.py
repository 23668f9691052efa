"""Exports used on real data as the other tools' users use them (`make interop-check`): each
tool's high-level call, its defaults, the exported tokenizer's own framing, against aiayn's
own command.

- a classifier of SST-2 (configs/sst2.toml with the settings BertForSequenceClassification
  computes, trained `--sst2-minutes`), exported with `aiayn export-hf`:
  `pipeline("text-classification")(texts, truncation=True)` against `aiayn classify` on the
  first 200 dev sentences and on one text longer than the run's length;
- a translator (`--translator`, default runs/demo from `make demo`), exported with
  `aiayn export-hf`, on the first 40 sentences of its config's test set, against
  `aiayn translate` with the run's beam and greedy (`--sources FILE`: other sentences):
  `model.generate(**tokenizer(texts, return_tensors="pt", padding=True))`;
  `ct2-transformers-converter` on the export, then `ctranslate2.Translator` fed the exported
  tokenizer's tokens; and `aiayn export-ct2`'s folder fed its tokenizer.json's tokens.

Prints one JSON object (the counts, and every sentence that differs) and writes it to
WORK/interop.json; exits 1 unless the classifier agrees on all 200 and the long text, and each
translation check on at least 39 of 40 with the run's beam.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SST2_DEV = "../shared/data/sst2/dev.tsv.gz"
# what BertForSequenceClassification computes (docs/interop.md), set on configs/sst2.toml
BERT_SETTINGS = (
    "model.norm_first=false",
    'model.positional="learned"',
    "model.embed_norm=true",
    'model.pooling="cls"',
    "model.scale_embeddings=false",
)
N_CLASSIFIED, N_TRANSLATED = 200, 40
BANNED = [["<s>"], ["<pad>"]]  # aiayn's searches never choose them (generation_config too)


def aiayn(*args: str | Path) -> list[str]:
    """The lines an aiayn command prints."""
    done = subprocess.run(
        [sys.executable, "-m", "aiayn", *map(str, args)], check=True, capture_output=True, text=True
    )
    return done.stdout.splitlines()


def exported(run: Path, out: Path, command: str = "export-hf") -> Path:
    shutil.rmtree(out, ignore_errors=True)  # a folder of this script's, written anew
    aiayn(command, run, "--out", out)
    return out


def agreement(sources: list[str], ours: list[str], theirs: list[str]) -> dict[str, Any]:
    differ = [
        {"source": s, "aiayn": a, "tool": b}
        for s, a, b in zip(sources, ours, theirs, strict=True)
        if a != b
    ]
    return {"equal": len(sources) - len(differ), "of": len(sources), "differ": differ}


def classifier(work: Path, minutes: float) -> dict[str, Any]:
    import transformers

    from aiayn.data.text import read_labelled

    run = work / "sst2"
    if not (run / "config.toml").exists():
        sets = [a for s in (*BERT_SETTINGS, f"train.max_minutes={minutes}") for a in ("--set", s)]
        aiayn("train", "configs/sst2.toml", *sets, "--out", run)
    hf = exported(run, work / "sst2-hf")
    texts = read_labelled(SST2_DEV)[0][:N_CLASSIFIED]
    texts.append(" ".join(texts[:10]))  # longer than the run's truncate_len: cut as aiayn cuts
    inputs = work / "sst2-dev.txt"
    inputs.write_text("\n".join(texts) + "\n", encoding="utf-8")
    ours = [line.split("\t")[0] for line in aiayn("classify", "--model", run, "--input", inputs)]
    pipe = transformers.pipeline("text-classification", model=str(hf), device="cpu")
    theirs = [r["label"] for r in pipe(texts, truncation=True)]
    return {
        "pipeline text-classification": agreement(texts[:-1], ours[:-1], theirs[:-1]),
        "long text": {"aiayn": ours[-1], "tool": theirs[-1], "equal": ours[-1] == theirs[-1]},
    }


def hf_generate(hf: Path, sources: list[str], beam: int) -> list[str]:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(hf).eval()
    with torch.no_grad():  # the generation config's search, its beam or greedy
        out = model.generate(
            **tokenizer(sources, return_tensors="pt", padding=True), num_beams=beam
        )
    return tokenizer.batch_decode(out, skip_special_tokens=True)


def ct2_translate(folder: Path, tokens: list[list[str]], beam: int, cfg: Any) -> list[list[str]]:
    import ctranslate2

    engine = ctranslate2.Translator(str(folder), device="cpu")
    results = engine.translate_batch(
        tokens,
        beam_size=beam,
        length_penalty=cfg.decode.alpha,
        max_decoding_length=cfg.model.max_len,
        min_decoding_length=0,  # aiayn may end at once, with </s> (CTranslate2: 1 token)
        suppress_sequences=BANNED,
    )
    return [r.hypotheses[0] for r in results]


def translator(run: Path, work: Path, sources_file: str | None) -> dict[str, Any]:
    import transformers
    from tokenizers import Tokenizer

    from aiayn.data.text import read_lines
    from aiayn.run.config import read_run_config

    cfg = read_run_config(run)
    sources_file = sources_file or cfg.data.test_src
    if not sources_file:
        raise SystemExit(f"{run}: its config names no data.test_src to translate (--sources)")
    sources = list(read_lines(sources_file))[:N_TRANSLATED]
    inputs = work / "test.src"
    inputs.write_text("\n".join(sources) + "\n", encoding="utf-8")
    hf = exported(run, work / f"{run.name}-hf")
    converted = work / f"{run.name}-ct2-converted"
    converter = Path(sys.executable).parent / "ct2-transformers-converter"
    subprocess.run(
        [str(converter), "--model", str(hf), "--output_dir", str(converted), "--force"],
        check=True,
        capture_output=True,
    )
    ct2 = exported(run, work / f"{run.name}-ct2", "export-ct2")
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf)
    hf_tokens = [hf_tok(s).tokens() for s in sources]  # </s> included (the post-processor)
    folder_tok = Tokenizer.from_file(str(ct2 / "tokenizer.json"))  # CTranslate2 adds </s>
    ct2_tokens = [e.tokens for e in folder_tok.encode_batch(sources)]
    target = ct2 / "target_tokenizer.json"
    target_tok = Tokenizer.from_file(str(target)) if target.exists() else folder_tok
    report = {}
    for beam in dict.fromkeys((cfg.decode.beam, 1)):
        ours = aiayn("translate", "--model", run, "--input", inputs, "--beam", beam)
        outputs = {
            "transformers generate": hf_generate(hf, sources, beam),
            "ct2-transformers-converter": hf_tok.batch_decode(
                [
                    hf_tok.convert_tokens_to_ids(t)
                    for t in ct2_translate(converted, hf_tokens, beam, cfg)
                ],
                skip_special_tokens=True,
            ),
            "export-ct2": [
                target_tok.decode([target_tok.token_to_id(t) for t in hyp])
                for hyp in ct2_translate(ct2, ct2_tokens, beam, cfg)
            ],
        }
        report[f"beam {beam}"] = {
            name: agreement(sources, ours, theirs) for name, theirs in outputs.items()
        }
    return report


def passed(report: dict[str, Any], beam: int) -> bool:
    c = report["classifier"]
    return (
        c["pipeline text-classification"]["equal"] == N_CLASSIFIED
        and c["long text"]["equal"]
        and all(
            r["equal"] >= N_TRANSLATED - 1 for r in report["translator"][f"beam {beam}"].values()
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/interop"))
    parser.add_argument("--translator", type=Path, default=Path("runs/demo"))
    parser.add_argument("--sources", help="texts to translate (default: the run's test_src)")
    parser.add_argument("--sst2-minutes", type=float, default=3.0)
    args = parser.parse_args()
    if not (args.translator / "config.toml").exists():
        raise SystemExit(f"{args.translator}: no run (make demo trains runs/demo)")
    args.work.mkdir(parents=True, exist_ok=True)
    from aiayn.run.config import read_run_config

    report = {
        "classifier": classifier(args.work, args.sst2_minutes),
        "translator": translator(args.translator, args.work, args.sources),
    }
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    (args.work / "interop.json").write_text(text + "\n", encoding="utf-8")
    sys.exit(0 if passed(report, read_run_config(args.translator).decode.beam) else 1)


if __name__ == "__main__":
    main()
