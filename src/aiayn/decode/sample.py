"""Text from a language model, one token at a time over its KV cache: greedy, or sampled with
a temperature, top-k and nucleus (top-p, Holtzman et al. 2020) filtering."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from aiayn.decode.cache import KVCache, RowPositions
from aiayn.decode.steps import LMGraphSteps
from aiayn.decode.weights import InputMajor
from aiayn.models.decoder_only import DecoderOnlyLM


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set to -inf every logit outside the k largest (k > 0) and outside the smallest set of
    most likely tokens whose probabilities sum to at least p (p < 1); the most likely token
    is always kept."""
    # logits: (B, V) -> (B, V)
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        # A token is dropped when the more likely tokens before it already reach p; the most
        # likely token always stays, so that even p = 0 leaves something to sample (greedy).
        drop = probs.cumsum(dim=-1) - probs >= top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def next_token(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token per row: the most likely when temperature is 0, else a filtered sample."""
    # logits: (B, V) -> (B,)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    if not bool(torch.isfinite(probs).all()):
        raise ValueError("the model gave non-finite next-token scores (NaN or inf)")
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def chosen_probs(
    logits: Tensor, chosen: Tensor, temperature: float, top_k: int, top_p: float
) -> Tensor:
    """The probabilities (B,) of the `chosen` tokens in the distribution `next_token` used."""
    # logits: (B, V), chosen: (B,)
    scaled = (
        logits.float()
        if temperature == 0
        else filter_logits(logits.float() / temperature, top_k, top_p)
    )
    return scaled.softmax(-1).gather(-1, chosen[:, None])[:, 0]


@torch.inference_mode()
def generate(
    model: DecoderOnlyLM,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    banned: Sequence[int] = (),
    pad_mask: Tensor | None = None,
    on_probs: Callable[[Tensor], None] | None = None,
    graph: bool = False,
) -> Iterator[Tensor]:
    """Yield each new token (B,) as soon as it is chosen, continuing `prompt` (B, T), whose
    rows may begin with padding (`pad_mask`, True there: a batch of prompts of different
    lengths); `banned` tokens (e.g. special tokens the model never saw as targets) are never
    chosen. Each step computes logits for the last position only. `on_probs`, if given, is
    called before each yield with the probabilities (B,) that the chosen tokens had in the
    distribution they were drawn from (filtered; for greedy search, the model's).

    The context is the model's max_len: when a row's tokens fill it, the cache is rebuilt
    from that row's last half, so that long generations cost one re-read per max_len / 2
    tokens. Each row keeps its own context, as it would alone (`refill`).

    `graph`: the cache's buffers of a fixed size, and each step after the prompt's a CUDA graph
    replayed on CUDA (`aiayn.decode.steps.LMGraphSteps`); the same tokens.
    """
    if graph and not use_cache:
        raise ValueError("graph=True decodes over a static cache; it needs use_cache=True")
    model.eval()
    window = model.cfg.max_len
    tokens = prompt[:, -window:]
    pad = None if pad_mask is None else pad_mask[:, -window:]
    # without a cache, each step recomputes all positions, counted per row past the padding
    cache = RowPositions()
    if use_cache:
        # static buffers for the prompt and every new token but the last (never read), or the
        # context: refilled in place, so that a CUDA graph captured once serves to the end
        capacity = max(min(window, tokens.size(1) + max_new_tokens - 1), 1)
        cache = LMGraphSteps(model, len(tokens), capacity, prompt.device) if graph else KVCache()
    step_in, step_pad = tokens, pad
    banned_ids = torch.tensor(list(banned), dtype=torch.long, device=prompt.device)
    weights = InputMajor(model)  # lent around each step only: the caller runs between yields
    for _ in range(max_new_tokens):
        if use_cache and cache.length + step_in.size(1) > window:
            step_in, step_pad = refill(tokens, cache, window)
            if graph:
                cache.reset()
            else:
                cache = KVCache()
        elif not use_cache:
            step_in, step_pad = tokens, pad
        with weights.active():
            if graph:
                logits = cache.logits(step_in, step_pad)
            else:
                logits = model(step_in, cache, step_pad, last_only=True)[:, -1]
        if len(banned_ids):
            logits[:, banned_ids] = float("-inf")
        nxt = next_token(logits, temperature, top_k, top_p, generator)
        if on_probs is not None:
            on_probs(chosen_probs(logits, nxt, temperature, top_k, top_p))
        yield nxt
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)[:, -window:]
        if pad is not None:
            pad = torch.cat([pad, pad.new_zeros(pad.size(0), 1)], dim=1)[:, -window:]
        step_in, step_pad = nxt[:, None], None


def refill(
    tokens: Tensor, cache: KVCache | LMGraphSteps, window: int
) -> tuple[Tensor, Tensor | None]:
    """The input (and its padding) that refills an emptied cache once the last of `tokens`
    no longer fits beside `cache` in the context of `window` tokens: a row whose own tokens
    filled it keeps its last `window // 2`, any other row all of its cached tokens, as each
    would alone; a left-padded batch's width counts its padding, no row's real length."""
    # tokens: (B, <= window) with the new token last, cached before it -> (B, W), (B, W)
    held = cache.length if cache.key_pad is None else cache.length - cache.key_pad.sum(1)
    held = torch.as_tensor(held, device=tokens.device).expand(tokens.size(0)) + 1
    keep = held.where(held <= window, window // 2)
    width = int(keep.max())
    pad = torch.arange(width, device=tokens.device) < (width - keep)[:, None]
    return tokens[:, -width:], pad if bool(pad.any()) else None
