import torch

from aiayn.data.noise import word_dropout


def test_word_dropout_replaces_a_fraction_p_and_spares_kept_positions() -> None:
    torch.manual_seed(0)
    ids = torch.randint(4, 100, (400, 50))
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[:, 0] = keep[:, -5:] = True
    out = word_dropout(ids, 0.2, 3, keep)
    assert torch.equal(out[keep], ids[keep])
    changed = out != ids
    assert torch.all(out[changed] == 3)
    assert abs(changed[:, 1:-5].float().mean().item() - 0.2) < 0.01
    assert word_dropout(ids, 0.0, 3, keep) is ids
