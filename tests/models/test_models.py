import pytest
import torch

from aiayn.models import ModelConfig, build_model, count_parameters, estimate_parameters
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.models.encoder_only import EncoderClassifier
from aiayn.runtime.attention import use_attention

TINY = dict(vocab_size=50, d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.0, max_len=64)
POSITIONALS = ["sinusoidal", "learned", "rope", "alibi"]


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY, **kw})


def tokens(b: int, t: int) -> torch.Tensor:
    return torch.randint(1, TINY["vocab_size"], (b, t))


@pytest.mark.parametrize(
    "arch", ["encoder_decoder", "decoder_only", "encoder_classifier", "encoder_tagger"]
)
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"norm_first": True, "norm": "rmsnorm", "activation": "swiglu", "positional": "rope"},
        {"positional": "alibi", "activation": "gelu", "n_kv_heads": 2, "bias": False},
        {"positional": "learned", "dropout": 0.1, "attn_dropout": 0.1},
    ],
    ids=["paper", "modern", "alibi-gqa", "learned-math"],
)
def test_each_family_runs_forward_and_backward(arch, variant):
    model = build_model(tiny(arch=arch, **variant))
    use_attention(model, "math" if "attn_dropout" in variant else "sdpa")
    src = tokens(3, 9)
    src[0, 6:] = 0  # padding
    out = model(src, tokens(3, 5)) if arch == "encoder_decoder" else model(src)
    expected = {
        "encoder_decoder": (3, 5, 50),
        "decoder_only": (3, 9, 50),
        "encoder_classifier": (3, 2),
        "encoder_tagger": (3, 9, 2),
    }[arch]
    assert out.shape == expected
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_decoder_only_output_at_t_ignores_later_tokens(positional, impl):
    model = DecoderOnlyLM(tiny(arch="decoder_only", positional=positional)).eval()
    use_attention(model, impl)
    x = tokens(2, 12)
    y = x.clone()
    y[:, 7:] = tokens(2, 5)
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("positional", POSITIONALS)
def test_encoder_decoder_logits_ignore_later_target_tokens(positional):
    model = EncoderDecoder(tiny(positional=positional)).eval()
    src, tgt = tokens(2, 8), tokens(2, 6)
    changed = tgt.clone()
    changed[:, 3:] = tokens(2, 3)
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])


@pytest.mark.parametrize("positional", POSITIONALS)
@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_encoder_states_at_real_tokens_ignore_extra_padding(positional, impl):
    model = EncoderClassifier(
        tiny(arch="encoder_classifier", positional=positional, pooling="mean")
    )
    use_attention(model.eval(), impl)
    x = tokens(2, 6)
    x[1, 4:] = 0
    padded = torch.cat([x, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        (h, _), (h_padded, _) = model.hidden_states(x), model.hidden_states(padded)
        logits, logits_padded = model(x), model(padded)
    torch.testing.assert_close(h[0], h_padded[0, :6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[1, :4], h_padded[1, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, logits_padded, atol=1e-5, rtol=1e-5)


def test_encoder_decoder_output_ignores_extra_source_padding():
    model = EncoderDecoder(tiny()).eval()
    src, tgt = tokens(2, 6), tokens(2, 4)
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(src, tgt), model(padded, tgt), atol=1e-5, rtol=1e-5)


def test_paper_sharing_ties_source_target_and_output():
    model = EncoderDecoder(tiny())
    assert model.src_embed is model.tgt_embed
    assert model.generator.weight is model.tgt_embed.weight
    separate = EncoderDecoder(tiny(src_vocab_size=40, share_embeddings=False, tie_output=False))
    assert separate.src_embed.weight.shape == (40, 32)
    assert separate.generator.weight is not separate.tgt_embed.weight
    shared, apart = count_parameters(model), count_parameters(separate)
    assert apart - shared == 40 * 32 + 50 * 32


def test_embeddings_are_scaled_by_sqrt_d_model():
    model = EncoderDecoder(tiny())
    ids = torch.tensor([[3, 4]])
    torch.testing.assert_close(model.src_embed(ids), model.src_embed.weight[ids] * 32**0.5)
    unscaled = EncoderDecoder(tiny(scale_embeddings=False))
    torch.testing.assert_close(unscaled.src_embed(ids), unscaled.src_embed.weight[ids])


def test_dropout_sits_on_embeddings_and_every_residual_branch():
    model = EncoderDecoder(tiny(dropout=0.1))
    enc = model.transformer.encoder
    assert enc.drop.p == 0.1
    assert all(layer.drop.p == 0.1 for layer in enc.layers)
    assert all(layer.drop.p == 0.1 for layer in model.transformer.decoder.layers)
    model.train()
    src, tgt = tokens(2, 5), tokens(2, 4)
    assert not torch.allclose(model(src, tgt), model(src, tgt))


def test_pre_norm_has_final_norms_and_post_norm_none():
    post, pre = EncoderDecoder(tiny()), EncoderDecoder(tiny(norm_first=True))
    assert isinstance(post.transformer.encoder.norm, torch.nn.Identity)
    assert not isinstance(pre.transformer.decoder.norm, torch.nn.Identity)


@pytest.mark.parametrize(
    "arch", ["encoder_decoder", "decoder_only", "encoder_classifier", "encoder_tagger"]
)
@pytest.mark.parametrize(
    "heads", [{}, {"head_dim": 64}, {"n_kv_heads": 1}, {"head_dim": 4, "n_kv_heads": 2}]
)
def test_size_estimate_bounds_the_count_whatever_the_heads(arch, heads):
    cfg = ModelConfig(
        arch=arch, vocab_size=100, d_model=32, n_heads=4, d_ff=64, n_layers=2, max_len=64, **heads
    )
    n = count_parameters(build_model(cfg, device="meta"))
    assert n <= estimate_parameters(cfg) <= 1.3 * n


def test_meta_device_builds_without_allocating():
    model = build_model(ModelConfig(), device="meta")
    assert all(p.is_meta for p in model.parameters())
