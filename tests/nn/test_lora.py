"""LoRA (aiayn.nn.lora): a zero B leaves the base's function exactly; folded-in adapters give
the adapted model's logits; a projection no layer has is refused by name."""

import pytest
import torch

from aiayn.families import names
from aiayn.models import build_model
from aiayn.models.config import ModelConfig
from aiayn.nn.lora import TARGETS, attach_lora, merge_lora

SMALL = {"vocab_size": 40, "d_model": 16, "n_heads": 4, "d_ff": 32, "n_layers": 2, "dropout": 0.0}
FAMILIES = {
    "encoder_decoder": {},
    "decoder_only": {"n_kv_heads": 2, "positional": "rope", "norm": "rmsnorm", "norm_first": True},
    "encoder_classifier": {"n_classes": 3},
    "encoder_tagger": {"n_classes": 5},
}
TARGET_SETS = [(t,) for t in TARGETS] + [TARGETS]


def test_every_family_is_tested() -> None:
    assert set(FAMILIES) == set(names())


def model_and_input(arch: str, **changes):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, **SMALL, **FAMILIES[arch], **changes)).eval()
    tokens = torch.randint(1, 40, (3, 7))
    args = (tokens, tokens[:, :5]) if arch == "encoder_decoder" else (tokens,)
    return model, args


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_zero_b_gives_the_base_logits_exactly(arch) -> None:
    model, args = model_and_input(arch)
    with torch.no_grad():
        base = model(*args)
        attach_lora(model, TARGETS, rank=4, alpha=8.0, dropout=0.0)
        assert torch.equal(model(*args), base)


@pytest.mark.parametrize("targets", TARGET_SETS, ids="+".join)
@pytest.mark.parametrize("arch", list(FAMILIES))
def test_merged_weights_give_the_adapted_logits(arch, targets) -> None:
    model, args = model_and_input(arch)
    with torch.no_grad():
        base = model(*args)
        adapted = attach_lora(model, targets, rank=2, alpha=4.0, dropout=0.0)
        assert adapted
        for name, p in model.named_parameters():
            if name.endswith(".B"):
                p.normal_(std=0.5)
        before = model(*args)
        assert not torch.allclose(before, base, atol=1e-3)  # the adapters change the function
        merge_lora(model)
        assert not any(".lora." in name for name in model.state_dict())
        torch.testing.assert_close(model(*args), before, rtol=0, atol=1e-5)


def test_a_target_no_layer_has_is_refused_by_name() -> None:
    model, _ = model_and_input("decoder_only", feedforward=False)
    with pytest.raises(ValueError, match="LoRA target 'ff' is in no layer"):
        attach_lora(model, ("q", "ff"), rank=2, alpha=4.0, dropout=0.0)
