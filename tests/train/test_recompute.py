import copy

import torch
from safetensors.torch import load_file

from aiayn.cli import main
from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder
from aiayn.train.recompute import recompute_layers
from tests.cli_helpers import write_config


def model_pair() -> tuple[EncoderDecoder, EncoderDecoder]:
    cfg = ModelConfig(vocab_size=20, d_model=32, n_heads=4, d_ff=64, n_layers=2, dropout=0.2)
    plain = EncoderDecoder(cfg).train()
    checkpointed = copy.deepcopy(plain)
    assert recompute_layers(checkpointed) == 4
    return plain, checkpointed


def grads(model: EncoderDecoder, src: torch.Tensor, tgt: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)  # the same dropout masks for both models
    model(src, tgt).float().pow(2).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointed_layers_give_the_same_gradients_and_recompute():
    plain, checkpointed = model_pair()
    src, tgt = torch.randint(3, 20, (3, 7)), torch.randint(3, 20, (3, 5))
    calls = []
    ff = checkpointed.transformer.decoder.layers[0].ffn
    ff.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    expected, got = grads(plain, src, tgt), grads(checkpointed, src, tgt)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert len(calls) == 2  # the forward pass, then the recomputation in backward
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()

    calls.clear()
    with torch.no_grad():
        torch.testing.assert_close(checkpointed.eval()(src, tgt), plain.eval()(src, tgt))
    assert len(calls) == 1  # nothing to recompute without gradients


def test_training_with_activation_checkpointing_ends_with_the_same_weights(tmp_path):
    config = write_config(tmp_path, max_steps=6, eval_every=6, average_last=1, precision="fp32")
    for name, on in (("plain", "false"), ("checkpointed", "true")):
        sets = ["--set", f"train.activation_checkpointing={on}"]
        assert main(["train", str(config), "--out", str(tmp_path / name), *sets]) == 0
    a = load_file(str(tmp_path / "plain" / "model.safetensors"))
    b = load_file(str(tmp_path / "checkpointed" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
