import pytest
import torch

from aiayn.data.parallel import pad_to_tensor
from aiayn.decode.search import Special
from aiayn.models import ModelConfig
from aiayn.models.encoder_decoder import EncoderDecoder

SPECIAL = Special(bos=1, eos=2, pad=0)
VOCAB = 16


def reversal_batch(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [
        torch.randint(
            4, VOCAB, (int(torch.randint(3, 9, (1,), generator=gen)),), generator=gen
        ).tolist()
        for _ in range(n)
    ]
    src = pad_to_tensor([[*r, SPECIAL.eos] for r in rows], SPECIAL.pad)
    tgt = pad_to_tensor([[SPECIAL.bos, *r[::-1], SPECIAL.eos] for r in rows], SPECIAL.pad)
    return src, tgt


def tiny_config(**changes: object) -> ModelConfig:
    """A small pre-norm model without dropout, for the decoding tests of every family."""
    base = {"vocab_size": VOCAB, "d_model": 32, "n_heads": 4, "d_ff": 64, "n_layers": 2}
    return ModelConfig(**{**base, "dropout": 0.0, "norm_first": True, **changes})


def tiny_model(positional: str = "sinusoidal") -> EncoderDecoder:
    return EncoderDecoder(tiny_config(positional=positional))


@pytest.fixture(scope="session")
def trained() -> EncoderDecoder:
    """A tiny model taught to reverse its input: peaked, meaningful distributions."""
    torch.manual_seed(0)
    model, gen = tiny_model(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(250):
        src, tgt = reversal_batch(gen, 64)
        logits = model(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt[:, 1:], ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def sources() -> torch.Tensor:
    return reversal_batch(torch.Generator().manual_seed(1), 50)[0]


@pytest.fixture(params=["trained", "random-rope", "random-alibi", "random-learned"])
def model(request, trained) -> EncoderDecoder:
    """The trained model, and untrained ones with each other kind of positions."""
    if request.param == "trained":
        return trained
    torch.manual_seed(3)
    return tiny_model(request.param.split("-")[1]).eval()
