"""The encoder-decoder Transformer for translation (paper Figure 1)."""

from __future__ import annotations

from torch import Tensor, nn

from aiayn.models.build import TokenEmbedding, build_decoder, build_encoder, init_weights
from aiayn.models.config import ModelConfig
from aiayn.nn.masks import padding_mask
from aiayn.nn.seams import StackState
from aiayn.nn.stack import EncoderDecoderStack


class EncoderDecoder(nn.Module):
    """Source and target embeddings, the encoder-decoder stack, and the pre-softmax projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_embed = TokenEmbedding(cfg.source_vocab, cfg.d_model, cfg.scale_embeddings)
        self.tgt_embed = (
            self.src_embed
            if cfg.share_embeddings
            else TokenEmbedding(cfg.vocab_size, cfg.d_model, cfg.scale_embeddings)
        )
        self.transformer = EncoderDecoderStack(build_encoder(cfg), build_decoder(cfg))
        self.generator = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.output_bias)
        if cfg.tie_output:
            self.generator.weight = self.tgt_embed.weight
        init_weights(self)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Source ids (B, S) -> memory (B, S, d_model) and its padding mask (B, S)."""
        src_pad = padding_mask(src, self.cfg.pad_id)
        return self.transformer.encoder(self.src_embed(src), src_pad), src_pad

    def decode(
        self, tgt: Tensor, memory: Tensor, src_pad: Tensor, cache: StackState | None = None
    ) -> Tensor:
        """Target ids (B, T) given the memory -> next-token logits (B, T, vocab_size).

        With a cache, `tgt` holds only the positions after those already cached.
        """
        # Targets are right-padded, so the causal mask already hides their padding from every
        # real position; a key-padding mask would add work and change nothing that is scored.
        h = self.transformer.decoder(self.tgt_embed(tgt), memory, src_pad, cache=cache)
        return self.generator(h)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        # src: (B, S), tgt: (B, T) token ids -> (B, T, vocab_size) logits
        memory, src_pad = self.encode(src)
        return self.decode(tgt, memory, src_pad)
