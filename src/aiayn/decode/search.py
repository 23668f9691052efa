"""Batched greedy and beam search for the encoder-decoder, over the decoder's KV cache
(the decoder run a step at a time as `aiayn.decode.steps` says).

Each output may run to its source length + `max_extra` tokens (paper §6.1: input length + 50).
Hypotheses are ranked by log-probability over a length penalty: GNMT's ((5 + |y|) / 6)^alpha,
or |y|^alpha as transformers and CTranslate2 count it (decode.length_norm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from aiayn.decode.steps import decoder_steps
from aiayn.decode.topk import row_topk
from aiayn.models.encoder_decoder import EncoderDecoder

NOT_FINITE = "the model gave NaN scores; its weights or inputs are broken"


@dataclass(frozen=True)
class Special:
    bos: int
    eos: int
    pad: int
    more_ends: tuple[int, ...] = ()  # other ids that end an output as </s> does (a checkpoint's)

    @property
    def ends(self) -> list[int]:
        return sorted({self.eos, *self.more_ends})

    @property
    def banned(self) -> list[int]:
        """Tokens never chosen: <s> and <pad> are never targets in training, and emitted they
        would end the output early, unlike what was scored (Marian's <s> is its <pad>)."""
        return sorted({self.bos, self.pad} - set(self.ends))

    def is_end(self, tokens: Tensor) -> Tensor:
        return torch.isin(tokens, torch.tensor(self.ends, device=tokens.device))


def _ban(scores: Tensor, special: Special) -> Tensor:
    # scores: (N, V), changed in place; log-probabilities stay those of the whole vocabulary
    scores[:, special.banned] = float("-inf")
    return scores


def length_penalty(length: Tensor | int, alpha: float, norm: str = "gnmt") -> Tensor | float:
    """What a hypothesis of `length` tokens (</s> counted) has its log-probability divided by."""
    return (length if norm == "length" else (5 + length) / 6) ** alpha


def _limits(src: Tensor, pad: int, max_extra: int, cap: int | None) -> Tensor:
    limit = (src != pad).sum(1) + max_extra
    return limit if cap is None else limit.clamp(max=cap)


@torch.inference_mode()
def greedy(
    model: EncoderDecoder,
    src: Tensor,
    special: Special,
    max_extra: int = 50,
    cap: int | None = None,
    use_cache: bool = True,
    graph: bool = False,
) -> list[list[int]]:
    """The most likely next token at each step, until </s> or the length limit. `graph`: the
    step with static shapes, in a CUDA graph on CUDA (`aiayn.decode.steps`)."""
    # src: (B, S) -> B token lists without <s> or </s>
    memory, src_pad = model.encode(src)
    limit = _limits(src, special.pad, max_extra, cap)
    longest = int(limit.max())
    steps = decoder_steps(model, memory, src_pad, 1, longest, graph, use_cache)
    ys = torch.full((src.size(0), 1), special.bos, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    broken = torch.zeros((), dtype=torch.bool, device=src.device)
    for t in range(longest):
        step_in = ys[:, -1:] if use_cache else ys
        logits = steps.logits(step_in)
        broken |= logits.isnan().any()
        nxt = _ban(logits, special).argmax(-1)
        nxt = nxt.masked_fill(done, special.pad)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= special.is_end(nxt) | (t + 1 >= limit)
        if done.all():
            break
    if broken:
        raise ValueError(NOT_FINITE)
    return [_strip(row, special) for row in ys[:, 1:].tolist()]


def _strip(tokens: list[int], special: Special) -> list[int]:
    out = []
    for tok in tokens:
        if tok == special.pad or tok in special.ends:
            break
        out.append(tok)
    return out


@torch.inference_mode()
def beam_search(
    model: EncoderDecoder,
    src: Tensor,
    special: Special,
    beam: int = 5,
    alpha: float = 0.6,
    max_extra: int = 50,
    cap: int | None = None,
    norm: str = "gnmt",
    graph: bool = False,
) -> list[tuple[list[int], float]]:
    """Keep the `beam` best prefixes per sentence; return each sentence's best finished one,
    as (tokens, length-normalised log-probability)."""
    found = n_best_search(model, src, special, beam, alpha, max_extra, cap, norm=norm, graph=graph)
    return [hyps[0] for hyps in found]


@torch.inference_mode()
def n_best_search(
    model: EncoderDecoder,
    src: Tensor,
    special: Special,
    beam: int = 5,
    alpha: float = 0.6,
    max_extra: int = 50,
    cap: int | None = None,
    n_best: int = 1,
    norm: str = "gnmt",
    graph: bool = False,
) -> list[list[tuple[list[int], float]]]:
    """Beam search that returns each sentence's `n_best` (<= `beam`) best finished hypotheses,
    best first, as (tokens, length-normalised log-probability). `graph`: as greedy's."""
    if not 1 <= n_best <= beam:
        raise ValueError(f"n_best {n_best} must be in [1, beam = {beam}]")
    b, k = src.size(0), beam
    memory, src_pad = model.encode(src)
    limit = _limits(src, special.pad, max_extra, cap).tolist()
    # the K beams of a sentence share its row of the memory
    steps = decoder_steps(model, memory, src_pad, k, max(limit), graph)
    tokens = torch.full((b * k, 1), special.bos, dtype=torch.long, device=src.device)
    scores = torch.full((b, k), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # at the start only one prefix exists per sentence
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    active = finished  # the sentences still searched, in the order of the batch's rows
    # eagerly, the first step feeds one row a sentence, whose K prefixes are all <s> alone (as
    # CTranslate2 does on CPUs): the decoder and output layer's first step is 1/K the work
    first = 1 if graph else k
    for t in range(max(limit)):
        fed = first if t == 0 else 1  # the step's rows are every `fed`-th of tokens'
        logits = steps.logits(tokens[::fed, -1:]).float()
        # in place: a second (n, V) block each step would be fresh pages for the kernel to
        # fault in (a beam of 1,650 rows over 8,000 tokens: 53 MB, mapped anew by malloc)
        logp = _ban(torch.log_softmax(logits, -1, out=logits), special)
        n, each = len(active), min(2 * k, logp.size(-1))
        # a sentence's 2K best continuations lie among each of its beams' 2K best tokens:
        # only those are added to their beam's score
        best, best_token = row_topk(logp, each)  # (n * K, each), as logp.topk(each, dim=1)
        if best.size(0) < n * k:  # the first step's row is each of its sentence's K beams'
            best, best_token = best.repeat_interleave(k, 0), best_token.repeat_interleave(k, 0)
        cand = (scores.view(-1, 1) + best).view(n, k * each)
        top_scores, top_idx = cand.topk(2 * k, dim=1)  # (n, 2K): at most K of them end in </s>
        parent, token = top_idx // each, best_token.view(n, k * each).gather(1, top_idx)
        is_eos = special.is_end(token)
        lp = length_penalty(t + 1, alpha, norm)
        _finish(active, top_scores, parent, token, is_eos, tokens, t, limit, k, lp, special)
        # the K best candidates that do not end in </s> go on
        order = (is_eos.long() * 2 * k + torch.arange(2 * k, device=src.device)).argsort(1)[:, :k]
        scores = top_scores.gather(1, order)
        rows = torch.arange(n, device=src.device)[:, None] * k + parent.gather(1, order)
        token = token.gather(1, order)
        going = _undecided(active, scores, limit, n_best, alpha, norm)
        if not going:
            break
        keep = None
        if len(going) < n:  # a sentence with K finished hypotheses leaves the batch
            keep = torch.tensor(going, device=src.device)
            scores, rows, token = scores[keep], rows[keep], token[keep]
            active, limit = [active[i] for i in going], [limit[i] for i in going]
        tokens = torch.cat([tokens[rows.view(-1)], token.view(-1, 1)], dim=1)
        steps.reorder(rows.view(-1) // fed, keep)
    # a stable sort: among equal scores the first found stays first, as max() would pick it
    ranked = [sorted(f, key=lambda h: -h[0])[:n_best] for f in finished]
    if any(math.isnan(score) for f in ranked for score, _ in f):
        raise ValueError(NOT_FINITE)
    # prefixes that could never be reached (-inf: fewer of them than the beam) are left out
    return [
        [(tokens, score) for j, (score, tokens) in enumerate(f) if j == 0 or score > -math.inf]
        for f in ranked
    ]


def _undecided(finished, scores, limit, n_best, alpha, norm) -> list[int]:
    """The sentences still searched: fewer than K hypotheses finished, and some live one that
    could yet rank among the `n_best` best finished. None can once the n_best-th best finished
    score is at least each live one's bound: its log-probability only falls, and is divided
    by at most the penalty at the sentence's limit. Ties go to the first found, so stopping
    then returns what running on to K finished would, scores and all."""
    # scores: (n, K) the live hypotheses' log-probabilities, -inf where fewer than K exist
    k = scores.size(1)
    decidable = alpha >= 0 and any(n_best <= len(f) < k for f in finished)
    best = scores.max(1).values.tolist() if decidable else None
    out = []
    for i, f in enumerate(finished):
        if len(f) >= k:
            continue
        if best is not None and len(f) >= n_best:
            nth = sorted((s for s, _ in f), reverse=True)[n_best - 1]
            if nth >= best[i] / length_penalty(limit[i], alpha, norm):
                continue
        out.append(i)
    return out


def _finish(finished, top_scores, parent, token, is_eos, tokens, t, limit, k, lp, special):
    """Move hypotheses that end here (</s> among the top K, or the length limit) to `finished`,
    one list for each sentence searched, in row order."""
    ends = is_eos[:, :k].tolist()
    if not any(map(any, ends)) and all(t + 1 < n for n in limit):
        return  # the usual step: nothing ends (one transfer, no per-hypothesis work)
    parents, tails, top = parent[:, :k].tolist(), token[:, :k].tolist(), top_scores.tolist()
    for i, done in enumerate(finished):
        if len(done) >= k:
            continue
        at_limit = t + 1 >= limit[i]
        for j in range(k):
            if not (ends[i][j] or at_limit):
                continue
            prefix = tokens[i * k + parents[i][j], 1:].tolist()
            tail = [] if ends[i][j] else [tails[i][j]]
            done.append((top[i][j] / lp, _strip(prefix + tail, special)))


@torch.inference_mode()
def sequence_score(
    model: EncoderDecoder,
    src: Tensor,
    hyp: list[int],
    special: Special,
    alpha: float,
    ends: bool = True,
    norm: str = "gnmt",
) -> float:
    """Length-normalised log-probability of `hyp` (then </s> when `ends`) given one source."""
    # src: (1, S)
    target = [*hyp, special.eos] if ends else hyp
    tgt_in = torch.tensor([[special.bos, *target[:-1]]], device=src.device)
    memory, src_pad = model.encode(src)
    logp = model.decode(tgt_in, memory, src_pad)[0].float().log_softmax(-1)
    total = logp.gather(-1, torch.tensor(target, device=src.device)[:, None]).sum()
    return float(total) / length_penalty(len(target), alpha, norm)
