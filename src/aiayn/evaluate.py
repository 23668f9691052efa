"""Translation quality with sacreBLEU: BLEU (detokenized, cased unless asked) and chrF."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF


def score_translations(
    hypotheses: list[str], references: list[str], lowercase: bool = False
) -> dict[str, float | str]:
    """{"bleu", "chrf", "signature"} for hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references")
    bleu, chrf = BLEU(lowercase=lowercase), CHRF(lowercase=lowercase)
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    signature = f"BLEU {bleu.get_signature()} | chrF {chrf.get_signature()}"
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2), "signature": signature}
