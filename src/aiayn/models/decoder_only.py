"""The decoder-only language model (GPT-style): a causal stack between tied embeddings."""

from __future__ import annotations

from torch import Tensor, nn

from aiayn.models.build import TokenEmbedding, build_encoder, init_weights
from aiayn.models.config import ModelConfig
from aiayn.nn.seams import StackState


class DecoderOnlyLM(nn.Module):
    """The paper's decoder without cross-attention, predicting each next token."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.scale_embeddings)
        self.transformer = build_encoder(cfg, causal=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.output_bias)
        if cfg.tie_output:
            self.lm_head.weight = self.embed.weight
        init_weights(self)

    def forward(
        self,
        tokens: Tensor,
        cache: StackState | None = None,
        pad_mask: Tensor | None = None,
        last_only: bool = False,
    ) -> Tensor:
        # tokens: (B, T), pad_mask: (B, T) True at padding -> (B, T, vocab_size) logits; with a
        # decoding state (`aiayn.decode.cache`: a cache, or positions counted past left
        # padding), only the new positions; `last_only`: (B, 1, vocab_size), the last's
        h = self.transformer(self.embed(tokens), pad_mask, cache)
        return self.lm_head(h[:, -1:] if last_only else h)
