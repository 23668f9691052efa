"""The ablation options: each module taken away is a validated config field, and the models
built without it still run, train and keep their masks' promises."""

import pytest
import torch

from aiayn.configfile import from_dict
from aiayn.models import ModelConfig, build_model
from aiayn.models.decoder_only import DecoderOnlyLM
from aiayn.nn.attention import SelfAttention
from aiayn.nn.layers import EncoderLayer
from aiayn.nn.norm import LayerNorm
from aiayn.runtime.attention import attention, use_attention
from tests.models.test_models import TINY, tiny, tokens

ABLATIONS = {
    "no residual": {"residual": False},
    "no feed-forward": {"feedforward": False},
    "no score scaling": {"scale_scores": False},
    "no norm": {"norm": "none", "norm_first": True},
    "no positions": {"positional": "none"},
}


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "encoder_classifier"])
@pytest.mark.parametrize("change", list(ABLATIONS.values()), ids=list(ABLATIONS))
def test_each_ablation_builds_and_trains_a_step(arch, change) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(arch=arch, **change))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    src, tgt = tokens(4, 9), tokens(4, 6)

    def loss() -> torch.Tensor:
        out = model(src, tgt) if arch == "encoder_decoder" else model(src)
        return out.float().logsumexp(-1).mean() - out.float()[..., 1].mean()

    first = loss()
    first.backward()
    opt.step()
    before = float(first.detach())
    assert torch.isfinite(first) and float(loss().detach()) < before


def test_without_the_feed_forward_a_layer_has_no_ffn_weights() -> None:
    full = build_model(tiny(arch="decoder_only"))
    bare = build_model(tiny(arch="decoder_only", feedforward=False))
    assert not any("ffn" in n or "norm2" in n for n, _ in bare.named_parameters())
    ffn = sum(p.numel() for n, p in full.named_parameters() if "ffn" in n or "norm2" in n)
    total = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert total(full) - total(bare) == ffn > 0


@pytest.mark.parametrize("norm_first", [False, True])
def test_without_the_residual_the_sublayer_output_replaces_the_stream(norm_first) -> None:
    attn, norm = SelfAttention(16, 2), LayerNorm(16)
    layer = EncoderLayer(attn, None, lambda: norm, 0.0, norm_first, residual=False).eval()
    x = torch.randn(2, 5, 16)
    expected = attn(norm(x)) if norm_first else norm(attn(x))
    torch.testing.assert_close(layer(x), expected)
    with_skip = EncoderLayer(attn, None, lambda: norm, 0.0, norm_first).eval()
    assert not torch.allclose(with_skip(x), expected)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_unscaled_scores_are_softmax_of_q_k(impl) -> None:
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    expected = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
    torch.testing.assert_close(attention(q, k, v, impl=impl, scale=1.0), expected)
    assert not torch.allclose(attention(q, k, v, impl=impl), expected)


@pytest.mark.parametrize("change", list(ABLATIONS.values()), ids=list(ABLATIONS))
@pytest.mark.parametrize("impl", ["sdpa", "math"])
def test_an_ablated_language_model_still_ignores_later_tokens(change, impl) -> None:
    model = DecoderOnlyLM(tiny(arch="decoder_only", **change)).eval()
    use_attention(model, impl)
    x = tokens(2, 12)
    y = x.clone()
    y[:, 7:] = tokens(2, 5)
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :7], b[:, :7])


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"norm": "none"}, ["model.norm", "norm_first = true"]),
        ({"norm": "none", "norm_first": True, "embed_norm": True}, ["model.norm", "embed_norm"]),
        ({"norm": "none", "norm_first": True, "final_norm": True}, ["model.norm", "final_norm"]),
        ({"residual": "no"}, ["model.residual"]),
        ({"feedforward": 0}, ["model.feedforward"]),
    ],
)
def test_combinations_that_make_no_sense_are_refused_by_name(change, named) -> None:
    with pytest.raises(ValueError) as e:  # as a config file gives them: types checked too
        from_dict(ModelConfig, {**TINY, **change}, "model")
    assert all(n in str(e.value) for n in named), str(e.value)
