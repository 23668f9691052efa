"""Padding and causal masks.

One convention, the same as `F.scaled_dot_product_attention`'s `attn_mask`:
- a *padding mask* is bool `(B, T)`, True where the token is padding;
- an *attention mask* is broadcastable to `(B, H, T_q, T_k)` and is either bool, True where the
  query may attend to the key, or float, added to the scores (-inf forbids); or `CAUSAL`, a
  square causal mask left to the attention kernel.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """(B, T) token ids -> (B, T) bool, True at padding."""
    return tokens == pad_id


def causal_mask(
    t_q: int,
    t_k: int | None = None,
    device: torch.device | None = None,
    window: int | None = None,
) -> Tensor:
    """(T_q, T_k) bool, True where key j <= query i; queries are the last T_q of T_k positions.
    With a `window` (sliding-window attention, as Mistral's), also i - j < window."""
    t_k = t_q if t_k is None else t_k
    q = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    k = torch.arange(t_k, device=device)[None, :]
    return (k <= q) & (k > q - window) if window is not None else k <= q


class Causal:
    """The causal mask of a square attention, named rather than built: SDPA then applies it
    itself (`is_causal`), which its fastest (flash) kernels need, since they take no mask."""

    def __repr__(self) -> str:
        return "CAUSAL"


CAUSAL = Causal()
Mask = Tensor | Causal | None


def attention_mask(
    t_q: int,
    t_k: int,
    key_padding: Tensor | None = None,
    causal: bool = False,
    bias: Tensor | None = None,
    device: torch.device | None = None,
    window: int | None = None,
) -> Mask:
    """Combine key padding (B, T_k), causality (within a `window` of keys, when given) and a
    float score bias into one attention mask.

    Returns None when nothing is masked, CAUSAL for causality alone over T queries and keys,
    a bool mask without bias, else a float mask. Under causality a query that may see no key
    (left padding) sees its own: its row would otherwise be NaN, and the NaN would reach the
    real tokens through the (zero) weights given to padding keys.
    """
    windowed = window is not None and t_k > window
    if causal and 1 < t_q == t_k and key_padding is None and bias is None and not windowed:
        return CAUSAL
    mask = None
    if key_padding is not None:
        mask = ~key_padding[:, None, None, :]  # (B, 1, 1, T_k)
    if causal and (t_q > 1 or windowed):  # one query, the last position, sees every key
        c = causal_mask(t_q, t_k, device, window if windowed else None)
        mask = c if mask is None else mask & c
    if causal and key_padding is not None:
        own = torch.arange(t_k - t_q, t_k, device=device)[:, None] == torch.arange(
            t_k, device=device
        )
        mask = mask | (own & ~mask.any(-1, keepdim=True))
    if bias is None:
        return mask
    if mask is None:
        return bias
    return bias.masked_fill(~mask, float("-inf"))
