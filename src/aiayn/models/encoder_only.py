"""Encoder-only models (BERT-style): the encoder body, and a head over it: a classifier of the
pooled text (EncoderClassifier) or of every token (EncoderTagger)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aiayn.models.build import TokenEmbedding, build_encoder, init_weights
from aiayn.models.config import ModelConfig
from aiayn.nn.dropout import Dropout
from aiayn.nn.masks import padding_mask


def pool_cls(h: Tensor, pad: Tensor) -> Tensor:
    """The first position's state: the [CLS] token the data puts there."""
    return h[:, 0]


def pool_mean(h: Tensor, pad: Tensor) -> Tensor:
    """The mean of the states at real (non-padding) positions."""
    keep = (~pad).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)


POOLING = {"cls": pool_cls, "mean": pool_mean}


class EncoderBody(nn.Module):
    """Token embeddings (and segment embeddings), then the encoder stack: what every
    encoder-only model shares, under the same tensor names, so that one's body loads into
    another's (a tagger fine-tuned from a classifier's or an imported BERT's weights)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.scale_embeddings)
        self.segment_embed = nn.Embedding(cfg.n_segments, cfg.d_model) if cfg.n_segments else None
        self.transformer = build_encoder(cfg)

    def init_body(self) -> None:
        init_weights(self)
        if self.segment_embed is not None:
            nn.init.normal_(self.segment_embed.weight, std=0.02)

    def hidden_states(
        self, tokens: Tensor, pad: Tensor | None = None, segments: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(B, T) ids -> the encoder's last states (B, T, d_model) and the padding mask (B, T).

        `pad` (True at padding) defaults to the positions holding pad_id; `segments` (B, T)
        picks segment embeddings, all segment 0 by default.
        """
        pad = padding_mask(tokens, self.cfg.pad_id) if pad is None else pad
        x = self.embed(tokens)
        if self.segment_embed is not None:
            seg = torch.zeros_like(tokens) if segments is None else segments
            x = x + self.segment_embed(seg)
        return self.transformer(x, pad), pad


class EncoderClassifier(EncoderBody):
    """Token ids -> class logits through the encoder, pooling, tanh pooler and dropout."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.pool = POOLING[cfg.pooling]
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes)
        self.init_body()

    def forward(
        self, tokens: Tensor, pad: Tensor | None = None, segments: Tensor | None = None
    ) -> Tensor:
        # tokens: (B, T) -> (B, n_classes) logits
        h, pad = self.hidden_states(tokens, pad, segments)
        pooled = torch.tanh(self.pooler(self.pool(h, pad)))
        return self.classifier(self.drop(pooled))


class EncoderTagger(EncoderBody):
    """Token ids -> logits over the tags at every position: the encoder body, dropout and one
    linear map, the token-classification head (`classifier`, as BERT's token classifier names
    it). n_classes is the number of tags."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.drop = Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_model, cfg.n_classes)
        self.init_body()

    def forward(
        self, tokens: Tensor, pad: Tensor | None = None, segments: Tensor | None = None
    ) -> Tensor:
        # tokens: (B, T) -> (B, T, n_classes) logits
        h, _ = self.hidden_states(tokens, pad, segments)
        return self.classifier(self.drop(h))
